"""``lp-services build show|rescore|cancel`` (lp_services.cli.build) over
the ops views' seed."""

import json
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.testing.database import DatabaseTestMixin
from tests.cli.helpers import invoke
from tests.database.test_views import SEED


def without_expected_start(output: str) -> str:
    return "".join(line for line in output.splitlines(True)
                   if "expected start:" not in line)


class BuildCommandTests(DatabaseTestMixin, TestCase):
    """build show is show; rescore takes negative scores."""

    def setUp(self):
        super().setUp()
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(SEED)
        self.home = str(Path(self.mktemp()).resolve())

    def run_cli(self, *args, env=None):
        return invoke("--database", self.database_url, "--home", self.home,
                      *args, env=env)

    def test_rescore_negative(self):
        """`build rescore 10 -5`: -5 is the score, not an option; show then
        prints the effective score -5, pinned, as build show does."""
        result = self.run_cli("build", "rescore", "10", "-5")
        self.assertEqual((result.exit_code, result.output),
                         (0, "build 10: score -5 (pinned)\n"))
        shown = self.run_cli("show", "10").output
        # The CLI's clock and the database's agree to the minute; a minute
        # boundary between the two commands ages the build by one point.
        self.assertTrue("score:             -5 (pinned)" in shown
                        or "score:             -4 (pinned)" in shown, shown)
        self.assertNotIn("-48", shown)
        # Direct mode records the change as the local user's.
        self.assertRegex(shown, r"change: .* rescore by local:\S+: -5\n")
        # The same layout from build show (but for the expected start,
        # which each command computes from its own now()).
        self.assertEqual(
            without_expected_start(self.run_cli("build", "show", "10").output),
            without_expected_start(shown))

    def test_rescore_json(self):
        """rescore --json says what it set."""
        result = self.run_cli("build", "rescore", "10", "7", "--json")
        self.assertEqual(json.loads(result.output),
                         {"id": 10, "score": 7, "score_pinned": True})

    def test_rescore_not_waiting(self):
        """Rescoring a running build: one line, exit 1."""
        result = self.run_cli("build", "rescore", "12", "-5")
        self.assertEqual((result.exit_code, result.stderr),
                         (1, "Error: build 12 is not waiting; only a waiting "
                             "build can be rescored\n"))

    def test_build_show_is_show(self):
        """build show and job show print exactly what show prints, in
        text and in JSON."""
        for job_id in ("12", "14"):
            shown = self.run_cli("show", job_id)
            self.assertEqual(shown.exit_code, 0, shown.output)
            self.assertEqual(self.run_cli("build", "show", job_id).output,
                             shown.output)
            self.assertEqual(self.run_cli("job", "show", job_id).output,
                             shown.output)
            as_json = self.run_cli("show", job_id, "--json").output
            self.assertEqual(
                self.run_cli("build", "show", job_id, "--json").output,
                as_json)

    def test_readable_times_and_attempts(self):
        """Times to the second (no microseconds); attempts as "N of at
        most M", as on the build page."""
        output = self.run_cli("build", "show", "14").output
        self.assertIn("attempts:          1 of at most 1", output)
        self.assertNotRegex(output, r"\d\d:\d\d:\d\d\.\d")

    def test_cancel_json(self):
        """cancel --json gives the build's new status."""
        result = self.run_cli("build", "cancel", "10", "--json")
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertEqual(json.loads(result.output),
                         {"id": 10, "build_status": "CANCELLED"})


class BinaryPackageRequestTests(DatabaseTestMixin, TestCase):
    """``build request --type binarypackage --dsc``: the source package's
    files come along, and the build carries what launchpad-buildd needs."""

    def setUp(self):
        super().setUp()
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO processor (name) VALUES ('amd64')")
        self.home = str(Path(self.mktemp()).resolve())
        from tests.slave.packages import make_source_package

        self.where = Path(self.mktemp())
        self.where.mkdir()
        self.files = make_source_package(self.where, "xxd")
        self.dsc = self.files["lptest_1.0.dsc"]

    def run_cli(self, *args):
        return invoke("--database", self.database_url, "--home", self.home,
                      *args)

    def build_row(self, job):
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT build_args, filemap FROM build_queue"
                        " WHERE job = %s", (job,))
            return cur.fetchone()

    def test_dsc_and_its_files_with_launchpads_args(self):
        """--dsc adds the .dsc and every file it lists; the args get the
        options (an archive, a trusted key, no arch-indep) and
        launchpad-buildd's defaults (suite from series and pocket,
        ogrecomponent from the component, PRIMARY, debian)."""
        key = self.where / "archive.asc"
        key.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
        result = self.run_cli(
            "build", "request", "--type", "binarypackage", "--processor",
            "amd64", "--series", "bookworm", "--pocket", "updates",
            "--component", "main", "--dsc", str(self.dsc), "--archive",
            "deb http://deb.debian.org/debian bookworm main",
            "--trusted-key", str(key), "--no-arch-indep", "--json")
        self.assertEqual(result.exit_code, 0, result.output)
        job = json.loads(result.stdout)["id"]
        args, filemap = self.build_row(job)
        self.assertEqual(sorted(filemap), sorted(self.files))
        self.assertEqual(
            {k: args[k] for k in ("dsc", "series", "suite", "ogrecomponent",
                                  "archive_purpose", "distribution",
                                  "arch_indep", "archive_private",
                                  "archives")},
            {"dsc": "lptest_1.0.dsc", "series": "bookworm",
             "suite": "bookworm-updates", "ogrecomponent": "main",
             "archive_purpose": "PRIMARY", "distribution": "debian",
             "arch_indep": False, "archive_private": False,
             "archives": ["deb http://deb.debian.org/debian bookworm main"]})
        import base64
        self.assertEqual(base64.b64decode(args["trusted_keys"][0]),
                         key.read_bytes())

    def test_refusals_write_nothing(self):
        """No --dsc, a .dsc whose files are not beside it, or package
        options on a script build: one clear error, nothing queued."""
        before = self.count()
        result = self.run_cli("build", "request", "--type", "binarypackage",
                              "--processor", "amd64")
        self.assertNotEqual(result.exit_code, 0)
        self.assertIn("needs --dsc", result.stderr)
        lonely = Path(self.mktemp())
        lonely.mkdir()
        (lonely / "lptest_1.0.dsc").write_bytes(self.dsc.read_bytes())
        result = self.run_cli("build", "request", "--type", "binarypackage",
                              "--processor", "amd64", "--dsc",
                              str(lonely / "lptest_1.0.dsc"))
        self.assertNotEqual(result.exit_code, 0)
        self.assertIn("which is not in", result.stderr)
        script = self.where / "s.sh"
        script.write_text("true\n")
        result = self.run_cli("build", "request", "--type", "script",
                              "--processor", "amd64", "--script",
                              str(script), "--archive", "deb http://x y z")
        self.assertNotEqual(result.exit_code, 0)
        self.assertIn("are for binarypackage builds", result.stderr)
        self.assertEqual(self.count(), before)

    def count(self):
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM job")
            return cur.fetchone()[0]
