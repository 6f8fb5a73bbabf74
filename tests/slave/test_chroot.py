"""Safe chroot unpacking (lp_services.slave.chroot)."""

import io
import os
import shutil
import stat
import tarfile
import subprocess
import tempfile
import tracemalloc
from pathlib import Path

import zstandard
from twisted.trial.unittest import SynchronousTestCase

from lp_services.slave.chroot import (
    MOUNT_POINTS, UnpackLimits, UnsafeArchive, resolve_in_root, unpack)

from tests.slave.bombs import long_name_bomb, many_members, zero_bomb
from tests.slave.helpers import busybox_tarball


def make_tar(members, compression="gz") -> bytes:
    """members: (name, type, extra) with extra = content or link target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755
            if kind == tarfile.REGTYPE:
                info.size = len(extra)
                tar.addfile(info, io.BytesIO(extra))
                continue
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = extra
            if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info)
    raw = buf.getvalue()
    if compression == "gz":
        import gzip
        return gzip.compress(raw)
    if compression == "xz":
        import lzma
        return lzma.compress(raw)
    if compression == "zst":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


class UnpackTests(SynchronousTestCase):
    """What is unpacked and what is refused."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-chroot-test-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.n = 0

    def unpack_bytes(self, data: bytes) -> Path:
        self.n += 1
        archive = self.dir / ("a%d" % self.n)
        archive.write_bytes(data)
        root = self.dir / ("root%d" % self.n)
        unpack(archive, root)
        return root

    def test_three_compressions(self):
        """gz, xz and zst (and plain tar) unpack the same tree, with the
        mount points added."""
        members = [("etc", tarfile.DIRTYPE, None),
                   ("./etc/hostname", tarfile.REGTYPE, b"box\n"),
                   ("bin/sh", tarfile.SYMTYPE, "busybox"),
                   ("bin/busybox", tarfile.REGTYPE, b"#!"),
                   ("bin/ash", tarfile.LNKTYPE, "bin/busybox")]
        for compression in ("gz", "xz", "zst", None):
            root = self.unpack_bytes(make_tar(members, compression))
            self.assertEqual((root / "etc/hostname").read_bytes(), b"box\n")
            self.assertEqual(os.readlink(root / "bin/sh"), "busybox")
            self.assertEqual((root / "bin/ash").stat().st_ino,
                             (root / "bin/busybox").stat().st_ino)
            for d in MOUNT_POINTS:
                self.assertTrue((root / d).is_dir())

    def test_busybox_chroot_unpacks_in_every_format(self):
        """The busybox chroot tarball unpacks with /bin/sh resolvable."""
        for fmt in ("gz", "xz", "zst"):
            root = self.dir / fmt
            count = unpack(busybox_tarball(fmt), root)
            self.assertGreater(count, 100)
            self.assertEqual(resolve_in_root(root, "/bin/sh"),
                             root / "bin" / "busybox")

    def assertRefused(self, members, fragment):
        e = self.assertRaises(UnsafeArchive, self.unpack_bytes,
                              make_tar(members))
        self.assertIn(fragment, str(e))

    def test_refuses_absolute_names(self):
        """An absolute member name is refused."""
        self.assertRefused([("/tmp/evil", tarfile.REGTYPE, b"x")], "absolute")

    def test_refuses_dotdot(self):
        """A member with '..' is refused and nothing is written outside."""
        self.assertRefused([("a/../../evil", tarfile.REGTYPE, b"x")], "'..'")
        self.assertFalse((self.dir / "evil").exists())

    def test_refuses_device_nodes(self):
        """Character and block devices are refused."""
        self.assertRefused([("dev/mem", tarfile.CHRTYPE, None)], "device")
        self.assertRefused([("dev/sda", tarfile.BLKTYPE, None)], "device")

    def test_refuses_symlinks_out_of_root(self):
        """A symlink whose target climbs above the root is refused;
        absolute targets (inside the chroot) are fine."""
        self.assertRefused([("a/b", tarfile.SYMTYPE, "../../etc/passwd")],
                           "outside")
        self.assertRefused([("x", tarfile.SYMTYPE, "/../etc")], "outside")
        root = self.unpack_bytes(make_tar([("lib", tarfile.SYMTYPE, "/usr/lib")]))
        self.assertEqual(os.readlink(root / "lib"), "/usr/lib")

    def test_never_writes_through_a_symlink(self):
        """A symlink planted first cannot be written through: a later
        member under it is refused and the host target is untouched."""
        outside = self.dir / "host"
        outside.mkdir()
        self.assertRefused(
            [("bin", tarfile.SYMTYPE, str(outside)),
             ("bin/evil", tarfile.REGTYPE, b"x")], "passes through")
        self.assertEqual(list(outside.iterdir()), [])

    def test_file_over_symlink_replaces_link(self):
        """A regular file member replaces a symlink of the same name
        instead of writing to its target."""
        target = self.dir / "target"
        target.write_bytes(b"host")
        root = self.unpack_bytes(make_tar(
            [("f", tarfile.SYMTYPE, str(target)),
             ("f", tarfile.REGTYPE, b"chroot")]))
        self.assertEqual(target.read_bytes(), b"host")
        self.assertFalse((root / "f").is_symlink())

    def test_refuses_hardlink_out_of_root(self):
        """A hard link naming '..' or an absolute path is refused."""
        self.assertRefused([("h", tarfile.LNKTYPE, "../../etc/passwd")], "'..'")
        self.assertRefused([("h", tarfile.LNKTYPE, "/etc/passwd")], "absolute")

    def test_drops_setuid(self):
        """Set-uid bits are not kept."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("su")
            info.mode, info.size = 0o4755, 1
            tar.addfile(info, io.BytesIO(b"x"))
        root = self.unpack_bytes(buf.getvalue())
        self.assertFalse((root / "su").stat().st_mode & stat.S_ISUID)

    def test_corrupt_archive(self):
        """Garbage and a truncated archive raise UnsafeArchive."""
        self.assertRaises(UnsafeArchive, self.unpack_bytes, b"\x1f\x8bgarbage")
        good = make_tar([("f", tarfile.REGTYPE, b"x" * 100000)])
        self.assertRaises(UnsafeArchive, self.unpack_bytes, good[:len(good) // 2])


def disk_usage(root: Path) -> int:
    """Bytes really allocated under ``root``."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class AmplificationTests(SynchronousTestCase):
    """Small archives that expand to a lot are refused early (the
    attacker's bombs of issue 19)."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-chroot-bomb-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_zero_bomb(self):
        """A 57 KB chroot holding 1.8 GB of zeros is refused before its
        data is written, by the default limits (ratio and floor)."""
        e = self.assertRaises(UnsafeArchive, unpack, zero_bomb(),
                              self.dir / "root")
        self.assertIn("unpacks to more than %d bytes" % (256 << 20), str(e))
        self.assertLess(disk_usage(self.dir / "root"), 1 << 20)

    def test_total_size_is_counted_over_members(self):
        """Many files, each small, are refused once their sum passes the
        budget."""
        data = make_tar([("f%d" % n, tarfile.REGTYPE, b"x" * 1000)
                         for n in range(20)])
        archive = self.dir / "a"
        archive.write_bytes(data)
        limits = UnpackLimits(floor=10_000, ratio=1)
        e = self.assertRaises(UnsafeArchive, unpack, archive,
                              self.dir / "root", limits)
        self.assertIn("at 'f10'", str(e))

    def test_long_name_bomb_memory(self):
        """A GNU long-name header of 2.5 GB in an 80 KB chroot is refused
        before it is read: the unpack allocates under 16 MB."""
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        e = self.assertRaises(UnsafeArchive, unpack, long_name_bomb(),
                              self.dir / "root")
        _, peak = tracemalloc.get_traced_memory()
        self.assertIn("extended header of %d bytes" % (2500 << 20), str(e))
        self.assertLess(len(str(e)), 500)
        self.assertLess(peak, 16 << 20)

    def test_member_count(self):
        """More members than max_members is refused."""
        limits = UnpackLimits(max_members=1000)
        e = self.assertRaises(UnsafeArchive, unpack, many_members(2000),
                              self.dir / "root", limits)
        self.assertIn("more than 1000 members", str(e))

    def test_header_chain(self):
        """A run of extended headers in front of one member is refused."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w",
                          format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("x")
            info.pax_headers = {"comment": "c"}
            tar.addfile(info, io.BytesIO(b""))
        one = buf.getvalue()
        header_len = one.index(b"ustar", 600) - 257  # the member's header
        pax = one[:header_len]
        archive = self.dir / "chain.tar"
        archive.write_bytes(pax * 20 + one)
        e = self.assertRaises(UnsafeArchive, unpack, archive,
                              self.dir / "root")
        self.assertIn("extended headers", str(e))

    def test_sparse_member(self):
        """A sparse member (GNU tar --sparse) is refused."""
        src = self.dir / "src"
        src.mkdir()
        with open(src / "holes", "wb") as f:
            f.seek(100 << 20)
            f.write(b"end")
        archive = self.dir / "sparse.tar"
        for fmt in ("gnu", "posix"):
            subprocess.run(["tar", "--sparse", "--format=" + fmt, "-cf",
                            str(archive), "-C", str(src), "holes"],
                           check=True)
            e = self.assertRaises(UnsafeArchive, unpack, archive,
                                  self.dir / ("root-" + fmt))
            self.assertIn("sparse", str(e))

    def test_many_directories_and_links(self):
        """More directories than the writer keeps open, with hard links
        between them, unpack right."""
        members = []
        for n in range(600):
            members.append(("d%d/f" % n, tarfile.REGTYPE, b"%d" % n))
            members.append(("d%d/h" % n, tarfile.LNKTYPE, "d%d/f" % (n // 2)))
        archive = self.dir / "dirs"
        archive.write_bytes(make_tar(members))
        root = self.dir / "root"
        self.assertEqual(unpack(archive, root), 1200)
        self.assertEqual((root / "d599" / "h").read_bytes(), b"299")


class ResolveTests(SynchronousTestCase):
    """resolve_in_root follows links as the sandbox would, never out."""

    def test_resolution(self):
        """Relative and absolute links resolve inside; loops and missing
        paths give None; '..' stops at the root."""
        root = Path(tempfile.mkdtemp(prefix="lp-resolve-"))
        self.addCleanup(shutil.rmtree, root)
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin/sh").write_text("")
        os.symlink("usr/bin", root / "bin")
        os.symlink("/../../usr/bin/sh", root / "abs")
        os.symlink("loop", root / "loop")
        self.assertEqual(resolve_in_root(root, "/bin/sh"), root / "usr/bin/sh")
        self.assertEqual(resolve_in_root(root, "abs"), root / "usr/bin/sh")
        self.assertIsNone(resolve_in_root(root, "/loop"))
        self.assertIsNone(resolve_in_root(root, "/missing"))
        self.assertEqual(resolve_in_root(root, "/../../usr"), root / "usr")


class HostileNameTests(SynchronousTestCase):
    """Names and links the file system would refuse are the archive's
    fault (UnsafeArchive, so CHROOTFAIL), never an OSError (BUILDERFAIL)."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-chroot-names-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def refused(self, members, words):
        archive = self.dir / "a"
        archive.write_bytes(make_tar(members))
        e = self.assertRaises(UnsafeArchive, unpack, archive,
                              self.dir / "root")
        self.assertIn(words, str(e))
        self.assertLess(len(str(e)), 500)
        shutil.rmtree(self.dir / "root")

    def test_refused_names(self):
        """Too deep, too long, a component over 255 bytes, a symlink
        target over PATH_MAX, a member where the file system says no."""
        self.refused([("a/" * 300 + "f", tarfile.REGTYPE, b"")], "deeper")
        self.refused([(("d" * 200 + "/") * 21 + "f", tarfile.REGTYPE, b"")],
                     "longer than 4095")
        self.refused([("x" * 300, tarfile.REGTYPE, b"")], "255 bytes")
        self.refused([("l", tarfile.SYMTYPE, "t/" * 2100)], "symlink target")
        self.refused([("f", tarfile.REGTYPE, b"x"),
                      ("h", tarfile.LNKTYPE, "missing")], "cannot be written")

    def test_directory_modes_are_kept(self):
        """Directory modes other than 0755 are applied at the end (deepest
        first, owner rwx kept), after the directories' members are
        written."""
        members = [("ro", tarfile.DIRTYPE, None), ("ro/f", tarfile.REGTYPE,
                                                    b"x")]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, kind, data in members:
                info = tarfile.TarInfo(name)
                info.type = kind
                info.mode = 0o550 if kind == tarfile.DIRTYPE else 0o644
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
        archive = self.dir / "modes.tar"
        archive.write_bytes(buf.getvalue())
        root = self.dir / "root"
        unpack(archive, root)
        self.assertEqual(stat.S_IMODE(os.stat(root / "ro").st_mode), 0o750)
        self.assertEqual(stat.S_IMODE(os.stat(root / "ro" / "f").st_mode),
                         0o644)
