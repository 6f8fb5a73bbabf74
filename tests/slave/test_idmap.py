"""The build's id range (lp_services.slave.idmap): the range, the check
that it is free, moving trees into it, and the real launcher."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from lp_services.slave import idmap
from lp_services.slave.idmap import (
    DEFAULT_BASE, RANGE_SIZE, IdRange, IdRangeError, check_free, shift_tree,
    strip_privilege_bits)
from lp_services.slave.tree import remove_tree


def _not_root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (the agent's case)"


class IdRangeTests(SynchronousTestCase):
    """The range itself."""

    def test_default_range(self):
        """The default maps 65,536 ids from 0x70000000; inside id N is host
        id base + N; the uid_map line says so."""
        ids = IdRange()
        self.assertEqual((ids.base, ids.size, ids.last),
                         (DEFAULT_BASE, RANGE_SIZE,
                          DEFAULT_BASE + RANGE_SIZE - 1))
        self.assertEqual(ids.host(1000), DEFAULT_BASE + 1000)
        self.assertTrue(ids.contains(ids.last))
        self.assertFalse(ids.contains(ids.base - 1))
        self.assertEqual(ids.map_line(), "0 %d 65536\n" % DEFAULT_BASE)
        self.assertRaises(IdRangeError, ids.host, RANGE_SIZE)

    def test_refused_bases(self):
        """A base below 65536 (host users' ids, root among them), past the
        largest id, or not an integer is refused."""
        for base in (0, 1000, 65535, (1 << 32) - RANGE_SIZE, "200000",
                     True):
            self.assertRaises(IdRangeError, IdRange, base)


class CheckFreeTests(SynchronousTestCase):
    """The start-up check: the range owns nothing on the host."""

    def setUp(self):
        self.etc = Path(tempfile.mkdtemp(prefix="lp-idmap-etc-"))
        self.addCleanup(shutil.rmtree, self.etc)
        self.ids = IdRange(300000)

    def test_free_range_passes(self):
        """No overlapping user, group or subordinate grant: no error
        (a grant just below and one just above are fine)."""
        (self.etc / "subuid").write_text("alice:100000:200000\n"
                                         "bob:365536:65536\n")
        check_free(self.ids, self.etc, users=[("root", 0)],
                   groups=[("root", 0), ("big", 299999)])

    def test_user_group_or_grant_inside_is_refused(self):
        """A host user or group with an id in the range, or a
        /etc/subuid or /etc/subgid grant overlapping it, is refused with a
        message naming it and the key to change."""
        cases = [
            dict(users=[("mallory", 300005)], groups=[]),
            dict(users=[], groups=[("staff", 365535)]),
        ]
        for kw in cases:
            e = self.assertRaises(IdRangeError, check_free, self.ids,
                                  self.etc, **kw)
            self.assertIn("id_range_base", str(e))
        for name in ("subuid", "subgid"):
            (self.etc / name).write_text("#\ncarol:250000:60000\n")
            e = self.assertRaises(IdRangeError, check_free, self.ids,
                                  self.etc, users=[], groups=[])
            self.assertIn("carol", str(e))
            self.assertIn(name, str(e))
            (self.etc / name).unlink()

    def test_this_host_default_is_free(self):
        """On this machine the default range is free (the real passwd,
        group, subuid and subgid)."""
        check_free(IdRange())


class TreeTests(SynchronousTestCase):
    """Moving the agent's files into the range and stripping bits."""

    skip = _not_root()

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="lp-idmap-tree-"))
        self.addCleanup(remove_tree, self.tmp)

    def test_shift_tree_never_follows_links(self):
        """Every entry (the links themselves too) gets the new owner; a
        link's target outside the tree keeps its owner."""
        outside = self.tmp / "outside"
        outside.write_text("host file")
        tree = self.tmp / "tree"
        (tree / "a" / "b").mkdir(parents=True)
        (tree / "a" / "b" / "f").write_text("x")
        (tree / "link").symlink_to(outside)
        (tree / "dirlink").symlink_to(self.tmp)
        count = shift_tree(tree, 300000, 300001)
        self.assertEqual(count, 6)
        for path in (tree, tree / "a", tree / "a" / "b", tree / "a" / "b" /
                     "f", tree / "link", tree / "dirlink"):
            st = os.lstat(path)
            self.assertEqual((st.st_uid, st.st_gid), (300000, 300001), path)
        self.assertEqual(os.stat(outside).st_uid, 0)
        self.assertEqual(os.stat(self.tmp).st_uid, 0)

    def test_strip_privilege_bits(self):
        """Set-uid and set-gid bits are cleared from regular files at any
        depth; other mode bits stay; links are not followed."""
        outside = self.tmp / "outside"
        outside.write_text("x")
        os.chmod(outside, 0o4755)
        tree = self.tmp / "tree"
        (tree / "d").mkdir(parents=True)
        (tree / "su").write_text("x")
        os.chmod(tree / "su", 0o4755)
        (tree / "d" / "sg").write_text("x")
        os.chmod(tree / "d" / "sg", 0o2750)
        (tree / "link").symlink_to(outside)
        self.assertEqual(strip_privilege_bits(tree), 2)
        self.assertEqual(stat.S_IMODE(os.stat(tree / "su").st_mode), 0o755)
        self.assertEqual(stat.S_IMODE(os.stat(tree / "d" / "sg").st_mode),
                         0o750)
        self.assertEqual(stat.S_IMODE(os.stat(outside).st_mode), 0o4755)

    def test_deeper_than_the_recursion_limit(self):
        """A build's 3,000-level tree (deeper than Python's recursion limit
        and longer than PATH_MAX) is shifted and stripped to the bottom."""
        from tests.slave.test_tree import deep_tree
        tree = self.tmp / "deep"
        deep_tree(tree, 3000, name="d" * 30)
        fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(3000):
                child = os.open("d" * 30, os.O_RDONLY | os.O_DIRECTORY,
                                dir_fd=fd)
                os.close(fd)
                fd = child
            self.assertEqual(shift_tree(tree, 300000, 300001), 3002)
            # After the shift: chown itself clears set-uid bits.
            os.chmod("bottom", 0o4755, dir_fd=fd)
            self.assertEqual(strip_privilege_bits(tree), 1)
            st = os.stat("bottom", dir_fd=fd)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)),
                             (300000, 0o755))
        finally:
            os.close(fd)

    def test_a_vanished_tree_is_nothing(self):
        """A work directory removed before the walk (an abort racing the
        strip) is not an error: nothing to shift or strip."""
        self.assertEqual(shift_tree(self.tmp / "gone", 300000, 300000), 0)
        self.assertEqual(strip_privilege_bits(self.tmp / "gone" / "x"), 0)


class LauncherTests(SynchronousTestCase):
    """The real launcher, seen from the host."""

    skip = _not_root()

    def run_launcher(self, command, expose=(), base=300000):
        argv = idmap.launcher_argv(IdRange(base), 5, command, expose=expose)
        return subprocess.run(argv, capture_output=True, timeout=60)

    def test_namespace_map_seen_from_the_host(self):
        """The command runs in a user namespace whose uid_map and gid_map,
        read by the host, map 0-65535 onto the range only; it holds the
        namespace on fd 5; nested user namespaces are refused there."""
        script = ("import os, sys\n"
                  "print(open('/proc/self/uid_map').read().split())\n"
                  "print(open('/proc/self/gid_map').read().split())\n"
                  "print(os.readlink('/proc/self/fd/5') =="
                  " os.readlink('/proc/self/ns/user'))\n"
                  "print(os.getgroups())\n")
        out = self.run_launcher([sys.executable, "-c", script])
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.decode().splitlines()
        self.assertEqual(lines[:3], ["['0', '0', '4294967295']",
                                     "['0', '0', '4294967295']", "False"])
        self.assertEqual(lines[3], "[]")
        # The namespace itself (fd 5), as the host sees it: a helper in it.
        check = self.run_launcher([
            "/bin/sh", "-c",
            "exec 6</proc/self/fd/5; nsenter --user=/proc/self/fd/6 "
            "--preserve-credentials cat /proc/self/uid_map /proc/self/gid_map"
            " /proc/sys/user/max_user_namespaces"])
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertEqual(check.stdout.split(),
                         [b"0", b"300000", b"65536"] * 2 + [b"0"])

    def test_expose_binds_at_aliases_privately(self):
        """Exposed directories appear at /run/lp-sandbox/N for the command
        only; the host's /run/lp-sandbox stays empty."""
        d = self.tmp_dir()
        (d / "marker").write_text("here")
        out = self.run_launcher(["cat", idmap.alias(0) + "/marker"],
                                expose=[d])
        self.assertEqual((out.returncode, out.stdout), (0, b"here"),
                         out.stderr)
        self.assertEqual(os.listdir(idmap.ALIAS_DIR), [])

    def test_command_gets_default_signal_actions(self):
        """The command does not inherit the launcher's (Python's) ignored
        SIGPIPE and SIGXFSZ: ``yes | head`` ends instead of spinning on
        EPIPE."""
        out = self.run_launcher(["/bin/sh", "-c",
                                 "grep SigIgn /proc/self/status"])
        self.assertEqual(out.returncode, 0, out.stderr)
        ignored = int(out.stdout.split()[1], 16)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            self.assertFalse(ignored & (1 << (sig - 1)), sig)
        out = self.run_launcher(["/bin/sh", "-c", "yes | head -c 10"])
        self.assertEqual((out.returncode, out.stdout), (0, b"y\n" * 5))

    def test_bad_arguments_fail_clearly(self):
        """A bad base or a missing command exits non-zero with a message
        and runs nothing."""
        argv = idmap.launcher_argv(IdRange(300000), 5, ["true"])
        argv[argv.index("300000")] = "5"
        out = subprocess.run(argv, capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 125)
        self.assertIn(b"lp-sandbox: the id range base 5", out.stderr)
        out = subprocess.run([sys.executable, "-m", "lp_services.slave.idmap",
                              "300000", "5", "--"], capture_output=True)
        self.assertEqual(out.returncode, 2)
        self.assertIn(b"usage", out.stderr)
        for missing in ("no-such-command-lp", "/no/such/command"):
            out = self.run_launcher([missing])
            self.assertEqual(out.returncode, 125)
            self.assertIn(b"lp-sandbox: cannot run", out.stderr)

    def tmp_dir(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix="lp-idmap-"))
        self.addCleanup(shutil.rmtree, d)
        return d
