"""The chaos suite: the whole farm loses nothing while its processes die.

Two job runners, a buildmaster and two agents run as real twistd processes
over one PostgreSQL. 1,000 native ``chaos-record`` jobs and 50 script
builds are queued; at random moments a runner, the buildmaster and an agent
are SIGKILLed (each restarted a moment later) and PostgreSQL is restarted
once. At the end:

- every job and build is in a terminal state;
- no native job ran twice at the same time (chaos_execution intervals);
- every run of a job is accounted for by an attempt;
- no build ran on two builders at once (agents' JSON logs, cookies traced
  to jobs through the chaos_assignment trigger);
- every completed build's results are in the file store with right hashes.
"""

import hashlib
import io
import json
import os
import random
import secrets
import signal
import sys
import time
from pathlib import Path

import psycopg2
from twisted.trial.unittest import TestCase

from lp_services.database.embedded import EmbeddedServer
from lp_services.database.schema import upgrade
from lp_services.cli.demo_farm import Daemon, free_port
from lp_services.testing.chaos import install_audit
from lp_services.testing.tiers import slow

NATIVE_JOBS = 1000
BUILDS = 50
#: Seconds the whole run may take before the suite gives up.
DEADLINE = 600
_BUILD_SCRIPT = b"""#!/bin/sh
set -eu
echo "chaos build"
sleep 1
echo "result of a chaos build" > /work/out/result.txt
date > /work/out/when.txt
"""
_TERMINAL_BUILD = (1, 2, 3, 4, 5, 7, 10)


class Farm:
    """The suite's processes, restartable by name."""

    def __init__(self, test, home: Path, url: str):
        self.test, self.home, self.url = test, home, url
        self.logs = home / "logs"
        self.daemons: dict[str, Daemon] = {}
        self.kills: list[tuple[str, float]] = []
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("LP_DATABASE_URL",)}
        self.env["LP_HOME"] = str(home)

    def twistd(self, name, plugin, *args, json_log=None):
        env = dict(self.env)
        logger = []
        if json_log is not None:
            env["LP_JSON_LOG"] = str(json_log)
            logger = ["--logger=lp_services.testing.chaos.json_log_observer"]
        else:
            logger = ["--logfile=%s" % (self.logs / (name + ".log"))]
        daemon = Daemon(name, [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=", *logger, plugin, *args],
            self.logs / (name + ".out"), env=env)
        daemon.start()
        self.daemons[name] = daemon
        return daemon

    def kill(self, name) -> None:
        daemon = self.daemons[name]
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(30)
        self.kills.append((name, time.time()))

    def restart(self, name) -> None:
        old = self.daemons[name]
        fresh = Daemon(old.name, old.argv, old.log_path, env=old.env)
        fresh.start()
        self.daemons[name] = fresh

    def stop(self) -> None:
        for daemon in reversed(list(self.daemons.values())):
            daemon.stop()


def seeded_random(what: str) -> random.Random:
    """A Random from LP_CHAOS_SEED or a fresh seed, printed for replay."""
    seed = int(os.environ.get("LP_CHAOS_SEED", secrets.randbelow(10**6)))
    print("%s seed: %d (set LP_CHAOS_SEED to replay)" % (what, seed))
    return random.Random(seed)


def start_database(test):
    """An embedded PostgreSQL with the schema and the chaos audit, and the
    Farm of daemons to come: (server, url, farm, home)."""
    home = Path(test.mktemp()).resolve()
    home.mkdir()
    server = EmbeddedServer(home, fast_unsafe=True)
    url = server.start()
    test.addCleanup(server.stop)
    farm = Farm(test, home, url)
    test.addCleanup(farm.stop)
    conn = psycopg2.connect(url)
    upgrade(conn)
    install_audit(conn)
    conn.close()
    return server, url, farm, home


def start_agents(farm, home, names) -> dict:
    """A real agent (sandbox backend, JSON event log) per name:
    {name: (port, secret)}."""
    agents = {}
    for name in names:
        port = free_port()
        secret = secrets.token_hex(8)
        agent_dir = home / name
        agent_dir.mkdir()
        (agent_dir / "secret").write_text(secret)
        farm.twistd(
            name, "buildslave", "--name", name, "--arch-tag", "amd64",
            "--cache-dir", str(agent_dir / "cache"),
            "--work-dir", str(agent_dir / "work"), "--backend", "sandbox",
            "--port", str(port), "--interface", "127.0.0.1",
            "--secret-file", str(agent_dir / "secret"),
            json_log=agent_dir / "events.json")
        agents[name] = (port, secret)
    return agents


def queue_work(home, url, agents, builds: int, native_jobs: int = 0):
    """A builder per agent, the busybox chroot, ``builds`` script builds
    and ``native_jobs`` chaos-record jobs."""
    from datetime import datetime, timezone

    from storm.database import create_database
    from storm.store import Store

    import lp_services.testing.chaos  # noqa: F401  registers the type
    from lp_services.buildmaster.builders import add_builder, register_chroot
    from lp_services.buildmaster.queue import request_build
    from lp_services.database.connection import storm_uri
    from lp_services.database.sql import raw_cursor
    from lp_services.filestore.store import FileStore
    from lp_services.job.enqueue import enqueue
    from lp_services.slave.busybox_chroot import busybox_chroot

    store = Store(create_database(storm_uri(url)))
    files = FileStore(home / "files")
    cursor = raw_cursor(store)
    for name, (port, secret) in agents.items():
        add_builder(cursor, name=name, url="http://127.0.0.1:%d" % port,
                    processors=["amd64"], secret=secret)
    chroot = files.add_path(store, busybox_chroot())
    script = files.add(store, "build.sh", io.BytesIO(_BUILD_SCRIPT))
    cursor = raw_cursor(store)
    register_chroot(cursor, "amd64", "default", chroot.id)
    for n in range(native_jobs):
        enqueue(cursor, "chaos-record", {"n": n, "max_sleep": 0.3})
    for _ in range(builds):
        request_build(cursor, build_type="script", processor="amd64",
                      now=datetime.now(timezone.utc),
                      build_args={"script": "build.sh"},
                      filemap={"build.sh": script.sha1})
    store.commit()
    store.close()


def agent_events(home, agent) -> list[dict]:
    """An agent's JSON log events, oldest first."""
    events = [json.loads(line) for line in
              (home / agent / "events.json").read_text().split("\x1e")
              if line.strip()]
    return sorted(events, key=lambda e: e["log_time"])


class ChaosTests(TestCase):
    """Kill everything at random; lose nothing."""

    timeout = DEADLINE + 240

    def setUp(self):
        import shutil

        if os.geteuid() != 0 or shutil.which("bwrap") is None:
            self.skipTest("needs root and bubblewrap (./run installs it)")

    def test_chaos(self):
        """1,000 jobs and 50 builds survive kills and a database restart."""
        rng = seeded_random("chaos")
        server, url, farm, home = start_database(self)
        agents = start_agents(farm, home, ("agent-1", "agent-2"))
        queue_work(home, url, agents, BUILDS, native_jobs=NATIVE_JOBS)
        bm_port = free_port()
        farm.twistd("buildmaster", "buildmaster", "--database", url,
                    "--home", str(home), "--port",
                    "tcp:%d:interface=127.0.0.1" % bm_port,
                    "--files-url", "http://127.0.0.1:%d" % bm_port,
                    "--identity", "chaos-buildmaster", "--interval", "1")
        for holder in ("runner-1", "runner-2"):
            farm.twistd(holder, "jobrunner", "--database", url,
                        "--module", "lp_services.testing.chaos",
                        "--concurrency", "4", "--holder", holder,
                        "--poll-interval", "1", "--include", "chaos-record")

        # The chaos: each victim once, at a random moment in the first 25 s;
        # PostgreSQL restarted once.
        started = time.time()
        plan = sorted([(rng.uniform(2, 25), "runner-1"),
                       (rng.uniform(2, 25), "buildmaster"),
                       (rng.uniform(2, 25), "agent-1"),
                       (rng.uniform(2, 25), "postgresql")])
        db_restarts = []
        for at, victim in plan:
            time.sleep(max(0.0, started + at - time.time()))
            if victim == "postgresql":
                down = time.time()
                server.stop()
                time.sleep(2)
                server.start()
                db_restarts.append((down, time.time()))
            else:
                farm.kill(victim)
                time.sleep(rng.uniform(0.5, 2))
                farm.restart(victim)
            print("%6.1fs chaos: %s" % (time.time() - started, victim))

        self.wait_for_terminal(url, farm)
        farm.stop()
        conn = psycopg2.connect(url)
        self.addCleanup(conn.close)
        with conn.cursor() as cur:
            self.check_native_jobs(cur, farm.kills, db_restarts)
            self.check_builds(cur, home, farm.kills)

    # -- set-up ----------------------------------------------------------

    def wait_for_terminal(self, url, farm):
        deadline = time.time() + DEADLINE
        last = None
        while time.time() < deadline:
            for daemon in farm.daemons.values():
                if daemon.exited():
                    self.fail("%s exited on its own; see %s"
                              % (daemon.name, daemon.log_path))
            try:
                conn = psycopg2.connect(url)
            except psycopg2.OperationalError as error:
                print("database unreachable: %s" % str(error).strip())
                time.sleep(1)
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("""
                        SELECT count(*) FILTER (WHERE j.status NOT IN (2, 3)),
                               count(*) FILTER (WHERE f.job IS NOT NULL
                                   AND f.status <> ALL(%s))
                        FROM job j LEFT JOIN build_farm_job f ON f.job = j.id
                        """, (list(_TERMINAL_BUILD),))
                    pending = cur.fetchone()
            finally:
                conn.close()
            if pending != last:
                print("pending (jobs, builds): %s" % (pending,))
                last = pending
            if pending == (0, 0):
                return
            time.sleep(1)
        self.fail("work still pending after %ds: %s" % (DEADLINE, last))

    # -- checks ----------------------------------------------------------

    def check_native_jobs(self, cur, kills, db_restarts):
        cur.execute("SELECT status, count(*) FROM job WHERE job_type ="
                    " 'chaos-record' GROUP BY status")
        by_status = dict(cur.fetchall())
        print("native jobs by status: %s" % by_status)
        self.assertEqual(sum(by_status.values()), NATIVE_JOBS)
        self.assertEqual(by_status.get(2), NATIVE_JOBS,
                         "every chaos-record job COMPLETED")
        cur.execute("""
            SELECT j.id, j.attempt_count,
                   array_agg(e.holder ORDER BY e.started),
                   array_agg(extract(epoch FROM e.started) ORDER BY e.started),
                   array_agg(extract(epoch FROM e.ended) ORDER BY e.started)
            FROM job j LEFT JOIN chaos_execution e ON e.job = j.id
            WHERE j.job_type = 'chaos-record' GROUP BY j.id""")
        for job_id, attempts, holders, starts, ends in cur.fetchall():
            runs = [(h, float(s), None if e is None else float(e))
                    for h, s, e in zip(holders, starts, ends) if s is not None]
            self.assertTrue(runs, "job %d never ran" % job_id)
            self.assertLessEqual(len(runs), attempts,
                                 "job %d ran more often than its attempts"
                                 % job_id)
            self.assertTrue(any(e is not None for _, _, e in runs),
                            "job %d never finished a run" % job_id)
            intervals = []
            for holder, start, end in runs:
                if end is None:
                    end = self.interruption(holder, start, kills, db_restarts)
                    self.assertIsNotNone(
                        end, "job %d: a run by %s at %.3f never ended and "
                        "nothing killed it" % (job_id, holder, start))
                intervals.append((start, end, holder))
            intervals.sort()
            for (s1, e1, h1), (s2, e2, h2) in zip(intervals, intervals[1:]):
                self.assertGreaterEqual(
                    s2, e1, "job %d ran twice at once: %s [%.3f, %.3f] and "
                    "%s [%.3f, %.3f]" % (job_id, h1, s1, e1, h2, s2, e2))

    @staticmethod
    def interruption(holder, start, kills, db_restarts):
        """When an unfinished run was cut short: its runner's kill or the
        database restart, whichever came first after it started. A run may
        have started while the server was already shutting down."""
        times = [t for name, t in kills if name == holder and t >= start]
        times += [max(down, start) for down, up in db_restarts if up >= start]
        return min(times) if times else None

    def check_builds(self, cur, home, kills):
        cur.execute("SELECT build_status_name(status), count(*)"
                    " FROM build_farm_job GROUP BY 1")
        by_status = dict(cur.fetchall())
        print("builds by status: %s" % by_status)
        self.assertEqual(sum(by_status.values()), BUILDS)
        # Builds on agents: cookie -> job through the assignment audit.
        cur.execute("SELECT cookie, job FROM chaos_assignment")
        job_of = dict(cur.fetchall())
        runs = {}
        for agent in ("agent-1", "agent-2"):
            agent_kills = sorted(t for name, t in kills if name == agent)
            events = agent_events(home, agent)
            open_builds = {}

            def close_all(at):
                # The agent was killed: its builds died with it (bwrap runs
                # them with --die-with-parent).
                for build_id, start in open_builds.items():
                    runs.setdefault(job_of.get(build_id), []).append(
                        (start, at, agent))
                open_builds.clear()

            for event in events:
                at = event["log_time"]
                while agent_kills and agent_kills[0] <= at:
                    close_all(agent_kills.pop(0))
                fmt, build_id = event.get("log_format", ""), event.get("id")
                if fmt.startswith("build {id} ({type}) started"):
                    open_builds[build_id] = at
                elif fmt.startswith("build {id} finished") \
                        and build_id in open_builds:
                    runs.setdefault(job_of.get(build_id), []).append(
                        (open_builds.pop(build_id), at, agent))
            if open_builds:
                self.assertTrue(agent_kills, "builds %s on %s never ended"
                                % (sorted(open_builds), agent))
                close_all(agent_kills.pop(0))
        self.assertNotIn(None, runs, "an agent built a cookie no job had")
        # Every build ran somewhere: the logs were read, the check is real.
        self.assertEqual(len(runs), BUILDS)
        for job_id, intervals in runs.items():
            intervals.sort()
            for (s1, e1, a1), (s2, e2, a2) in zip(intervals, intervals[1:]):
                self.assertGreaterEqual(
                    s2, e1, "build %d on two builders at once: %s and %s"
                    % (job_id, a1, a2))
        # Results of completed builds are in the file store, hashes right.
        cur.execute("""
            SELECT f.job, bf.filename, l.sha1 FROM build_farm_job f
            JOIN build_file bf ON bf.build = f.job
            JOIN library_file l ON l.id = bf.library_file
            WHERE f.status = 1""")
        results = cur.fetchall()
        completed = by_status.get("FULLYBUILT", 0)
        self.assertEqual(len(results), 2 * completed)
        for job_id, filename, sha1 in results:
            data = (home / "files" / sha1[:2] / sha1).read_bytes()
            self.assertEqual(hashlib.sha1(data).hexdigest(), sha1,
                             "build %d: %s is corrupt" % (job_id, filename))
            if filename == "result.txt":
                self.assertEqual(data, b"result of a chaos build\n")


ChaosTests = slow(ChaosTests)
