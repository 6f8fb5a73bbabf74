"""Tests of the ops_* reporting views (schema/views.sql) on seeded data.

Every expected figure below is worked out by hand from the seed in
:meth:`OpsViewTests.seed`; times are relative to the database's now().
"""

from datetime import timedelta
from decimal import Decimal

import psycopg2.extras
from twisted.trial.unittest import TestCase

from lp_services.testing.database import DatabaseTestMixin

SEED = """
INSERT INTO processor (id, name) VALUES (1, 'amd64'), (2, 'arm64'), (3, 'riscv64');
INSERT INTO builder (id, name, url, virtualized, manual, active, builderok,
                     failure_count, failnotes, clean_status,
                     date_clean_status_changed, date_state_changed) VALUES
  (1, 'a1', 'http://a1', false, false, true,  true,  0, NULL, 0, now() - interval '10 minutes', now() - interval '9 days'),
  (2, 'a2', 'http://a2', false, false, true,  true,  1, NULL, 0, now(), now() - interval '9 days'),
  (3, 'a3', 'http://a3', false, false, false, true,  0, NULL, 0, now(), now() - interval '2 days'),
  (4, 'v1', 'http://v1', true,  false, true,  false, 5, 'reset failed', 1, now(), now() - interval '3 hours'),
  (5, 'm1', 'http://m1', false, true,  true,  true,  0, NULL, 1, now() - interval '5 minutes', now() - interval '1 hour');
INSERT INTO builder_processor VALUES (1, 1), (2, 1), (3, 1), (4, 1), (5, 2);

-- Native jobs.
INSERT INTO job (id, job_type, status, date_created, date_started, date_finished,
                 attempt_count, last_error) VALUES
  (1, 'noop', 2, now() - interval '3 hours', now() - interval '3 hours',
      now() - interval '3 hours' + interval '10 seconds', 1, NULL),
  (2, 'noop', 2, now() - interval '2 hours', now() - interval '2 hours',
      now() - interval '2 hours' + interval '30 seconds', 1, NULL),
  (3, 'noop', 3, now() - interval '2 days', now() - interval '2 days',
      now() - interval '2 days' + interval '5 seconds', 3, 'boom'),
  (4, 'sleep', 0, now(), NULL, NULL, 0, NULL),
  (5, 'noop', 2, now() - interval '40 days', now() - interval '40 days',
      now() - interval '40 days' + interval '99 seconds', 1, NULL);

-- Builds: 10, 11 waiting on amd64 (non-virtual), 12 building on a1,
-- 13 finished FULLYBUILT on a2, 14 FAILEDTOBUILD on a2, 15 CANCELLED on a1,
-- 16 waiting on riscv64 (no builder can take it).
INSERT INTO job (id, job_type, status, date_created, date_started, date_finished,
                 attempt_count) VALUES
  (10, 'build', 0, now() - interval '2 hours', NULL, NULL, 0),
  (11, 'build', 0, now() - interval '1 hour', NULL, NULL, 0),
  (12, 'build', 1, now() - interval '1 hour', now() - interval '5 minutes', NULL, 1),
  (13, 'build', 2, now() - interval '5 hours', now() - interval '5 hours',
       now() - interval '5 hours' + interval '4 minutes', 1),
  (14, 'build', 3, now() - interval '5 hours', now() - interval '5 hours',
       now() - interval '5 hours' + interval '2 minutes', 1),
  (15, 'build', 3, now() - interval '5 hours', now() - interval '5 hours',
       now() - interval '5 hours' + interval '1 minute', 1),
  (16, 'build', 0, now() - interval '30 minutes', NULL, NULL, 0);
INSERT INTO build_farm_job (job, build_type, processor, virtualized, status,
                            builder, date_started, date_finished) VALUES
  (10, 'script', 1, false, 0, NULL, NULL, NULL),
  (11, 'script', 1, false, 0, NULL, NULL, NULL),
  (12, 'script', 1, false, 6, 1, now() - interval '5 minutes', NULL),
  (13, 'script', 1, false, 1, 2, now() - interval '5 hours',
       now() - interval '5 hours' + interval '4 minutes'),
  (14, 'script', 1, false, 2, 2, now() - interval '5 hours',
       now() - interval '5 hours' + interval '2 minutes'),
  (15, 'script', 1, false, 10, 1, now() - interval '5 hours',
       now() - interval '5 hours' + interval '1 minute'),
  (16, 'binarypackage', 3, false, 0, NULL, NULL, NULL);
INSERT INTO build_queue (job, build_farm_job, build_type, processor, virtualized,
                         estimated_duration, builder, build_cookie,
                         date_dispatched) VALUES
  (10, 10, 'script', 1, false, '10 minutes', NULL, NULL, NULL),
  (11, 11, 'script', 1, false, '20 minutes', NULL, NULL, NULL),
  (12, 12, 'script', 1, false, '7 minutes', 1, 'cookie',
       now() - interval '5 minutes'),
  (16, 16, 'binarypackage', 3, false, '1 hour', NULL, NULL, NULL);
"""


class OpsViewTests(DatabaseTestMixin, TestCase):
    """Each view against figures computed by hand from SEED."""

    def setUp(self):
        super().setUp()
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(SEED)
        self.conn = conn

    def rows(self, sql):
        with self.conn.cursor(
                cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql)
            return [dict(r) for r in cur.fetchall()]

    def assertAbout(self, actual, expected, slack=timedelta(minutes=1)):
        """``actual`` is within ``slack`` above ``expected`` (now() moves)."""
        self.assertTrue(expected <= actual <= expected + slack,
                        "%s not within %s of %s" % (actual, slack, expected))

    def test_ops_queue(self):
        """Queue per processor: counts, oldest wait, work and time to clear."""
        rows = {(r["processor"], r["virtualized"]): r
                for r in self.rows("SELECT * FROM ops_queue")}
        # Rows exist where builds queue or builders can take work: v1
        # (virtual, not ok) and m1 (manual) offer no capacity, and nothing
        # waits for them, so amd64/virtual and arm64 have no row.
        self.assertEqual(set(rows), {("amd64", False), ("riscv64", False)})
        amd64 = rows["amd64", False]
        self.assertEqual(amd64["waiting_builds"], 2)
        self.assertEqual(amd64["building"], 1)
        self.assertAbout(amd64["oldest_wait"], timedelta(hours=2))
        self.assertEqual(amd64["estimated_work"], timedelta(minutes=30))
        # a1 and a2 qualify; a3 is inactive, v1 virtual, m1 manual/arm64.
        self.assertEqual(amd64["builders_available"], 2)
        self.assertEqual(amd64["estimated_time_to_clear"], timedelta(minutes=15))
        riscv = rows["riscv64", False]
        self.assertEqual((riscv["waiting_builds"], riscv["builders_available"]),
                         (1, 0))
        self.assertIsNone(riscv["estimated_time_to_clear"])

    def test_ops_builders(self):
        """Builder states, current build and time in state."""
        rows = {r["name"]: r for r in self.rows("SELECT * FROM ops_builders")}
        self.assertEqual(
            {name: r["state"] for name, r in rows.items()},
            {"a1": "building", "a2": "idle", "a3": "disabled",
             "v1": "failed", "m1": "manual"})
        self.assertEqual(rows["a1"]["current_build"], 12)
        self.assertAbout(rows["a1"]["time_in_state"], timedelta(minutes=5))
        self.assertAbout(rows["m1"]["time_in_state"], timedelta(hours=1))
        self.assertAbout(rows["v1"]["time_in_state"], timedelta(hours=3))
        self.assertAbout(rows["a3"]["time_in_state"], timedelta(days=2))
        self.assertAbout(rows["a2"]["time_in_state"], timedelta(0))
        self.assertEqual(rows["v1"]["failnotes"], "reset failed")
        self.assertEqual(rows["v1"]["failure_count"], 5)
        self.assertEqual(rows["v1"]["clean_status"], "DIRTY")
        self.assertEqual(rows["a1"]["processors"], "amd64")

    def test_ops_work(self):
        """Builds and native jobs in one list with kind, outcome, duration."""
        rows = {r["id"]: r for r in self.rows("SELECT * FROM ops_work")}
        self.assertEqual(len(rows), 12)
        self.assertEqual((rows[1]["kind"], rows[1]["type"], rows[1]["status"],
                          rows[1]["outcome"], rows[1]["duration"]),
                         ("native", "noop", "COMPLETED", "succeeded",
                          timedelta(seconds=10)))
        self.assertEqual((rows[3]["outcome"], rows[3]["attempts"],
                          rows[3]["last_error"]), ("failed", 3, "boom"))
        self.assertIsNone(rows[4]["outcome"])
        self.assertEqual((rows[13]["kind"], rows[13]["type"],
                          rows[13]["build_status"], rows[13]["outcome"],
                          rows[13]["builder"], rows[13]["duration"]),
                         ("build", "script", "FULLYBUILT", "succeeded", "a2",
                          timedelta(minutes=4)))
        self.assertEqual(rows[14]["outcome"], "failed")
        self.assertEqual(rows[15]["outcome"], "cancelled")
        self.assertEqual((rows[12]["status"], rows[12]["build_status"],
                          rows[12]["outcome"]), ("RUNNING", "BUILDING", None))

    def test_ops_failures(self):
        """Failure rates per type and per builder, day and week."""
        rows = {(r["dimension"], r["name"]): r
                for r in self.rows("SELECT * FROM ops_failures")}
        noop = rows["type", "native:noop"]
        # Day: jobs 1, 2 succeeded. Week: also job 3 failed. Job 5 is too old.
        self.assertEqual((noop["finished_day"], noop["failed_day"],
                          noop["failure_rate_day"]), (2, 0, Decimal("0.000")))
        self.assertEqual((noop["finished_week"], noop["failed_week"],
                          noop["failure_rate_week"]), (3, 1, Decimal("0.333")))
        script = rows["type", "build:script"]
        # 13 succeeded, 14 failed, 15 cancelled (finished, not failed).
        self.assertEqual((script["finished_day"], script["failed_day"],
                          script["failure_rate_day"]), (3, 1, Decimal("0.333")))
        a2 = rows["builder", "a2"]
        self.assertEqual((a2["finished_week"], a2["failed_week"],
                          a2["failure_rate_week"]), (2, 1, Decimal("0.500")))
        self.assertEqual(rows["builder", "a1"]["failed_week"], 0)

    def test_ops_durations(self):
        """Percentiles of successful durations per kind and type (30 days)."""
        rows = {(r["kind"], r["type"]): r
                for r in self.rows("SELECT * FROM ops_durations")}
        noop = rows["native", "noop"]
        # Jobs 1 (10 s) and 2 (30 s); job 5 is older than 30 days.
        self.assertEqual(noop["samples"], 2)
        self.assertEqual(noop["p50"], timedelta(seconds=20))
        self.assertEqual(noop["p90"], timedelta(seconds=28))
        self.assertEqual(noop["max"], timedelta(seconds=30))
        self.assertEqual(rows["build", "script"]["samples"], 1)
        self.assertEqual(rows["build", "script"]["p50"], timedelta(minutes=4))
        self.assertNotIn(("native", "sleep"), rows)
