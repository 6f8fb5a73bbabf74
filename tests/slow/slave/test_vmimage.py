"""Slow tier: the guest image built from the archive's real kernel package."""

from pathlib import Path

from twisted.trial import unittest

from lp_services.slave.vmimage import prepare_image
from lp_services.testing.tiers import slow
from tests.slave.test_vmimage import read_cpio


@slow
class RealImageTests(unittest.TestCase):
    """The real Debian kernel package (downloaded once, cached)."""

    timeout = 300

    def test_prepare(self):
        """prepare_image() gives an ELF vmlinux and an initramfs with the
        virtio, 9p and ext4 modules and their dependencies; a second call
        uses the cache."""
        image = prepare_image()
        with open(image.kernel, "rb") as f:
            self.assertEqual(b"\x7fELF", f.read(4))
        entries = read_cpio(image.initramfs.read_bytes())
        order = entries["lib/modules/load-order"][2].decode().split()
        names = [Path(p).stem for p in order]
        for wanted in ("virtio", "virtio_ring", "virtio_pci", "9pnet",
                       "9pnet_virtio", "9p", "ext4", "jbd2"):
            self.assertIn(wanted, names)
        self.assertLess(names.index("9pnet"), names.index("9pnet_virtio"))
        self.assertTrue(image.package.startswith("linux-image-"))
        self.assertTrue(image.kernel_release.endswith("-amd64"))
        mtime = image.kernel.stat().st_mtime_ns
        again = prepare_image()
        self.assertEqual(image, again)
        self.assertEqual(mtime, again.kernel.stat().st_mtime_ns)
