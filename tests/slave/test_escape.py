"""The escape suite, seen from the outside: what a build's ids are on the
host, what it left on the host, whether host root's keys or /proc/sys are
within reach, whether it can make a nested user namespace. Every probe is
a real script build in the real sandbox (busybox chroot); the same probes
run in the real dependency-installation sandbox of ``binarypackage``.
"""

import ctypes
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from lp_services.slave import seccomp
from lp_services.slave.binarypackage import dep_install_command
from lp_services.slave.chroot import unpack
from lp_services.slave.idmap import BUILD_UID, IdRange, shift_tree
from lp_services.slave.sandbox import SECCOMP_FD
from lp_services.protocol.states import BuilderStatus

from tests.slave.helpers import (
    ScriptBuildTestCase, busybox_tarball, processes_matching,
    sandbox_unavailable)

#: What every probe writes to /work/out (the same script for both steps).
PROBES = r"""
cat /proc/self/uid_map > out/uid_map
cat /proc/self/gid_map > out/gid_map
for f in kernel/core_pattern kernel/modprobe kernel/hostname \
         vm/drop_caches fs/binfmt_misc/register user/max_user_namespaces; do
    if echo x > /proc/sys/$f; then echo "$f written"; else echo "$f refused"; fi
done > out/proc_sys 2>/dev/null
if echo b > /proc/sysrq-trigger; then echo written; else echo refused; fi \
    > out/sysrq 2>/dev/null
cat /proc/keys > out/keys 2>&1
cat /proc/key-users > out/key_users 2>&1
if unshare -U true 2>/dev/null; then echo made; else echo refused; fi \
    > out/userns
if unshare -r true 2>/dev/null; then echo made; else echo refused; fi \
    >> out/userns
cp /bin/busybox /work/su && chmod 4755 /work/su
cp /bin/busybox /work/sg && chmod 2755 /work/sg
cp /bin/busybox out/su && chmod 6755 out/su
echo done > out/done
"""

_KEY_SPEC_SESSION_KEYRING = -3
_KEYCTL_REVOKE = 3
#: x86_64 syscall numbers (add_key, keyctl): the host side of the key test.
_SYS = {"x86_64": (248, 250)}


def add_session_key(test: TestCase, description: bytes) -> None:
    """Add a key to the test process's session keyring (which the agent,
    in this process, would hand on to its children); revoke it at the
    end. Skips where the syscall numbers are not known."""
    numbers = _SYS.get(platform.machine())
    if numbers is None:
        raise test.skipTest("no syscall numbers for %s" % platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    payload = b"host-root-secret"
    serial = libc.syscall(numbers[0], b"user", description, payload,
                          len(payload), _KEY_SPEC_SESSION_KEYRING)
    if serial < 0:
        raise test.skipTest("add_key: %s" % os.strerror(ctypes.get_errno()))
    test.addCleanup(libc.syscall, numbers[1], _KEYCTL_REVOKE, serial)


class OutsideViewMixin:
    """Checks of a probe run's results against the host."""

    ids: IdRange

    def check_maps(self, results):
        """The build's own maps (read inside, where the outside column is
        the parent namespace's, i.e. the host's) map nothing below or above
        the dedicated range."""
        for name in ("uid_map", "gid_map"):
            lines = results[name].decode().split("\n")
            rows = [line.split() for line in lines if line.strip()]
            self.assertTrue(rows, name)
            for inside, outside, count in rows:
                self.assertTrue(self.ids.contains(int(outside)), rows)
                self.assertTrue(
                    self.ids.contains(int(outside) + int(count) - 1), rows)

    def check_refusals(self, results):
        """Every write to /proc/sys and /proc/sysrq-trigger failed; no
        nested user namespace was made."""
        for line in results["proc_sys"].decode().splitlines():
            self.assertTrue(line.endswith("refused"), line)
        self.assertEqual(len(results["proc_sys"].splitlines()), 6)
        self.assertEqual(results["sysrq"], b"refused\n")
        self.assertEqual(results["userns"], b"refused\nrefused\n")

    def check_left_files(self, work: Path, result_path: Path):
        """What the build left in /work belongs to the range (never to
        host root or a host user) and carries no set-uid/set-gid bit; the
        result copy in the cache neither."""
        for name in ("su", "sg"):
            st = os.lstat(work / name)
            self.assertTrue(self.ids.contains(st.st_uid), st)
            self.assertTrue(self.ids.contains(st.st_gid), st)
            self.assertEqual(st.st_mode & (stat.S_ISUID | stat.S_ISGID), 0,
                             oct(st.st_mode))
        st = os.stat(result_path)
        self.assertEqual(st.st_mode & (stat.S_ISUID | stat.S_ISGID), 0)
        self.assertEqual(st.st_uid, os.geteuid())


class ScriptEscapeTests(OutsideViewMixin, ScriptBuildTestCase):
    """Script builds on the sandbox backend."""

    config_overrides = {"build_timeout": 60.0}

    def setUp(self):
        d = super().setUp()

        def ready(_):
            self.ids = self.agent.backend.ids
            if self.ids is None:
                raise self.skipTest("the agent is not root: no id range")
        return d.addCallback(ready)

    @defer.inlineCallbacks
    def test_build_process_ids_seen_from_the_host(self):
        """While the build runs, the host sees its processes as the build
        user's range id (every real, effective, saved and filesystem uid
        and gid), with no supplementary groups, and its uid_map / gid_map
        (read by the host) name only range ids."""
        marker = "ids" + uuid.uuid4().hex[:8]
        build_dir = yield self.start_script(
            "sh -c 'while [ ! -e /work/go ]; do sleep 0.05; done; : %s'\n"
            "echo ok > out/ok\n" % marker)
        for _ in range(400):
            pids = processes_matching(marker)
            if pids:
                break
            yield _tick()
        self.assertTrue(pids)
        status = Path("/proc/%d/status" % pids[0]).read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        expected = str(self.ids.host(BUILD_UID))
        self.assertEqual(fields["Uid"].split(), [expected] * 4)
        self.assertEqual(fields["Gid"].split(), [expected] * 4)
        self.assertEqual(fields["Groups"].split(), [])
        self.assertEqual(fields["CapEff"].strip(), "0000000000000000")
        for name in ("uid_map", "gid_map"):
            rows = Path("/proc/%d/%s" % (pids[0], name)).read_text().split()
            self.assertEqual(rows, ["0", str(self.ids.base), "65536"])
        (build_dir / "build" / "go").write_text("go")
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.OK")

    @defer.inlineCallbacks
    def test_probes(self):
        """/proc/sys, sysrq, nested user namespaces refused; the maps name
        only range ids; the files the build left in /work and its results
        are not set-uid/set-gid and belong to no host user; the host's
        core_pattern is unchanged."""
        core_pattern = Path("/proc/sys/kernel/core_pattern").read_bytes()
        status, log, results = yield self.run_script(PROBES)
        self.assertEqual(results.get("done"), b"done\n", log)
        self.check_maps(results)
        self.check_refusals(results)
        self.check_left_files(
            self.config.work_dir / "s-1" / "build",
            self.agent.cache.path_for(status["filemap"]["su"]))
        self.assertEqual(Path("/proc/sys/kernel/core_pattern").read_bytes(),
                         core_pattern)
        # The agent (host root) still removes everything the build left.
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        self.assertFalse((self.config.work_dir / "s-1").exists())

    @defer.inlineCallbacks
    def test_host_keys_invisible(self):
        """A key in the agent's own session keyring (host root's) is not
        listed in the build's /proc/keys or /proc/key-users."""
        description = ("lp-escape-%s" % uuid.uuid4().hex).encode()
        add_session_key(self, description)
        self.assertIn(description, Path("/proc/keys").read_bytes())
        status, log, results = yield self.run_script(PROBES)
        self.assertEqual(results.get("done"), b"done\n", log)
        self.assertNotIn(description, results["keys"])
        self.assertNotIn(b"host-root-secret", log)
        for line in results["key_users"].splitlines():
            uid = int(line.split(b":")[0])
            self.assertNotEqual(uid, 0, results["key_users"])


class DependencyStepEscapeTests(OutsideViewMixin, TestCase):
    """The same probes in the dependency-installation sandbox of
    ``binarypackage`` (root inside, writable chroot, host network),
    started exactly as the build manager starts it."""

    skip = sandbox_unavailable() or (
        None if os.geteuid() == 0 else "needs root (the agent's case)")

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="lp-depstep-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.root = self.tmp / "chroot"
        unpack(busybox_tarball("gz"), self.root)
        self.work = self.tmp / "build"
        (self.work / "out").mkdir(parents=True)
        self.ids = IdRange()
        shift_tree(self.root, self.ids.host(0), self.ids.host(0))

    def run_step(self, script: str) -> tuple[int, bytes]:
        """Run ``script`` as the dependency step would; its /work/out is
        copied to the chroot's /out by the script, since /work is
        read-only there."""
        argv = dep_install_command(self.root, self.work, script, self.ids)
        fd = seccomp.memfd(seccomp.filter_program())
        try:
            # The program on SECCOMP_FD, as the build manager passes it.
            done = subprocess.run(
                ["/bin/sh", "-c", 'exec "$@" %d<&%d' % (SECCOMP_FD, fd),
                 "sh", *argv],
                capture_output=True, timeout=120, pass_fds=(fd,))
        finally:
            os.close(fd)
        return done.returncode, done.stdout + done.stderr

    def test_probes(self):
        """As root inside the step: only range ids mapped, /proc/sys and
        sysrq writes refused, no nested user namespace, the host's keys
        invisible; what it leaves in the chroot belongs to the range and
        keeps no set-uid bit."""
        description = ("lp-escape-%s" % uuid.uuid4().hex).encode()
        add_session_key(self, description)
        script = ("mkdir -p /probe/out && cd /probe && "
                  + PROBES.replace("/work/", "/probe/"))
        code, output = self.run_step(script)
        self.assertEqual(code, 0, output)
        probe = self.root / "probe"
        results = {p.name: p.read_bytes() for p in (probe / "out").iterdir()}
        self.assertEqual(results.get("done"), b"done\n", output)
        self.check_maps(results)
        self.check_refusals(results)
        self.assertNotIn(description, results["keys"])
        for name in ("su", "sg"):
            st = os.lstat(probe / name)
            self.assertTrue(self.ids.contains(st.st_uid), st)
            self.assertEqual(st.st_uid, self.ids.host(0))

    def test_work_is_read_only_and_chown_works(self):
        """The step cannot write /work; chown between inside ids works
        (what dpkg needs to unpack packages owned by other users)."""
        code, output = self.run_step(
            "touch /work/x 2>/dev/null && echo work-written\n"
            "mkdir -p /probe && touch /probe/f && chown 5:60 /probe/f "
            "&& echo chown-ok\n")
        self.assertEqual(code, 0, output)
        self.assertNotIn(b"work-written", output)
        self.assertIn(b"chown-ok", output)
        st = os.lstat(self.root / "probe" / "f")
        self.assertEqual((st.st_uid, st.st_gid),
                         (self.ids.host(5), self.ids.host(60)))
        self.assertFalse((self.work / "x").exists())


def _tick():
    d = defer.Deferred()
    reactor.callLater(0.05, d.callback, None)
    return d
