"""Tests of describe_work (lp_services.ops.work): one code path, both kinds."""

from datetime import timedelta

from twisted.trial.unittest import TestCase

from lp_services.testing.database import DatabaseTestMixin
from lp_services.ops.work import UnknownWork, describe_work
from tests.database.test_views import SEED

EXTRA = """
INSERT INTO library_file (id, sha1, size, filename) VALUES
  (1, repeat('a', 40), 100, 'buildlog.txt'),
  (2, repeat('b', 40), 7, 'out <1>.txt');
UPDATE build_farm_job SET log = 1 WHERE job = 13;
INSERT INTO build_file (build, library_file, filename) VALUES (13, 2, 'out <1>.txt');
-- A native recipe-like job 20 that build 10 depends on.
INSERT INTO job (id, job_type, status, requester, reason) VALUES
  (20, 'noop', 2, 'alice', 'checks the recipe');
UPDATE job SET prerequisite = 20 WHERE id = 10;
"""


class DescribeWorkTests(DatabaseTestMixin, TestCase):
    """describe_work on seeded builds and native jobs."""

    def setUp(self):
        super().setUp()
        self.conn = self.connect()
        with self.conn, self.conn.cursor() as cur:
            cur.execute(SEED + EXTRA)

    def describe(self, job_id, **kwargs):
        with self.conn.cursor() as cur:
            return describe_work(cur, job_id, **kwargs)

    def test_native_job(self):
        """A native job has the common part, its dependents and no build."""
        d = self.describe(20)
        self.assertEqual((d.kind, d.type, d.status, d.outcome),
                         ("native", "noop", "COMPLETED", "succeeded"))
        self.assertEqual((d.requester, d.reason), ("alice", "checks the recipe"))
        self.assertIsNone(d.build)
        self.assertEqual([(r.id, r.kind, r.status) for r in d.dependents],
                         [(10, "build", "WAITING")])

    def test_finished_build(self):
        """A finished build adds status, builder, log and files with URLs."""
        d = self.describe(13, file_url=lambda sha1, name: "u/%s/%s" % (sha1, name))
        self.assertEqual((d.kind, d.type, d.outcome), ("build", "script", "succeeded"))
        b = d.build
        self.assertEqual((b.build_status, b.processor, b.builder),
                         ("FULLYBUILT", "amd64", "a2"))
        self.assertEqual(b.log.filename, "buildlog.txt")
        self.assertEqual(b.log.url, "u/%s/buildlog.txt" % ("a" * 40))
        self.assertEqual([(f.filename, f.sha1, f.size) for f in b.files],
                         [("out <1>.txt", "b" * 40, 7)])
        self.assertEqual(d.duration, timedelta(minutes=4))

    def test_waiting_build_has_prerequisite_and_estimates(self):
        """A waiting build shows its prerequisite, score and expected start."""
        d = self.describe(10)
        self.assertEqual((d.prerequisite.id, d.prerequisite.kind,
                          d.prerequisite.status), (20, "native", "COMPLETED"))
        self.assertEqual(d.build.estimated_duration, timedelta(minutes=10))
        self.assertIsNotNone(d.build.expected_start)
        self.assertIsNone(d.build.builder)

    def test_unknown_id(self):
        """An id that names nothing raises UnknownWork."""
        self.assertRaises(UnknownWork, self.describe, 424242)
        self.assertRaises(UnknownWork, self.describe, "10")
