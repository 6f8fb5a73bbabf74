"""`pip install` of the checkout alone gives a working system.

In a fresh virtualenv outside the tree: install the package (not
editable), upgrade a database twice with the installed `lp-services`, and
find the three daemons in `twistd --help` — using only installed files.
"""

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.testing.tiers import slow

ROOT = Path(__file__).resolve().parents[3]


class InstallTests(TestCase):
    """A wheel install works from any directory."""

    timeout = 900

    def test_pip_install_upgrade_and_plugins(self):
        """db upgrade twice (the second a no-op); twistd lists the plugins."""
        work = Path(self.mktemp()).resolve()
        work.mkdir()
        # Nothing of this process's environment may leak in: trial's
        # workers carry a PYTHONPATH naming the test venv's site-packages,
        # which would make pip think the dependencies are installed.
        env = {k: v for k, v in os.environ.items()
               if k not in ("LP_DATABASE_URL", "LP_HOME", "PYTHONPATH",
                            "VIRTUAL_ENV", "PYTHONHOME")}
        env["LP_HOME"] = str(work / "var")
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       env=env)
        install = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(ROOT)],
            capture_output=True, text=True, cwd=work, env=env)
        self.assertEqual(install.returncode, 0, install.stderr[-3000:])

        def run(*argv):
            return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]],
                                  capture_output=True, text=True, cwd=work,
                                  env=env)

        self.addCleanup(run, "lp-services", "db", "stop")
        where = run("python", "-c", "import lp_services, twisted.plugins.lp_buildmaster as p;"
                    "print(lp_services.__file__); print(p.__file__)")
        for line in where.stdout.split():
            self.assertTrue(line.startswith(str(venv)), where.stdout)
        first = run("lp-services", "db", "upgrade")
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertIn("created the schema", first.stdout)
        second = run("lp-services", "db", "upgrade")
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertIn("schema is up to date", second.stdout)
        plugins = run("twistd", "--help")
        for name in ("buildmaster", "buildslave", "jobrunner"):
            self.assertIn(name, plugins.stdout)


InstallTests = slow(InstallTests)
