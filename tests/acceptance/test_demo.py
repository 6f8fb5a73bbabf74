"""The README's main command, `lp-services demo`, run for real twice."""

import os
import re
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.database.embedded import EmbeddedServer


class DemoTests(TestCase):
    """lp-services demo builds a recipe end to end on a fresh state dir."""

    def run_demo(self, home: Path):
        env = {k: v for k, v in os.environ.items()
               if k not in ("LP_DATABASE_URL", "LP_HOME")}
        return subprocess.run(
            [sys.executable, "-m", "lp_services.cli.main", "--home", str(home),
             "demo"], capture_output=True, text=True, env=env, timeout=600)

    def test_demo_twice(self):
        """Two demos in a row build, check every result's sha1, and stop."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        self.addCleanup(EmbeddedServer(home).stop)
        for attempt in (1, 2):
            result = self.run_demo(home)
            output = result.stdout + result.stderr
            self.assertEqual(result.returncode, 0, output)
            self.assertIn("greeting.txt says: Hello from the lp-services "
                          "build farm!", output)
            # Three results and the log, each downloaded and its sha1 checked.
            self.assertEqual(len(re.findall(r"sha1 ok", output)), 4, output)
            self.assertIn("COMPLETED / FULLYBUILT", output)
            self.assertIn("status page: http://127.0.0.1:", output)
            # The farm stops next: the link is not handed out as if live.
            self.assertIn("run the demo with --keep-running to browse them",
                          output)
            self.assertIn("stopped the buildmaster", output)
            # The embedded PostgreSQL it started is stopped too.
            self.assertIn("and the embedded PostgreSQL the demo started",
                          output)
            self.assertFalse(EmbeddedServer(home).state().running)
            # Nothing it started is left running (but the database).
            self.assertFalse((home / "demo" / "pids.json").exists())
            self.assertEqual(processes_mentioning(home), [])

    def test_running_database_is_left_running(self):
        """A database that ran before the demo still runs after it."""
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        server = EmbeddedServer(home)
        server.start()
        self.addCleanup(server.stop)
        result = self.run_demo(home)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertNotIn("the embedded PostgreSQL the demo started", output)
        self.assertTrue(server.state().running)


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
