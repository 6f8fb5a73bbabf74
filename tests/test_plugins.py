"""The twistd plugins are found and the daemons start and stop cleanly."""

import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import TestCase


class PluginTests(TestCase):
    """twistd sees buildmaster, buildslave and jobrunner."""

    def test_plugins_are_discovered(self):
        """getPlugins(IServiceMaker) yields the three tap names."""
        names = {p.tapname for p in getPlugins(IServiceMaker)}
        self.assertTrue({"buildmaster", "buildslave", "jobrunner"} <= names,
                        sorted(names))

    def test_twistd_help_lists_plugins(self):
        """`twistd --help` lists the three daemons."""
        out = subprocess.run(
            [sys.executable, "-m", "twisted", "--help"],
            capture_output=True, text=True, check=True).stdout
        for name in ("buildmaster", "buildslave", "jobrunner"):
            self.assertIn(name, out)
