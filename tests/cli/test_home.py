"""One farm whatever the working directory: commands run as processes from
two folders share the per-user state directory and its embedded server."""

import json
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.database.embedded import EmbeddedServer
from tests.cli.helpers import clean_env, run_in


class TwoFoldersTests(TestCase):
    """The README's commands, from two folders, without LP_HOME."""

    def test_two_folders_see_one_farm(self):
        """db start in one folder, db upgrade and builder add in another,
        builder list and db status back in the first: one embedded server,
        one database, one builder; no second server under either folder."""
        base = Path(self.mktemp()).resolve()
        one, two = base / "one", base / "two"
        one.mkdir(parents=True)
        two.mkdir()
        env = clean_env(XDG_STATE_HOME=base / "state")
        home = base / "state" / "lp-services"
        self.addCleanup(EmbeddedServer(home).stop)

        def ok(cwd, *args):
            result = run_in(cwd, *args, env=env)
            self.assertEqual(result.returncode, 0,
                             result.stdout + result.stderr)
            return result.stdout

        ok(one, "db", "start")
        ok(two, "db", "upgrade")
        self.assertEqual(ok(two, "builder", "add", "b1", "--url",
                            "http://127.0.0.1:1", "--processor", "amd64"),
                         "added builder b1\n")
        listed = json.loads(ok(one, "builder", "list", "--json"))
        self.assertEqual([b["name"] for b in listed], ["b1"])
        status = json.loads(ok(two, "db", "status", "--json"))
        self.assertEqual((status["running"], status["pgdata"]),
                         (True, str(home / "pgdata")))
        self.assertEqual(sorted(p.name for p in one.iterdir()), [])
        self.assertEqual(sorted(p.name for p in two.iterdir()), [])
