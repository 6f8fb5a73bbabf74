"""Tests of ``lp-services db`` (lp_services.cli.db) through click's runner."""

from click.testing import CliRunner
from twisted.trial.unittest import TestCase

from lp_services.cli.main import cli
from lp_services.testing.database import create_test_database


class DbCommandTests(TestCase):
    """db upgrade / status / url against a real server given by URL."""

    def invoke(self, *args, env=None):
        return CliRunner().invoke(cli, list(args), env=env or {},
                                  catch_exceptions=False)

    def test_upgrade_twice(self):
        """The first upgrade creates the schema; the second says up to date."""
        url = create_test_database(empty=True)
        first = self.invoke("--database", url, "db", "upgrade")
        self.assertEqual(first.exit_code, 0, first.output)
        self.assertIn("created the schema", first.output)
        second = self.invoke("--database", url, "db", "upgrade")
        self.assertEqual(second.exit_code, 0, second.output)
        self.assertIn("schema is up to date", second.output)

    def test_status_reports_revision(self):
        """status names an external server and its revision."""
        url = create_test_database()
        result = self.invoke("--database", url, "db", "status")
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("external", result.output)
        self.assertIn("revision", result.output)

    def test_database_url_from_environment(self):
        """LP_DATABASE_URL is honoured like --database."""
        url = create_test_database()
        result = self.invoke("db", "url", env={"LP_DATABASE_URL": url})
        self.assertEqual(result.output.strip(), url)

    def test_unreachable_database_is_one_line(self):
        """A DSN that cannot be reached gives one clear line and exit 1."""
        result = self.invoke(
            "--database", "postgresql://nobody:secret@127.0.0.1:1/x",
            "db", "upgrade")
        self.assertEqual(result.exit_code, 1)
        lines = result.output.strip().splitlines()
        self.assertEqual(len(lines), 1, result.output)
        self.assertIn("cannot reach the database", lines[0])
        self.assertNotIn("secret", lines[0])
        self.assertNotIn("Traceback", result.output)

    def test_start_refuses_with_external_url(self):
        """db start with a URL set says there is nothing to start."""
        result = self.invoke("--database", "postgresql://x@127.0.0.1/x",
                             "db", "start")
        self.assertEqual(result.exit_code, 1)
        self.assertIn("manages the embedded server", result.output)
