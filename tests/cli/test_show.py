"""Tests of ``lp-services show`` (lp_services.cli.show)."""

import json

from click.testing import CliRunner
from twisted.trial.unittest import TestCase

from lp_services.cli.main import cli
from lp_services.testing.database import DatabaseTestMixin
from tests.database.test_views import SEED


class ShowCommandTests(DatabaseTestMixin, TestCase):
    """show prints builds and native jobs through one code path."""

    def setUp(self):
        super().setUp()
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(SEED)

    def invoke(self, *args):
        return CliRunner().invoke(cli, ["--database", self.database_url, *args],
                                  catch_exceptions=False)

    def test_native(self):
        """A native job prints its kind, type, status and error."""
        result = self.invoke("show", "3")
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("native 3: noop FAILED", result.output)
        self.assertIn("boom", result.output)

    def test_build(self):
        """A build adds its build status, processor and builder."""
        result = self.invoke("show", "12")
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("build 12: script RUNNING", result.output)
        self.assertIn("BUILDING", result.output)
        self.assertIn("a1", result.output)

    def test_json(self):
        """--json gives the same details as JSON."""
        data = json.loads(self.invoke("show", "13", "--json").output)
        self.assertEqual((data["kind"], data["build"]["build_status"]),
                         ("build", "FULLYBUILT"))
        self.assertEqual(data["duration"], 240.0)

    def test_unknown(self):
        """An unknown id is one clear error line and exit 1."""
        result = self.invoke("show", "999")
        self.assertEqual(result.exit_code, 1)
        self.assertIn("no job or build with id 999", result.output)
