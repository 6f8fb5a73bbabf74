"""Tests of lp_services.process."""

import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

from lp_services.process import pid_alive


class PidAliveTests(TestCase):
    """pid_alive tells live processes from gone ones."""

    def test_live_and_gone(self):
        """This process is alive; a reaped child is not; pid 1 (another
        user's, maybe) is."""
        self.assertTrue(pid_alive(os.getpid()))
        self.assertTrue(pid_alive(1))
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        self.assertFalse(pid_alive(child.pid))
