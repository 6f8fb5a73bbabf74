#!/usr/bin/env python3
"""Benchmark: the native job runner against a raw SKIP LOCKED loop.

    .venv/bin/python bench/jobrunner.py [--jobs 20000] [--database URL]
        [--concurrency 2] [--depth 64] [--claim-batch 128] [--samples 60]
        [--repeat 3] [--durable]

Without --database it starts a scratch embedded PostgreSQL in a temporary
directory (fsync off, as for tests; --durable keeps the normal settings)
and removes it afterwards. In one run on that one database it

1. drains N pre-enqueued no-op jobs through real ``twistd jobrunner``
   processes (one, then two) — every job claimed with a lease and an
   attempt, run in a child process, completed with a guarded write;
2. drains N jobs through a minimal raw psycopg2 loop that claims 10 at a
   time with the same kind of SKIP LOCKED statement and completes them in
   one statement, with 1, 2 and 4 connections (one process each);
3. prints jobs/s for each, and the ratio of the runner's best to the raw
   loop's best;
4. measures enqueue -> start latency on an idle runner: a job is inserted
   and committed (with its NOTIFY) and the time from just before COMMIT to
   its ``date_started`` (set by the claim that starts it; same host, same
   clock) is recorded, and also to the moment its child process began
   running it (the job writes the time); median and p90 over --samples
   jobs.
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
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent

RAW_CLAIM = """
UPDATE job SET status = 1, attempt_count = attempt_count + 1,
    date_started = clock_timestamp(), lease_holder = %s,
    lease_expires = now() + interval '60 seconds'
WHERE id IN (SELECT id FROM job WHERE status = 0 AND scheduled_start <= now()
             AND job_type = 'noop'
             ORDER BY priority DESC, id LIMIT 10
             FOR NO KEY UPDATE SKIP LOCKED)
RETURNING id
"""
RAW_COMPLETE = """
UPDATE job SET status = 2, date_finished = clock_timestamp(),
    lease_expires = NULL,
    lease_holder = NULL
WHERE id = ANY(%s) AND status = 1 AND lease_holder = %s
"""


def _connect(url):
    return psycopg2.connect(url)


def reset(url):
    conn = _connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE job RESTART IDENTITY CASCADE")
    conn.close()


def enqueue_many(url, n, status=0):
    conn = _connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO job (job_type, status) SELECT 'noop', %s"
                    " FROM generate_series(1, %s)", (status, n))
        cur.execute("SELECT pg_notify('lp_job', 'noop')")
    conn.close()
    conn = _connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE job")
    conn.close()


def wait_drained(url, n, timeout=600):
    """Wait until no job is WAITING or RUNNING (both partial indexes, so
    the check stays cheap); then check that all N completed."""
    conn = _connect(url)
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT EXISTS (SELECT 1 FROM job WHERE status = 0)"
                        " OR EXISTS (SELECT 1 FROM job WHERE status = 1)")
            if not cur.fetchone()[0]:
                break
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            time.sleep(0.01)
        end = time.perf_counter()
        cur.execute("SELECT count(*) FROM job WHERE status = 2")
        done = cur.fetchone()[0]
    conn.close()
    if done != n:
        raise SystemExit("only %d of %d jobs completed" % (done, n))
    return end


def start_runner(url, name, concurrency, batch, logdir, depth=1,
                 types=("noop",)):
    log = open(logdir / ("%s.log" % name), "w+")
    includes = [arg for t in types for arg in ("--include", t)]
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/twistd"), "-n", "--pidfile=", "jobrunner",
         "--database", url, "--concurrency", str(concurrency),
         "--claim-batch", str(batch), "--depth", str(depth),
         "--module", "lp_services.job.testtypes", *includes,
         "--poll-interval", "2", "--holder", name],
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


def bench_runner(url, n, processes, concurrency, batch, depth, logdir):
    reset(url)
    enqueue_many(url, n)
    runners = [start_runner(url, "bench-%d" % i, concurrency, batch, logdir,
                            depth)
               for i in range(processes)]
    try:
        for _, log in runners:
            wait_ready(log)
        wait_drained(url, n)
    finally:
        stop_runners(runners)
    return drain_rate(url, n)


def drain_rate(url, n):
    """Jobs per second from the first claim to the last completion, as the
    database recorded them (so process start-up is not counted)."""
    conn = _connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM max(date_finished)"
                    " - min(date_started)) FROM job")
        seconds = float(cur.fetchone()[0])
    conn.close()
    return n / seconds


def _raw_worker(url, holder, barrier, counts):
    conn = _connect(url)
    barrier.wait()
    done = 0
    with conn.cursor() as cur:
        while True:
            cur.execute(RAW_CLAIM, (holder,))
            ids = [row[0] for row in cur.fetchall()]
            conn.commit()
            if not ids:
                break
            cur.execute(RAW_COMPLETE, (ids, holder))
            conn.commit()
            done += len(ids)
    counts.put(done)
    conn.close()


def bench_raw(url, n, connections):
    reset(url)
    enqueue_many(url, n)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(connections + 1)
    counts = ctx.Queue()
    workers = [ctx.Process(target=_raw_worker,
                           args=(url, "raw-%d" % i, barrier, counts))
               for i in range(connections)]
    for w in workers:
        w.start()
    barrier.wait()
    for w in workers:
        w.join()
    total = sum(counts.get() for _ in workers)
    if total != n:
        raise SystemExit("raw loop completed %d of %d" % (total, n))
    return drain_rate(url, n)


def bench_latency(url, samples, logdir):
    """(claim latencies, child-start latencies) in ms: from just before the
    enqueuing COMMIT to the job's date_started (set by its claim), and to
    the moment its child process began running it (a test.record job
    writes the time)."""
    reset(url)
    runner = start_runner(url, "latency", 2, 2, logdir,
                          types=("test.record",))
    record = logdir / "latency-record.log"
    claims, starts = [], []
    try:
        wait_ready(runner[1])
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
                while True:
                    cur.execute("SELECT extract(epoch FROM date_started)"
                                " FROM job WHERE id = %s AND status = 2",
                                (job_id,))
                    row = cur.fetchone()
                    conn.commit()
                    if row is not None:
                        claims.append((float(row[0]) - before) * 1000)
                        break
                    time.sleep(0.001)
                started = [line.split() for line in
                           record.read_text().splitlines()
                           if line.startswith("start %d " % job_id)]
                starts.append((float(started[0][4]) - before) * 1000)
                time.sleep(0.02)  # let the runner go idle again
        conn.close()
    finally:
        stop_runners([runner])
    return claims, starts


def median_p90(values):
    values = sorted(values)
    return (statistics.median(values),
            values[max(0, int(round(len(values) * 0.9)) - 1)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--database", help="PostgreSQL URL (default: a "
                        "scratch embedded server)")
    parser.add_argument("--durable", action="store_true",
                        help="scratch server with fsync on")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each configuration; the best counts "
                        "(the same for the runner and the raw loop), since "
                        "other load on the machine only ever slows a run")
    parser.add_argument("--claim-batch", type=int, default=128)
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--samples", type=int, default=60)
    args = parser.parse_args()

    scratch = None
    url = args.database
    if url is None:
        from lp_services.database.embedded import EmbeddedServer
        from lp_services.database.schema import upgrade

        scratch = Path(tempfile.mkdtemp(prefix="lp-bench-"))
        server = EmbeddedServer(scratch, fast_unsafe=not args.durable)
        url = server.start()
        conn = _connect(url)
        upgrade(conn)
        conn.close()
    logdir = Path(tempfile.mkdtemp(prefix="lp-bench-logs-"))
    try:
        print("database: %s; %d jobs; runner concurrency %d, depth %d, "
              "claim batch %d; best of %d runs each"
              % ("scratch embedded (%s)" % ("durable" if args.durable
                                            else "fsync off")
                 if scratch else "given", args.jobs, args.concurrency,
                 args.depth, args.claim_batch, args.repeat))
        print("load average before: %.2f %.2f %.2f" % os.getloadavg())
        runner = {}
        for processes in (1, 2):
            runs = [bench_runner(url, args.jobs, processes,
                                 args.concurrency, args.claim_batch,
                                 args.depth, logdir)
                    for _ in range(args.repeat)]
            runner[processes] = max(runs)
            print("runner, %d process%s: %8.0f jobs/s   (runs: %s)" % (
                processes, "" if processes == 1 else "es", runner[processes],
                ", ".join("%.0f" % r for r in runs)))
        raw = {}
        for connections in (1, 2, 4):
            runs = [bench_raw(url, args.jobs, connections)
                    for _ in range(args.repeat)]
            raw[connections] = max(runs)
            print("raw loop, %d connection%s: %6.0f jobs/s   (runs: %s)" % (
                connections, "" if connections == 1 else "s",
                raw[connections], ", ".join("%.0f" % r for r in runs)))
        best_runner, best_raw = max(runner.values()), max(raw.values())
        print("ratio runner best / raw best: %.2f (target >= 0.75)"
              % (best_runner / best_raw))
        claims, starts = bench_latency(url, args.samples, logdir)
        print("enqueue -> start latency on an idle runner, %d samples:"
              % args.samples)
        print("  to date_started (the claim):     median %.2f ms, p90 %.2f ms"
              " (target median <= 2.5 ms)" % median_p90(claims))
        print("  to the job running in its child: median %.2f ms, p90 %.2f ms"
              % median_p90(starts))
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
        if scratch is not None:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
