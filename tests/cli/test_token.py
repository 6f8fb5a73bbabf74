"""``lp-services token``: create prints the token once, list never shows
it, revoke refuses it from then on."""

import json

from twisted.trial.unittest import TestCase

from lp_services.testing.database import DatabaseTestMixin
from tests.cli.helpers import invoke


class TokenCommandTests(DatabaseTestMixin, TestCase):

    def run_cli(self, *args):
        return invoke("--database", self.database_url, "token", *args)

    def test_create_list_revoke(self):
        """create prints a token; list shows the name and role but not
        the token; revoke takes effect; a second create of the name and an
        unknown revoke are one-line errors."""
        from datetime import datetime, timezone

        from lp_services.auth.tokens import TokenError, authenticate

        result = self.run_cli("create", "ci-bot", "--role", "submitter",
                              "--expires", "30d", "--json")
        self.assertEqual(result.exit_code, 0, result.output)
        created = json.loads(result.stdout)
        token = created["token"]
        self.assertEqual((created["name"], created["role"]),
                         ("ci-bot", "submitter"))
        listed = self.run_cli("list", "--json")
        self.assertNotIn(token, listed.stdout)
        self.assertEqual([(r["name"], r["role"]) for r in
                          json.loads(listed.stdout)],
                         [("ci-bot", "submitter")])
        again = self.run_cli("create", "ci-bot", "--role", "admin")
        self.assertEqual(again.exit_code, 1)
        self.assertIn("a token named 'ci-bot' exists", again.stderr)
        revoked = self.run_cli("revoke", "ci-bot", "--json")
        self.assertEqual(json.loads(revoked.stdout),
                         {"name": "ci-bot", "revoked": True})
        conn = self.connect()
        with conn, conn.cursor() as cur:
            self.assertRaises(TokenError, authenticate, cur, token,
                              datetime.now(timezone.utc))
        missing = self.run_cli("revoke", "nobody")
        self.assertEqual(missing.exit_code, 1)
        self.assertIn("no token named 'nobody'", missing.stderr)

    def test_bad_expiry(self):
        """An expiry that is neither a duration nor a date is a usage
        error; nothing is created."""
        result = self.run_cli("create", "x", "--role", "admin", "--expires",
                              "soon")
        self.assertEqual(result.exit_code, 2)
        self.assertEqual(json.loads(self.run_cli("list", "--json").stdout),
                         [])
