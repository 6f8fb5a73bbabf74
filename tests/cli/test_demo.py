"""``lp-services demo`` around a farm left running (--keep-running), from
any folder. The farm's daemons are played by a sleeping Python process
recorded as the demo records its daemons (the full demo runs in
tests/acceptance/test_demo.py)."""

import json
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.cli.helpers import clean_env, run_in

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


class KeptFarmTests(TestCase):
    """A --keep-running farm is found from any folder and never stopped
    without a word."""

    def setUp(self):
        super().setUp()
        base = Path(self.mktemp()).resolve()
        self.one, self.two = base / "one", base / "two"
        self.one.mkdir(parents=True)
        self.two.mkdir()
        self.env = clean_env(XDG_STATE_HOME=base / "state")
        self.home = base / "state" / "lp-services"
        (self.home / "demo").mkdir(parents=True)
        self.daemon = subprocess.Popen(SLEEPER)
        self.addCleanup(self.daemon.wait)
        self.addCleanup(lambda: self.daemon.poll() is None
                        and self.daemon.kill())
        (self.home / "demo" / "pids.json").write_text(json.dumps(
            {"buildmaster": {"pid": self.daemon.pid, "argv": SLEEPER}}))

    def test_plain_demo_refuses(self):
        """A plain demo while the farm runs: exit 1, one line saying how
        to stop it; the farm still runs."""
        result = run_in(self.two, "demo", env=self.env)
        self.assertEqual((result.returncode, result.stderr),
                         (1, "Error: a demo farm is already running from %s "
                          "(buildmaster); stop it with `lp-services demo "
                          "--stop` first\n" % self.home))
        self.assertIsNone(self.daemon.poll())

    def test_stop_from_another_folder(self):
        """demo --stop from a folder the demo never ran in stops it."""
        result = run_in(self.two, "demo", "--stop", env=self.env)
        self.assertEqual((result.returncode, result.stdout),
                         (0, "stopped: buildmaster\n"), result.stderr)
        self.assertIsNotNone(self.daemon.wait(30))
        self.assertFalse((self.home / "demo" / "pids.json").exists())


class SigintDeferredTests(TestCase):
    """A Ctrl-C while the demo starts a daemon is held until the daemon is
    recorded (else it would run on, unseen by the demo's stop)."""

    def test_held_until_the_end_of_the_block(self):
        """SIGINT inside the block does not interrupt it; it is raised as
        KeyboardInterrupt when the block ends, and the old handler is back."""
        import os
        import signal

        from lp_services.cli.demo_farm import _sigint_deferred
        before = signal.getsignal(signal.SIGINT)
        reached = []
        with self.assertRaises(KeyboardInterrupt):
            with _sigint_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("after the signal")
        self.assertEqual(reached, ["after the signal"])
        self.assertIs(signal.getsignal(signal.SIGINT), before)

    def test_nothing_held_nothing_raised(self):
        """Without a SIGINT the block ends normally and the old handler is
        back."""
        import signal

        from lp_services.cli.demo_farm import _sigint_deferred
        before = signal.getsignal(signal.SIGINT)
        with _sigint_deferred():
            self.assertIsNot(signal.getsignal(signal.SIGINT), before)
        self.assertIs(signal.getsignal(signal.SIGINT), before)
