"""Tests of guarded status changes in SQL (lp_services.job.transition)."""

from datetime import timedelta

from twisted.trial.unittest import TestCase

from lp_services.job.status import TRANSITIONS, InvalidTransition, JobStatus
from lp_services.job.transition import UnknownJob, transition_job
from lp_services.testing.clock import EPOCH
from lp_services.testing.database import DatabaseTestMixin


class TransitionJobTests(DatabaseTestMixin, TestCase):
    """transition_job against real PostgreSQL."""

    def make_job(self, cur, status=JobStatus.WAITING):
        cur.execute("INSERT INTO job (job_type, status) VALUES ('noop', %s)"
                    " RETURNING id", (int(status),))
        return cur.fetchone()[0]

    def status_of(self, cur, job_id):
        cur.execute("SELECT status, date_finished, last_error FROM job"
                    " WHERE id = %s", (job_id,))
        return cur.fetchone()

    def test_every_legal_edge_applies(self):
        """Each legal edge changes the row's status."""
        conn = self.connect()
        with conn.cursor() as cur:
            for current, targets in TRANSITIONS.items():
                for target in targets:
                    job_id = self.make_job(cur, current)
                    transition_job(cur, job_id, target, EPOCH)
                    self.assertEqual(self.status_of(cur, job_id)[0], target)

    def test_every_illegal_edge_is_refused_in_sql(self):
        """Each illegal edge raises InvalidTransition and changes nothing."""
        conn = self.connect()
        with conn.cursor() as cur:
            for current in JobStatus:
                for target in set(JobStatus) - TRANSITIONS[current]:
                    job_id = self.make_job(cur, current)
                    error = self.assertRaises(
                        InvalidTransition, transition_job, cur, job_id,
                        target, EPOCH)
                    self.assertEqual(error.current, current)
                    self.assertEqual(self.status_of(cur, job_id)[0], current)

    def test_finishing_sets_date_finished_and_columns(self):
        """FAILED sets date_finished from the given time, and extra columns."""
        conn = self.connect()
        with conn.cursor() as cur:
            job_id = self.make_job(cur)
            transition_job(cur, job_id, JobStatus.FAILED, EPOCH,
                           last_error="cancelled")
            status, finished, error = self.status_of(cur, job_id)
        self.assertEqual((status, finished, error),
                         (JobStatus.FAILED, EPOCH, "cancelled"))

    def test_unknown_job(self):
        """A missing id raises UnknownJob."""
        conn = self.connect()
        with conn.cursor() as cur:
            self.assertRaises(UnknownJob, transition_job, cur, 999999,
                              JobStatus.RUNNING, EPOCH)

    def test_refuses_unknown_columns(self):
        """Only lifecycle columns may ride along with a transition."""
        conn = self.connect()
        with conn.cursor() as cur:
            job_id = self.make_job(cur)
            self.assertRaises(TypeError, transition_job, cur, job_id,
                              JobStatus.RUNNING, EPOCH, job_type="evil")

    def test_concurrent_claim_loses_cleanly(self):
        """Of two transactions moving one job WAITING->RUNNING, one wins.

        The second blocks on the row lock, then re-checks the guard against
        the committed status and raises InvalidTransition.
        """
        first, second = self.connect(), self.connect()
        with first.cursor() as cur:
            job_id = self.make_job(cur)
        first.commit()
        with first.cursor() as cur:
            transition_job(cur, job_id, JobStatus.RUNNING, EPOCH,
                           lease_holder="a",
                           lease_expires=EPOCH + timedelta(minutes=5))
        import threading
        outcome = []

        def loser():
            with second.cursor() as cur:
                try:
                    transition_job(cur, job_id, JobStatus.RUNNING, EPOCH,
                                   lease_holder="b",
                                   lease_expires=EPOCH + timedelta(minutes=5))
                except InvalidTransition as error:
                    outcome.append(error)
            second.rollback()

        thread = threading.Thread(target=loser)
        thread.start()
        first.commit()
        thread.join(30)
        self.assertEqual(len(outcome), 1)
        self.assertEqual(outcome[0].current, JobStatus.RUNNING)
        with first.cursor() as cur:
            cur.execute("SELECT lease_holder FROM job WHERE id = %s", (job_id,))
            self.assertEqual(cur.fetchone()[0], "a")
