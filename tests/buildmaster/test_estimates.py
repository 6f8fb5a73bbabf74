"""Tests of duration and start-time estimates (lp_services.buildmaster.estimates)."""

from datetime import timedelta

from twisted.trial.unittest import TestCase

from lp_services.buildmaster.estimates import DEFAULT_DURATION, estimate_duration, expected_start
from lp_services.testing.database import DatabaseTestMixin
from tests.database.test_views import SEED


class EstimateTests(DatabaseTestMixin, TestCase):
    """Estimates on the seed of the ops-view tests, worked out by hand."""

    def setUp(self):
        super().setUp()
        self.conn = self.connect()
        with self.conn, self.conn.cursor() as cur:
            cur.execute(SEED)

    def run_sql(self, function, *args):
        with self.conn.cursor() as cur:
            return function(cur, *args)

    def test_duration_median_of_type(self):
        """The only FULLYBUILT script build took 4 minutes."""
        self.assertEqual(self.run_sql(estimate_duration, "script"),
                         timedelta(minutes=4))

    def test_duration_prefers_recipe(self):
        """Builds of the same recipe win over the type's history."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute("""
                INSERT INTO job (id, job_type, status, json_data)
                VALUES (30, 'build', 2, '{"recipe": "hello"}');
                INSERT INTO build_farm_job (job, build_type, processor, status,
                                            date_started, date_finished)
                VALUES (30, 'script', 1, 1, now() - interval '1 hour',
                        now() - interval '1 hour' + interval '90 seconds')""")
        self.assertEqual(self.run_sql(estimate_duration, "script", "hello"),
                         timedelta(seconds=90))
        # Another recipe with no history falls back to the type: median of
        # 4 minutes and 90 seconds.
        self.assertEqual(self.run_sql(estimate_duration, "script", "other"),
                         timedelta(seconds=165))

    def test_duration_default(self):
        """A type never built successfully gets the documented default."""
        self.assertEqual(self.run_sql(estimate_duration, "binarypackage"),
                         DEFAULT_DURATION)

    def test_expected_start(self):
        """Build 11 waits behind build 10 and the running build 12.

        Eligible builders: a1, a2. Work ahead: build 10 (10 min) plus what
        remains of build 12 on a1 (7 min estimated, 5 min gone: 2 min).
        12 min over 2 builders: 6 minutes from now.
        """
        with self.conn.cursor() as cur:
            cur.execute("SELECT now()")
            now = cur.fetchone()[0]
            start = expected_start(cur, 11, now)
        self.assertTrue(timedelta(minutes=6) - timedelta(seconds=5)
                        <= start - now <= timedelta(minutes=6),
                        start - now)

    def test_first_in_queue(self):
        """Build 10 only waits for the remains of build 12: 1 minute."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT now()")
            now = cur.fetchone()[0]
            start = expected_start(cur, 10, now)
        self.assertTrue(timedelta(seconds=55) <= start - now
                        <= timedelta(minutes=1), start - now)

    def test_no_builder_no_estimate(self):
        """Nobody builds riscv64: no expected start."""
        self.assertIsNone(self.run_sql(expected_start, 16))

    def test_not_waiting(self):
        """A running build has no expected start."""
        self.assertIsNone(self.run_sql(expected_start, 12))


class RequestBuildEstimateTests(DatabaseTestMixin, TestCase):
    """request_build stores the recipe and the learned estimate."""

    def test_request_uses_recipe_history(self):
        """A new build of recipe 'hello' is estimated from hello's builds."""
        from datetime import datetime, timezone

        from lp_services.buildmaster.queue import request_build

        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(SEED)
            cur.execute("""
                INSERT INTO job (id, job_type, status, json_data)
                VALUES (30, 'build', 2, '{"recipe": "hello"}');
                INSERT INTO build_farm_job (job, build_type, processor, status,
                                            date_started, date_finished)
                VALUES (30, 'script', 1, 1, now() - interval '1 hour',
                        now() - interval '1 hour' + interval '90 seconds');
                -- The seed chose its ids; new jobs come after them.
                SELECT setval('job_id_seq', 1000)""")
            job_id = request_build(cur, build_type="script", processor="amd64",
                                   now=datetime.now(timezone.utc),
                                   build_args={"script": "b.sh",
                                               "recipe": "hello"})
            cur.execute("SELECT j.json_data->>'recipe', bq.estimated_duration"
                        " FROM job j JOIN build_queue bq ON bq.job = j.id"
                        " WHERE j.id = %s", (job_id,))
            self.assertEqual(cur.fetchone(), ("hello", timedelta(seconds=90)))
