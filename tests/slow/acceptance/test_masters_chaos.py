"""Chaos with several buildmasters: three real ``twistd buildmaster``
processes share six real agents (sandbox backend) over one PostgreSQL and
run 100 script builds while masters are SIGKILLed and restarted at random
and one is SIGSTOPped past its leases and then continued. A seed is
printed; ``LP_CHAOS_SEED`` replays it.

At the end:

- every build is FULLYBUILT;
- no two agents ran the same build at overlapping times (agents' JSON
  logs, cookies traced to jobs through the chaos_assignment trigger);
- every build's results are stored exactly once (two files each, hashes
  right);
- no builder had state changes from two masters at overlapping times:
  every ``build``/``abort``/``clean`` an agent accepted carries its
  caller's lease epoch, epochs never go back, and each epoch belongs to
  one master.
"""

import hashlib
import os
import signal
import time

import psycopg2
from twisted.trial.unittest import TestCase

from lp_services.cli.demo_farm import free_port
from lp_services.testing.tiers import slow
from tests.slow.acceptance.test_chaos import (
    agent_events,
    queue_work,
    seeded_random,
    start_agents,
    start_database,
)

MASTERS = ("m1", "m2", "m3")
AGENTS = tuple("agent-%d" % n for n in range(1, 7))
BUILDS = 100
#: Short leases, so that takeovers happen within the run.
LEASE, RENEWAL = 6, 2
DEADLINE = 600


@slow
class MastersChaosTests(TestCase):
    """Kill and pause buildmasters at random; lose nothing."""

    timeout = DEADLINE + 240

    def setUp(self):
        import shutil

        if os.geteuid() != 0 or shutil.which("bwrap") is None:
            self.skipTest("needs root and bubblewrap (./run installs it)")

    def test_three_masters_six_agents(self):
        """100 builds survive masters killed, restarted and paused."""
        rng = seeded_random("masters chaos")
        server, url, farm, home = start_database(self)
        agents = start_agents(farm, home, AGENTS)
        queue_work(home, url, agents, BUILDS)
        for name in MASTERS:
            port = free_port()
            farm.twistd(name, "buildmaster", "--database", url,
                        "--home", str(home), "--port",
                        "tcp:%d:interface=127.0.0.1" % port,
                        "--files-url", "http://127.0.0.1:%d" % port,
                        "--identity", name, "--interval", "1",
                        "--builder-lease", str(LEASE),
                        "--lease-renewal", str(RENEWAL))

        started = time.time()
        plan = sorted([(rng.uniform(3, 30), "kill", rng.choice(MASTERS))
                       for _ in range(3)]
                      + [(rng.uniform(3, 30), "stop", rng.choice(MASTERS))])
        for at, action, victim in plan:
            time.sleep(max(0.0, started + at - time.time()))
            daemon = farm.daemons[victim]
            if action == "kill":
                farm.kill(victim)
                time.sleep(rng.uniform(0.5, 3))
                farm.restart(victim)
            else:
                daemon.process.send_signal(signal.SIGSTOP)
                time.sleep(LEASE + 4)
                daemon.process.send_signal(signal.SIGCONT)
            print("%6.1fs chaos: %s %s" % (time.time() - started, action,
                                          victim))

        self.wait_for_builds(url, farm)
        farm.stop()
        conn = psycopg2.connect(url)
        self.addCleanup(conn.close)
        with conn.cursor() as cur:
            self.check_builds(cur, home)
        self.check_callers(home)

    # -- waiting ---------------------------------------------------------

    def wait_for_builds(self, url, farm):
        deadline = time.time() + DEADLINE
        last = None
        while time.time() < deadline:
            for daemon in farm.daemons.values():
                if daemon.exited():
                    self.fail("%s exited on its own; see %s"
                              % (daemon.name, daemon.log_path))
            conn = psycopg2.connect(url)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT build_status_name(status), count(*)"
                                " FROM build_farm_job GROUP BY 1")
                    by_status = dict(cur.fetchall())
            finally:
                conn.close()
            if by_status != last:
                print("builds: %s" % by_status)
                last = by_status
            if by_status.get("FULLYBUILT", 0) + by_status.get(
                    "FAILEDTOBUILD", 0) + by_status.get("CANCELLED", 0) \
                    == BUILDS:
                return
            time.sleep(1)
        self.fail("builds still pending after %ds: %s" % (DEADLINE, last))

    # -- checks ----------------------------------------------------------

    def check_builds(self, cur, home):
        cur.execute("SELECT build_status_name(status), count(*)"
                    " FROM build_farm_job GROUP BY 1")
        by_status = dict(cur.fetchall())
        print("builds by status: %s" % by_status)
        self.assertEqual(by_status, {"FULLYBUILT": BUILDS})
        cur.execute("SELECT count(*) FROM job WHERE attempt_count > 1")
        print("builds dispatched more than once (never started on an "
              "agent, or lost with it): %d" % cur.fetchone()[0])
        # No build ran on two agents at overlapping times.
        cur.execute("SELECT cookie, job FROM chaos_assignment")
        job_of = dict(cur.fetchall())
        runs = {}
        for agent in AGENTS:
            open_builds = {}
            for event in agent_events(home, agent):
                fmt, build_id = event.get("log_format", ""), event.get("id")
                if fmt.startswith("build {id} ({type}) started"):
                    open_builds[build_id] = event["log_time"]
                elif fmt.startswith("build {id} finished") \
                        and build_id in open_builds:
                    runs.setdefault(job_of.get(build_id), []).append(
                        (open_builds.pop(build_id), event["log_time"], agent))
            self.assertEqual(open_builds, {}, "%s: builds never ended"
                             % agent)
        self.assertNotIn(None, runs, "an agent built a cookie no job had")
        self.assertEqual(len(runs), BUILDS)
        for job_id, intervals in runs.items():
            intervals.sort()
            for (s1, e1, a1), (s2, e2, a2) in zip(intervals, intervals[1:]):
                self.assertGreaterEqual(
                    s2, e1, "build %d on two agents at once: %s and %s"
                    % (job_id, a1, a2))
        # Results stored exactly once, hashes right.
        cur.execute("""
            SELECT f.job, count(bf.*), array_agg(bf.filename ORDER BY bf.filename)
            FROM build_farm_job f LEFT JOIN build_file bf ON bf.build = f.job
            GROUP BY f.job""")
        for job_id, count, names in cur.fetchall():
            self.assertEqual((count, names), (2, ["result.txt", "when.txt"]),
                             "build %d's results" % job_id)
        cur.execute("""
            SELECT bf.build, l.sha1 FROM build_file bf
            JOIN library_file l ON l.id = bf.library_file""")
        for job_id, sha1 in cur.fetchall():
            data = (home / "files" / sha1[:2] / sha1).read_bytes()
            self.assertEqual(hashlib.sha1(data).hexdigest(), sha1,
                             "build %d: a corrupt result" % job_id)

    def check_callers(self, home):
        """State changes on each agent come from one master per lease
        epoch, and epochs never go back: no two masters changed a
        builder's state at overlapping times."""
        for agent in AGENTS:
            calls = [(e["epoch"], e["master"], e["method"])
                     for e in agent_events(home, agent)
                     if e.get("log_format", "").startswith(
                         "{method}() from {master}")]
            self.assertTrue(calls, "%s logged no calls" % agent)
            owner = {}
            last = 0
            for epoch, master, method in calls:
                self.assertGreaterEqual(
                    epoch, last, "%s: %s() from %s with lease %d after "
                    "lease %d" % (agent, method, master, epoch, last))
                last = epoch
                self.assertEqual(owner.setdefault(epoch, master), master,
                                 "%s: lease %d used by two masters"
                                 % (agent, epoch))
            print("%s: state changes under %d leases by %s" % (
                agent, len(owner), sorted(set(owner.values()))))
