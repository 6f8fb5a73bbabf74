"""Build type ``script``: results, the DEPFAIL convention, chroot and
agent failures, result collection that never follows the build's links."""

import io
import os
import shutil
import tarfile
import tempfile
import xmlrpc.client
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest

from lp_services.slave.cgroup import Limits
from lp_services.slave.sandbox import SandboxBackend
from lp_services.slave.script import DEPWAIT_EXIT_CODE
from lp_services.protocol.states import BuilderStatus
from lp_services.slave.volume import create_volume

from tests.slave.bombs import long_name_bomb, zero_bomb
from tests.slave.helpers import (
    ScriptBuildTestCase, remove_test_dir, serve_directory, sha1_of)
from tests.slave.test_volume import volume_unavailable


def tarball(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class ScriptOutcomeTests(ScriptBuildTestCase):
    """Exit status -> build status."""

    @defer.inlineCallbacks
    def test_ok_lists_results(self):
        """Exit 0 is OK; every regular file in /work/out is in filemap under
        its sha1; the build's input files were in /work."""
        status, log, results = yield self.run_script(
            "cat input.txt > out/copy.txt\nprintf abc > out/abc\n",
            extra={"input.txt": b"hello input\n"})
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
        self.assertEqual(results, {"copy.txt": b"hello input\n", "abc": b"abc"})
        self.assertEqual(status["filemap"]["abc"], sha1_of(b"abc"))
        for step in (b"=== unpack", b"=== build", b"=== collect", b"=== result"):
            self.assertIn(step, log)

    @defer.inlineCallbacks
    def test_failure_is_packagefail_with_results(self):
        """A non-zero exit is PACKAGEFAIL; outputs written so far are still
        collected (e.g. a build log of the package)."""
        status, log, results = yield self.run_script(
            "echo partial > out/partial\nexit 3\n")
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL")
        self.assertEqual(results, {"partial": b"partial\n"})
        self.assertIn(b"script exited 3", log)

    @defer.inlineCallbacks
    def test_depwait_convention(self):
        """/work/out/.depwait plus exit 100 is DEPFAIL with the file's text
        as dependencies; .depwait is not a result."""
        status, log, results = yield self.run_script(
            "echo 'libfoo-dev (>= 1.2), bar' > out/.depwait\n"
            "echo note > out/note\nexit %d\n" % DEPWAIT_EXIT_CODE)
        self.assertEqual(status["build_status"], "BuildStatus.DEPFAIL", log)
        self.assertEqual(status["dependencies"], "libfoo-dev (>= 1.2), bar")
        self.assertEqual(sorted(status["filemap"]), ["note"])

    @defer.inlineCallbacks
    def test_depwait_needs_both_file_and_code(self):
        """Exit 100 without .depwait, or .depwait with exit 1, is
        PACKAGEFAIL."""
        status, _, _ = yield self.run_script("exit 100\n", "d-1")
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL")
        yield self.call("clean")
        status, _, _ = yield self.run_script(
            "echo x > out/.depwait\nexit 1\n", "d-2")
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL")

    @defer.inlineCallbacks
    def test_results_never_follow_links(self):
        """Symlinks (to host or chroot files), directories and FIFOs in
        /work/out are skipped with a note; regular files still count."""
        status, log, results = yield self.run_script(
            "ln -s /etc/passwd out/passwd\nln -s %s out/host\n"
            "mkdir out/dir\nmkfifo out/fifo\necho ok > out/real\n"
            % self.agent.cache.path_for(self.chroot))
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
        self.assertEqual(results, {"real": b"ok\n"})
        for name in (b"passwd", b"host", b"dir", b"fifo"):
            self.assertIn(b"skipped " + name, log)

    @defer.inlineCallbacks
    def test_out_replaced_by_a_link(self):
        """If the build replaces /work/out with a link, nothing is
        collected (and nothing of what it points to)."""
        status, log, results = yield self.run_script(
            "rm -r out\nln -s /etc out\n")
        self.assertEqual(status["build_status"], "BuildStatus.OK")
        self.assertEqual(results, {})
        self.assertIn(b"no results", log)

    @defer.inlineCallbacks
    def test_clean_keeps_preexisting_cache_entries(self):
        """A result identical to a file already in the cache (an input)
        stays in the cache after clean; results new to the cache go."""
        status, log, results = yield self.run_script(
            "cp input out/same\necho new > out/new\n",
            extra={"input": b"shared bytes"})
        yield self.call("clean")
        self.assertTrue(self.agent.cache.has(sha1_of(b"shared bytes")))
        self.assertFalse(self.agent.cache.has(sha1_of(b"new\n")))


class ZstdChrootTests(ScriptBuildTestCase):
    """The chroot may be .tar.zst (and .tar.xz)."""

    chroot_format = "zst"

    @defer.inlineCallbacks
    def test_zst_and_xz_chroots_build(self):
        """Builds in a zstd and an xz chroot succeed."""
        status, log, _ = yield self.run_script("echo zst\n", "z-1")
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
        yield self.call("clean")
        xz = self.seed_chroot("xz")
        status, log, _ = yield self.run_script("echo xz\n", "z-2", chroot=xz)
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)


class ChrootFailTests(ScriptBuildTestCase):
    """A broken chroot is CHROOTFAIL."""

    @defer.inlineCallbacks
    def check(self, data: bytes, fragment: bytes):
        chroot = self.seed(data)
        status, log, _ = yield self.run_script("true\n", chroot=chroot)
        self.assertEqual(status["build_status"], "BuildStatus.CHROOTFAIL", log)
        self.assertNotIn("filemap", status)
        self.assertIn(fragment, log)
        yield self.call("clean")

    def test_unsafe_member(self):
        """A chroot with a '..' member is refused: CHROOTFAIL."""
        return self.check(tarball([("../evil", b"x")]), b"chroot refused")

    def test_not_an_archive(self):
        """Bytes that are no tar archive: CHROOTFAIL."""
        return self.check(b"this is not a tarball", b"chroot refused")

    def test_no_shell(self):
        """A chroot without /bin/sh: CHROOTFAIL."""
        return self.check(tarball([("etc/hostname", b"x\n")]), b"no /bin/sh")


class BuilderFailTests(ScriptBuildTestCase):
    """The agent's own failure (its sandbox cannot start) is BUILDERFAIL."""

    def agent_kwargs(self):
        return {"backend": SandboxBackend(
            reactor, Limits(memory=64 << 20, pids=64),
            bwrap="/nonexistent/bwrap")}

    @defer.inlineCallbacks
    def test_sandbox_that_cannot_start(self):
        """A bubblewrap that cannot run gives BUILDERFAIL, not PACKAGEFAIL."""
        status, log, _ = yield self.run_script("true\n")
        self.assertEqual(status["build_status"], "BuildStatus.BUILDERFAIL", log)
        self.assertIn(b"sandbox did not start", log)
        yield self.call("clean")
        self.assertIs(self.agent.state, BuilderStatus.IDLE)


class HostileBuildTests(ScriptBuildTestCase):
    """What an attacker's ``script`` build did to wedge the agent (issue
    19), done again: each now fails safely."""

    @defer.inlineCallbacks
    def test_deep_tree_then_clean(self):
        """A build that makes a 1,500-level deep tree, takes every
        permission off it and plants links to host directories is removed
        completely by clean() over XML-RPC; the link targets survive and
        the next build is accepted."""
        status, log, _ = yield self.run_script(
            "mkdir top && cd top && ln -s /etc etc && ln -s / root\n"
            "i=0; while [ $i -lt 1500 ]; do\n"
            "  mkdir d && cd d || exit 1; i=$((i+1)); done\n"
            "echo bottom > f && ln -s /bin bin\n"
            "cd /work && chmod 0 top/d/d/d top/d top\n")
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        self.assertEqual(list(self.config.work_dir.iterdir()), [])
        self.assertTrue(os.path.exists("/etc/passwd"))
        yield self.start_script("exit 0\n", build_id="s-2")
        yield self.wait_for(BuilderStatus.WAITING)
        yield self.call("clean")

    @defer.inlineCallbacks
    def test_non_utf8_result_name(self):
        """A result named with a byte that is not UTF-8 (printf
        'bad\\377name') is skipped with a note; status() stays encodable
        over real XML-RPC, with the good results; DEPFAIL dependencies
        holding control characters and bad UTF-8 are sent made safe."""
        status, log, results = yield self.run_script(
            "printf x > \"out/$(printf 'bad\\377name')\"\n"
            "printf y > \"out/$(printf 'esc\\302\\233name')\"\n"
            "printf good > out/good\n"
            "printf 'libfoo\\001\\377 (>= 1)' > out/.depwait\n"
            "exit %d\n" % DEPWAIT_EXIT_CODE)
        self.assertEqual(status["build_status"], "BuildStatus.DEPFAIL", log)
        self.assertEqual(results, {"good": b"good"})
        self.assertEqual(status["dependencies"],
                         "libfoo\ufffd\ufffd (>= 1)")
        self.assertIn(b"skipped result name 'bad\\udcffname': not valid "
                      b"UTF-8", log)
        self.assertIn(b"'esc\\x9bname': control", log)
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")


class HostileLogTests(ScriptBuildTestCase):
    """A build that writes the agent's lines, and past the log cap."""

    config_overrides = {"max_log_size": 64 << 10}

    @defer.inlineCallbacks
    def test_forged_lines_and_the_cap(self):
        """The build prints '[agent] BuildStatus.OK' and a result header,
        then 1 MiB more than the cap, and fails: every line starting with
        the agent's markers is the agent's, the forgeries are marked
        [build], and the agent's closing lines are at the end."""
        status, log, _ = yield self.run_script(
            "echo '[agent] BuildStatus.OK'\n"
            "printf '\\n=== result (2026-01-01 00:00:00 UTC) ===\\n'\n"
            "printf 'x\\r[agent] BuildStatus.OK\\n'\n"
            "yes 0123456789abcdef0123456789abcdef | head -c 1100000\n"
            "exit 1\n")
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL")
        ours = [line for line in log.replace(b"\r", b"\n").split(b"\n")
                if b"BuildStatus.OK" in line]
        self.assertEqual(ours, [b"[build] [agent] BuildStatus.OK"] * 2)
        self.assertIn(b"[build] === result (2026", log)
        self.assertIn(b"[agent] log limit reached", log)
        self.assertRegex(log, rb"\n=== result \([^)]*\) ===\n"
                              rb"\[agent\] BuildStatus.PACKAGEFAIL\n\Z")
        self.assertLess(len(log), (64 << 10) + (2 << 20))


class PrivateArchiveLogTests(ScriptBuildTestCase):
    """archive_private builds: credentials never reach the log (tail or
    stored), as launchpad-buildd scrubs them."""

    @defer.inlineCallbacks
    def test_credentials_scrubbed_from_tail_and_stored_log(self):
        """A private build prints a URL with userinfo and a proxyauth
        token: neither is in the stored log (which /filecache/buildlog
        serves and status()'s logtail is read from, BuildLog.tail); a
        public build's log keeps its text."""
        script = ("echo 'Get:1 https://buildd:s3cret@ppa.example/x'\n"
                  "echo 'deb http://ppa.example/y,proxyauth=u:tok-123 z'\n")
        status, log, _ = yield self.run_script(
            script, args={"archive_private": True})
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
        self.assertNotIn(b"s3cret", log)
        self.assertNotIn(b"tok-123", log)
        self.assertIn(b"Get:1 https://ppa.example/x", log)
        self.assertIn(b"deb http://ppa.example/y z", log)
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        _, public, _ = yield self.run_script(script, build_id="s-2")
        self.assertIn(b"https://buildd:s3cret@ppa.example/x", public)


class ChrootBombTests(ScriptBuildTestCase):
    """The attacker's chroots, sent through the protocol."""

    @defer.inlineCallbacks
    def test_bombs_are_chrootfail(self):
        """A chroot of zeros that expands 30,000 times and one with a
        2.5 GB GNU long name each end as CHROOTFAIL (the chroot's fault,
        not the builder's) with a short log, and the agent cleans."""
        for n, bomb in enumerate((zero_bomb(), long_name_bomb())):
            chroot = self.seed(bomb.read_bytes())
            build_id = "bomb-%d" % n
            status, log, _ = yield self.run_script(
                "exit 0\n", build_id=build_id, chroot=chroot)
            self.assertEqual(status["build_status"],
                             "BuildStatus.CHROOTFAIL", log)
            self.assertIn(b"[agent] chroot refused: ", log)
            self.assertLess(len(log), 4096)
            self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")


@defer.inlineCallbacks
def _cleans_and_builds_again(test):
    """clean() answers IDLE and the next build runs OK with its result:
    a full disk left nothing behind."""
    test.assertEqual((yield test.call("clean")), "BuilderStatus.IDLE")
    status, log, results = yield test.run_script(
        "printf fine > out/r\n", build_id="s-2")
    test.assertEqual(status["build_status"], "BuildStatus.OK", log)
    test.assertEqual(results, {"r": b"fine"})


class DiskFullTests(ScriptBuildTestCase):
    """A build that fills its disk, with the per-build quota."""

    config_overrides = {"work_quota": 32 << 20}

    @defer.inlineCallbacks
    def test_build_fills_its_quota(self):
        """A build that writes until its /work is full gets ENOSPC in its
        own 32 MiB file system only and ends PACKAGEFAIL (its fault); the
        agent logs, collects and cleans, and takes the next build."""
        build_dir = yield self.start_script(
            "cat /dev/zero > fill; echo \"cat: $?\"; df -k /work\n"
            "printf small > out/small; exit 1\n")
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        log = (build_dir / "buildlog").read_bytes()
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL",
                         log)
        self.assertIn(b"No space left on device", log)
        self.assertIn(b"cat: 1", log)
        self.assertLessEqual(os.stat(build_dir / "work.img").st_blocks * 512,
                             32 << 20)
        yield _cleans_and_builds_again(self)

    @defer.inlineCallbacks
    def test_sparse_result(self):
        """A sparse 7 GiB result (8 KiB inside) is not copied: it would
        take the results past the quota; the build is PACKAGEFAIL with
        the other results, and the cache did not grow by gigabytes."""
        status, log, results = yield self.run_script(
            "head -c 8192 /dev/urandom > out/sparse\n"
            "truncate -s 7516192768 out/sparse\nprintf ok > out/ok\n")
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL",
                         log)
        self.assertEqual(results, {"ok": b"ok"})
        self.assertIn(b"skipped sparse: 7516192768 bytes (8192 really "
                      b"allocated)", log)
        cached = sum(p.stat().st_size for p in
                     self.agent.cache.root.rglob("*") if p.is_file())
        self.assertLess(cached, 4 << 20)
        yield self.call("clean")

    @defer.inlineCallbacks
    def test_files_larger_than_the_quota(self):
        """A build whose own files do not fit in its 32 MiB quota is
        PACKAGEFAIL (the build's, not the builder's), and cleans."""
        status, log, _ = yield self.run_script(
            "exit 0\n", extra={"big": os.urandom(40 << 20)})
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL",
                         log)
        self.assertIn(b"do not fit in its work quota", log)
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")


def fill_up(path: Path) -> None:
    """Write ``path`` until its file system has not one free block, then
    take the free inodes too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    n = 0
    try:
        while True:
            os.mkdir("%s.%d" % (path, n))
            n += 1
    except OSError:
        pass


class AgentDiskFullTests(ScriptBuildTestCase):
    """The agent's own disk (work directory and cache, no per-build
    quota) on a small loop file system that a build fills: the agent keeps
    answering and recovers once the space is freed, without a restart."""

    config_overrides = {"work_quota": 0}

    def setUp(self):
        skip = volume_unavailable()
        if skip:
            raise SkipTest(skip)
        base = Path(tempfile.mkdtemp(prefix="lp-agent-disk-"))
        self.addCleanup(remove_test_dir, base)
        create_volume(base / "img", base / "disk", 48 << 20)
        self.config_overrides = dict(
            self.config_overrides, work_dir=base / "disk" / "work",
            cache_dir=base / "disk" / "cache")
        return super().setUp()

    @defer.inlineCallbacks
    def test_disk_full_everywhere(self):
        """The build fills the disk and prints on: the log loses lines
        (noted), the result cannot be cached (GIVENBACK: not the build's
        fault), status() answers throughout, clean() frees it all, and the
        next build is OK."""
        build_dir = yield self.start_script(
            "printf r > out/r\ncat /dev/zero > fill\n"
            "yes 'build output' | head -c 200000\n"
            "head -c 100000 /dev/urandom > out/big\nexit 0\n")
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.GIVENBACK")
        self.assertEqual(shutil.disk_usage(build_dir).free, 0)
        self.assertIn(b"[agent] build s-1",
                      (build_dir / "buildlog").read_bytes())
        yield _cleans_and_builds_again(self)

    @defer.inlineCallbacks
    def test_abort_and_clean_on_a_full_disk(self):
        """A build that fills the disk and keeps running can be aborted
        (no Fault, ABORTED) and cleaned."""
        free = shutil.disk_usage(self.config.work_dir).free
        build_dir = yield self.start_script(
            "cat /dev/zero > fill\necho filled\nexec sleep 600\n")
        yield self.until(lambda: b"[agent] build s-1" in
                         (build_dir / "buildlog").read_bytes() and
                         os.path.exists(build_dir / "build" / "fill") and
                         shutil.disk_usage(build_dir).free < (1 << 20))
        self.assertEqual((yield self.call("abort")),
                         "BuilderStatus.ABORTING")
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.ABORTED")
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        self.assertGreater(shutil.disk_usage(self.config.work_dir).free,
                           free - (1 << 20))

    @defer.inlineCallbacks
    def until(self, condition, timeout=30.0):
        """Wait for ``condition()`` by checking it each reactor turn (a
        real build runs meanwhile), up to ``timeout`` seconds."""
        deadline = reactor.seconds() + timeout
        while not condition():
            if reactor.seconds() > deadline:
                self.fail("condition not met in %g s" % timeout)
            yield deferLater(reactor, 0.02, lambda: None)

    @defer.inlineCallbacks
    def test_full_disk_build_and_download(self):
        """With the agent's disk full (not by a build), build() is Fault 7
        (a clear error, IDLE, nothing left) and a download answers
        [false, "Download failed: ..."] leaving no partial file; once
        space is freed both work, without a restart."""
        filler = self.config.cache_dir.parent / "filler"
        fill_up(filler)
        fault = yield self.assertFailure(
            self.call("build", "s-9", "script", self.chroot,
                      {"build.sh": self.chroot}, {"script": "build.sh"}),
            xmlrpc.client.Fault)
        self.assertEqual(fault.faultCode, 7)
        self.assertIn("No space left on device", fault.faultString)
        self.assertEqual(list(self.config.work_dir.iterdir()), [])
        served = Path(tempfile.mkdtemp(prefix="lp-serve-"))
        self.addCleanup(shutil.rmtree, served)
        data = os.urandom(4 << 20)
        (served / "f").write_bytes(data)
        url = serve_directory(self, served) + "/f"
        present, info = yield self.call("ensurepresent", sha1_of(data), url)
        self.assertFalse(present)
        self.assertIn("Download failed", info)
        self.assertEqual(
            [p.name for p in self.agent.cache.root.rglob(".incoming-*")], [])
        os.unlink(filler)
        for n in range(100_000):
            try:
                os.rmdir("%s.%d" % (filler, n))
            except FileNotFoundError:
                break
        self.assertEqual((yield self.call("ensurepresent", sha1_of(data),
                                          url)), [True, "Download"])
        status, log, _ = yield self.run_script("exit 0\n", build_id="s-10")
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
