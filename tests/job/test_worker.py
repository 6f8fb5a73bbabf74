"""Tests of the child's side (lp_services.job.worker.run_one), in-process."""

from twisted.trial.unittest import TestCase

from lp_services.job.status import JobStatus
from lp_services.job.worker import _ConnectionHolder, run_one
from lp_services.testing.database import DatabaseTestMixin

from tests.job import support
from tests.job.support import insert_job, job_row

del support  # registers the test types


def request(job_type, data=None, job_id=1, holder="h"):
    return {"job": job_id, "type": job_type, "data": data or {},
            "attempt": 1, "holder": holder, "now": 1.7e9}


class ClassificationTests(TestCase):
    """How a job's end becomes an outcome."""

    def holder(self):
        return _ConnectionHolder(None)

    def test_completed(self):
        """Returning normally is 'completed'."""
        self.assertEqual(run_one(request("noop"), self.holder())["outcome"],
                         "completed")

    def test_retryable(self):
        """A retryable error of the type is 'retryable' with its message."""
        reply = run_one(request("test.flaky"), self.holder())
        self.assertEqual(reply["outcome"], "retryable")
        self.assertIn("not yet", reply["message"])

    def test_unexpected_error_keeps_traceback(self):
        """Anything else is 'error' with the traceback."""
        reply = run_one(request("test.fail"), self.holder())
        self.assertEqual(reply["outcome"], "error")
        self.assertIn("Traceback", reply["traceback"])
        self.assertIn("something unexpected", reply["traceback"])

    def test_invalid_data_is_a_user_error(self):
        """Data the type rejects fails as a user error, clearly."""
        reply = run_one(request("sleep", {"seconds": "x"}), self.holder())
        self.assertEqual(reply["outcome"], "user_error")
        self.assertIn("invalid data for sleep", reply["message"])

    def test_unknown_type(self):
        """A type the child does not know is an error, not a crash."""
        self.assertEqual(run_one(request("no.such"), self.holder())["outcome"],
                         "error")


class TransactionalTests(DatabaseTestMixin, TestCase):
    """Transactional types complete in their own transaction."""

    def claimed(self, conn):
        return insert_job(conn, "test.transactional", status=1,
                          lease_holder="h", lease_expires="2100-01-01")

    def test_work_and_completion_commit_together(self):
        """On success the job's writes and COMPLETED commit at once."""
        conn = self.connect()
        job_id = self.claimed(conn)
        reply = run_one(request("test.transactional", job_id=job_id),
                        _ConnectionHolder(self.database_url))
        self.assertEqual(reply["outcome"], "self_completed")
        self.assertEqual(job_row(conn, job_id)["status"], JobStatus.COMPLETED)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job WHERE reason = %s",
                        ("written by job %d" % job_id,))
            self.assertEqual(cur.fetchone()[0], 1)

    def test_lost_lease_rolls_back_the_work(self):
        """If the lease is no longer ours, nothing the job wrote stays."""
        conn = self.connect()
        job_id = self.claimed(conn)
        reply = run_one(request("test.transactional", job_id=job_id,
                                holder="someone-else"),
                        _ConnectionHolder(self.database_url))
        self.assertEqual(reply["outcome"], "lease_lost")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job")
            self.assertEqual(cur.fetchone()[0], 1)
        self.assertEqual(job_row(conn, job_id)["status"], JobStatus.RUNNING)

    def test_failure_rolls_back_the_work(self):
        """A job that raises after writing leaves nothing behind."""
        conn = self.connect()
        job_id = self.claimed(conn)
        reply = run_one(request("test.transactional", {"fail": True},
                                job_id=job_id),
                        _ConnectionHolder(self.database_url))
        self.assertEqual(reply["outcome"], "error")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job")
            self.assertEqual(cur.fetchone()[0], 1)
