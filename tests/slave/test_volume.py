"""Tests of the per-build work volume (lp_services.slave.volume), with real
loop mounts."""

import errno
import os
from pathlib import Path

from twisted.trial.unittest import TestCase

from lp_services.slave.volume import (
    VolumeError, create_volume, detach_mounts, mounts_under)


def volume_unavailable() -> str | None:
    """Why loop mounts cannot be tested here, or None."""
    if os.geteuid() != 0:
        return "loop mounts need root"
    if not os.path.exists("/usr/sbin/mkfs.ext4") and \
            not os.path.exists("/sbin/mkfs.ext4"):
        return "e2fsprogs is not installed"
    return None


class VolumeTests(TestCase):
    """A build's /work is a small file system of its own."""

    skip = volume_unavailable()

    def setUp(self):
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir(parents=True)
        self.addCleanup(detach_mounts, self.base)

    def test_full_volume_is_enospc_inside_only(self):
        """Writing past the quota fails with ENOSPC inside the volume; the
        image file never grows beyond the quota; detach_mounts unmounts."""
        work = self.base / "build"
        create_volume(self.base / "work.img", work, 8 << 20)
        self.assertEqual(mounts_under(self.base), [str(work)])
        self.assertEqual(os.listdir(work), [])
        with open(work / "fill", "wb") as f:
            with self.assertRaises(OSError) as caught:
                for _ in range(64):
                    f.write(b"\0" * (1 << 20))
                    f.flush()
                    os.fsync(f.fileno())
        self.assertEqual(caught.exception.errno, errno.ENOSPC)
        (self.base / "outside").write_bytes(b"host disk still writable")
        self.assertLessEqual(os.stat(self.base / "work.img").st_size, 8 << 20)
        self.assertEqual(detach_mounts(self.base), [str(work)])
        self.assertEqual(mounts_under(self.base), [])

    def test_too_small_is_refused(self):
        """A quota below the smallest useful image is a VolumeError."""
        self.assertRaises(VolumeError, create_volume, self.base / "i",
                          self.base / "m", 1 << 20)
