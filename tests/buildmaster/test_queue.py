"""Tests of the build queue's SQL (lp_services.buildmaster.queue)."""

from datetime import timedelta

import psycopg2
from twisted.trial.unittest import TestCase

from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.scoring import effective_score
from tests.buildmaster.support import FarmMixin


class QueueTests(FarmMixin, TestCase):
    """Requesting, claiming, resetting, finishing, cancelling builds."""

    def setUp(self):
        super().setUp()
        self.builder = self.add_builder("b1", ["amd64"])
        self.add_builder("b2", ["arm64"])
        self.chroot = self.add_chroot()

    def claim(self, builder=None, processors=None, virtualized=False,
              resources=(), now=None, build_types=("script",)):
        amd64 = self.query("SELECT id FROM processor WHERE name='amd64'")[0][0]
        return self.sql(Q.claim_build, builder_id=builder or self.builder,
                        processors=processors or [amd64],
                        virtualized=virtualized, resources=list(resources),
                        now=now or self.now(), holder="me",
                        lease=timedelta(minutes=10),
                        build_types=list(build_types))

    def test_request_creates_three_rows(self):
        """request_build creates job, build_farm_job and build_queue rows
        keyed by one id, WAITING/NEEDSBUILD."""
        job = self.request(reason="test")
        rows = self.query(
            "SELECT j.job_type, j.status, f.status, q.builder FROM job j"
            " JOIN build_farm_job f ON f.job = j.id"
            " JOIN build_queue q ON q.job = j.id")
        self.assertEqual(rows, [("build", 0, 0, None)])
        self.assertEqual(self.build_row(job)["status"], "NEEDSBUILD")

    def test_request_refuses_unknown_processor(self):
        """An unknown processor is a BuildRequestError; nothing written."""
        with self.assertRaises(Q.BuildRequestError) as caught:
            self.request("sparc")
        self.assertIn("unknown processor 'sparc'", str(caught.exception))
        self.assertEqual(self.query("SELECT count(*) FROM job"), [(0,)])

    def test_request_refuses_unknown_type_and_prerequisite(self):
        """Unknown build types and prerequisite jobs are refused."""
        with self.assertRaises(Q.BuildRequestError):
            self.request(build_type="nonsense")
        with self.assertRaises(Q.BuildRequestError):
            self.request(prerequisite=424242)
        with self.assertRaises(Q.BuildRequestError):
            self.request(filemap={"../x": self.chroot})
        with self.assertRaises(Q.BuildRequestError):
            self.request(filemap={"x": "0" * 40})
        self.assertEqual(self.query("SELECT count(*) FROM job"), [(0,)])

    def test_binarypackage_gets_launchpad_buildd_args(self):
        """A binarypackage request without suite or ogrecomponent (which
        launchpad-buildd needs) gets them from its series, pocket and
        component; what it says itself is kept."""
        job = self.request(build_type="binarypackage", series="bookworm",
                           pocket="security", component="main", private=True,
                           filemap={"p_1.dsc": self.chroot})
        args = self.query("SELECT build_args FROM build_queue WHERE job = %s",
                          (job,))[0][0]
        self.assertEqual(args, {
            "series": "bookworm", "suite": "bookworm-security",
            "ogrecomponent": "main", "archive_purpose": "PRIMARY",
            "distribution": "debian", "arch_indep": True,
            "archive_private": True})
        job = self.request(build_type="binarypackage",
                           build_args={"suite": "sid", "arch_indep": False},
                           filemap={"p_1.dsc": self.chroot})
        args = self.query("SELECT build_args FROM build_queue WHERE job = %s",
                          (job,))[0][0]
        self.assertEqual((args["suite"], args["arch_indep"]), ("sid", False))

    def test_binarypackage_refusals(self):
        """No .dsc, two without 'dsc', a 'dsc' not among the files, a
        wrong type or an unknown archive purpose: refused, nothing
        written."""
        for filemap, args in (
                ({}, {}),
                ({"a.dsc": self.chroot, "b.dsc": self.chroot}, {}),
                ({"a.dsc": self.chroot}, {"dsc": "b.dsc"}),
                ({"a.dsc": self.chroot}, {"arch_indep": "yes"}),
                ({"a.dsc": self.chroot}, {"suite": 3}),
                ({"a.dsc": self.chroot}, {"archive_purpose": "OTHER"}),
                ({"a.dsc": self.chroot}, {"archives": "deb x y z"})):
            with self.assertRaises(Q.BuildRequestError):
                self.request(build_type="binarypackage", filemap=filemap,
                             build_args=args)
        self.assertEqual(self.query("SELECT count(*) FROM job"), [(0,)])

    def test_request_notifies(self):
        """A request sends `queued <processor> <virt>` on lp_build."""
        conn = self.connect()
        conn.autocommit = True
        conn.cursor().execute("LISTEN lp_build")
        self.request()
        import select
        for _ in range(20):
            conn.poll()
            if conn.notifies:
                break
            select.select([conn], [], [], 0.1)
        self.assertEqual([n.payload.split()[0] for n in conn.notifies],
                         ["queued"])

    def test_claim_takes_highest_score_then_oldest(self):
        """The claim picks the highest score, then the lowest id."""
        low = self.request(urgency="low")
        first = self.request(urgency="high")
        second = self.request(urgency="high")
        self.assertEqual(self.claim().job_id, first)
        self.assertEqual(self.claim(builder=self.add_builder(
            "b3", ["amd64"])).job_id, second)
        self.assertEqual(self.claim(builder=self.add_builder(
            "b4", ["amd64"])).job_id, low)

    def test_claim_sets_running_cookie_and_lease(self):
        """A claim makes the job RUNNING under a lease and the queue row
        carries the builder and a fresh cookie; the chroot is returned."""
        job = self.request()
        claim = self.claim()
        self.assertEqual(claim.chroot_sha1, self.chroot)
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"], row["builder"],
                          row["cookie"], row["lease_holder"],
                          row["attempt_count"]),
                         ("RUNNING", "BUILDING", "b1", claim.cookie, "me", 1))

    def test_claim_respects_constraints(self):
        """Processor, virtualization, resources, scheduled start and the
        prerequisite must all allow the build."""
        self.request("arm64")
        self.request(virtualized=True)
        self.request(required_resources=["gpu"])
        self.request(scheduled_start=self.now() + timedelta(hours=1))
        prereq = self.sql(lambda cur: (cur.execute(
            "INSERT INTO job (job_type) VALUES ('noop') RETURNING id"),
            cur.fetchone()[0])[1])
        self.request(prerequisite=prereq)
        self.assertIsNone(self.claim())
        self.assertIsNotNone(self.claim(resources=["gpu", "big"]))
        self.sql(lambda cur: cur.execute(
            "UPDATE job SET status = 2 WHERE id = %s", (prereq,)))
        self.assertIsNotNone(self.claim(builder=self.add_builder("b5")))
        later = self.now() + timedelta(hours=2)
        self.assertIsNotNone(self.claim(builder=self.add_builder("b6"),
                                        now=later))
        self.assertIsNone(self.claim(builder=self.add_builder("b7"),
                                     now=later))

    def test_claim_multiple_processors(self):
        """A builder of two processors gets the best build of either."""
        self.request("amd64", urgency="low")
        best = self.request("arm64", urgency="high")
        procs = [r[0] for r in self.query("SELECT id FROM processor")]
        self.assertEqual(self.claim(processors=procs).job_id, best)

    def test_one_build_per_builder(self):
        """The unique index refuses a second build on one builder."""
        self.request()
        self.request()
        self.claim()
        self.assertRaises(psycopg2.errors.UniqueViolation, self.claim)

    def test_skip_locked(self):
        """A build locked by another claimer is skipped, not waited for."""
        first = self.request(urgency="high")
        second = self.request()
        other = self.connect()
        other.cursor().execute(
            "SELECT 1 FROM build_queue WHERE job = %s FOR NO KEY UPDATE",
            (first,))
        self.assertEqual(self.claim().job_id, second)
        other.rollback()

    def test_reset_respects_retry_policy(self):
        """A reset sends the build back to WAITING (with back-off) until
        its retries are spent; then it fails."""
        job = self.request(max_retries=1)
        claim = self.claim()
        self.assertEqual(self.sql(Q.reset_build, job, claim.cookie,
                                  self.now(), "lost"), "waiting")
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"], row["builder"],
                          row["last_error"]),
                         ("WAITING", "NEEDSBUILD", None, "lost"))
        claim = self.claim()
        self.assertEqual(self.sql(Q.reset_build, job, claim.cookie,
                                  self.now(), "lost"), "failed")
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"]),
                         ("FAILED", "FAILEDTOBUILD"))

    def test_reset_with_stale_cookie_changes_nothing(self):
        """A reset with a cookie the build no longer has does nothing."""
        job = self.request()
        self.claim()
        self.assertIsNone(self.sql(Q.reset_build, job, "stale", self.now(),
                                   "x"))
        self.assertEqual(self.build_row(job)["job_status"], "RUNNING")

    def test_finish_build(self):
        """finish_build completes the job, records status, log and files,
        deletes the queue row and returns the builder."""
        job = self.request()
        claim = self.claim()
        log = self.query("SELECT id FROM library_file")[0][0]
        self.assertEqual(self.sql(
            Q.finish_build, job, claim.cookie, self.now(),
            Q.BuildStatus.FULLYBUILT, log_id=log,
            files=[("out.txt", log)]), self.builder)
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"],
                          [f["filename"] for f in row["files"]]),
                         ("COMPLETED", "FULLYBUILT", ["out.txt"]))
        self.assertEqual(self.query("SELECT count(*) FROM build_queue"),
                         [(0,)])

    def test_cancel_waiting_build(self):
        """Cancelling a build not on a builder cancels it at once."""
        job = self.request()
        self.assertEqual(self.sql(Q.cancel_build, job, self.now()),
                         Q.BuildStatus.CANCELLED)
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"]),
                         ("FAILED", "CANCELLED"))
        with self.assertRaises(Q.BuildRequestError):
            self.sql(Q.cancel_build, job, self.now())
        with self.assertRaises(Q.BuildNotFound):
            self.sql(Q.cancel_build, 99999, self.now())

    def test_cancel_running_build(self):
        """Cancelling a dispatched build marks it CANCELLING."""
        job = self.request()
        self.claim()
        self.assertEqual(self.sql(Q.cancel_build, job, self.now()),
                         Q.BuildStatus.CANCELLING)
        self.assertEqual(self.build_row(job)["job_status"], "RUNNING")

    def test_rescore_pins(self):
        """A rescore sets the score now and pins it; ageing continues."""
        job = self.request()
        self.sql(Q.rescore_build, job, 7777, self.now())
        row = self.build_row(job)
        self.assertEqual((row["score"], row["score_pinned"]), (7777, True))
        lastscore = self.query("SELECT lastscore FROM build_queue")[0][0]
        self.assertEqual(effective_score(
            lastscore, self.now() + timedelta(minutes=10)), 7787)

    def test_orphans_fail(self):
        """A waiting build whose prerequisite failed is failed too."""
        prereq = self.sql(lambda cur: (cur.execute(
            "INSERT INTO job (job_type, status, last_error)"
            " VALUES ('noop', 3, 'boom') RETURNING id"),
            cur.fetchone()[0])[1])
        job = self.request(prerequisite=prereq)
        self.assertEqual(self.sql(Q.fail_orphaned_builds, self.now()), 1)
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"]),
                         ("FAILED", "FAILEDTOBUILD"))
        self.assertIn("prerequisite job %d failed: boom" % prereq,
                      row["last_error"])
