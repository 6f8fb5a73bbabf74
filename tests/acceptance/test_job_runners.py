"""Acceptance: real `twistd jobrunner` processes over real PostgreSQL."""

import os
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from twisted.internet import defer
from twisted.protocols import portforward
from twisted.trial.unittest import TestCase

from lp_services.job.status import JobStatus
from lp_services.testing.database import DatabaseTestMixin

from tests.job.support import job_row, wait_for


class Runner:
    """One `twistd -n jobrunner` process and its log."""

    def __init__(self, testcase, url, name, *args):
        self.name = name
        self.log_path = Path(testcase.mktemp() + "-%s.log" % name)
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-c",
             "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "jobrunner",
             "--database", url, "--holder", name,
             "--module", "lp_services.job.testtypes", *args],
            stdout=self.log, stderr=subprocess.STDOUT,
            cwd=tempfile.gettempdir())
        testcase.addCleanup(self.kill)

    def text(self):
        return self.log_path.read_text()

    def ready(self):
        def check():
            if self.process.poll() is not None:
                raise AssertionError("%s exited:\n%s" % (self.name,
                                                          self.text()))
            return " ready" in self.text()
        return wait_for(check, what="%s to start" % self.name)

    def signal(self, sig):
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def exited(self):
        return wait_for(lambda: self.process.poll() is not None,
                        what="%s to exit" % self.name)

    def kill(self):
        self.signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()


def add_jobs(conn, job_type, data, n, **columns):
    import json

    names = sorted(columns)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO job (job_type, json_data%s) SELECT %%s, %%s%s"
            " FROM generate_series(1, %%s) ORDER BY 1 RETURNING id" % (
                "".join(", " + c for c in names),
                "".join(", %s" for _ in names)),
            [job_type, json.dumps(data)] + [columns[c] for c in names] + [n])
        ids = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT pg_notify('lp_job', %s)", (job_type,))
    conn.commit()
    return ids


def statuses(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM job GROUP BY status")
        result = {JobStatus(s): n for s, n in cur.fetchall()}
    conn.commit()
    return result


def read_record_log(path):
    """{job id: [(event, pid, attempt), ...]} in file order."""
    events = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        event, job_id, pid, attempt, _ = line.split()
        events[int(job_id)].append((event, int(pid), int(attempt)))
    return events


class TwoRunnerTests(DatabaseTestMixin, TestCase):
    """Two runner processes share one job table."""

    timeout = 120

    @defer.inlineCallbacks
    def test_exactly_once_over_two_thousand_jobs(self):
        """2,000 jobs, two runners: each job runs to completion exactly
        once (one start, one end, one attempt), never two at a time."""
        conn = self.connect()
        record = self.mktemp()
        runners = [Runner(self, self.database_url, "runner-%d" % i,
                          "--include", "test.record", "--concurrency", "3",
                          "--depth", "4", "--poll-interval", "1")
                   for i in (1, 2)]
        for runner in runners:
            yield runner.ready()
        ids = add_jobs(conn, "test.record", {"log": os.path.abspath(record)},
                       2000)
        yield wait_for(lambda: statuses(conn).get(JobStatus.COMPLETED) == 2000,
                       timeout=90, interval=0.1, what="2,000 completions")
        events = read_record_log(record)
        self.assertEqual(sorted(events), sorted(ids))
        for job_id, seen in events.items():
            self.assertEqual([e[0] for e in seen], ["start", "end"],
                             "job %d ran %r" % (job_id, seen))
            self.assertEqual(seen[0][1], seen[1][1])
        with conn.cursor() as cur:
            cur.execute("SELECT max(attempt_count), min(attempt_count),"
                        " count(lease_holder) FROM job")
            self.assertEqual(cur.fetchone(), (1, 1, 0))
        for runner in runners:
            runner.signal(signal.SIGTERM)
        for runner in runners:
            yield runner.exited()
            # twistd re-raises the signal it stopped on as its exit status.
            self.assertIn(runner.process.returncode, (0, -signal.SIGTERM),
                          runner.text())
            self.assertIn("Server Shut Down", runner.text())
        # Both did some of the work.
        for runner in runners:
            self.assertRegex(runner.text(), r"'completed': [1-9]")

    @defer.inlineCallbacks
    def test_sigkill_mid_job_runs_again_after_the_lease(self):
        """SIGKILL a runner while it runs a job: its child dies with it, and
        another runner runs the job again once the lease expired; that
        attempt counts; no other job is lost."""
        conn = self.connect()
        record = os.path.abspath(self.mktemp())
        first = Runner(self, self.database_url, "doomed",
                       "--include", "test.short-lease", "--concurrency", "1",
                       "--poll-interval", "0.2")
        yield first.ready()
        [victim] = add_jobs(conn, "test.short-lease",
                            {"log": record, "seconds": 1.0}, 1, max_retries=2)
        others = add_jobs(conn, "test.short-lease", {"log": record}, 20,
                          priority=-1)
        yield wait_for(lambda: os.path.exists(record)
                       and victim in read_record_log(record),
                       what="the victim to start")
        first.signal(signal.SIGKILL)
        yield first.exited()
        second = Runner(self, self.database_url, "survivor",
                        "--include", "test.short-lease", "--concurrency", "2",
                        "--poll-interval", "0.2")
        yield wait_for(lambda: statuses(conn).get(JobStatus.COMPLETED) == 21,
                       timeout=30, interval=0.1,
                       what=lambda: "every job: %s; victim: %s" % (
                           statuses(conn), job_row(conn, victim)))
        row = job_row(conn, victim)
        self.assertEqual(row["attempt_count"], 2)
        self.assertIn("lease held by doomed expired", row["last_error"])
        events = read_record_log(record)
        self.assertEqual([e[0] for e in events[victim]],
                         ["start", "start", "end"])
        for job_id in others:
            self.assertEqual(events[job_id][-1][0], "end")
        second.signal(signal.SIGTERM)
        yield second.exited()

    @defer.inlineCallbacks
    def test_sigterm_hands_unfinished_jobs_back(self):
        """SIGTERM: running jobs get the grace period, then go back to
        WAITING with no lease and the attempt not counted; another runner
        takes them at once, without waiting for a lease to expire."""
        conn = self.connect()
        record = os.path.abspath(self.mktemp())
        runner = Runner(self, self.database_url, "leaving",
                        "--include", "test.record", "--concurrency", "2",
                        "--grace", "0.5")
        yield runner.ready()
        slow_job, quick_job = add_jobs(conn, "test.record",
                                       {"log": record, "seconds": 30}, 1) + \
            add_jobs(conn, "test.record", {"log": record, "seconds": 0.2}, 1)
        yield wait_for(lambda: job_row(conn, slow_job)["status"]
                       == JobStatus.RUNNING, what="the slow job to start")
        yield wait_for(lambda: job_row(conn, quick_job)["status"]
                       == JobStatus.COMPLETED, what="the quick job")
        runner.signal(signal.SIGTERM)
        yield runner.exited()
        row = job_row(conn, slow_job)
        self.assertEqual((row["status"], row["lease_holder"],
                          row["lease_expires"], row["attempt_count"]),
                         (JobStatus.WAITING, None, None, 0))
        self.assertIn("handing 1 unfinished jobs back", runner.text())
        with conn.cursor() as cur:
            cur.execute("UPDATE job SET json_data = %s WHERE id = %s",
                        ('{"log": "%s"}' % record, slow_job))
        conn.commit()
        Runner(self, self.database_url, "next", "--include", "test.record",
               "--poll-interval", "30")
        yield wait_for(lambda: job_row(conn, slow_job)["status"]
                       == JobStatus.COMPLETED, what="the hand-back to run")


class RestartableProxy(portforward.ProxyFactory):
    """A loopback TCP proxy to whatever port the embedded server listens
    on now (a restarted server may pick a new port when the old one is in
    TIME_WAIT); the runner's URL names the proxy and never changes."""

    def __init__(self, server):
        self.server = server
        super().__init__("127.0.0.1", 0)

    def buildProtocol(self, addr):
        from urllib.parse import urlsplit

        url = self.server.url()
        self.port = urlsplit(url).port if url else 1
        return super().buildProtocol(addr)


class ReconnectionTests(TestCase):
    """A runner survives its PostgreSQL restarting."""

    timeout = 120

    @defer.inlineCallbacks
    def test_reconnects_after_postgresql_restart(self):
        """PostgreSQL restarts while a job runs: the runner logs the loss,
        reconnects with back-off, records the running job's outcome
        afterwards, and claims new jobs again."""
        import psycopg2
        from twisted.internet import reactor, threads

        from lp_services.database.embedded import EmbeddedServer
        from lp_services.database.schema import upgrade
        from lp_services.testing.database import with_database

        server = EmbeddedServer(Path(self.mktemp()).resolve(),
                                fast_unsafe=True)
        url = yield threads.deferToThread(server.start)
        self.addCleanup(server.stop)
        conn = psycopg2.connect(url)
        upgrade(conn)
        conn.close()
        listening = reactor.listenTCP(0, RestartableProxy(server),
                                      interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        proxied = with_database(
            "postgresql://postgres@127.0.0.1:%d/" % listening.getHost().port,
            "lp_services")
        record = os.path.abspath(self.mktemp())
        runner = Runner(self, proxied, "steadfast", "--include", "test.record",
                        "--poll-interval", "0.5")
        yield runner.ready()
        conn = psycopg2.connect(url)
        [during] = add_jobs(conn, "test.record", {"log": record, "seconds": 3},
                            1)
        yield wait_for(lambda: job_row(conn, during)["status"]
                       == JobStatus.RUNNING, what="the job to start")
        conn.close()
        yield threads.deferToThread(server.stop)
        yield wait_for(lambda: "lost its database connection" in runner.text(),
                       what="the loss to be noticed")
        url = yield threads.deferToThread(server.start)
        yield wait_for(lambda: "reconnected to the database" in runner.text(),
                       timeout=30, what="reconnection")
        conn = psycopg2.connect(url)
        self.addCleanup(conn.close)
        yield wait_for(lambda: job_row(conn, during)["status"]
                       == JobStatus.COMPLETED, what="the job's outcome")
        self.assertEqual(job_row(conn, during)["attempt_count"], 1)
        [after] = add_jobs(conn, "test.record", {"log": record}, 1)
        yield wait_for(lambda: job_row(conn, after)["status"]
                       == JobStatus.COMPLETED, what="a new job")
        self.assertNotIn("Unhandled Error", runner.text())
        runner.signal(signal.SIGTERM)
        yield runner.exited()
