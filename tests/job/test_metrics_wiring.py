"""The job runner records outcomes, durations, retries and lease expiries."""

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from lp_services import metrics as M
from lp_services.job.status import JobStatus
from lp_services.testing.database import DatabaseTestMixin
from tests.job.support import insert_job, job_row, make_runner, wait_for


def sample(name, labels):
    return M.REGISTRY.get_sample_value(name, labels) or 0.0


class RunnerMetricsTests(DatabaseTestMixin, TestCase):
    """Metrics move with real jobs through a real runner."""

    @defer.inlineCallbacks
    def test_success_and_failure_are_counted(self):
        """A noop succeeds and a failing job's last attempt fails: counted
        with their durations."""
        succeeded = sample("lp_job_outcomes_total",
                           {"type": "noop", "outcome": "succeeded"})
        durations = sample("lp_job_duration_seconds_count",
                           {"type": "noop", "outcome": "succeeded"})
        conn = self.connect()
        job_id = insert_job(conn)
        runner = yield make_runner(self, ["noop"], poll_interval=0.05)
        yield wait_for(lambda: job_row(conn, job_id)["status"]
                       == JobStatus.COMPLETED, what="the noop job")
        yield runner.stopService()
        self.assertEqual(sample("lp_job_outcomes_total",
                                {"type": "noop", "outcome": "succeeded"}),
                         succeeded + 1)
        self.assertEqual(sample("lp_job_duration_seconds_count",
                                {"type": "noop", "outcome": "succeeded"}),
                         durations + 1)

    def test_outcome_labels(self):
        """Each child outcome maps to one of the metric's outcomes."""
        from lp_services.job.registry import job_types
        from lp_services.job.runner import _Running, _count_outcome

        noop = job_types.get("noop")
        cases = {("completed", 1): "succeeded", ("self_completed", 1): "succeeded",
                 ("retryable", 1): "retried", ("retryable", 4): "failed",
                 ("timeout", 1): "retried", ("crashed", 4): "failed",
                 ("error", 1): "failed", ("user_error", 1): "failed",
                 ("memory", 1): "failed", ("lease_lost", 1): "lost",
                 ("cancelled", 1): "lost", ("handed_back", 1): "handed_back",
                 ("not_started", 1): "handed_back"}
        for (outcome, attempt), label in cases.items():
            before = sample("lp_job_outcomes_total",
                            {"type": "noop", "outcome": label})
            _count_outcome(_Running(1, noop, attempt, 3, None, 0.0), outcome, 1.0)
            self.assertEqual(sample("lp_job_outcomes_total",
                                    {"type": "noop", "outcome": label}),
                             before + 1, (outcome, attempt))
