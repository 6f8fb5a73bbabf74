"""``lp-services builder`` (lp_services.cli.builder): disabled is not
failed, and listings are whole when piped."""

import json

from twisted.trial.unittest import TestCase

from lp_services.buildmaster.builders import builder_failed
from lp_services.testing.database import DatabaseTestMixin
from tests.cli.helpers import invoke

LONG_URL = "http://" + "builder-host." * 12 + "example:8221"


class BuilderStateTests(DatabaseTestMixin, TestCase):
    """An operator's disable reads "disabled" everywhere; the buildmaster
    failing a builder reads "failed"."""

    def run_cli(self, *args):
        return invoke("--database", self.database_url, *args)

    def setUp(self):
        super().setUp()
        for name, url in (("b1", "http://127.0.0.1:1"), ("b2", LONG_URL)):
            result = self.run_cli("builder", "add", name, "--url", url,
                                  "--processor", "amd64")
            self.assertEqual(result.exit_code, 0, result.output)

    def states(self):
        rows = json.loads(self.run_cli("report", "builders", "--json").output)
        return {r["name"]: r["state"] for r in rows}

    def test_disabled_is_not_failed(self):
        """builder disable: "disabled" in builder list and ops_builders."""
        result = self.run_cli("builder", "disable", "b1", "--reason",
                              "disk swap")
        self.assertEqual((result.exit_code, result.output),
                         (0, "builder b1: disabled\n"))
        # A new builder is dirty until its first clean.
        self.assertEqual(self.states(), {"b1": "disabled", "b2": "dirty"})
        listing = self.run_cli("builder", "list").output
        self.assertIn("disabled: disk swap", listing)
        self.assertNotIn("failed", listing)

    def test_failed_is_failed(self):
        """A builder the buildmaster failed reads "failed", with its notes;
        enabling it again brings it back (dirty until cleaned)."""
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM builder WHERE name = 'b1'")
            builder_failed(cur, cur.fetchone()[0], "agent unreachable")
        self.assertEqual(self.states()["b1"], "failed")
        self.assertIn("failed: agent unreachable",
                      self.run_cli("builder", "list").output)
        self.run_cli("builder", "enable", "b1")
        self.assertEqual(self.states()["b1"], "dirty")

    def test_disable_after_failure_then_fail(self):
        """Disabled by an operator, then enabled and failed by the
        buildmaster: "failed" (the flag follows the latest change)."""
        self.run_cli("builder", "disable", "b1")
        self.run_cli("builder", "enable", "b1")
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM builder WHERE name = 'b1'")
            builder_failed(cur, cur.fetchone()[0], "reset failed")
        self.assertEqual(self.states()["b1"], "failed")

    def test_piped_list_is_whole(self):
        """Piped (not a terminal), builder list prints every column at full
        width, as report does: the long URL is whole and on one line."""
        output = self.run_cli("builder", "list").output
        self.assertIn(LONG_URL, output)
        self.assertNotIn("…", output)
        report = self.run_cli("report", "builders").output
        self.assertNotIn("…", report)

    def test_mode_json(self):
        """builder disable --json says the new state."""
        result = self.run_cli("builder", "manual", "b2", "--json")
        self.assertEqual(json.loads(result.output),
                         {"name": "b2", "state": "manual"})
