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


class WaitingReasonTests(DatabaseTestMixin, TestCase):
    """Why a waiting build is not dispatched, in show and in ops_queue:
    no available builder, or none that offers its build type (a farm of
    launchpad-buildd builders offers no script builds)."""

    def setUp(self):
        super().setUp()
        self.conn = self.connect()
        with self.conn, self.conn.cursor() as cur:
            cur.execute(SEED)

    def reason(self, job_id):
        with self.conn.cursor() as cur:
            return describe_work(cur, job_id).build.waiting_reason

    def queue(self, processor):
        with self.conn.cursor() as cur:
            cur.execute("SELECT unoffered_builds, unoffered_types"
                        " FROM ops_queue WHERE processor = %s", (processor,))
            return cur.fetchone()

    def offer(self, *types):
        with self.conn, self.conn.cursor() as cur:
            cur.execute("UPDATE builder SET build_types = %s"
                        " WHERE id IN (1, 2)", (list(types),))

    def test_no_builder_at_all(self):
        """The riscv64 build has no available builder."""
        self.assertEqual(self.reason(16),
                         "no available builder for riscv64 "
                         "(non-virtualized)")
        self.assertEqual(self.queue("riscv64"), (1, "binarypackage"))

    def test_builders_not_read_yet_count_as_offering(self):
        """Builders whose info() is not read yet: no reason given."""
        self.assertIsNone(self.reason(10))
        self.assertEqual(self.queue("amd64"), (0, None))

    def test_no_builder_offers_the_type(self):
        """amd64 builders that offer only binarypackage: both waiting
        script builds say why, and ops_queue counts them; once a builder
        offers script, nothing is said."""
        self.offer("binarypackage")
        self.assertEqual(self.reason(10),
                         "no available builder for amd64 (non-virtualized) "
                         "offers build type script")
        self.assertEqual(self.queue("amd64"), (2, "script"))
        self.offer("binarypackage", "script")
        self.assertIsNone(self.reason(11))
        self.assertEqual(self.queue("amd64"), (0, None))

    def test_running_and_finished_builds_have_no_reason(self):
        """Only a waiting build has a reason."""
        self.offer("binarypackage")
        self.assertIsNone(self.reason(12))
        self.assertIsNone(self.reason(13))


class MasterOfBuildTests(DatabaseTestMixin, TestCase):
    """show names the buildmaster holding a running build's builder."""

    def setUp(self):
        super().setUp()
        self.conn = self.connect()
        with self.conn, self.conn.cursor() as cur:
            cur.execute(SEED)
            cur.execute("INSERT INTO buildmaster (name, host, pid,"
                        " date_started, heartbeat) VALUES"
                        " ('m1', 'h', 1, now(), now())")

    def master_of(self, job_id, lease):
        with self.conn, self.conn.cursor() as cur:
            cur.execute("UPDATE builder SET owner = 'm1',"
                        " lease_expires = now() + %s WHERE name = 'a1'",
                        (lease,))
        with self.conn.cursor() as cur:
            return describe_work(cur, job_id).build.master

    def test_running_build(self):
        """Build 12 runs on a1, whose lease m1 holds: show says m1; with
        the lease expired, nobody; a finished build on a1, nobody."""
        self.assertEqual(self.master_of(12, timedelta(seconds=30)), "m1")
        self.assertIsNone(self.master_of(12, timedelta(seconds=-1)))
        self.assertIsNone(self.master_of(15, timedelta(seconds=30)))
