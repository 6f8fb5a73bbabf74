"""How long the status pages take on a big farm (not a test; run by hand).

    .venv/bin/python bench/status_pages.py [--builders 200] [--jobs 200000]

Seeds a throwaway database (the test server) with that many builders
(half of them building, with 2 KB log tails) and jobs (one third builds,
a third of those waiting), serves the status site on loopback, and prints
the median and worst time of 20 sequential GETs of each page, end to end
(HTTP, transactor, SQL, rendering), and each page's size.
"""

import argparse
import statistics
import time

import psycopg2
from twisted.internet import defer, reactor, task
from twisted.web.client import Agent, readBody
from twisted.web.server import Site

from lp_services.database.transactor import Transactor
from lp_services.testing.database import create_test_database
from lp_services.web.site import make_status_resource

SEED = """
INSERT INTO processor (id, name) VALUES (1, 'amd64'), (2, 'arm64');
INSERT INTO builder (id, name, url, clean_status)
  SELECT i, 'b' || i, 'http://b' || i, 0 FROM generate_series(1, %(builders)s) i;
INSERT INTO builder_processor SELECT i, 1 + i %% 2 FROM generate_series(1, %(builders)s) i;
INSERT INTO job (id, job_type, status, date_created, date_started, date_finished,
                 attempt_count)
  SELECT i, CASE WHEN i %% 3 = 0 THEN 'build' ELSE 'noop' END,
         CASE WHEN i %% 9 = 0 THEN 0 ELSE 2 END,
         now() - (i || ' seconds')::interval, now(), now(), 1
  FROM generate_series(1, %(jobs)s) i;
INSERT INTO build_farm_job (job, build_type, processor, status)
  SELECT id, 'script', 1 + id %% 2, CASE WHEN status = 0 THEN 0 ELSE 1 END
  FROM job WHERE job_type = 'build';
INSERT INTO build_queue (job, build_farm_job, build_type, processor)
  SELECT job, job, 'script', processor FROM build_farm_job WHERE status = 0;
-- Half the builders build: the highest-numbered waiting builds of their
-- processor, with a log tail.
WITH pick AS (
  SELECT b.id AS builder, q.job FROM
    (SELECT id, row_number() OVER (PARTITION BY 1 + id %% 2 ORDER BY id) AS n,
            1 + id %% 2 AS processor
     FROM builder WHERE id %% 2 = 0 OR id <= %(builders)s / 2) b
    JOIN (SELECT job, processor,
                 row_number() OVER (PARTITION BY processor ORDER BY job DESC) AS n
          FROM build_queue) q ON q.processor = b.processor AND q.n = b.n
)
UPDATE build_queue bq SET builder = pick.builder, build_cookie = 'c',
       date_dispatched = now(), logtail = repeat('compiling things ' || chr(10), 120)
FROM pick WHERE bq.job = pick.job;
UPDATE job SET status = 1 WHERE id IN (SELECT job FROM build_queue WHERE builder IS NOT NULL);
ANALYZE;
"""

PAGES = ["/", "/work", "/work?status=FAILED&kind=build", "/builds/%(build)d",
         "/builds/%(build)d/log.json", "/jobs/1", "/metrics"]


async def measure(base, path, rounds=20):
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        response = await Agent(reactor).request(b"GET", (base + path).encode())
        body = await readBody(response)
        times.append(time.perf_counter() - start)
        assert response.code == 200, (path, response.code)
        size = len(body)
    return statistics.median(times), max(times), size


async def main(args):
    url = create_test_database()
    conn = psycopg2.connect(url)
    started = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.execute(SEED, {"builders": args.builders, "jobs": args.jobs})
        cur.execute("SELECT min(job) FROM build_queue WHERE builder IS NOT NULL")
        build = cur.fetchone()[0]
    conn.close()
    print("seeded %d builders, %d jobs in %.1f s"
          % (args.builders, args.jobs, time.perf_counter() - started))
    transactor = Transactor(url, reactor=reactor)
    transactor.start()
    port = reactor.listenTCP(0, Site(make_status_resource(transactor)),
                             interface="127.0.0.1")
    base = "http://127.0.0.1:%d" % port.getHost().port
    print("%-34s %9s %9s %9s" % ("page", "median", "max", "bytes"))
    for page in PAGES:
        path = page % {"build": build}
        median, worst, size = await measure(base, path)
        print("%-34s %7.1fms %7.1fms %9d" % (path, median * 1000, worst * 1000, size))
    await port.stopListening()
    transactor.stop()


def run():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builders", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=200000)
    args = parser.parse_args()
    task.react(lambda _: defer.ensureDeferred(main(args)))


if __name__ == "__main__":
    run()
