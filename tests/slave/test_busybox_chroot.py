"""The busybox-static chroot tarball (lp_services.slave.busybox_chroot)."""

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from lp_services.slave.busybox_chroot import busybox_chroot

from tests.slave.helpers import sandbox_unavailable


class BusyboxChrootTests(SynchronousTestCase):
    """Built once, cached, deterministic, with applets and mount points."""

    skip = sandbox_unavailable()

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-busybox-test-"))
        self.addCleanup(shutil.rmtree, self.dir)

    def test_contents(self):
        """The tarball holds busybox, /bin/sh and nc applets, passwd with
        nobody, and the mount points; it is about 1 MB."""
        path = busybox_chroot(self.dir, "gz")
        self.assertLess(path.stat().st_size, 3 << 20)
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
            self.assertEqual(tar.getmember("bin/sh").linkname, "busybox")
            self.assertIn(b"nobody:x:65534",
                          tar.extractfile("etc/passwd").read())
        for name in ("bin/busybox", "usr/bin/nc", "proc", "dev", "tmp",
                     "work"):
            self.assertIn(name, names)

    def test_cached_and_deterministic(self):
        """A second call returns the same file untouched; a fresh build in
        another directory has the same bytes."""
        first = busybox_chroot(self.dir, "zst")
        mtime = first.stat().st_mtime_ns
        self.assertEqual(busybox_chroot(self.dir, "zst"), first)
        self.assertEqual(first.stat().st_mtime_ns, mtime)
        other = busybox_chroot(self.dir / "other", "zst")
        self.assertEqual(hashlib.sha1(first.read_bytes()).digest(),
                         hashlib.sha1(other.read_bytes()).digest())

    def test_cli(self):
        """`python -m lp_services.slave.busybox_chroot --sha1` prints the
        path and its sha1."""
        out = subprocess.run(
            [sys.executable, "-m", "lp_services.slave.busybox_chroot",
             "--format", "xz", "--cache-dir", str(self.dir), "--sha1"],
            capture_output=True, text=True, check=True).stdout.split()
        path = Path(out[0])
        self.assertTrue(path.name.endswith(".tar.xz"))
        self.assertEqual(out[1], hashlib.sha1(path.read_bytes()).hexdigest())

    def test_missing_busybox(self):
        """A missing busybox binary says which Debian package to install."""
        e = self.assertRaises(FileNotFoundError, busybox_chroot, self.dir,
                              "gz", "/nonexistent/busybox")
        self.assertIn("busybox-static", str(e))
