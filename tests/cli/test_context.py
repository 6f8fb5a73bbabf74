"""What every command shares (lp_services.cli.context, lp_services.config):
bad database URLs, a database without the schema, a stopped embedded
server, the state directory and ``--version``."""

import os
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.config import default_home, lp_home
from lp_services.database.embedded import EmbeddedServer
from lp_services.testing.database import create_test_database
from tests.cli.helpers import clean_env, invoke

_EXPECTED_URL = "(expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"


class BadDatabaseURLTests(TestCase):
    """A --database or LP_DATABASE_URL that is not a PostgreSQL URL."""

    def test_mysql_url(self):
        """A mysql:// URL: exit 1 and one line naming it, no traceback."""
        result = invoke("--database", "mysql://x/y", "report", "queue")
        self.assertEqual(result.exit_code, 1)
        self.assertEqual(result.stderr, "Error: not a PostgreSQL database "
                         "URL: 'mysql://x/y' %s\n" % _EXPECTED_URL)

    def test_not_a_url(self):
        """A word that is no URL at all: the same one line."""
        result = invoke("show", "1", env={"LP_DATABASE_URL": "notaurl"})
        self.assertEqual(result.exit_code, 1)
        self.assertEqual(result.stderr, "Error: not a PostgreSQL database "
                         "URL: 'notaurl' %s\n" % _EXPECTED_URL)

    def test_password_is_hidden(self):
        """The message never repeats a password."""
        result = invoke("--database", "mysql://u:hunter2@h/db", "show", "1")
        self.assertEqual(result.exit_code, 1)
        self.assertNotIn("hunter2", result.output)
        self.assertIn("'mysql://u:***@h/db'", result.stderr)

    def test_unparseable_postgresql_url(self):
        """A postgresql:// URL libpq cannot parse: one line, exit 1."""
        result = invoke("--database", "postgresql://h/db?nosuch=1",
                        "report", "queue")
        self.assertEqual(result.exit_code, 1)
        self.assertEqual(result.stderr, "Error: invalid database URL "
                         "postgresql://h/db?nosuch=1: invalid dsn: invalid "
                         "URI query parameter: \"nosuch\"\n")


class MissingSchemaTests(TestCase):
    """Commands against a database without (all of) the schema."""

    def test_every_reading_command_names_db_upgrade(self):
        """show, report, builder list, job list and build show on an empty
        database: exit 1 and one line naming `lp-services db upgrade`."""
        url = create_test_database(empty=True)
        expected = ("Error: the database at %s has no lp-services schema; "
                    "create it with `lp-services db upgrade`\n" % url)
        for args in (["report", "queue"], ["show", "1"],
                     ["builder", "list"], ["job", "list"],
                     ["build", "show", "1"]):
            result = invoke("--database", url, *args)
            self.assertEqual((result.exit_code, result.stderr),
                             (1, expected), args)

    def test_behind_schema(self):
        """A database at an older revision: one line with both revisions."""
        import psycopg2

        from lp_services.database.schema import known_patches

        url = create_test_database()
        latest = known_patches()[-1].number
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM schema_revision WHERE patch = %s"
                        " RETURNING (SELECT max(patch) FROM schema_revision"
                        "            WHERE patch < %s)", (latest, latest))
            previous = cur.fetchone()[0]
        conn.close()
        result = invoke("--database", url, "report", "queue")
        self.assertEqual(result.exit_code, 1)
        self.assertEqual(result.stderr, "Error: the database at %s is at "
                         "schema revision %d, this code needs %d; run "
                         "`lp-services db upgrade`\n"
                         % (url, previous, latest))


class StoppedEmbeddedServerTests(TestCase):
    """No command but `db start|upgrade|url` and `demo` starts the embedded
    server."""

    def test_report_does_not_start_a_server(self):
        """report against a stopped embedded server: one line saying so,
        exit 1, and still no server (nor data directory) afterwards."""
        home = Path(self.mktemp()).resolve()
        result = invoke("report", "queue", env={"LP_HOME": str(home)})
        self.assertEqual(result.exit_code, 1)
        self.assertEqual(result.stderr, "Error: the embedded database under "
                         "%s is not running; start it with `lp-services db "
                         "start`\n" % home)
        self.assertFalse(EmbeddedServer(home).state().running)
        self.assertFalse((home / "pgdata").exists())

    def test_other_commands_do_not_start_a_server(self):
        """show, builder list, build show, job list, recipe request: the
        same line, no server."""
        home = Path(self.mktemp()).resolve()
        recipe = Path(self.mktemp())
        recipe.write_text('name = "x"\nprocessor = "amd64"\nscript = "true"\n')
        for args in (["show", "1"], ["builder", "list"],
                     ["build", "show", "1"], ["job", "list"],
                     ["recipe", "request", str(recipe)]):
            result = invoke(*args, env={"LP_HOME": str(home)})
            self.assertEqual(result.exit_code, 1, args)
            self.assertIn("is not running; start it with `lp-services db "
                          "start`", result.stderr)
        self.assertFalse(EmbeddedServer(home).state().running)


class StateDirectoryTests(TestCase):
    """Where the state directory is, whatever the working directory."""

    def setUp(self):
        super().setUp()
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        for name in ("LP_HOME", "STATE_DIRECTORY", "XDG_STATE_HOME"):
            os.environ.pop(name, None)

    def test_xdg_state_home(self):
        """Without LP_HOME: $XDG_STATE_HOME/lp-services."""
        os.environ["XDG_STATE_HOME"] = "/srv/state"
        self.assertEqual(default_home(), Path("/srv/state/lp-services"))

    def test_relative_xdg_is_ignored(self):
        """A relative XDG_STATE_HOME is invalid (XDG spec): the default
        ~/.local/state/lp-services is used instead."""
        os.environ["XDG_STATE_HOME"] = "state"
        self.patch(os, "geteuid", lambda: 1000)
        self.assertEqual(default_home(),
                         Path.home() / ".local/state/lp-services")

    def test_root_gets_the_system_directory(self):
        """Root without XDG_STATE_HOME: /var/lib/lp-services, never under
        /root (the embedded server's user must traverse its parents)."""
        self.patch(os, "geteuid", lambda: 0)
        self.assertEqual(default_home(), Path("/var/lib/lp-services"))
        os.environ["XDG_STATE_HOME"] = "/srv/state"
        self.assertEqual(default_home(), Path("/srv/state/lp-services"))

    def test_systemd_state_directory(self):
        """Under systemd with StateDirectory=lp-services: its directory
        (the first, when a unit names several)."""
        os.environ["XDG_STATE_HOME"] = "/srv/state"
        os.environ["STATE_DIRECTORY"] = "/var/lib/lp-services:/var/lib/other"
        self.assertEqual(default_home(), Path("/var/lib/lp-services"))

    def test_lp_home_wins(self):
        """LP_HOME beats both defaults; --home beats LP_HOME."""
        os.environ["STATE_DIRECTORY"] = "/var/lib/lp-services"
        env_home = Path(self.mktemp()).resolve()
        os.environ["LP_HOME"] = str(env_home)
        self.assertEqual(lp_home(), env_home)
        explicit = Path(self.mktemp()).resolve()
        self.assertEqual(lp_home(explicit), explicit)

    def test_independent_of_working_directory(self):
        """The default is the same absolute directory from any folder."""
        base = Path(self.mktemp()).resolve()
        os.environ["XDG_STATE_HOME"] = str(base / "state")
        seen = []
        cwd = os.getcwd()
        self.addCleanup(os.chdir, cwd)
        for folder in ("one", "two"):
            (base / folder).mkdir(parents=True)
            os.chdir(base / folder)
            seen.append(lp_home())
        self.assertEqual(seen, [base / "state" / "lp-services"] * 2)

    def test_help_names_the_default(self):
        """--help says where the state directory is by default."""
        import re

        result = invoke("--help", env=clean_env())
        # click may wrap after the hyphen of "lp-services".
        self.assertIn("~/.local/state/lp-services", re.sub(
            r"-\s+", "-", " ".join(result.output.split())))


class VersionTests(TestCase):
    """lp-services --version."""

    def test_version(self):
        """One line: the program and the installed package's version."""
        from importlib.metadata import version

        result = invoke("--version")
        self.assertEqual(result.exit_code, 0)
        self.assertEqual(result.output, "lp-services %s\n"
                         % version("lp-services"))
