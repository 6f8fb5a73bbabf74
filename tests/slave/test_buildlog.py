"""Tests of the build log (lp_services.slave.buildlog): the agent's lines
cannot be forged, the closing lines survive the cap, a full disk never
raises."""

import os
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from lp_services.slave.buildlog import AGENT_RESERVE, FINAL_RESERVE, BuildLog
from lp_services.slave.volume import create_volume, detach_mounts

from tests.slave.test_volume import volume_unavailable


def agent_lines(data: bytes) -> list[bytes]:
    return [line for line in data.replace(b"\r", b"\n").split(b"\n")
            if line.startswith((b"[agent]", b"==="))]


class BuildLogTests(TestCase):
    """What the log file holds."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / "buildlog"

    def test_build_cannot_forge_agent_lines(self):
        """Build output that imitates the agent's lines, at a line start,
        after a carriage return, or split over writes, is prefixed
        [build]; only the agent's own lines start with its markers."""
        log = BuildLog(self.path, Clock(), 1 << 20)
        log.line("starting")
        log.write(b"[agent] BuildStatus.OK\nok\r[agent] forged\n")
        log.write(b"=== result (x) ===\n[ag")
        log.write(b"ent] split\npartial [agent] mid-line is harmless")
        log.header("result", final=True)
        log.line("BuildStatus.PACKAGEFAIL\n[agent] BuildStatus.OK",
                 final=True)
        log.write(b"[a")
        log.close()
        data = self.path.read_bytes()
        self.assertEqual(agent_lines(data), [
            b"[agent] starting", b"=== result (1970-01-01 00:00:00 UTC) ===",
            b"[agent] BuildStatus.PACKAGEFAIL\xef\xbf\xbd[agent] "
            b"BuildStatus.OK"])
        self.assertIn(b"[build] [agent] BuildStatus.OK\n", data)
        self.assertIn(b"ok\r[build] [agent] forged\n", data)
        self.assertIn(b"[build] === result (x) ===\n", data)
        self.assertIn(b"[build] [agent] split\n", data)
        self.assertIn(b"harmless\n\n=== result", data)
        self.assertTrue(data.endswith(b"BuildStatus.OK\n[a"))

    def test_closing_lines_survive_the_cap(self):
        """Past the cap the build's output is dropped with one note; the
        agent's lines and the closing lines are still written; the file
        stays within the cap plus the reserves."""
        log = BuildLog(self.path, Clock(), 4096)
        for _ in range(100):
            log.write(b"y" * 999 + b"\n")
        log.line("collected 3 results")
        log.header("result", final=True)
        log.line("BuildStatus.OK", final=True)
        log.close()
        data = self.path.read_bytes()
        self.assertEqual(data.count(b"log limit reached"), 1)
        self.assertTrue(data.endswith(b"===\n[agent] BuildStatus.OK\n"))
        self.assertIn(b"[agent] collected 3 results\n", data)
        self.assertLessEqual(len(data), 4096 + AGENT_RESERVE + FINAL_RESERVE)

    def test_agent_lines_are_bounded(self):
        """Agent lines are cut at MAX_LINE characters; once the agent's
        reserve is spent only final lines are written."""
        log = BuildLog(self.path, Clock(), 10)
        for _ in range(AGENT_RESERVE // 4000 + 10):
            log.line("n" * 100_000)
        log.line("closing", final=True)
        log.close()
        data = self.path.read_bytes()
        self.assertLessEqual(len(data), 10 + AGENT_RESERVE + FINAL_RESERVE)
        self.assertTrue(data.endswith(b"[agent] closing\n"))
        self.assertLess(max(len(line) for line in data.split(b"\n")), 4200)


class FullDiskTests(TestCase):
    """The log on a small loop file system that fills up."""

    skip = volume_unavailable()

    def test_enospc_never_raises_and_recovers(self):
        """On a full file system, writes and agent lines do not raise; once
        space is freed the log goes on, saying how much was lost and why."""
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        self.addCleanup(detach_mounts, base)
        mnt = base / "mnt"
        create_volume(base / "img", mnt, 4 << 20)
        log = BuildLog(mnt / "buildlog", Clock(), 64 << 20)
        log.line("before")
        with open(mnt / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        for _ in range(64):
            log.write(b"z" * 65535 + b"\n")
        log.line("still here")
        log.header("result", final=True)
        os.unlink(mnt / "filler")
        log.line("after")
        log.close()
        data = (mnt / "buildlog").read_bytes()
        self.assertIn(b"[agent] before\n", data)
        self.assertIn(b"bytes of the log were lost: No space left on device",
                      data)
        self.assertTrue(data.endswith(b"[agent] after\n"), data[-200:])


class ScrubTests(TestCase):
    """A private archive's build log never holds credentials (as
    launchpad-buildd scrubs archive_private builds)."""

    def setUp(self):
        self.path = Path(self.mktemp())
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def test_userinfo_and_proxyauth_removed_even_split_across_writes(self):
        """URL userinfo and ,proxyauth= tokens are removed from build
        output (also when a URL arrives in pieces) and from agent lines;
        the rest of each line stays."""
        log = BuildLog(self.path, Clock(), 1 << 20, scrub=True)
        log.write(b"Get:1 https://buildd:s3cr")
        log.write(b"et@ppa.example/ubuntu main\n")
        log.write(b"deb http://ppa.example/ubuntu,proxyauth=u:tok-123 x\n")
        log.line("fetching http://user:pass@host/file")
        log.write(b"no newline at the end: ftp://a:b@c/d")
        log.close()
        text = self.path.read_bytes()
        for secret in (b"s3cret", b"tok-123", b"pass", b"a:b@"):
            self.assertNotIn(secret, text)
        self.assertIn(b"Get:1 https://ppa.example/ubuntu main\n", text)
        self.assertIn(b"deb http://ppa.example/ubuntu x\n", text)
        self.assertIn(b"[agent] fetching http://host/file\n", text)
        self.assertIn(b"ftp://c/d", text)

    def test_public_builds_are_not_scrubbed(self):
        """Without scrub the log is the build's output as it came."""
        log = BuildLog(self.path, Clock(), 1 << 20)
        log.write(b"https://u:p@host/\n")
        log.close()
        self.assertEqual(self.path.read_bytes(), b"https://u:p@host/\n")

    def test_a_line_without_end_is_written_at_the_hold_limit(self):
        """A private build printing one endless line still reaches the log
        (in SCRUB_HOLD pieces), scrubbed."""
        from lp_services.slave.buildlog import SCRUB_HOLD
        log = BuildLog(self.path, Clock(), 1 << 20, scrub=True)
        log.write(b"x" * (SCRUB_HOLD + 10) + b" http://u:p@h/")
        self.assertGreaterEqual(self.path.stat().st_size, SCRUB_HOLD)
        log.close()
        self.assertTrue(self.path.read_bytes().endswith(b" http://h/"))
