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
