"""API tokens (lp_services.auth.tokens) against real PostgreSQL: created
with a role and shown once, stored hashed, refused when unknown, revoked
or expired, listed without their secret."""

import hashlib
from datetime import timedelta

from twisted.trial.unittest import TestCase

from lp_services.auth.tokens import (
    Principal,
    TokenError,
    authenticate,
    create_token,
    has_role,
    list_tokens,
    revoke_token,
)
from lp_services.testing.clock import EPOCH
from lp_services.testing.database import DatabaseTestMixin


class TokenTests(DatabaseTestMixin, TestCase):

    def setUp(self):
        super().setUp()
        self.conn = self.connect()

    def run_sql(self, function, *args):
        with self.conn, self.conn.cursor() as cur:
            return function(cur, *args)

    def table(self):
        with self.conn.cursor() as cur:
            cur.execute("SELECT * FROM api_token")
            return cur.fetchall()

    def test_the_database_never_holds_a_token(self):
        """Only the token's SHA-256 is stored: no column of the row holds
        the token or any long part of it."""
        token = self.run_sql(create_token, "alice", "submitter", EPOCH)
        self.assertTrue(token.startswith("lp_"))
        self.assertGreaterEqual(len(token), 40)
        rows = self.table()
        text = repr(rows)
        self.assertNotIn(token, text)
        self.assertNotIn(token[3:20], text)
        self.assertIn(hashlib.sha256(token.encode()).hexdigest(), text)

    def test_authenticate(self):
        """A valid token gives its name and role and records its use; an
        unknown, malformed or missing one is refused."""
        token = self.run_sql(create_token, "ops", "operator", EPOCH)
        now = EPOCH + timedelta(minutes=5)
        self.assertEqual(self.run_sql(authenticate, token, now),
                         Principal("ops", "operator"))
        self.assertEqual(self.run_sql(list_tokens)[0]["last_used"], now)
        # Used again within the minute: no write (a busy token must not
        # make every request update one row); a minute later, recorded.
        self.run_sql(authenticate, token, now + timedelta(seconds=59))
        self.assertEqual(self.run_sql(list_tokens)[0]["last_used"], now)
        later = now + timedelta(seconds=61)
        self.run_sql(authenticate, token, later)
        self.assertEqual(self.run_sql(list_tokens)[0]["last_used"], later)
        for bad in ("lp_" + "x" * 43, token[:-1], "", None, "Bearer " + token,
                    "lp_" + "x" * 500):
            error = self.assertRaises(TokenError, self.run_sql,
                                      authenticate, bad, now)
            if bad:
                self.assertNotIn(bad, str(error))

    def test_expiry(self):
        """A token is refused from its expiry on; an expiry in the past
        is refused at creation."""
        token = self.run_sql(create_token, "ci", "submitter", EPOCH,
                             EPOCH + timedelta(days=1))
        self.run_sql(authenticate, token, EPOCH + timedelta(hours=23))
        error = self.assertRaises(TokenError, self.run_sql, authenticate,
                                  token, EPOCH + timedelta(days=1))
        self.assertEqual(str(error), "token ci expired")
        self.assertRaises(TokenError, self.run_sql, create_token, "old",
                          "submitter", EPOCH, EPOCH)

    def test_revocation(self):
        """A revoked token is refused at once; revoking twice keeps the
        first time; an unknown name is an error."""
        token = self.run_sql(create_token, "bob", "admin", EPOCH)
        self.run_sql(revoke_token, "bob", EPOCH + timedelta(minutes=1))
        self.run_sql(revoke_token, "bob", EPOCH + timedelta(minutes=2))
        error = self.assertRaises(TokenError, self.run_sql, authenticate,
                                  token, EPOCH + timedelta(minutes=3))
        self.assertEqual(str(error), "token bob was revoked")
        self.assertEqual(self.run_sql(list_tokens)[0]["revoked"],
                         EPOCH + timedelta(minutes=1))
        self.assertRaises(TokenError, self.run_sql, revoke_token, "nobody",
                          EPOCH)

    def test_bad_requests_write_nothing(self):
        """An unknown role, a bad name or a taken name: refused, nothing
        written (the taken name's first token still works)."""
        first = self.run_sql(create_token, "alice", "submitter", EPOCH)
        for name, role in (("alice", "admin"), ("Alice!", "admin"),
                           ("carol", "root"), ("", "admin")):
            self.assertRaises(TokenError, self.run_sql, create_token, name,
                              role, EPOCH)
        self.assertEqual(len(self.table()), 1)
        self.assertEqual(self.run_sql(authenticate, first, EPOCH).role,
                         "submitter")

    def test_roles_are_ordered(self):
        """admin > operator > submitter; nobody has none."""
        admin, submitter = Principal("a", "admin"), Principal("s", "submitter")
        self.assertTrue(has_role(admin, "operator"))
        self.assertTrue(has_role(submitter, "submitter"))
        self.assertFalse(has_role(submitter, "operator"))
        self.assertFalse(has_role(None, "submitter"))

    def test_list_never_shows_the_secret(self):
        """list gives names, roles and dates, never a token or hash."""
        token = self.run_sql(create_token, "alice", "submitter", EPOCH)
        listed = self.run_sql(list_tokens)
        self.assertEqual(sorted(listed[0]), ["date_created", "expires",
                                             "last_used", "name", "revoked",
                                             "role"])
        self.assertNotIn(token, repr(listed))
        self.assertNotIn(hashlib.sha256(token.encode()).hexdigest(),
                         repr(listed))
