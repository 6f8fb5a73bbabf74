"""The buildmaster's named SQL (lp_services.buildmaster.queries): the
transition checks made at import, and the plans of the hot statements
(the claim, the refresher's reads, finishing) on a farm with many queued
builds, read with EXPLAIN against real PostgreSQL."""

import importlib
from datetime import timedelta

from twisted.trial.unittest import TestCase

from lp_services.buildmaster import queries
from lp_services.job import status
from lp_services.job.status import InvalidTransition, JobStatus
from lp_services.testing.clock import EPOCH
from lp_services.testing.database import DatabaseTestMixin

QUEUED = 20000


class ImportCheckTests(TestCase):
    """Every job status edge the statements use is checked at import."""

    def test_a_removed_edge_breaks_the_import(self):
        """With RUNNING -> WAITING (a reset build) gone from the
        transition table, importing the module raises."""
        table = dict(status.TRANSITIONS)
        # Cleanups run last-in first-out: the reload after the table is back.
        self.addCleanup(importlib.reload, queries)
        self.patch(status, "TRANSITIONS", {
            **table, JobStatus.RUNNING: table[JobStatus.RUNNING]
            - {JobStatus.WAITING}})
        self.assertRaises(InvalidTransition, importlib.reload, queries)

    def test_statuses_come_from_the_enums(self):
        """The claim's numbers are the enums' (no bare status numbers)."""
        self.assertIn("j.status = %d" % JobStatus.WAITING, queries.CLAIM)
        self.assertIn("SET status = %d" % JobStatus.RUNNING, queries.CLAIM)


class QueuedFarmMixin(DatabaseTestMixin):
    """A farm of 200 amd64 builders and 20,000 builds queued for arm64,
    analyzed, with EXPLAIN helpers (shared with tests/ops)."""

    def setUp(self):
        super().setUp()
        conn = self.conn = self.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO processor (name) VALUES"
                        " ('amd64'), ('arm64'), ('riscv64')")
            cur.execute("""
                INSERT INTO builder (name, url)
                SELECT 'b' || i, 'http://127.0.0.1:' || (8000 + i)
                FROM generate_series(1, 200) i;
                INSERT INTO builder_processor (builder, processor)
                SELECT id, 1 FROM builder""")
            cur.execute("""
                WITH j AS (
                    INSERT INTO job (job_type, status, scheduled_start)
                    SELECT 'build', 0, %(t)s
                    FROM generate_series(1, %(n)s) RETURNING id),
                f AS (
                    INSERT INTO build_farm_job (job, build_type, processor)
                    SELECT id, 'script', 2 FROM j RETURNING job)
                INSERT INTO build_queue (job, build_farm_job, build_type,
                                         processor, lastscore)
                SELECT job, job, 'script', 2, job %% 1000 FROM f
                """, {"t": EPOCH, "n": QUEUED})
            cur.execute("ANALYZE")

    def plan(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            return cur.fetchone()[0][0]["Plan"]

    def nodes(self, node):
        yield node
        for child in node.get("Plans", ()):
            yield from self.nodes(child)

    def seq_scans(self, plan, table):
        return [n for n in self.nodes(plan)
                if n["Node Type"] == "Seq Scan"
                and n.get("Relation Name") == table]

    def indexes(self, plan):
        return {n.get("Index Name") for n in self.nodes(plan)} - {None}

class PlanTests(QueuedFarmMixin, TestCase):
    """EXPLAIN of the hot statements with 20,000 queued builds on another
    processor and 200 builders."""

    def test_claim_walks_the_candidate_index(self):
        """The claim for an amd64 builder probes build_queue through the
        candidate index and never scans the 20,000 arm64 builds."""
        plan = self.plan(queries.CLAIM, {
            "processors": [1], "virtualized": False, "resources": [],
            "now": EPOCH, "holder": "m", "lease_expires":
            EPOCH + timedelta(minutes=10), "builder": 1, "cookie": "c",
            "build_types": ["script"]})
        self.assertIn("build_queue__candidate__idx", self.indexes(plan))
        self.assertEqual(self.seq_scans(plan, "build_queue"), [])
        self.assertEqual(self.seq_scans(plan, "job"), [])

    def test_pending_work_probes_the_index(self):
        """Each refresh's pending-work read probes the candidate index per
        (processor, virtualized) pair, not the queue."""
        plan = self.plan(queries.PENDING_WORK)
        self.assertIn("build_queue__candidate__idx", self.indexes(plan),
                      plan)
        self.assertEqual(self.seq_scans(plan, "build_queue"), [])

    def test_one_builders_vitals_by_name(self):
        """A scanner's re-read of its own vitals reads its build through
        the builder index, never the queue or the jobs."""
        plan = self.plan(queries.VITALS, {"name": "b7"})
        self.assertEqual(self.seq_scans(plan, "build_queue"), [])
        self.assertEqual(self.seq_scans(plan, "job"), [])
        self.assertIn("build_queue__builder__key", self.indexes(plan))

    def test_finish_reads_by_primary_key(self):
        """Finishing locks the build's queue row by primary key."""
        plan = self.plan(queries.LOCK_DISPATCHED, {"job": 17, "cookie": "c"})
        self.assertEqual(self.indexes(plan), {"build_queue_pkey"})
        plan = self.plan(queries.FINISH_FARM_JOB.split(";")[0], {
            "status": 1, "now": EPOCH, "log": None, "dependencies": None,
            "job": 17})
        self.assertEqual(self.seq_scans(plan, "build_farm_job"), [])
