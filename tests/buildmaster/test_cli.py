"""Tests of `lp-services builder|chroot|build` (click's runner, real
PostgreSQL)."""

import json
import os

from click.testing import CliRunner
from twisted.trial.unittest import TestCase

from lp_services.cli.main import cli
from lp_services.testing.database import DatabaseTestMixin


class CLITests(DatabaseTestMixin, TestCase):
    """The commands work and user errors are one line, nothing written."""

    def setUp(self):
        super().setUp()
        self.home = self.mktemp()
        os.makedirs(self.home)
        self.runner = CliRunner()

    def run_cli(self, *args, ok=True):
        result = self.runner.invoke(
            cli, ["--database", self.database_url, "--home", self.home]
            + list(args), catch_exceptions=False)
        if ok:
            self.assertEqual(result.exit_code, 0, result.output)
        return result

    def count(self, table):
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM %s" % table)
            return cur.fetchone()[0]

    def write(self, name, content):
        path = os.path.join(self.home, name)
        with open(path, "w") as f:
            f.write(content)
        return path

    def test_builder_add_list_modes(self):
        """builder add, list --json, disable --reason, manual, enable."""
        self.run_cli("builder", "add", "b1", "--url", "http://h:8221",
                     "--processor", "amd64", "--secret", "s")
        self.run_cli("builder", "disable", "b1", "--reason", "bad disk")
        rows = json.loads(self.run_cli("builder", "list", "--json").output)
        self.assertEqual((rows[0]["name"], rows[0]["builderok"],
                          rows[0]["failnotes"], rows[0]["processors"]),
                         ("b1", False, "bad disk", ["amd64"]))
        self.run_cli("builder", "manual", "b1")
        self.run_cli("builder", "enable", "b1")
        rows = json.loads(self.run_cli("builder", "list", "--json").output)
        self.assertEqual((rows[0]["builderok"], rows[0]["manual"]),
                         (True, False))
        self.assertIn("b1", self.run_cli("builder", "list").output)

    def test_builder_errors(self):
        """Unknown builders, duplicates, a virtual builder without reset
        command: one clear line, exit 1, nothing written."""
        result = self.run_cli("builder", "enable", "nope", ok=False)
        self.assertEqual(result.exit_code, 1)
        self.assertEqual(result.output.strip(),
                         "Error: unknown builder 'nope'")
        result = self.run_cli("builder", "add", "v", "--url", "http://h",
                              "--processor", "amd64", "--virtualized",
                              ok=False)
        self.assertIn("--reset-command", result.output)
        self.assertEqual(self.count("builder"), 0)

    def test_request_show_rescore_cancel(self):
        """chroot add, build request (script + file), show --json,
        rescore, cancel."""
        self.run_cli("builder", "add", "b1", "--url", "http://h:8221",
                     "--processor", "amd64")
        chroot = self.write("chroot.tar", "tar")
        self.assertIn("chroot for amd64/default",
                      self.run_cli("chroot", "add", "--processor", "amd64",
                                   chroot).output)
        script = self.write("build.sh", "echo hi > out/hi\n")
        extra = self.write("data.txt", "data")
        job = int(self.run_cli("build", "request", "--type", "script",
                               "--processor", "amd64", "--script", script,
                               "--file", extra, "--urgency", "high")
                  .output.strip())
        info = json.loads(self.run_cli("build", "show", str(job),
                                       "--json").output)["build"]
        self.assertEqual((info["build_status"], info["build_args"],
                          sorted(info["filemap"])),
                         ("NEEDSBUILD", {"script": "build.sh"},
                          ["build.sh", "data.txt"]))
        self.run_cli("build", "rescore", str(job), "9000")
        info = json.loads(self.run_cli("build", "show", str(job),
                                       "--json").output)["build"]
        # The effective score; a minute boundary between the rescore and
        # the show ages it by one point.
        self.assertIn(info["score"], (9000, 9001))
        self.assertTrue(info["score_pinned"])
        self.assertIn("CANCELLED",
                      self.run_cli("build", "cancel", str(job)).output)
        self.assertIn("CANCELLED", self.run_cli("build", "show",
                                                str(job)).output)

    def test_mode_changes_are_timed(self):
        """disable, manual and enable restart the builder's time in state."""
        self.run_cli("builder", "add", "b1", "--url", "http://h:8221",
                     "--processor", "amd64")
        conn = self.connect()
        # An operator's disable reads "disabled", not "failed" (issue 17).
        for mode, state in (("disable", "disabled"), ("manual", "disabled"),
                            ("enable", "idle")):
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE builder SET date_state_changed ="
                            " now() - interval '1 day',"
                            " date_clean_status_changed = now(),"
                            " clean_status = 0")
            self.run_cli("builder", mode, "b1")
            with conn, conn.cursor() as cur:
                cur.execute("SELECT state, time_in_state < interval '1 hour',"
                            " now() - date_state_changed < interval '1 hour'"
                            " FROM ops_builders JOIN builder USING (id)")
                self.assertEqual(cur.fetchone(), (state, True, True), mode)

    def test_request_scoring_inputs(self):
        """--private, --pocket and --component raise the stored score by the
        documented amounts (docs/scoring.md)."""
        from lp_services.buildmaster.scoring import COMPONENT, POCKET, PRIVATE_BOOST

        self.run_cli("builder", "add", "b1", "--url", "http://h:8221",
                     "--processor", "amd64")
        script = self.write("build.sh", "true\n")

        def score(*extra):
            job = self.run_cli("build", "request", "--type", "script",
                               "--processor", "amd64", "--script", script,
                               *extra).output.strip()
            return json.loads(self.run_cli("build", "show", job,
                                           "--json").output)["build"]["score"]

        plain = score()
        # Scores age one point a minute: the two requests may straddle a
        # minute boundary, hence the delta of one.
        self.assertAlmostEqual(
            score("--private", "--pocket", "security", "--component", "main")
            - plain, PRIVATE_BOOST + POCKET["security"] + COMPONENT["main"],
            delta=1)
        result = self.run_cli("build", "request", "--type", "script",
                              "--processor", "amd64", "--script", script,
                              "--pocket", "nowhere", ok=False)
        self.assertEqual(result.exit_code, 2)

    def test_request_errors_write_nothing(self):
        """Unknown processor, build type, prerequisite or id: one line,
        nothing written (not even the files)."""
        self.run_cli("builder", "add", "b1", "--url", "http://h:8221",
                     "--processor", "amd64")
        script = self.write("build.sh", "true\n")
        for args, message in [
                (["--type", "script", "--processor", "sparc"],
                 "unknown processor 'sparc'"),
                (["--type", "nonsense", "--processor", "amd64"],
                 "unknown build type 'nonsense'"),
                (["--type", "script", "--processor", "amd64", "--after",
                  "999"], "unknown prerequisite job 999")]:
            result = self.run_cli("build", "request", "--script", script,
                                  *args, ok=False)
            self.assertEqual(result.exit_code, 1)
            self.assertIn(message, result.output)
            self.assertEqual(len(result.output.strip().splitlines()), 1)
        self.assertEqual(self.count("job"), 0)
        self.assertEqual(self.count("library_file"), 0)
        self.assertFalse(os.path.exists(os.path.join(self.home, "files")))
        for command in (["show", "42"], ["cancel", "42"],
                        ["rescore", "42", "1"]):
            result = self.run_cli("build", *command, ok=False)
            self.assertEqual(result.output.strip(),
                             "Error: no build with id 42")
        result = self.run_cli("chroot", "add", "--processor", "sparc",
                              script, ok=False)
        self.assertIn("unknown processor", result.output)

    def test_unreachable_database(self):
        """No database: one clear line, exit 1."""
        for args in (["build", "show", "1"], ["builder", "list"]):
            result = self.runner.invoke(
                cli, ["--database", "postgresql://127.0.0.1:1/x"] + args)
            self.assertEqual(result.exit_code, 1)
            self.assertEqual(len(result.output.strip().splitlines()), 1)
            self.assertIn("cannot reach the database", result.output)
