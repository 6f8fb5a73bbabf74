"""Slow tier: a real buildd chroot built from the archive."""

from pathlib import Path

from twisted.trial import unittest

from lp_services.images.chroots import build_chroot
from lp_services.testing.tiers import slow


@slow
class RealChrootTests(unittest.TestCase):
    """The real buildd chroot (built once, cached; shared with the
    binarypackage tests)."""

    timeout = 600

    def test_buildd_chroot_unpacks(self):
        """The buildd tarball unpacks with the agent's safe unpacker (no
        device nodes, members at the root) and has the build tools."""
        from lp_services.slave.chroot import resolve_in_root, unpack
        result = build_chroot("bookworm", "buildd")
        root = Path(self.mktemp())
        self.assertGreater(unpack(result.path, root), 1000)
        for tool in ("/bin/sh", "/usr/bin/dpkg-buildpackage",
                     "/usr/bin/apt-get", "/usr/bin/gcc", "/usr/bin/make"):
            self.assertIsNotNone(resolve_in_root(root, tool), tool)
        self.assertEqual([], list((root / "dev").iterdir()))
        self.assertFalse(list(root.glob("var/cache/apt/archives/*.deb")))
