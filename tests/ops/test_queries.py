"""The read model's named SQL (lp_services.ops.queries): report filters
checked before they become SQL, and the plans of what every build page
and the status page run, read with EXPLAIN against real PostgreSQL on a
farm with 20,000 queued builds."""

from twisted.trial.unittest import SynchronousTestCase, TestCase

from lp_services.buildmaster import queries as BQ
from lp_services.ops import queries
from tests.buildmaster.test_queries import QueuedFarmMixin


class ReportStatementTests(SynchronousTestCase):
    """Report names and filter columns become SQL identifiers: only the
    known ones get through."""

    def test_filters_are_parameters(self):
        """A filter column becomes ``column = %(column)s``; the value never
        enters the text."""
        sql = queries.report_statement("work", ["kind", "status"], limit=5)
        self.assertEqual(
            sql, "SELECT * FROM ops_work WHERE kind = %(kind)s AND "
                 "status = %(status)s ORDER BY id DESC LIMIT 5")

    def test_unknown_report_or_column_refused(self):
        """An unknown report is a KeyError; a column the report cannot be
        filtered on (an injection attempt included) a ValueError."""
        self.assertRaises(KeyError, queries.report_statement, "nope", [])
        self.assertRaises(ValueError, queries.report_statement, "work",
                          ["kind; DROP TABLE job"])
        self.assertRaises(ValueError, queries.report_statement, "queue",
                          ["kind"])


class ReadPlanTests(QueuedFarmMixin, TestCase):
    """Pages read one job by its keys, never the queue."""

    def test_show_reads_by_key(self):
        """``show`` of one queued build: its work row, its build part and
        its files are read by key; no sequential scan of job or
        build_queue."""
        for statement in (queries.WORK, queries.BUILD_DETAILS,
                          queries.BUILD_FILES, queries.DEPENDENTS):
            plan = self.plan(statement, {"id": 17})
            self.assertEqual(self.seq_scans(plan, "job"), [], statement)
            self.assertEqual(self.seq_scans(plan, "build_queue"), [],
                             statement)

    def test_running_logtails_by_key(self):
        """The status page's builder cards read their builds' logtails
        (and whether each is private work) by primary key."""
        plan = self.plan(queries.RUNNING_LOGTAILS, {"jobs": [17, 18]})
        self.assertEqual(self.indexes(plan), {"build_queue_pkey", "job_pkey"})

    def test_expected_start_of_a_build_with_no_builder(self):
        """A build page's expected start for an arm64 build (no arm64
        builder) finds its own row by key and no eligible builder."""
        plan = self.plan(BQ.EXPECTED_START, {"id": 17, "now": None})
        self.assertIn("build_queue_pkey", self.indexes(plan))
