"""The README's main command, `lp-services demo`, run for real once;
`demo --stop` and Ctrl-C."""

import os
import re
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.database.embedded import EmbeddedServer


def run_demo(home: Path) -> subprocess.CompletedProcess:
    """Run ``lp-services --home HOME demo`` to its end, as the README says,
    without the caller's database or home."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LP_DATABASE_URL", "LP_HOME")}
    return subprocess.run(
        [sys.executable, "-m", "lp_services.cli.main", "--home", str(home),
         "demo"], capture_output=True, text=True, env=env, timeout=600)


def check_demo_built_and_stopped(case: TestCase, home: Path,
                                 result: subprocess.CompletedProcess):
    """The demo built its recipe, checked every result's sha1, stopped
    everything it started (its embedded PostgreSQL too) and said so."""
    output = result.stdout + result.stderr
    case.assertEqual(result.returncode, 0, output)
    case.assertIn("greeting.txt says: Hello from the lp-services "
                  "build farm!", output)
    # Three results and the log, each downloaded and its sha1 checked.
    case.assertEqual(len(re.findall(r"sha1 ok", output)), 4, output)
    case.assertIn("COMPLETED / FULLYBUILT", output)
    case.assertIn("status page: http://127.0.0.1:", output)
    # The farm stops next: the link is not handed out as if live.
    case.assertIn("run the demo with --keep-running to browse them", output)
    case.assertIn("stopped the buildmaster", output)
    case.assertIn("and the embedded PostgreSQL the demo started", output)
    case.assertFalse(EmbeddedServer(home).state().running)
    # Nothing it started is left running.
    case.assertFalse((home / "demo" / "pids.json").exists())
    case.assertEqual(processes_mentioning(home), [])


class DemoTests(TestCase):
    """lp-services demo builds a recipe end to end on a fresh state dir.

    The fast tier runs the whole demo once; a second demo on the same
    home and a demo beside a running database are in
    tests/slow/acceptance/test_demo.py."""

    def test_demo(self):
        """A demo on a fresh home builds, checks every result's sha1, and
        stops everything it started."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        self.addCleanup(EmbeddedServer(home).stop)
        check_demo_built_and_stopped(self, home, run_demo(home))


def processes_mentioning(home: Path) -> list[str]:
    """Command lines of live non-PostgreSQL processes that name ``home``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = b" ".join(argv).decode("utf-8", "replace")
        if str(home) in line and "postgres" not in argv[0].decode(errors="replace"):
            found.append(line)
    return found


class StopRecordedTests(TestCase):
    """`demo --stop` signals only the processes the demo started."""

    def test_reused_pid_is_left_alone(self):
        """A recorded pid now running another command is not signalled;
        one running the recorded command is stopped."""
        import json

        from lp_services.cli.demo_farm import stop_recorded

        home = Path(self.mktemp()).resolve()
        (home / "demo").mkdir(parents=True)
        ours = subprocess.Popen([sys.executable, "-c",
                                 "import time; time.sleep(60)"])
        other = subprocess.Popen(["sleep", "60"])
        self.addCleanup(other.kill)
        self.addCleanup(ours.kill)
        (home / "demo" / "pids.json").write_text(json.dumps({
            "ours": {"pid": ours.pid, "argv": [sys.executable, "-c",
                                               "import time; time.sleep(60)"]},
            "reused": {"pid": other.pid, "argv": ["twistd", "buildmaster"]},
        }))
        self.assertEqual(stop_recorded(home), ["ours"])
        self.assertIsNotNone(ours.wait(10))
        # Still running half a second later: it was never signalled.
        self.assertRaises(subprocess.TimeoutExpired, other.wait, 0.5)
        self.assertFalse((home / "demo" / "pids.json").exists())


class InterruptTests(TestCase):
    """Ctrl-C stops everything the demo started."""

    def test_ctrl_c_stops_the_farm(self):
        """SIGINT to the demo's process group (what a terminal's Ctrl-C
        sends) while the farm starts: exit 130, no daemon left."""
        import signal

        home = Path(self.mktemp()).resolve()
        home.mkdir()
        self.addCleanup(EmbeddedServer(home).stop)
        env = {k: v for k, v in os.environ.items()
               if k not in ("LP_DATABASE_URL", "LP_HOME")}
        demo = subprocess.Popen(
            [sys.executable, "-m", "lp_services.cli.main", "--home", str(home),
             "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, start_new_session=True)
        self.addCleanup(lambda: demo.poll() is None and demo.kill())
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("buildmaster:"):
                break
        self.assertTrue(lines and lines[-1].startswith("buildmaster:"),
                        "".join(lines))
        os.killpg(demo.pid, signal.SIGINT)
        rest = demo.stdout.read()
        self.assertEqual(demo.wait(60), 130, "".join(lines) + rest)
        self.assertIn("interrupted: stopping the farm", rest)
        self.assertEqual(processes_mentioning(home), [])
        self.assertFalse((home / "demo" / "pids.json").exists())
