"""Tests of the JobRunner service: real PostgreSQL, real child processes,
a controlled clock for every timer and timestamp of the runner."""

from datetime import timedelta

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from lp_services.clock import utcnow
from lp_services.job.admin import cancel_job
from lp_services.job.enqueue import enqueue
from lp_services.job.status import JobStatus
from lp_services.testing.database import DatabaseTestMixin

from tests.job.support import (
    insert_job, job_row, make_runner, real_now_clock, wait_for)


class RunnerTestMixin(DatabaseTestMixin):

    timeout = 60

    def setUp(self):
        super().setUp()
        self.conn = self.connect()
        self.clock = real_now_clock()

    def now(self):
        return utcnow(self.clock)

    def add(self, job_type="noop", data=None, **columns):
        columns.setdefault("scheduled_start", self.now())
        return insert_job(self.conn, job_type, data, **columns)

    def row(self, job_id):
        return job_row(self.conn, job_id)

    def status(self, job_id):
        return JobStatus(self.row(job_id)["status"])

    def wait_status(self, job_id, *statuses, attempt=None):
        def check():
            row = self.row(job_id)
            return (row["status"] in statuses and (
                attempt is None or row["attempt_count"] == attempt)) and row
        return wait_for(check, what="job %d to reach %s" % (
            job_id, "/".join(JobStatus(s).name for s in statuses)))

    @defer.inlineCallbacks
    def settle(self, runner):
        """Let the runner's loop finish whatever it started."""
        yield wait_for(lambda: not runner._cycling and not runner._running
                       and not runner._wake_pending, what="runner idle")


class OutcomeTests(RunnerTestMixin, TestCase):
    """Each way a job can end."""

    @defer.inlineCallbacks
    def test_outcomes(self):
        """Success -> COMPLETED; user error -> FAILED with its message;
        unexpected error -> FAILED with the traceback; data the type
        rejects -> FAILED with a clear reason; the runner carries on."""
        runner = yield make_runner(self, ["noop", "sleep", "test.fail",
                                          "http-notify"], self.clock)
        ok = self.add()
        broken = self.add("test.fail", {"why": "kaput"})
        invalid = self.add("sleep", {"seconds": "lots"})
        user = self.add("http-notify", {"url": "http://127.0.0.1:9/x",
                                        "payload": {}, "headers": {"a": 1}})
        runner.wake()
        for job_id in (ok, broken, invalid, user):
            yield self.wait_status(job_id, JobStatus.COMPLETED,
                                   JobStatus.FAILED)
        self.assertEqual(self.status(ok), JobStatus.COMPLETED)
        self.assertIn("Traceback", self.row(broken)["last_error"])
        self.assertIn("ValueError: something unexpected: kaput",
                      self.row(broken)["last_error"])
        self.assertIn("invalid data for sleep", self.row(invalid)["last_error"])
        self.assertIn("headers", self.row(user)["last_error"])
        after = self.add()
        runner.wake()
        yield self.wait_status(after, JobStatus.COMPLETED)

    @defer.inlineCallbacks
    def test_retry_with_backoff_on_the_clock(self):
        """A retryable error: WAITING until now + retry_delay(attempt);
        not claimed before that on the runner's clock, claimed after."""
        runner = yield make_runner(self, ["test.flaky"], self.clock,
                                   poll_interval=1.0)
        job_id = self.add("test.flaky", {"succeed_on": 2}, max_retries=3)
        runner.wake()
        row = yield self.wait_status(job_id, JobStatus.WAITING, attempt=1)
        self.assertEqual(row["scheduled_start"],
                         self.now() + timedelta(seconds=10))
        self.assertIn("attempt 1: RetryableError: not yet", row["last_error"])
        yield self.settle(runner)
        self.clock.advance(9)
        yield self.settle(runner)
        self.assertEqual(self.row(job_id)["attempt_count"], 1)
        self.clock.advance(1)
        row = yield self.wait_status(job_id, JobStatus.COMPLETED)
        self.assertEqual(row["attempt_count"], 2)

    @defer.inlineCallbacks
    def test_retries_exhausted(self):
        """After max_retries retries the job FAILS saying so."""
        runner = yield make_runner(self, ["test.flaky"], self.clock,
                                   poll_interval=1.0)
        job_id = self.add("test.flaky", max_retries=1)
        runner.wake()
        yield self.wait_status(job_id, JobStatus.WAITING, attempt=1)
        yield self.settle(runner)
        self.clock.advance(10)
        row = yield self.wait_status(job_id, JobStatus.FAILED)
        self.assertEqual(row["attempt_count"], 2)
        self.assertIn("attempt 2 of 2", row["last_error"])

    @defer.inlineCallbacks
    def test_timeout_is_retryable(self):
        """A job past its timeout is killed and retried; then fails."""
        runner = yield make_runner(self, ["test.hang", "noop"], self.clock)
        job_id = self.add("test.hang", max_retries=1)
        runner.wake()
        yield wait_for(lambda: job_id in runner._running, what="start")
        self.clock.advance(2.0)
        yield wait_for(lambda: self.row(job_id)["attempt_count"] == 2
                       and job_id in runner._running, what="second attempt")
        self.assertIn("timeout: timed out after 2.0",
                      self.row(job_id)["last_error"])
        self.clock.advance(2.0)
        row = yield self.wait_status(job_id, JobStatus.FAILED)
        self.assertIn("attempt 2 of 2: timeout", row["last_error"])
        after = self.add()
        runner.wake()
        yield self.wait_status(after, JobStatus.COMPLETED)

    @defer.inlineCallbacks
    def test_crash_is_retryable_and_the_runner_survives(self):
        """os._exit in a job: retried, then FAILED; other jobs still run."""
        runner = yield make_runner(self, ["test.crash", "noop"], self.clock)
        job_id = self.add("test.crash", max_retries=1)
        runner.wake()
        row = yield self.wait_status(job_id, JobStatus.FAILED)
        self.assertEqual(row["attempt_count"], 2)
        self.assertIn("crashed", row["last_error"])
        after = self.add()
        yield wait_for(lambda: runner.pool.idle_count == 2, what="workers")
        runner.wake()
        yield self.wait_status(after, JobStatus.COMPLETED)

    @defer.inlineCallbacks
    def test_memory_limit(self):
        """A job over its memory limit FAILS saying so, without retry."""
        runner = yield make_runner(self, ["test.hog"], self.clock)
        job_id = self.add("test.hog", {"mib": 512}, max_retries=2)
        runner.wake()
        row = yield self.wait_status(job_id, JobStatus.FAILED)
        self.assertEqual(row["attempt_count"], 1)
        self.assertIn("memory limit", row["last_error"])

    @defer.inlineCallbacks
    def test_transactional_type(self):
        """A transactional type completes in its own transaction."""
        runner = yield make_runner(self, ["test.transactional"], self.clock)
        job_id = self.add("test.transactional")
        runner.wake()
        yield self.wait_status(job_id, JobStatus.COMPLETED)
        # The child commits the completion before its reply reaches the
        # runner: wait for the runner to have counted it.
        yield wait_for(lambda: runner.stats["completed"] == 1,
                       what="the runner to count the completion")
        self.assertEqual(runner.stats["completed"], 1)


class BatchTests(RunnerTestMixin, TestCase):
    """Several jobs sent to one child at once (depth > 1)."""

    def runs(self, log):
        """{job id: [attempts started]} from a test.record log."""
        started = {}
        for line in log.getContent().decode().splitlines():
            word, job_id, _, attempt, _ = line.split()
            if word == "start":
                started.setdefault(int(job_id), []).append(int(attempt))
        return started

    @defer.inlineCallbacks
    def test_a_claim_is_spread_over_the_children(self):
        """Four jobs claimed in one statement go two to each of two
        children (each job to the child with the most room), not four to
        one."""
        from twisted.python.filepath import FilePath

        log = FilePath(self.mktemp())
        runner = yield make_runner(self, ["test.record"], self.clock,
                                   concurrency=2, depth=4, claim_batch=4)
        ids = [self.add("test.record", {"log": log.path}) for _ in range(4)]
        runner.wake()
        for job_id in ids:
            yield self.wait_status(job_id, JobStatus.COMPLETED)
        pids = [line.split()[2] for line in
                log.getContent().decode().splitlines()
                if line.startswith("start")]
        self.assertEqual(sorted(pids.count(p) for p in set(pids)), [2, 2])

    @defer.inlineCallbacks
    def test_a_child_dying_with_several_jobs(self):
        """One child holding four jobs dies on the second: that one is
        retried (its attempt counts), the two never started are handed
        back and run (theirs does not), the finished one is not run
        again; all four complete, each once."""
        from twisted.python.filepath import FilePath

        log = FilePath(self.mktemp())
        data = {"log": log.path}
        runner = yield make_runner(self, ["test.record", "test.crash-once"],
                                   self.clock, concurrency=1, depth=4,
                                   claim_batch=4)
        ids = [self.add("test.record", data),
               self.add("test.crash-once", data, max_retries=1),
               self.add("test.record", data), self.add("test.record", data)]
        runner.wake()
        for job_id in ids:
            yield self.wait_status(job_id, JobStatus.COMPLETED)
        yield self.settle(runner)
        self.assertEqual([self.row(i)["attempt_count"] for i in ids],
                         [1, 2, 1, 1])
        self.assertEqual(self.runs(log), {ids[0]: [1], ids[1]: [1, 2],
                                          ids[2]: [1], ids[3]: [1]})
        self.assertEqual(runner.stats["completed"], 4)

    @defer.inlineCallbacks
    def test_timeout_in_a_batch_spares_its_neighbours(self):
        """In one child's batch [noop, hang, noop], only the hanging job
        times out (retried, then failed): the noop before it completed,
        the one behind it is handed back each time and completes on its
        first counted attempt, with no error."""
        runner = yield make_runner(self, ["test.hang", "noop"], self.clock,
                                   concurrency=1, depth=3, claim_batch=3)
        first = self.add()
        hang = self.add("test.hang", max_retries=1)
        last = self.add()

        def hang_running():
            return [w for w in runner.pool.workers if w.job_id == hang]

        runner.wake()
        worker = yield wait_for(hang_running, what="the hang to start")
        # The noop's completion is written by the loop's next pass, which
        # may come just after the hang starts: wait for it on the real
        # clock, without advancing the fake one (no timeout has fired).
        yield self.wait_status(first, JobStatus.COMPLETED)
        self.clock.advance(2.1)
        row = yield self.wait_status(hang, JobStatus.RUNNING, attempt=2)
        self.assertIn("attempt 1: timeout: timed out after 2.0",
                      row["last_error"])
        yield wait_for(hang_running, what="the hang to start again")
        self.assertNotIn(worker[0], runner.pool.workers)
        self.clock.advance(2.1)
        row = yield self.wait_status(hang, JobStatus.FAILED)
        self.assertIn("attempt 2 of 2: timeout", row["last_error"])
        row = yield self.wait_status(last, JobStatus.COMPLETED)
        self.assertEqual(row["attempt_count"], 1)
        self.assertIsNone(row["last_error"])
        self.assertEqual(self.row(first)["attempt_count"], 1)


class DependencyTests(RunnerTestMixin, TestCase):
    """Prerequisites."""

    @defer.inlineCallbacks
    def test_runs_after_prerequisite(self):
        """A job starts only after its prerequisite completed."""
        runner = yield make_runner(self, ["noop"], self.clock)
        first = self.add()
        second = self.add(prerequisite=first)
        runner.wake()
        yield self.wait_status(second, JobStatus.COMPLETED)
        self.assertGreaterEqual(self.row(second)["date_started"],
                                self.row(first)["date_finished"])

    @defer.inlineCallbacks
    def test_failed_prerequisite_fails_dependents(self):
        """When the prerequisite fails, its dependents fail naming it."""
        runner = yield make_runner(self, ["noop", "test.fail"], self.clock,
                                   poll_interval=1.0)
        first = self.add("test.fail")
        second = self.add(prerequisite=first)
        runner.wake()
        yield self.wait_status(first, JobStatus.FAILED)
        yield self.settle(runner)
        self.clock.advance(1)
        row = yield self.wait_status(second, JobStatus.FAILED)
        self.assertTrue(row["last_error"].startswith(
            "prerequisite job %d failed" % first))


class LeaseTests(RunnerTestMixin, TestCase):
    """Heartbeats, cancellation and graceful stop."""

    @defer.inlineCallbacks
    def test_heartbeat_renews_leases(self):
        """Running jobs' leases move forward on the runner's clock."""
        runner = yield make_runner(self, ["sleep"], self.clock)
        job_id = self.add("sleep", {"seconds": 30})
        runner.wake()
        yield wait_for(lambda: job_id in runner._running, what="start")
        first = self.row(job_id)["lease_expires"]
        self.clock.advance(runner.heartbeat_interval)
        yield wait_for(lambda: self.row(job_id)["lease_expires"] > first,
                       what="renewal")
        self.assertEqual(self.row(job_id)["lease_expires"],
                         self.now() + timedelta(seconds=60))

    @defer.inlineCallbacks
    def test_cancel_stops_a_running_job(self):
        """An operator's cancel is noticed at the next renewal: the child
        is stopped and the job stays FAILED as the operator left it."""
        runner = yield make_runner(self, ["sleep"], self.clock)
        job_id = self.add("sleep", {"seconds": 60})
        runner.wake()
        yield wait_for(lambda: job_id in runner._running, what="start")
        with self.conn.cursor() as cur:
            cancel_job(cur, job_id, self.now())
        self.conn.commit()
        self.clock.advance(runner.heartbeat_interval)
        yield wait_for(lambda: job_id not in runner._running, what="stop")
        row = self.row(job_id)
        self.assertEqual((row["status"], row["last_error"]),
                         (JobStatus.FAILED, "cancelled by an operator"))
        self.assertEqual(runner.stats["lost"], 1)

    @defer.inlineCallbacks
    def test_graceful_stop_hands_back(self):
        """On stop, a job still running after the grace period goes back
        to WAITING, lease cleared, its attempt not counted."""
        runner = yield make_runner(self, ["sleep"], self.clock, grace=5.0)
        job_id = self.add("sleep", {"seconds": 60})
        runner.wake()
        yield wait_for(lambda: job_id in runner._running, what="start")
        stopped = runner.stopService()
        yield wait_for(lambda: runner._drain_waiters, what="the grace period")
        self.assertEqual(self.status(job_id), JobStatus.RUNNING)
        self.clock.advance(5.0)
        yield stopped
        row = self.row(job_id)
        self.assertEqual((row["status"], row["lease_holder"],
                          row["attempt_count"]),
                         (JobStatus.WAITING, None, 0))

    @defer.inlineCallbacks
    def test_graceful_stop_lets_jobs_finish(self):
        """A job that ends within the grace period completes normally."""
        runner = yield make_runner(self, ["sleep"], self.clock, grace=30.0)
        job_id = self.add("sleep", {"seconds": 0.5})
        runner.wake()
        yield wait_for(lambda: job_id in runner._running, what="start")
        yield runner.stopService()
        self.assertEqual(self.status(job_id), JobStatus.COMPLETED)

    @defer.inlineCallbacks
    def test_stopping_runner_claims_nothing(self):
        """After stop, new jobs stay WAITING."""
        runner = yield make_runner(self, ["noop"], self.clock)
        yield runner.stopService()
        job_id = self.add()
        runner.wake()
        self.assertEqual(self.status(job_id), JobStatus.WAITING)


class WakeUpTests(RunnerTestMixin, TestCase):
    """NOTIFY wakes an idle runner; polling is only the fallback."""

    @defer.inlineCallbacks
    def test_notify_wakes_idle_runner(self):
        """With an hour-long poll that never comes (the clock stands
        still), an enqueued job is claimed at once on its NOTIFY."""
        yield make_runner(self, ["noop"], self.clock, poll_interval=3600)
        conn = self.connect()
        with conn.cursor() as cur:
            job_id = enqueue(cur, "noop", scheduled_start=self.now())
        conn.commit()
        yield self.wait_status(job_id, JobStatus.COMPLETED)

    @defer.inlineCallbacks
    def test_poll_finds_jobs_without_notify(self):
        """A job inserted without NOTIFY is found by the next poll."""
        runner = yield make_runner(self, ["noop"], self.clock,
                                   poll_interval=5.0)
        yield self.settle(runner)
        job_id = self.add()
        self.assertEqual(self.status(job_id), JobStatus.WAITING)
        self.clock.advance(5.0)
        yield self.wait_status(job_id, JobStatus.COMPLETED)

    @defer.inlineCallbacks
    def test_reclaims_expired_leases(self):
        """A job left RUNNING by a dead runner is reclaimed after its
        lease expired, and that attempt counts."""
        runner = yield make_runner(self, ["noop"], self.clock,
                                   poll_interval=5.0)
        yield self.settle(runner)
        job_id = self.add(status=1, attempt_count=1, max_retries=2,
                          lease_holder="dead-runner",
                          lease_expires=self.now() + timedelta(seconds=3))
        self.clock.advance(5.0)
        row = yield self.wait_status(job_id, JobStatus.COMPLETED)
        self.assertEqual(row["attempt_count"], 2)
        self.assertIn("dead-runner", row["last_error"])
