#!/usr/bin/env python3
"""Buildmaster benchmarks (issue 5). Prints, in one run:

(a) dispatch latency on an idle builder: from a build request's commit to
    the agent receiving build() (it reports BUILDING from then on), median
    and p90 over --builds builds (target <= 100 ms median);
(b) one buildmaster driving --agents fake agents (a separate process
    serving real XML-RPC on loopback) at the 15 s interval: the master's
    CPU as a share of one core, and SQL statements and transactions per
    scan cycle (target < 25 % of a core);
(c) the candidate query (the full claim statement) with --rows waiting
    builds across 10 processors: EXPLAIN ANALYZE execution time, median of
    --repeat runs, each rolled back (target <= 2 ms), and the index used.

    .venv/bin/python bench/buildmaster.py            # all three
    .venv/bin/python bench/buildmaster.py --only c   # one part

Uses LP_TEST_DATABASE_URL's server if set, else a throwaway embedded
PostgreSQL; every part gets a fresh database.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_in_reactor(coroutine_function) -> None:
    """Run the reactor until ``coroutine_function()`` ends; re-raise its
    failure. (Each part runs in a process of its own: a reactor runs once.)"""
    from twisted.internet import defer, reactor

    failures = []

    def main():
        d = defer.Deferred.fromCoroutine(coroutine_function())
        d.addErrback(failures.append)
        d.addBoth(lambda _: reactor.stop())
    reactor.callWhenRunning(main)
    reactor.run()
    if failures:
        failures[0].raiseException()


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def new_database():
    from lp_services.testing.database import create_test_database

    return create_test_database()


# -- (a) -----------------------------------------------------------------

def bench_dispatch(builds: int, real_agent: bool = False):
    import io
    import tempfile

    from twisted.internet import reactor, task, threads

    from lp_services.buildmaster import builders as B
    from lp_services.buildmaster import queue as Q
    from lp_services.buildmaster.farm import Farm, FarmConfig
    from lp_services.buildmaster.service import BuilderManager
    from lp_services.buildmaster.notify import NotifyListener
    from lp_services.testing.fakeagents import AgentModel, fake_agents_site
    from lp_services.buildmaster.web import build_site
    from lp_services.clock import utcnow
    from lp_services.database.sql import raw_cursor
    from lp_services.database.transactor import Transactor
    from lp_services.filestore.store import FileStore

    url = new_database()
    received = []
    model = AgentModel()
    original_build = model.build

    def build(*args):
        received.append(time.perf_counter())
        return original_build(*args)
    model.build = build
    store_dir = Path(tempfile.mkdtemp(prefix="bench-files-"))
    file_store = FileStore(store_dir)
    setup = Transactor(url)
    transactor = Transactor(url, reactor=reactor)
    transactor.start()
    farm = Farm(transactor, reactor, file_store,
                FarmConfig(identity="bench", files_url="http://127.0.0.1:1"),
                reactor=reactor)
    manager = BuilderManager(farm)
    listener = NotifyListener(url, manager, reactor)
    site_port = reactor.listenTCP(0, build_site(farm, manager),
                                  interface="127.0.0.1")
    farm.config.files_url = "http://127.0.0.1:%d" % site_port.getHost().port
    results = []
    ports = [site_port]

    def prepare(store, agent_url, secret, chroot):
        B.add_builder(store, name="b1", url=agent_url, processors=["amd64"],
                      secret=secret)
        record = file_store.add(store, "chroot.tar", io.BytesIO(chroot))
        raw_cursor(store).execute(
            "INSERT INTO chroot (processor, library_file) SELECT id, %s"
            " FROM processor WHERE name = 'amd64'", (record.id,))
        script = file_store.add(store, "build.sh", io.BytesIO(b"echo hi\n"))
        return script.sha1

    def request(script_sha1):
        def queue(store):
            return Q.request_build(
                store, build_type="script", processor="amd64",
                now=utcnow(reactor), build_args={"script": "build.sh"},
                filemap={"build.sh": script_sha1})
        job = setup.run_blocking(queue)
        return job, time.perf_counter()

    async def run():
        running = None
        if real_agent:
            from lp_services.slave.busybox_chroot import busybox_chroot
            from lp_services.protocol.states import BuilderStatus
            from lp_services.testing.agents import TEST_SECRET, start_agent

            running = await start_agent(
                Path(tempfile.mkdtemp(prefix="bench-agent-")))
            agent_url, secret = running.base_url, TEST_SECRET
            chroot = busybox_chroot(fmt="gz").read_bytes()
        else:
            port = reactor.listenTCP(0, fake_agents_site({"a": model},
                                                         {"a": "s"}),
                                     interface="127.0.0.1")
            ports.append(port)
            agent_url = "http://127.0.0.1:%d/a" % port.getHost().port
            secret, chroot = "s", b"chroot"
        script_sha1 = await threads.deferToThread(
            setup.run_blocking, prepare, agent_url, secret, chroot)
        manager.startService()
        listener.startService()
        await listener.connected
        while not manager.scanners:
            await task.deferLater(reactor, 0.01, lambda: None)
        scanner = manager.scanners["b1"]
        await scanner.scan()  # DIRTY -> CLEAN
        for i in range(builds + 3):
            before = len(received)
            if running is not None:
                running.agent.wait_for(BuilderStatus.BUILDING).addCallback(
                    lambda _: received.append(time.perf_counter()))
            job, t0 = await threads.deferToThread(request, script_sha1)
            deadline = time.perf_counter() + 10
            while len(received) == before:
                if time.perf_counter() > deadline:
                    raise RuntimeError("build %d was not dispatched" % job)
                await task.deferLater(reactor, 0.0005, lambda: None)
            if i >= 3:  # warm-up (the first one downloads the chroot)
                results.append((received[-1] - t0) * 1000)
            if running is not None:
                await running.agent.wait_for(BuilderStatus.WAITING)
            else:
                model.finish("OK")
            await scanner.scan()  # collect, clean; builder CLEAN again
        listener.stopService()
        await manager.stopService()
        for port in ports:
            port.stopListening()
        if running is not None:
            await running.stop()

    try:
        run_in_reactor(run)
    finally:
        setup.stop()
        transactor.stop()
    return {"builds": len(results),
            "agent": "real agent (sandbox)" if real_agent
            else "fake agent over XML-RPC",
            "median_ms": round(statistics.median(results), 2),
            "p90_ms": round(percentile(results, 0.9), 2),
            "max_ms": round(max(results), 2)}


# -- (b) -----------------------------------------------------------------

AGENTS_SERVER = r"""
import sys
from twisted.internet import reactor
from lp_services.testing.fakeagents import fake_agents_site, growing_models
n, building = int(sys.argv[1]), int(sys.argv[2])
port = reactor.listenTCP(0, fake_agents_site(growing_models(n, building)),
                         interface="127.0.0.1", backlog=1024)
print(port.getHost().port, flush=True)
reactor.run()
"""


def seed_building_farm(conn, port: int, agents: int, building: int) -> None:
    """``agents`` builders b<i> at the fake agents' server on ``port``
    (agent a<i>), the first ``building`` of them holding a RUNNING build
    with cookie ``cookie-<i>`` (what the server's models report)."""
    from datetime import datetime, timezone

    from lp_services.buildmaster import queue as Q

    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO processor (name) VALUES ('amd64')")
        cur.execute("""
            INSERT INTO builder (name, url, clean_status)
            SELECT 'b' || i, 'http://127.0.0.1:%s/a' || i, 0
            FROM generate_series(0, %s - 1) AS i""", (port, agents))
        cur.execute("INSERT INTO builder_processor SELECT id, 1"
                    " FROM builder")
        now = datetime.now(timezone.utc)
        for _ in range(building):
            Q.request_build(cur, build_type="script", processor="amd64",
                            now=now)
        cur.execute("""
            WITH q AS (SELECT job, row_number() OVER (ORDER BY job) - 1
                       AS n FROM build_queue)
            UPDATE build_queue SET builder = b.id,
                   build_cookie = 'cookie-' || q.n
            FROM q JOIN builder b ON b.name = 'b' || q.n
            WHERE build_queue.job = q.job;
            UPDATE job SET status = 1, lease_holder = 'bench',
                   lease_expires = now() + interval '1 hour';
            UPDATE build_farm_job SET status = 6;
            """)


def bench_many_agents(agents: int, cycles: int, interval: float):
    from twisted.internet import reactor, task

    from lp_services.buildmaster.farm import Farm, FarmConfig
    from lp_services.buildmaster.service import BuilderManager
    from lp_services.buildmaster.notify import NotifyListener
    from lp_services.database.connection import connect
    from lp_services.database.transactor import Transactor
    from lp_services.filestore.store import FileStore

    import tempfile

    url = new_database()
    building = agents * 9 // 10
    server = subprocess.Popen(
        [sys.executable, "-c", AGENTS_SERVER, str(agents), str(building)],
        stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        port = int(server.stdout.readline())
        conn = connect(url)
        seed_building_farm(conn, port, agents, building)
        transactor = Transactor(url, reactor=reactor)
        transactor.start()
        runs = [0]
        real_run = transactor.run

        def counting_run(function, *args, **kwargs):
            runs[0] += 1
            return real_run(function, *args, **kwargs)
        transactor.run = counting_run
        farm = Farm(transactor, reactor,
                    FileStore(Path(tempfile.mkdtemp(prefix="bench-b-"))),
                    FarmConfig(identity="bench",
                               files_url="http://127.0.0.1:1",
                               interval=interval),
                    reactor=reactor)
        manager = BuilderManager(farm)
        listener = NotifyListener(url, manager, reactor)
        status_calls = [0]
        out = {}

        async def run():
            manager.startService()
            listener.startService()
            await listener.connected
            # one cycle to start every scanner and settle
            await task.deferLater(reactor, interval + 1, lambda: None)
            for scanner in manager.scanners.values():
                real_status = farm.agent_for(scanner.vitals).status

                def status(real=real_status):
                    status_calls[0] += 1
                    return real()
                farm.agent_for(scanner.vitals).status = status
            before = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
            from lp_services.testing.statements import StatementCounter

            statements = StatementCounter().install()
            r0 = runs[0]
            c = connect(url)
            with c.cursor() as cur:
                cur.execute("SELECT xact_commit FROM pg_stat_database"
                            " WHERE datname = current_database()")
                x0 = cur.fetchone()[0]
            c.commit()
            await task.deferLater(reactor, interval * cycles, lambda: None)
            after = resource.getrusage(resource.RUSAGE_SELF)
            wall = time.perf_counter() - wall0
            with c.cursor() as cur:
                cur.execute("SELECT pg_stat_clear_snapshot()")
                cur.execute("SELECT xact_commit FROM pg_stat_database"
                            " WHERE datname = current_database()")
                x1 = cur.fetchone()[0]
            c.close()
            cpu = (after.ru_utime - before.ru_utime
                   + after.ru_stime - before.ru_stime)
            out.update({
                "agents": agents, "building": building,
                "interval_s": interval, "cycles": cycles,
                "wall_s": round(wall, 1),
                "cpu_share_of_one_core": round(cpu / wall, 3),
                "status_calls_per_cycle": round(status_calls[0] / cycles),
                "sql_statements_per_cycle": round(
                    statements.count / cycles, 1),
                "transactions_per_cycle": round((runs[0] - r0) / cycles, 1),
                "server_commits_per_cycle": round((x1 - x0) / cycles, 1),
                "scan_failures": sum(s.scan_failures
                                     for s in manager.scanners.values()),
            })
            statements.uninstall()
            listener.stopService()
            await manager.stopService()

        try:
            run_in_reactor(run)
        finally:
            transactor.stop()
        return out
    finally:
        server.kill()
        server.wait()


# -- (c) -----------------------------------------------------------------

def bench_candidate_query(rows: int, repeat: int):
    from lp_services.buildmaster.queries import CLAIM as CLAIM_SQL
    from lp_services.buildmaster.queue import new_cookie
    from lp_services.database.connection import connect

    url = new_database()
    conn = connect(url)
    t0 = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.execute("""
            INSERT INTO processor (name)
            SELECT 'proc' || i FROM generate_series(0, 9) AS i;
            INSERT INTO builder (name, url)
            VALUES ('bench', 'http://127.0.0.1:1');
            INSERT INTO builder_processor (builder, processor)
            SELECT 1, id FROM processor WHERE name = 'proc3';
            INSERT INTO job (job_type, date_created, scheduled_start)
            SELECT 'build', now() - i * interval '1 second',
                   now() - i * interval '1 second'
            FROM generate_series(1, %(rows)s) AS i;
            INSERT INTO build_farm_job (job, build_type, processor)
            SELECT id, 'script', 1 + id %% 10 FROM job;
            INSERT INTO build_queue (job, build_farm_job, build_type,
                                     processor, lastscore)
            SELECT id, id, 'script', 1 + id %% 10,
                   -(id / 60)::int + (id * 7919) %% 3000
            FROM job;
            """, {"rows": rows})
    with conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE job, build_queue, build_farm_job")
        conn.autocommit = False
    load_s = time.perf_counter() - t0
    from datetime import datetime, timezone

    def measure(processors):
        timings, plan_text = [], ""
        for i in range(repeat + 2):
            with conn.cursor() as cur:
                now = datetime.now(timezone.utc)
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM_SQL, {
                    "processors": processors, "virtualized": False,
                    "resources": [], "now": now, "holder": "bench",
                    "lease_expires": now + timedelta(minutes=10),
                    "builder": 1, "cookie": new_cookie(),
                    "build_types": ["script"]})
                plan = cur.fetchone()[0][0]
            conn.rollback()
            if i >= 2:
                timings.append(plan["Execution Time"] + plan["Planning Time"])
            plan_text = json.dumps(plan)
        return timings, plan_text
    timings, plan_text = measure([4])        # 'proc3'
    two, _ = measure([4, 5])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM build_queue WHERE builder IS NULL")
        waiting = cur.fetchone()[0]
    conn.close()
    return {"waiting_rows": waiting, "processors": 10,
            "load_s": round(load_s, 1), "runs": len(timings),
            "median_ms": round(statistics.median(timings), 3),
            "p90_ms": round(percentile(timings, 0.9), 3),
            "uses_candidate_index": "build_queue__candidate__idx" in plan_text,
            "two_processor_builder_median_ms": round(statistics.median(two),
                                                     3),
            "note": "planning + execution of the whole claim statement"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["a", "b", "c"])
    parser.add_argument("--builds", type=int, default=50)
    parser.add_argument("--real-agent", action="store_true",
                        help="(a) against the real agent (needs bwrap and "
                        "busybox-static) instead of the XML-RPC fake")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    parts = [args.only] if args.only else ["c", "b", "a"]
    results = {}
    # Each part runs in its own process: a reactor runs once per process.
    if len(parts) > 1:
        for part in parts:
            out = subprocess.run(
                [sys.executable, __file__, "--only", part,
                 "--builds", str(args.builds), "--agents", str(args.agents),
                 *(["--real-agent"] if args.real_agent else []),
                 "--cycles", str(args.cycles), "--interval",
                 str(args.interval), "--rows", str(args.rows),
                 "--repeat", str(args.repeat)],
                capture_output=True, text=True, env=_env())
            if out.returncode:
                sys.stderr.write(out.stderr)
                raise SystemExit("part %s failed" % part)
            results.update(json.loads(out.stdout.strip().splitlines()[-1]))
    else:
        part = parts[0]
        if part == "a":
            results["a_dispatch_latency"] = bench_dispatch(
                args.builds, args.real_agent)
        elif part == "b":
            results["b_many_agents"] = bench_many_agents(
                args.agents, args.cycles, args.interval)
        else:
            results["c_candidate_query"] = bench_candidate_query(
                args.rows, args.repeat)
        if args.only and os.environ.get("_BENCH_CHILD"):
            print(json.dumps(results))
            return
    report(results)


def _env():
    env = dict(os.environ, _BENCH_CHILD="1")
    if "LP_TEST_DATABASE_URL" not in env:
        from lp_services.testing.database import server_url

        env["LP_TEST_DATABASE_URL"] = server_url()
    return env


def report(results):
    a = results.get("a_dispatch_latency")
    b = results.get("b_many_agents")
    c = results.get("c_candidate_query")
    if a:
        print("(a) dispatch latency, idle builder, %s, %d builds: median "
              "%.1f ms, p90 %.1f ms, max %.1f ms  [target <= 100 ms median: "
              "%s]"
              % (a["agent"], a["builds"], a["median_ms"], a["p90_ms"],
                 a["max_ms"],
                 "PASS" if a["median_ms"] <= 100 else "FAIL"))
    if b:
        print("(b) %d agents (%d building) at %gs: buildmaster CPU %.1f%% of "
              "one core; per scan cycle %d status calls, %.1f SQL statements, "
              "%.1f transactions (%.1f server commits incl. autovacuum); "
              "scan failures %d  "
              "[target < 25%%: %s]"
              % (b["agents"], b["building"], b["interval_s"],
                 100 * b["cpu_share_of_one_core"],
                 b["status_calls_per_cycle"], b["sql_statements_per_cycle"],
                 b["transactions_per_cycle"], b["server_commits_per_cycle"],
                 b["scan_failures"],
                 "PASS" if b["cpu_share_of_one_core"] < 0.25 else "FAIL"))
    if c:
        print("(c) claim statement over %d waiting builds, 10 processors: "
              "median %.3f ms, p90 %.3f ms over %d runs (two-processor "
              "builder: median %.3f ms); index %s  [target <= 2 ms: %s]"
              % (c["waiting_rows"], c["median_ms"], c["p90_ms"], c["runs"],
                 c["two_processor_builder_median_ms"],
                 "build_queue__candidate__idx" if c["uses_candidate_index"]
                 else "NOT USED",
                 "PASS" if c["median_ms"] <= 2 else "FAIL"))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
