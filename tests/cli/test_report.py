"""Tests of ``lp-services report`` (lp_services.cli.report)."""

import json

from click.testing import CliRunner
from twisted.trial.unittest import TestCase

from lp_services.cli.main import cli
from lp_services.testing.database import DatabaseTestMixin


class ReportCommandTests(DatabaseTestMixin, TestCase):
    """report prints the ops views as tables and JSON."""

    def setUp(self):
        super().setUp()
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO job (job_type, status, last_error) VALUES"
                " ('noop', 3, '[bold]not markup[/bold]'), ('sleep', 0, NULL)")

    def invoke(self, *args):
        return CliRunner().invoke(cli, ["--database", self.database_url, *args],
                                  catch_exceptions=False)

    def test_work_json_lists_every_job(self):
        """report work --json gives one object per job, newest first."""
        result = self.invoke("report", "work", "--json")
        self.assertEqual(result.exit_code, 0, result.output)
        rows = json.loads(result.output)
        self.assertEqual([(r["type"], r["status"]) for r in rows],
                         [("sleep", "WAITING"), ("noop", "FAILED")])

    def test_work_filters(self):
        """--status and --type narrow the work report."""
        rows = json.loads(self.invoke("report", "work", "--json",
                                      "--status", "failed").output)
        self.assertEqual([r["type"] for r in rows], ["noop"])
        rows = json.loads(self.invoke("report", "work", "--json",
                                      "--type", "sleep").output)
        self.assertEqual([r["status"] for r in rows], ["WAITING"])

    def test_table_shows_text_verbatim(self):
        """A job error that looks like rich markup is printed as text."""
        result = self.invoke("report", "work")
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("[bold]not markup[/bold]", result.output)

    def test_every_report_runs(self):
        """Each report name prints a table without error."""
        for name in ("queue", "builders", "work", "failures", "durations"):
            result = self.invoke("report", name)
            self.assertEqual(result.exit_code, 0, result.output)
            self.assertIn("ops_" + name, result.output)

    def test_filters_only_on_work(self):
        """--type on another report is a usage error."""
        result = self.invoke("report", "queue", "--type", "x")
        self.assertEqual(result.exit_code, 2)
        self.assertIn("go with `report work`", result.output)
