"""Tests of the guest image: vmlinux extraction, module dependencies, the
initramfs (fast), and the real kernel package (slow)."""

import gzip
import lzma
import struct
from pathlib import Path

from twisted.trial import unittest

from lp_services.slave.vmimage import (
    INIT_SCRIPT,
    ImageError,
    _module_load_order,
    build_initramfs,
    extract_vmlinux,
    module_depends,
)

FAKE_ELF = b"\x7fELF" + b"\x02\x01\x01" + b"kernel body " * 1000


def fake_ko(modinfo: bytes) -> bytes:
    """A minimal 64-bit little-endian ELF with one .modinfo section."""
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    header_size = 64
    modinfo_off = header_size
    shstr_off = modinfo_off + len(modinfo)
    shoff = shstr_off + len(shstrtab)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0,
                                 64, 0, 0, 64, 3, 2)
    sections = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    sections += struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, modinfo_off,
                            len(modinfo), 0, 0, 1, 0)
    sections += struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, shstr_off,
                            len(shstrtab), 0, 0, 1, 0)
    return header + modinfo + shstrtab + sections


def read_cpio(data: bytes) -> dict:
    """name -> (mode, rdev, content) of a newc archive."""
    entries, at = {}, 0
    while True:
        assert data[at:at + 6] == b"070701", at
        fields = [int(data[at + 6 + 8 * i:at + 14 + 8 * i], 16)
                  for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_at = at + 110
        name = data[name_at:name_at + namesize - 1].decode()
        at = name_at + namesize
        at += -at % 4
        content = data[at:at + filesize]
        at += filesize
        at += -at % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = (fields[1], (fields[9], fields[10]), content)


class ExtractVmlinuxTests(unittest.SynchronousTestCase):
    """extract_vmlinux(): the extract-vmlinux method in Python."""

    def test_xz(self):
        """An xz payload after a setup header is found and decompressed."""
        bz = b"MZ setup code" * 50 + lzma.compress(
            FAKE_ELF, format=lzma.FORMAT_XZ) + b"trailer"
        self.assertEqual(FAKE_ELF, extract_vmlinux(bz))

    def test_gzip_after_false_magic(self):
        """A false magic before the real payload is skipped."""
        bz = b"junk \x1f\x8b\x08 not gzip " + gzip.compress(FAKE_ELF)
        self.assertEqual(FAKE_ELF, extract_vmlinux(bz))

    def test_not_elf(self):
        """A payload that does not decompress to ELF is refused."""
        with self.assertRaises(ImageError):
            extract_vmlinux(b"head" + gzip.compress(b"not a kernel"))

    def test_already_elf(self):
        """An uncompressed vmlinux is returned as is."""
        self.assertEqual(FAKE_ELF, extract_vmlinux(FAKE_ELF))


class ModuleTests(unittest.SynchronousTestCase):
    """module_depends() and the load order."""

    def test_depends(self):
        """depends= is read from .modinfo."""
        ko = fake_ko(b"license=GPL\0depends=virtio,virtio_ring\0name=x\0")
        self.assertEqual(["virtio", "virtio_ring"], module_depends(ko))
        self.assertEqual([], module_depends(fake_ko(b"depends=\0")))
        self.assertEqual([], module_depends(b"not elf"))

    def test_load_order(self):
        """Dependencies come before their users, each once; '-' and '_'
        are one name; a missing module is an error."""
        root = Path(self.mktemp())
        (root / "a").mkdir(parents=True)
        (root / "a" / "core.ko").write_bytes(fake_ko(b"depends=\0"))
        (root / "a" / "ring-x.ko").write_bytes(fake_ko(b"depends=core\0"))
        (root / "a" / "top.ko").write_bytes(
            fake_ko(b"depends=ring_x,core\0"))
        order = _module_load_order(root, ["top", "ring_x"])
        self.assertEqual(["core.ko", "ring-x.ko", "top.ko"],
                         [p.name for p in order])
        with self.assertRaisesRegex(ImageError, "nothere"):
            _module_load_order(root, ["nothere"])


class InitramfsTests(unittest.SynchronousTestCase):
    """build_initramfs()."""

    def test_contents(self):
        """/init, busybox, the modules under /lib/modules with their load
        order, and /dev/console as character device 5:1."""
        tmp = Path(self.mktemp())
        mods = tmp / "kernel"
        (mods / "fs").mkdir(parents=True)
        (mods / "fs" / "9p.ko").write_bytes(b"module")
        busybox = tmp / "busybox"
        busybox.write_bytes(b"\x7fELF busybox")
        out = tmp / "initramfs.cpio"
        build_initramfs(out, busybox, [mods / "fs" / "9p.ko"], mods)
        entries = read_cpio(out.read_bytes())
        mode, _, init = entries["init"]
        self.assertEqual(0o100755, mode)
        self.assertEqual(INIT_SCRIPT.encode(), init)
        self.assertEqual(b"\x7fELF busybox", entries["bin/busybox"][2])
        self.assertEqual(b"module", entries["lib/modules/fs/9p.ko"][2])
        self.assertEqual(b"fs/9p.ko\n", entries["lib/modules/load-order"][2])
        mode, rdev, _ = entries["dev/console"]
        self.assertEqual((0o020600, (5, 1)), (mode, rdev))
        self.assertEqual(0o040755, entries["lib/modules/fs"][0])

    def test_init_always_powers_off(self):
        """Every path of /init ends in poweroff -f; the command runs
        chrooted in the build root with the status written to /ctl."""
        self.assertIn("poweroff -f\n}", INIT_SCRIPT)
        self.assertTrue(INIT_SCRIPT.rstrip().endswith("poweroff -f"))
        self.assertIn('chroot /newroot /bin/sh -c "$(cat /ctl/run)"',
                      INIT_SCRIPT)
        self.assertIn('echo "$status" >/ctl/status', INIT_SCRIPT)
        self.assertIn("ro,cache=loose\" lproot /newroot", INIT_SCRIPT)
