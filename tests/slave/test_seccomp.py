"""The seccomp filter (lp_services.slave.seccomp), loaded by the real
bubblewrap in the real id range, probed with real system calls (perl's
``syscall``, from the host's read-only root: perl-base is Essential)."""

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from lp_services.slave import idmap, seccomp
from lp_services.slave.idmap import IdRange
from lp_services.slave.sandbox import SECCOMP_FD, USERNS_FD, bwrap_argv

from tests.slave.helpers import sandbox_unavailable

#: What each probe passes: (name, arguments).
_PROBES = {
    "keyctl": (0, -3),                    # KEYCTL_GET_KEYRING_ID, session
    "add_key": (0, 0, 0, 0, -3),
    "request_key": (0, 0, 0, 0),
    "bpf": (0, 0, 0),
    "perf_event_open": (0, 0, -1, -1, 0),
    "kexec_load": (0, 0, 0, 0),
    "init_module": (0, 0, 0),
    "finit_module": (-1, 0, 0),
    "mount": (0, 0, 0, 0, 0),
    "umount2": (0, 0),
    "setns": (-1, 0),
    "open_by_handle_at": (-1, 0, 0),
    "unshare": (0x10000000,),             # CLONE_NEWUSER
    "clone3": (0, 0),
    "socket": (16, 3, 12),                # AF_NETLINK, SOCK_RAW, NETFILTER
}


class FilterTests(SynchronousTestCase):
    """The compiled program."""

    def test_program_is_bpf_and_cached(self):
        """The program is a whole number of 8-byte BPF instructions and
        compiled once; memfd() gives a descriptor reading it from 0."""
        program = seccomp.filter_program()
        self.assertTrue(program)
        self.assertEqual(len(program) % 8, 0)
        self.assertIs(seccomp.filter_program(), program)
        fd = seccomp.memfd(program)
        try:
            self.assertEqual(os.read(fd, len(program) + 1), program)
        finally:
            os.close(fd)

    def test_every_denied_name_is_known_here(self):
        """The calls the issue names resolve on this architecture (a typo
        would silently allow one)."""
        for name in ("keyctl", "add_key", "bpf", "perf_event_open",
                     "kexec_load", "init_module", "finit_module", "mount",
                     "setns", "open_by_handle_at"):
            self.assertIsNotNone(seccomp.syscall_number(name), name)
        self.assertIsNone(seccomp.syscall_number("no_such_call"))


class SandboxedFilterTests(SynchronousTestCase):
    """The filter as builds get it."""

    skip = sandbox_unavailable() or (
        None if os.geteuid() == 0 else "needs root (the agent's case)")

    def setUp(self):
        self.work = Path(tempfile.mkdtemp(prefix="lp-seccomp-test-"))
        self.addCleanup(shutil.rmtree, self.work)
        idmap.shift_tree(self.work, IdRange().host(1000),
                         IdRange().host(1000))

    def run_perl(self, code: str, with_filter: bool = True) -> str:
        """Run perl ``code`` as a build does (host / read-only as root)."""
        inner = bwrap_argv(
            Path("/"), idmap.alias(0), ["/usr/bin/perl", "-e", code],
            as_root=True, bwrap=shutil.which("bwrap"), status_fd=None,
            seccomp_fd=SECCOMP_FD if with_filter else None)
        argv = idmap.launcher_argv(IdRange(), USERNS_FD, inner,
                                   expose=[self.work])
        fd = seccomp.memfd(seccomp.filter_program())
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", 'exec "$@" %d<&%d' % (SECCOMP_FD, fd),
                 "sh", *argv], capture_output=True, timeout=60,
                pass_fds=(fd,))
        finally:
            os.close(fd)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.decode()

    def probe_code(self) -> str:
        lines = []
        for name, args in _PROBES.items():
            number = seccomp.syscall_number(name)
            lines.append('$! = 0; $r = syscall(%d, %s); print "%s $r ", $!+0,'
                         ' "\\n";' % (number, ", ".join(map(str, args)), name))
        return "\n".join(lines)

    def results(self, output: str) -> dict:
        return {name: (int(r), int(e)) for name, r, e in
                (line.split() for line in output.splitlines())}

    def test_denied_calls_fail_with_eperm(self):
        """Every probe fails: EPERM, except clone3 (ENOSYS, so the C
        library falls back to clone, which the filter can check)."""
        found = self.results(self.run_perl(self.probe_code()))
        self.assertEqual(set(found), set(_PROBES))
        for name, (result, err) in found.items():
            want = errno.ENOSYS if name == "clone3" else errno.EPERM
            self.assertEqual((result, err), (-1, want), name)

    def test_without_the_filter_the_probes_differ(self):
        """Control: without --seccomp the same probes fail otherwise (the
        kernel's own checks: EINVAL, EFAULT, EBADF, ENOSPC...) or not at
        all, so the EPERMs above are the filter's doing."""
        found = self.results(self.run_perl(self.probe_code(),
                                           with_filter=False))
        self.assertNotEqual(found["keyctl"], (-1, errno.EPERM))
        self.assertNotEqual(found["unshare"], (-1, errno.EPERM))
        self.assertNotEqual(found["clone3"], (-1, errno.ENOSYS))

    def test_ordinary_work_still_runs(self):
        """fork, pipes, threads-like clone without new namespaces and a
        plain socket still work under the filter."""
        out = self.run_perl(
            'pipe(R, W) or die; my $pid = fork(); die "fork" unless '
            'defined $pid; if (!$pid) { print W "child\\n"; exit 0 } '
            'close W; print scalar <R>; waitpid($pid, 0); '
            'socket(S, 1, 1, 0) or die "socket: $!"; print "ok\\n";')
        self.assertEqual(out, "child\nok\n")
