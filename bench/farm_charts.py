"""What the farm page's charts cost: its reads with and without them.

Compares, side by side in one run on the same database, the farm page's
reads before the charts (ops_builders, ops_queue, the latest ops_work)
with the charts' own reads (ops_hourly, ops_durations for builds), and
the page's whole read with both. Rounds alternate so that load on the
machine hits every variant alike; the median of each is printed with
every run listed, and the ratio of the charts' reads to the rest.

Seeds a throwaway database (the test server) like bench/status_pages.py:
200 builders and 200,000 jobs, a third of them builds, all finished in the
last hour (the worst case for ops_hourly: every build is in its window).

    .venv/bin/python bench/farm_charts.py [--jobs N] [--rounds N]
        [--history-days N]

``--history-days 365`` spreads the finished jobs over a year: a farm with
history, where the charts should read only the last day's builds.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from status_pages import SEED  # noqa: E402

from lp_services.ops.reports import fetch_report  # noqa: E402
from lp_services.testing.database import create_test_database  # noqa: E402


def before_charts(cur):
    fetch_report(cur, "builders")
    fetch_report(cur, "queue")
    fetch_report(cur, "work", limit=10)


def charts(cur):
    fetch_report(cur, "hourly")
    fetch_report(cur, "durations", kind="build")


def whole_page(cur):
    before_charts(cur)
    charts(cur)


VARIANTS = [("farm page reads before the charts", before_charts),
            ("the charts' reads (ops_hourly, ops_durations)", charts),
            ("farm page reads with the charts", whole_page)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--history-days", type=int, default=0,
                        help="Spread the finished jobs' times evenly over "
                             "this many days (default 0: all in the last "
                             "hour, the worst case).")
    args = parser.parse_args()
    url = create_test_database()
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(SEED, {"builders": args.builders, "jobs": args.jobs})
        if args.history_days:
            # Job i finished i / jobs of the history ago, started a minute
            # before, created a minute before that.
            cur.execute("""
                WITH t AS (
                    SELECT id, now() - (%(days)s * 86400.0 * id / %(jobs)s
                                        || ' seconds')::interval AS at
                    FROM job WHERE status = 2)
                UPDATE job j SET date_finished = t.at,
                       date_started = t.at - interval '1 minute',
                       date_created = t.at - interval '2 minutes'
                FROM t WHERE j.id = t.id;
                UPDATE build_farm_job f SET date_finished = j.date_finished,
                       date_started = j.date_started
                FROM job j WHERE j.id = f.job AND j.status = 2;
                ANALYZE;
                """, {"days": args.history_days, "jobs": args.jobs})
    print("farm page reads with and without the charts: %d builders, %d "
          "jobs finished over %s, %d alternating rounds, ms"
          % (args.builders, args.jobs,
             "%d days" % args.history_days if args.history_days
             else "the last hour", args.rounds))
    times = {name: [] for name, _ in VARIANTS}
    for _ in range(args.rounds):
        for name, read in VARIANTS:
            with conn, conn.cursor() as cur:
                started = time.perf_counter()
                read(cur)
                times[name].append((time.perf_counter() - started) * 1000)
    conn.close()
    medians = {}
    for name, _ in VARIANTS:
        medians[name] = statistics.median(times[name])
        print("%-48s median %7.1f   runs %s" % (
            name, medians[name], " ".join("%.0f" % t for t in times[name])))
    base, extra = medians[VARIANTS[0][0]], medians[VARIANTS[1][0]]
    print("charts / reads before them: %.2f" % (extra / base))


if __name__ == "__main__":
    main()
