"""Running ``lp-services`` in tests: in-process through click's runner,
or as a real process from a chosen working directory."""

import os
import subprocess
import sys

from click.testing import CliRunner

from lp_services.cli.main import cli


def invoke(*args, env=None):
    """Run the command in-process; ``result.stdout``, ``result.stderr`` and
    ``result.exit_code`` as a terminal would see them (not a tty)."""
    return CliRunner().invoke(cli, list(args), env=env or {},
                              catch_exceptions=False)


def clean_env(**extra) -> dict:
    """This process's environment without the lp-services settings, plus
    ``extra``: a command then resolves everything from ``extra`` alone."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LP_DATABASE_URL", "LP_HOME", "LP_FILES_URL",
                        "STATE_DIRECTORY", "XDG_STATE_HOME")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_in(cwd, *args, env):
    """Run ``lp-services ARGS`` as a process in directory ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "lp_services.cli.main", *args], cwd=str(cwd),
        env=env, capture_output=True, text=True, timeout=300)


class SeededDatabaseMixin:
    """For a DatabaseTestMixin test case: the class's database holds the
    ops views' SEED (tests/database/test_views.py), and ``invoke``
    runs a command against it."""

    def setUp(self):
        super().setUp()
        from tests.database.test_views import SEED

        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(SEED)

    def invoke(self, *args):
        return CliRunner().invoke(
            cli, ["--database", self.database_url, *args],
            catch_exceptions=False)
