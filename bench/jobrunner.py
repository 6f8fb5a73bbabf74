#!/usr/bin/env python3
"""Benchmark: the native job runner against raw SKIP LOCKED loops, at the
same claim batch and process count, on one durable PostgreSQL.

    .venv/bin/python bench/jobrunner.py [--jobs 20000] [--batches 10,100]
        [--processes 1,2] [--repeat 3] [--concurrency 2] [--depth N]
        [--samples 60] [--unsafe] [--database URL]

Without --database it starts a scratch embedded PostgreSQL in a temporary
directory with the normal durable settings (fsync and synchronous_commit
on; ``--unsafe`` turns them off, and the header says which) and removes it
afterwards. ``--database`` must name a scratch database on this host: the
script truncates ``job`` and adds its own tables and triggers.

For every claim batch B and process count P, back to back in one run, and
``--repeat`` times over, it drains N no-op jobs three ways:

* **runner**: P real ``twistd jobrunner`` processes (``--concurrency``
  children each, ``--claim-batch B``, ``--depth B`` unless given): every
  job claimed with a lease and an attempt, run in a child process,
  completed with a guarded write;
* **raw loop**: P processes each looping over the runner's own CLAIM
  statement (limit B) and its COMPLETE statement on the same ``job`` table,
  prepared as the runner prepares them (generic plans), committing each,
  no child processes;
* **minimal queue**: the same loop on a one-table queue with one partial
  index (``bench_queue``), so the cost of our schema shows.

Rates come from the database clock: an AFTER UPDATE statement trigger on
both tables records ``clock_timestamp()`` and how many rows each statement
claimed and completed (in ``bench_clock``, written by the same statement
that changes the rows); rate = N / (last completing statement − first
claiming statement). Jobs are enqueued before the clock starts, and the
runners are started and idle first, so process start-up is not counted.
Every drain meets the same conditions: a CHECKPOINT before its jobs are
inserted (so the inserts, not the drain, pay the full-page writes, and no
timed checkpoint falls into it), VACUUM ANALYZE after, and autovacuum off
on the two tables.

CPU per job (µs) comes from /proc (utime + stime) over the same drain: the
runner processes (or the raw loop's processes), the runners' children, and
the PostgreSQL server (postmaster, every backend and helper, and whatever
exited meanwhile through the postmaster's cutime). It includes the one
connection polling for the end (every 20 ms), which is the same for every
row.

Last, the latency of an idle runner woken by NOTIFY: a ``test.record`` job
is inserted and committed with its NOTIFY, and the script records the
moment COMMIT returned; a row trigger records ``clock_timestamp()`` when
the job's row becomes RUNNING (the claim), and the job itself writes the
time when its code starts in the child. PostgreSQL's clock_timestamp() and
Python's time.time() read the same host clock (the server must be on this
host). It prints commit → claim and commit → child start, median and p90.
"""

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent

BENCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_clock (
    at timestamptz NOT NULL,
    tbl text NOT NULL,
    claimed int NOT NULL,
    completed int NOT NULL
);
CREATE TABLE IF NOT EXISTS bench_queue (
    id bigserial PRIMARY KEY,
    status smallint NOT NULL DEFAULT 0,
    holder text,
    attempts int NOT NULL DEFAULT 0,
    lease_expires timestamptz
);
CREATE INDEX IF NOT EXISTS bench_queue__waiting__idx ON bench_queue (id)
    WHERE status = 0;
CREATE OR REPLACE FUNCTION bench_clock_mark() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_clock
    SELECT clock_timestamp(), TG_TABLE_NAME,
           count(*) FILTER (WHERE status = 1),
           count(*) FILTER (WHERE status = 2)
    FROM bench_new HAVING count(*) > 0;
    RETURN NULL;
END $$;
ALTER TABLE job SET (autovacuum_enabled = false);
ALTER TABLE bench_queue SET (autovacuum_enabled = false);
DROP TRIGGER IF EXISTS bench_clock ON job;
CREATE TRIGGER bench_clock AFTER UPDATE ON job
    REFERENCING NEW TABLE AS bench_new
    FOR EACH STATEMENT EXECUTE FUNCTION bench_clock_mark();
DROP TRIGGER IF EXISTS bench_clock ON bench_queue;
CREATE TRIGGER bench_clock AFTER UPDATE ON bench_queue
    REFERENCING NEW TABLE AS bench_new
    FOR EACH STATEMENT EXECUTE FUNCTION bench_clock_mark();
CREATE TABLE IF NOT EXISTS bench_claimed (
    job bigint PRIMARY KEY,
    at timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION bench_claimed_mark() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_claimed VALUES (NEW.id, clock_timestamp())
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
"""

LATENCY_TRIGGER = """
CREATE TRIGGER bench_claimed AFTER UPDATE ON job FOR EACH ROW
    WHEN (OLD.status = 0 AND NEW.status = 1)
    EXECUTE FUNCTION bench_claimed_mark()
"""

# By id = ANY(ARRAY(...)), as the runner's claim, so that its generic plan
# finds the rows by primary key (a join on the subquery became a hash join
# over the whole table).
MINIMAL_CLAIM = """
UPDATE bench_queue SET status = 1, holder = %(holder)s,
    attempts = attempts + 1,
    lease_expires = %(now)s + interval '60 seconds'
WHERE id = ANY(ARRAY(
    SELECT id FROM bench_queue WHERE status = 0 ORDER BY id
    LIMIT %(limit)s FOR UPDATE SKIP LOCKED))
RETURNING id
"""
MINIMAL_COMPLETE = """
UPDATE bench_queue SET status = 2, holder = NULL, lease_expires = NULL
WHERE id = ANY(%(ids)s) AND status = 1 AND holder = %(holder)s
"""

def _minimal_prepared():
    from lp_services.job.queries import prepared_statement

    return (prepared_statement("bench_minimal_claim", MINIMAL_CLAIM),
            prepared_statement("bench_minimal_complete", MINIMAL_COMPLETE))


MINIMAL_PREPARED = _minimal_prepared()

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- CPU from /proc --------------------------------------------------------

def _stat(pid):
    """(ppid, utime + stime, cutime + cstime) in clock ticks, or None."""
    try:
        text = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[1]), int(fields[11]) + int(fields[12]),
            int(fields[13]) + int(fields[14]))


def _children(parent):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] == parent:
                found.append(int(entry))
    return found


def cpu_seconds(pids, with_children=False, reaped=False):
    """CPU seconds of ``pids`` (and of their live children, and of their
    reaped children, as asked)."""
    ticks = 0
    for pid in pids:
        stat = _stat(pid)
        if stat is None:
            continue
        ticks += stat[1]
        if reaped:
            ticks += stat[2]
        if with_children:
            for child in _children(pid):
                child_stat = _stat(child)
                if child_stat is not None:
                    ticks += child_stat[1]
    return ticks / CLK_TCK


class CpuMeter:
    """CPU of client processes, their children and the server, between
    :meth:`start` and :meth:`stop`."""

    def __init__(self, postmaster):
        self.postmaster = postmaster

    def _sample(self, clients):
        own = cpu_seconds(clients)
        children = sum(cpu_seconds(_children(p)) for p in clients)
        server = (cpu_seconds([self.postmaster], with_children=True,
                              reaped=True)
                  if self.postmaster else float("nan"))
        return own, children, server

    def start(self, clients):
        self.clients = list(clients)
        self.before = self._sample(self.clients)

    def stop(self):
        after = self._sample(self.clients)
        return tuple(a - b for a, b in zip(after, self.before))


def find_postmaster(url):
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    stat = _stat(backend)
    conn.close()
    return stat[0] if stat is not None else None


# -- the database ------------------------------------------------------------

def _connect(url):
    return psycopg2.connect(url)


def execute(url, sql, params=None, autocommit=False):
    conn = _connect(url)
    conn.autocommit = autocommit
    with conn.cursor() as cur:
        cur.execute(sql, params)
    if not autocommit:
        conn.commit()
    conn.close()


def reset(url):
    execute(url, "TRUNCATE job, bench_clock, bench_queue, bench_claimed"
            " RESTART IDENTITY CASCADE")


def enqueue(url, table, n):
    # A checkpoint first: the inserts below then pay the full-page writes
    # of every page the drain will touch, and no timed checkpoint (every
    # checkpoint_timeout) falls into a drain.
    execute(url, "CHECKPOINT", autocommit=True)
    if table == "job":
        execute(url, "INSERT INTO job (job_type) SELECT 'noop'"
                " FROM generate_series(1, %s)", (n,))
    else:
        execute(url, "INSERT INTO bench_queue (status) SELECT 0"
                " FROM generate_series(1, %s)", (n,))
    execute(url, "VACUUM ANALYZE %s" % table, autocommit=True)


def drained_rate(url, table, n):
    """Jobs/s between the first claiming and the last completing statement
    as the database's clock recorded them; checks all n completed once."""
    conn = _connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT sum(completed), extract(epoch FROM"
                    " max(at) FILTER (WHERE completed > 0)"
                    " - min(at) FILTER (WHERE claimed > 0)),"
                    " count(*) FROM bench_clock WHERE tbl = %s", (table,))
        completed, seconds, statements = cur.fetchone()
    conn.close()
    if completed != n:
        raise SystemExit("%s: %s of %d jobs completed" % (table, completed, n))
    return n / float(seconds), statements


def wait_drained(url, n, timeout=600):
    conn = _connect(url)
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT coalesce(sum(completed), 0) FROM bench_clock"
                        " WHERE tbl = 'job'")
            if cur.fetchone()[0] >= n:
                break
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            time.sleep(0.02)
    conn.close()


# -- the runner --------------------------------------------------------------

def start_runner(url, name, concurrency, batch, depth, logdir,
                 types=("noop",)):
    log = open(logdir / ("%s.log" % name), "w+")
    includes = [arg for t in types for arg in ("--include", t)]
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/twistd"), "-n", "--pidfile=", "jobrunner",
         "--database", url, "--concurrency", str(concurrency),
         "--claim-batch", str(batch), "--depth", str(depth),
         "--module", "lp_services.job.testtypes", *includes,
         "--poll-interval", "3600", "--holder", name],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(logdir))
    return process, log


def wait_ready(log, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log.seek(0)
        if " ready" in log.read():
            return
        time.sleep(0.05)
    log.seek(0)
    raise SystemExit("runner did not start:\n" + log.read())


def stop_runners(runners):
    for process, _ in runners:
        process.send_signal(signal.SIGTERM)
    for process, log in runners:
        process.wait(timeout=60)
        log.close()


def bench_runner(url, meter, n, processes, concurrency, batch, depth,
                 logdir):
    reset(url)
    runners = [start_runner(url, "bench-%d" % i, concurrency, batch, depth,
                            logdir)
               for i in range(processes)]
    try:
        for _, log in runners:
            wait_ready(log)
        time.sleep(0.3)  # let their first (empty) claims finish
        enqueue(url, "job", n)
        meter.start([p.pid for p, _ in runners])
        execute(url, "SELECT pg_notify('lp_job', 'noop')")
        wait_drained(url, n)
        cpu = meter.stop()
    finally:
        stop_runners(runners)
    rate, statements = drained_rate(url, "job", n)
    return rate, cpu, statements


# -- the raw loops -----------------------------------------------------------

def _raw_worker(url, table, batch, holder, ready, go, counts, leave):
    from lp_services.job import queries

    conn = _connect(url)
    done = 0
    with conn.cursor() as cur:
        # The same statements as the runner, prepared as the runner
        # prepares them: the loop pays for nothing the runner avoids.
        if table == "job":
            claim = queries.PREPARED[queries.CLAIM]
            complete = queries.PREPARED[queries.COMPLETE]
        else:
            claim, complete = MINIMAL_PREPARED
        cur.execute(queries.PLAN_CACHE_MODE)
        cur.execute(claim.prepare)
        cur.execute(complete.prepare)
        conn.commit()
        ready.wait()
        go.wait()
        while True:
            now = datetime.now(timezone.utc)
            if table == "job":
                cur.execute(claim.execute, {
                    "now": now, "holder": holder, "limit": batch,
                    "types": ["noop"], "leases": [60.0]})
            else:
                cur.execute(claim.execute, {
                    "now": now, "holder": holder, "limit": batch})
            ids = [row[0] for row in cur.fetchall()]
            conn.commit()
            if not ids:
                break
            cur.execute(complete.execute, {
                "ids": ids, "now": datetime.now(timezone.utc),
                "holder": holder})
            conn.commit()
            done += len(ids)
    counts.put(done)
    leave.wait()  # stay alive until the CPU meter has read us
    conn.close()


def bench_raw(url, meter, table, n, processes, batch):
    reset(url)
    enqueue(url, table, n)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(processes + 1)
    go = ctx.Event()
    leave = ctx.Event()
    counts = ctx.Queue()
    workers = [ctx.Process(target=_raw_worker, args=(
        url, table, batch, "raw-%d" % i, ready, go, counts, leave))
        for i in range(processes)]
    for w in workers:
        w.start()
    try:
        ready.wait()
        meter.start([w.pid for w in workers])
        go.set()
        total = sum(counts.get() for _ in workers)
        cpu = meter.stop()
    finally:
        leave.set()
        for w in workers:
            w.join()
    if total != n:
        raise SystemExit("raw loop completed %d of %d" % (total, n))
    rate, statements = drained_rate(url, table, n)
    return rate, cpu, statements


# -- latency -----------------------------------------------------------------

def bench_latency(url, samples, concurrency, logdir):
    """(commit → claim, commit → child start, commit duration), in ms."""
    reset(url)
    execute(url, LATENCY_TRIGGER)
    runner = start_runner(url, "latency", concurrency, concurrency, 1,
                          logdir, types=("test.record",))
    record = logdir / "latency-record.log"
    claims, starts, commits = [], [], []
    try:
        wait_ready(runner[1])
        time.sleep(0.3)
        conn = _connect(url)
        with conn.cursor() as cur:
            for _ in range(samples):
                cur.execute("INSERT INTO job (job_type, json_data)"
                            " VALUES ('test.record', %s) RETURNING id",
                            ('{"log": "%s"}' % record,))
                job_id = cur.fetchone()[0]
                cur.execute("SELECT pg_notify('lp_job', 'test.record')")
                before = time.time()
                conn.commit()
                committed = time.time()
                commits.append((committed - before) * 1000)
                time.sleep(0.02)  # poll only once the job surely ran
                while True:
                    cur.execute("SELECT extract(epoch FROM c.at)"
                                " FROM job j JOIN bench_claimed c"
                                " ON c.job = j.id"
                                " WHERE j.id = %s AND j.status = 2",
                                (job_id,))
                    row = cur.fetchone()
                    conn.commit()
                    if row is not None:
                        claims.append((float(row[0]) - committed) * 1000)
                        break
                    time.sleep(0.001)
                started = [line.split() for line in
                           record.read_text().splitlines()
                           if line.startswith("start %d " % job_id)]
                starts.append((float(started[0][4]) - committed) * 1000)
                time.sleep(0.02)  # let the runner go idle again
        conn.close()
    finally:
        stop_runners([runner])
        execute(url, "DROP TRIGGER IF EXISTS bench_claimed ON job")
    return claims, starts, commits


# -- output ------------------------------------------------------------------

def median_p90(values):
    values = sorted(values)
    return (statistics.median(values),
            values[max(0, int(round(len(values) * 0.9)) - 1)])


def per_job_us(cpu, n):
    return tuple(1e6 * c / n for c in cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--database", help="a scratch PostgreSQL database on"
                        " this host (default: a scratch embedded server)")
    parser.add_argument("--unsafe", action="store_true",
                        help="scratch server with fsync and synchronous_"
                        "commit off (default: durable)")
    parser.add_argument("--batches", default="10,100",
                        help="claim batches, comma-separated")
    parser.add_argument("--processes", default="1,2",
                        help="process counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="child processes per runner")
    parser.add_argument("--depth", type=int, default=None,
                        help="jobs sent ahead per child (default: the "
                        "claim batch)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; medians are reported, every run "
                        "listed")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    process_counts = [int(p) for p in args.processes.split(",")]

    scratch = None
    url = args.database
    if url is None:
        from lp_services.database.embedded import EmbeddedServer
        from lp_services.database.schema import upgrade

        scratch = Path(tempfile.mkdtemp(prefix="lp-bench-"))
        server = EmbeddedServer(scratch, fast_unsafe=args.unsafe)
        url = server.start()
        conn = _connect(url)
        upgrade(conn)
        conn.close()
    execute(url, BENCH_SCHEMA)
    logdir = Path(tempfile.mkdtemp(prefix="lp-bench-logs-"))
    try:
        conn = _connect(url)
        with conn.cursor() as cur:
            settings = {}
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                cur.execute("SHOW " + name)
                settings[name] = cur.fetchone()[0]
        conn.close()
        durable = (settings["fsync"] == "on"
                   and settings["synchronous_commit"] == "on")
        postmaster = find_postmaster(url)
        meter = CpuMeter(postmaster)
        print("bench/jobrunner.py: runner vs raw SKIP LOCKED loops at the "
              "same claim batch and process count")
        print("database: %s, %s (%s); %d no-op jobs per drain; runner "
              "--concurrency %d, --depth %s; %d rounds, medians"
              % ("scratch embedded" if scratch else "given",
                 "DURABLE" if durable else "NOT DURABLE",
                 ", ".join("%s=%s" % kv for kv in settings.items()),
                 args.jobs, args.concurrency,
                 args.depth if args.depth else "= claim batch", args.repeat))
        print("load average before: %.2f %.2f %.2f" % os.getloadavg())
        results = {}
        for round_ in range(args.repeat):
            for batch in batches:
                for processes in process_counts:
                    key = (batch, processes)
                    depth = args.depth or batch
                    runs = results.setdefault(key, {"runner": [], "raw": [],
                                                    "minimal": []})
                    runs["runner"].append(bench_runner(
                        url, meter, args.jobs, processes, args.concurrency,
                        batch, depth, logdir))
                    runs["raw"].append(bench_raw(
                        url, meter, "job", args.jobs, processes, batch))
                    runs["minimal"].append(bench_raw(
                        url, meter, "bench_queue", args.jobs, processes,
                        batch))
                    print("  round %d, batch %d, %d proc: runner %.0f, raw "
                          "%.0f, minimal %.0f jobs/s (load %.1f)" % (
                              round_ + 1, batch, processes,
                              runs["runner"][-1][0], runs["raw"][-1][0],
                              runs["minimal"][-1][0], os.getloadavg()[0]),
                          flush=True)
        print()
        print("| claim batch, processes | minimal queue | raw loop (job) "
              "| runner | runner / raw | runner CPU µs/job: runner, "
              "children, PostgreSQL | raw loop CPU µs/job: loop, "
              "PostgreSQL |")
        print("|---|---|---|---|---|---|---|")
        n = args.jobs
        for (batch, processes), runs in results.items():
            med = {k: statistics.median(r[0] for r in v)
                   for k, v in runs.items()}
            rcpu = [statistics.median(per_job_us(r[1], n)[i]
                                      for r in runs["runner"])
                    for i in range(3)]
            wcpu = [statistics.median(per_job_us(r[1], n)[i]
                                      for r in runs["raw"])
                    for i in range(3)]
            print("| %d, %d | %.0f | %.0f | %.0f | **%.2f** | %.0f, %.0f, "
                  "%.0f | %.0f, %.0f |" % (
                      batch, processes, med["minimal"], med["raw"],
                      med["runner"], med["runner"] / med["raw"],
                      *rcpu, wcpu[0], wcpu[2]))
        print()
        print("every run (jobs/s; statements; CPU µs/job own, children, "
              "PostgreSQL):")
        for (batch, processes), runs in results.items():
            for kind, values in runs.items():
                print("  batch %d, %d proc, %-7s: %s" % (
                    batch, processes, kind, "; ".join(
                        "%.0f (%d st; %.0f, %.0f, %.0f)" % (
                            rate, statements, *per_job_us(cpu, n))
                        for rate, cpu, statements in values)))
            ratios = [r[0] / w[0] for r, w in zip(runs["runner"],
                                                  runs["raw"])]
            print("  batch %d, %d proc, runner/raw per round: %s" % (
                batch, processes, ", ".join("%.2f" % r for r in ratios)))
        print("targets: runner/raw >= 0.9 at batch 10, >= 0.75 at batch 100")
        print("load average after: %.2f %.2f %.2f" % os.getloadavg())
        if not args.skip_latency:
            claims, starts, commits = bench_latency(
                url, args.samples, args.concurrency, logdir)
            print()
            print("idle runner woken by NOTIFY, %d samples (from the moment"
                  " COMMIT returned; COMMIT itself took median %.2f ms):"
                  % (args.samples, statistics.median(commits)))
            print("  commit -> claim (row became RUNNING): median %.2f ms, "
                  "p90 %.2f ms" % median_p90(claims))
            print("  commit -> job code running in its child: median "
                  "%.2f ms, p90 %.2f ms (target median <= 1.5 ms)"
                  % median_p90(starts))
    finally:
        execute(url, "ALTER TABLE job RESET (autovacuum_enabled)")
        shutil.rmtree(logdir, ignore_errors=True)
        if scratch is not None:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
