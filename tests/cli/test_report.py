"""Tests of ``lp-services report`` (lp_services.cli.report)."""

import json

from click.testing import CliRunner
from twisted.trial.unittest import TestCase

from lp_services.cli.main import cli
from lp_services.testing.database import DatabaseTestMixin
from tests.cli.helpers import SeededDatabaseMixin


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


class NarrowTerminalTests(SeededDatabaseMixin, DatabaseTestMixin, TestCase):
    """At 80 columns report tables keep words whole and fit the width."""

    def render(self, name, width):
        import io

        from rich.console import Console

        from lp_services.cli.report import render_report
        from lp_services.ops.reports import fetch_report

        conn = self.connect()
        with conn.cursor() as cur:
            columns, rows = fetch_report(cur, name)
        out = io.StringIO()
        Console(file=out, width=width).print(
            render_report(name, columns, rows, width))
        return out.getvalue()

    def test_every_report_fits_80_columns(self):
        """Every line of every report is at most 80 columns, and no status
        word is split across lines ("COMP / LETE / D")."""
        for name in ("queue", "builders", "work", "failures", "durations"):
            text = self.render(name, 80)
            for line in text.splitlines():
                self.assertLessEqual(len(line), 80, "%s: %r" % (name, line))
            self.assertNotRegex(text, r"│\s*COMP\s*│", name)
        work = self.render("work", 80)
        self.assertIn("COMPLETED", work)
        self.assertIn("FAILED", work)

    def test_caption_names_what_was_left_out(self):
        """A column left out at 80 columns is named under the table."""
        text = " ".join(self.render("work", 80).split())
        self.assertIn("left out to fit 80 columns: date created", text)

    def test_wide_terminal_keeps_everything(self):
        """At 250 columns nothing is left out."""
        text = self.render("work", 250)
        self.assertNotIn("left out", text)
        self.assertIn("date created", text)


class DurationsChartTests(SeededDatabaseMixin, DatabaseTestMixin, TestCase):
    """report durations --chart: bars from ops_durations, in text."""

    def test_chart_lines(self):
        """One line per kind and type of ops_durations, its median and p90
        as figures; the longest p90 is the full bar, and the two parts of a
        bar differ in character, not colour."""
        result = self.invoke("report", "durations", "--chart")
        self.assertEqual(result.exit_code, 0, result.output)
        lines = result.output.splitlines()
        self.assertEqual(lines[0], "durations of successful work, 30 days: "
                         "█ median, ░ to p90")
        rows = json.loads(self.invoke("report", "durations", "--json").output)
        self.assertEqual(len(lines), 1 + len(rows))
        by_label = {line.split()[0]: line for line in lines[1:]}
        # SEED: native noop took 10 s and 30 s (p50 20 s, p90 28 s); the
        # one successful script build took 4 minutes.
        self.assertIn("p50 4m 00s  p90 4m 00s  (1)", by_label["build:script"])
        self.assertIn("p50 20s  p90 28s  (2)", by_label["native:noop"])
        longest = by_label["build:script"]
        self.assertNotIn("░", longest)
        self.assertIn("█" * 40, longest)
        noop = by_label["native:noop"]
        self.assertLess(noop.count("█"), noop.count("█") + noop.count("░"))
        for line in lines:
            self.assertLessEqual(len(line), 100)

    def test_chart_only_for_durations(self):
        """--chart on another report is a usage error."""
        result = self.invoke("report", "queue", "--chart")
        self.assertEqual(result.exit_code, 2)
        self.assertIn("--chart goes with `report durations`", result.output)
