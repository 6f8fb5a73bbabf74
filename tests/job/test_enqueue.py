"""Tests of lp_services.job.enqueue and the operator actions."""

import select

from twisted.trial.unittest import TestCase

from lp_services.job.admin import (
    NotANativeJob, cancel_job, get_job, list_jobs, retry_job)
from lp_services.job.enqueue import enqueue
from lp_services.job.registry import InvalidJobData, UnknownJobType
from lp_services.job.status import InvalidTransition, JobStatus
from lp_services.job.transition import UnknownJob
from lp_services.testing.clock import EPOCH
from lp_services.testing.database import DatabaseTestMixin

from tests.job.support import insert_job, job_row


def count_jobs(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM job")
        n = cur.fetchone()[0]
    conn.commit()
    return n


class EnqueueTests(DatabaseTestMixin, TestCase):
    """enqueue() inside the caller's transaction."""

    def test_enqueue_writes_and_notifies_on_commit(self):
        """The row appears and NOTIFY lp_job (payload: the type) is
        delivered when the caller commits."""
        listener = self.connect()
        listener.autocommit = True
        with listener.cursor() as cur:
            cur.execute("LISTEN lp_job")
        conn = self.connect()
        with conn.cursor() as cur:
            job_id = enqueue(cur, "sleep", {"seconds": 2}, priority=7,
                             reason="test")
        listener.poll()
        self.assertEqual(listener.notifies, [])
        conn.commit()
        select.select([listener], [], [], 5)
        listener.poll()
        self.assertEqual([n.payload for n in listener.notifies], ["sleep"])
        row = job_row(conn, job_id)
        self.assertEqual((row["job_type"], row["priority"], row["json_data"],
                          row["status"], row["max_retries"]),
                         ("sleep", 7, {"seconds": 2}, JobStatus.WAITING, 0))

    def test_unknown_type_writes_nothing(self):
        """An unknown type (or 'build') is refused before any write."""
        conn = self.connect()
        with conn.cursor() as cur:
            self.assertRaises(UnknownJobType, enqueue, cur, "nope", {})
            self.assertRaises(UnknownJobType, enqueue, cur, "build", {})
        conn.commit()
        self.assertEqual(count_jobs(conn), 0)

    def test_rejected_data_writes_nothing(self):
        """Data the type rejects, or non-JSON data, is refused."""
        conn = self.connect()
        with conn.cursor() as cur:
            error = self.assertRaises(InvalidJobData, enqueue, cur, "sleep",
                                      {"seconds": "soon"})
            self.assertIn("invalid data for sleep", str(error))
            self.assertRaises(InvalidJobData, enqueue, cur, "noop",
                              {"x": object()})
        conn.commit()
        self.assertEqual(count_jobs(conn), 0)

    def test_unknown_prerequisite(self):
        """A prerequisite that does not exist is refused."""
        conn = self.connect()
        with conn.cursor() as cur:
            self.assertRaises(UnknownJob, enqueue, cur, "noop", {},
                              prerequisite=12345)

    def test_enqueue_through_a_store(self):
        """A Storm Store works too, through the transactor."""
        from lp_services.database.transactor import Transactor

        transactor = Transactor(self.database_url)
        job_id = transactor.run_blocking(
            lambda store: enqueue(store, "noop", max_retries=4))
        transactor.stop()
        self.assertEqual(job_row(self.connect(), job_id)["max_retries"], 4)


class AdminTests(DatabaseTestMixin, TestCase):
    """Operator actions go through guarded transitions."""

    def test_cancel_running_clears_lease(self):
        """Cancelling a RUNNING job fails it and clears its lease."""
        conn = self.connect()
        job_id = insert_job(conn, status=1, lease_holder="r",
                            lease_expires=EPOCH)
        with conn.cursor() as cur:
            record = cancel_job(cur, job_id, EPOCH)
        conn.commit()
        self.assertEqual((record.status, record.lease_holder,
                          record.last_error),
                         (JobStatus.FAILED, None, "cancelled by an operator"))

    def test_cancel_finished_refused(self):
        """A COMPLETED job cannot be cancelled."""
        conn = self.connect()
        job_id = insert_job(conn, status=2)
        with conn.cursor() as cur:
            self.assertRaises(InvalidTransition, cancel_job, cur, job_id,
                              EPOCH)

    def test_retry_only_failed(self):
        """retry: FAILED -> WAITING with attempts reset; others refused."""
        conn = self.connect()
        failed = insert_job(conn, status=3, attempt_count=3)
        running = insert_job(conn, status=1, lease_holder="r",
                             lease_expires=EPOCH)
        with conn.cursor() as cur:
            record = retry_job(cur, failed, EPOCH)
            self.assertRaises(InvalidTransition, retry_job, cur, running,
                              EPOCH)
        self.assertEqual((record.status, record.attempt_count,
                          record.scheduled_start),
                         (JobStatus.WAITING, 0, EPOCH))

    def test_builds_refused(self):
        """Build jobs are not the job commands' to cancel or retry."""
        conn = self.connect()
        job_id = insert_job(conn, "build")
        with conn.cursor() as cur:
            self.assertRaises(NotANativeJob, cancel_job, cur, job_id, EPOCH)

    def test_get_and_list(self):
        """get_job raises for unknown ids; list_jobs filters."""
        conn = self.connect()
        a = insert_job(conn, "noop")
        insert_job(conn, "noop", status=2)
        with conn.cursor() as cur:
            self.assertRaises(UnknownJob, get_job, cur, 999)
            self.assertEqual([r.id for r in list_jobs(
                cur, JobStatus.WAITING, "noop")], [a])
            self.assertEqual(len(list_jobs(cur)), 2)
