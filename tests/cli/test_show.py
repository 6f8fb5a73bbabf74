"""Tests of ``lp-services show`` (lp_services.cli.show)."""

import json

from click.testing import CliRunner
from twisted.trial.unittest import TestCase

from lp_services.cli.main import cli
from lp_services.testing.database import DatabaseTestMixin
from tests.cli.helpers import SeededDatabaseMixin
from tests.database.test_views import SEED


class ShowCommandTests(SeededDatabaseMixin, DatabaseTestMixin, TestCase):
    """show prints builds and native jobs through one code path."""

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

    def test_waiting_build_says_why(self):
        """A waiting build whose processor has no available builder says
        so (riscv64 in the seed); --json carries the same reason."""
        result = self.invoke("show", "16")
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("no available builder for riscv64 (non-virtualized)",
                      result.output)
        data = json.loads(self.invoke("show", "16", "--json").output)
        self.assertEqual(data["build"]["waiting_reason"],
                         "no available builder for riscv64 "
                         "(non-virtualized)")

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


class FailedBuildShowTests(DatabaseTestMixin, TestCase):
    """show of a failed build: the end of its log, and where to get it."""

    LOG = "".join("step %d\n" % n for n in range(1, 31)) + "error: it broke\n"

    def setUp(self):
        super().setUp()
        import hashlib
        from pathlib import Path

        from lp_services.filestore.store import FileStore

        self.home = Path(self.mktemp()).resolve()
        data = self.LOG.encode()
        self.sha1 = hashlib.sha1(data).hexdigest()
        path = FileStore(self.home / "files").path_for(self.sha1)
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(SEED)
            cur.execute(
                "INSERT INTO library_file (id, sha1, size, filename)"
                " VALUES (1, %s, %s, 'buildlog_14.txt');"
                " UPDATE build_farm_job SET log = 1 WHERE job = 14",
                (self.sha1, len(data)))

    def invoke(self, *args, env=None):
        return CliRunner().invoke(
            cli, ["--database", self.database_url, "--home", str(self.home),
                  *args], env=env or {}, catch_exceptions=False)

    def test_log_tail(self):
        """The last 15 lines of the stored log follow the details."""
        result = self.invoke("show", "14")
        self.assertEqual(result.exit_code, 0, result.output)
        tail = result.output.split("log tail:\n", 1)[1]
        self.assertEqual(tail, "".join(
            "  | %s\n" % line for line in self.LOG.splitlines()[-15:]))

    def test_without_files_url(self):
        """No LP_FILES_URL: the log is named and the way to links is said."""
        result = self.invoke("show", "14", env={"LP_FILES_URL": ""})
        self.assertIn("  log:               buildlog_14.txt  sha1 %s  %d bytes\n"
                      % (self.sha1, len(self.LOG)), result.output)
        self.assertIn("  (download links: set LP_FILES_URL to the "
                      "buildmaster's --files-url)\n", result.output)

    def test_with_files_url(self):
        """With LP_FILES_URL the log line ends in its download URL."""
        result = self.invoke("show", "14",
                             env={"LP_FILES_URL": "http://master:8010/"})
        self.assertIn("buildlog_14.txt  sha1 %s  %d bytes  "
                      "http://master:8010/files/%s/buildlog_14.txt\n"
                      % (self.sha1, len(self.LOG), self.sha1), result.output)
        self.assertNotIn("set LP_FILES_URL", result.output)

    def test_json_has_the_tail(self):
        """--json carries the same tail as build.stored_log_tail."""
        data = json.loads(self.invoke("show", "14", "--json").output)
        self.assertEqual(data["build"]["stored_log_tail"],
                         "".join(self.LOG.splitlines(True)[-15:]).rstrip("\n"))
