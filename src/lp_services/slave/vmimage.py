"""Kernel and initramfs for the `qemu` backend's guests, prepared from
Debian packages and cached.

The kernel is the uncompressed ``vmlinux`` inside the ``/boot/vmlinuz-*``
of a Debian ``linux-image-*-amd64`` package (fetched with ``apt-get
download``, never installed): the compressed payload is found by its magic
number and decompressed in Python, as the kernel's ``extract-vmlinux``
script does with external tools.  Booting the uncompressed image directly
saves the guest decompressing it under software emulation.

The initramfs is made by the project: busybox-static, the virtio, 9p and
ext4 modules of that same kernel package (with their dependencies, read
from each module's ``.modinfo``), and an ``/init`` that mounts the chroot
(9p tag ``lproot``, read-only) and the work share (9p tag ``lpwork``),
runs the build command given on the control share (9p tag ``lpctl``),
writes its exit status there and powers the guest off.

Everything lands in ``<cache_root()>/vm/<package>_<version>/``; a second
call is a few ``stat`` calls.  See docs/virtualization.md.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import lzma
import os
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

from lp_services.images.chroots import cache_lock, cache_root

__all__ = [
    "GuestImage",
    "ImageError",
    "INIT_SCRIPT",
    "MODULES",
    "build_initramfs",
    "extract_vmlinux",
    "kernel_package",
    "module_depends",
    "prepare_image",
]


class ImageError(Exception):
    """The kernel or initramfs could not be prepared (one clear line)."""


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """A prepared, cached guest image."""

    kernel: Path          # uncompressed vmlinux (ELF)
    initramfs: Path       # newc cpio, uncompressed
    kernel_release: str   # e.g. "6.1.0-57-amd64"
    package: str          # e.g. "linux-image-6.1.0-57-amd64"
    version: str          # the package's Debian version


# The modules the guest needs; their dependencies are added from .modinfo.
# virtio_pci: the PCI transport of every virtio device on `-M pc`;
# 9pnet_virtio + 9p: the root, work and control shares; virtio_blk + ext4:
# an ext4 image root where 9p is too slow (unused by default).
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "virtio_blk", "ext4")

# /init of the guest.  It runs as PID 1 under busybox; any failure before
# the command runs is reported on the console and in /ctl/status as
# "init:<reason>", and the guest always ends in `poweroff -f`.
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() {
    echo "lp-guest: $*" >/dev/console
    [ -d /ctl/.mounted ] && echo "init:$*" >/ctl/status
    sync
    poweroff -f
}
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m" || fail "insmod $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /ctl /newroot
mount -t 9p -o "$opts,cache=none" lpctl /ctl || fail "no control share"
mkdir -p /ctl/.mounted
mount -t 9p -o "$opts,ro,cache=loose" lproot /newroot || fail "no root share"
mount -t 9p -o "$opts,cache=none" lpwork /newroot/work || fail "no work share"
mount -t proc proc /newroot/proc || fail "no /proc in root"
mount -t devtmpfs dev /newroot/dev || fail "no /dev in root"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "no /tmp in root"
[ -d /newroot/sys ] && mount -t sysfs -o ro sys /newroot/sys
echo "lp-guest: booted in $(cut -d' ' -f1 /proc/uptime) s" >/dev/console
chroot /newroot /bin/sh -c "$(cat /ctl/run)" </dev/null >/dev/console 2>&1
status=$?
echo "$status" >/ctl/status
sync
echo "lp-guest: exit status $status, powering off" >/dev/console
poweroff -f
"""

# Compressed-payload magics inside a bzImage, as extract-vmlinux tries them.
_MAGICS = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00\x00", "lzma"),
)


def _decompress(kind: str, data: bytes) -> bytes:
    """Decompress a stream that may have trailing garbage after it."""
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if kind == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if kind == "bzip2":
        return bz2.BZ2Decompressor().decompress(data)
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise ValueError(kind)


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage.

    Tries every compression magic at every offset where it occurs (first
    occurrence first), keeping the first payload that decompresses to an
    ELF image — the method of the kernel's scripts/extract-vmlinux.
    """
    if bzimage[:4] == b"\x7fELF":
        return bzimage
    candidates = []
    for magic, kind in _MAGICS:
        start = 0
        while (offset := bzimage.find(magic, start)) != -1:
            candidates.append((offset, kind))
            start = offset + 1
    for offset, kind in sorted(candidates):
        try:
            out = _decompress(kind, bzimage[offset:])
        except Exception:  # any codec error: a false magic match
            continue
        if out[:4] == b"\x7fELF":
            return out
    raise ImageError("no compressed ELF kernel found in the bzImage")


def _elf_section(data: bytes, wanted: str) -> bytes | None:
    """The contents of one section of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size
        return struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)

    strtab = header(shstrndx)
    names = data[strtab[4]:strtab[4] + strtab[5]]
    for i in range(shnum):
        h = header(i)
        name = names[h[0]:names.index(b"\0", h[0])].decode()
        if name == wanted:
            return data[h[4]:h[4] + h[5]]
    return None


def module_depends(ko: bytes) -> list[str]:
    """The `depends=` list of a kernel module (its .modinfo section)."""
    info = _elf_section(ko, ".modinfo") or b""
    for field in info.split(b"\0"):
        if field.startswith(b"depends="):
            value = field[len(b"depends="):].decode()
            return [d for d in value.split(",") if d]
    return []


def _module_load_order(modules_dir: Path, wanted) -> list[Path]:
    """The .ko files for `wanted` and their dependencies, dependencies
    first.  Module names treat '-' and '_' alike, as modprobe does."""
    index = {}
    for ko in modules_dir.rglob("*.ko"):
        index[ko.stem.replace("-", "_")] = ko
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str):
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        if key not in index:
            raise ImageError(f"kernel module {name} is not in the package")
        for dep in module_depends(index[key].read_bytes()):
            visit(dep)
        order.append(index[key])

    for name in wanted:
        visit(name)
    return order


def _cpio_entry(out, name: str, mode: int, data: bytes = b"", ino: int = 0,
                rdev: tuple[int, int] = (0, 0)):
    """One newc entry: ino mode uid gid nlink mtime filesize devmajor
    devminor rdevmajor rdevminor namesize check."""
    header = "070701" + "".join(f"{v:08X}" for v in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
        len(name) + 1, 0))
    out.write(header.encode() + name.encode() + b"\0")
    out.write(b"\0" * (-(110 + len(name) + 1) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def build_initramfs(out_path: Path, busybox: Path, modules: list[Path],
                    modules_root: Path, init_script: str = INIT_SCRIPT):
    """Write an uncompressed newc cpio: /bin/busybox, /init and modules
    under /lib/modules (paths relative to `modules_root`), with
    /lib/modules/load-order listing them in load order."""
    dirs = {"bin", "lib", "lib/modules", "proc", "sys", "dev", "ctl",
            "newroot", "tmp"}
    files = []
    order = []
    for ko in modules:
        rel = ko.relative_to(modules_root).as_posix()
        order.append(rel)
        files.append(("lib/modules/" + rel, 0o100644, ko.read_bytes()))
        parts = ("lib/modules/" + rel).split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    files.append(("lib/modules/load-order", 0o100644,
                  ("\n".join(order) + "\n").encode()))
    files.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    files.append(("init", 0o100755, init_script.encode()))
    tmp = out_path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        ino = 1
        for d in sorted(dirs):
            _cpio_entry(out, d, 0o040755, ino=ino)
            ino += 1
        # The kernel opens /dev/console before running /init.
        _cpio_entry(out, "dev/console", 0o020600, ino=ino, rdev=(5, 1))
        ino += 1
        for name, mode, data in files:
            _cpio_entry(out, name, mode, data, ino=ino)
            ino += 1
        _cpio_entry(out, "TRAILER!!!", 0)
    os.replace(tmp, out_path)


def _run(argv, cwd=None) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=600)
    except FileNotFoundError:
        raise ImageError(f"{argv[0]} is not installed") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ImageError(f"{' '.join(argv[:3])} failed: {last}")
    return proc.stdout


def kernel_package(meta: str = "linux-image-amd64") -> tuple[str, str]:
    """(package, version) of the kernel the metapackage `meta` points at,
    from the local apt cache (no network)."""
    out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests",
                meta])
    package = meta
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            package = line.split(":", 1)[1].strip()
            break
    show = _run(["apt-cache", "show", "--no-all-versions", package])
    for line in show.splitlines():
        if line.startswith("Version:"):
            return package, line.split(":", 1)[1].strip()
    raise ImageError(f"apt knows no version of {package}")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:12]


def prepare_image(cache: Path | None = None,
                  meta: str = "linux-image-amd64",
                  busybox: Path = Path("/bin/busybox"),
                  package_deb: Path | None = None) -> GuestImage:
    """Prepare (or find in the cache) the guest kernel and initramfs.

    `package_deb` is an already downloaded kernel .deb (tests, offline
    use); otherwise the newest kernel `meta` depends on is fetched with
    `apt-get download`.  Safe to call from several processes at once:
    everything is written under a temporary name and renamed.
    """
    cache = (cache or cache_root()) / "vm"
    if package_deb is None:
        package, version = kernel_package(meta)
    else:
        fields = _run(["dpkg-deb", "-f", str(package_deb), "Package",
                       "Version"])
        info = dict(line.split(": ", 1) for line in fields.splitlines())
        package, version = info["Package"], info["Version"]
    if not busybox.exists():
        raise ImageError(f"{busybox} is missing (apt-get install "
                         "busybox-static)")
    directory = cache / f"{package}_{version}"
    kernel = directory / "vmlinux"
    initramfs = directory / ("initramfs-" + _digest(
        busybox.read_bytes(), INIT_SCRIPT.encode(),
        ",".join(MODULES).encode()) + ".cpio")
    release_file = directory / "release"
    if kernel.exists() and initramfs.exists() and release_file.exists():
        return GuestImage(kernel, initramfs, release_file.read_text().strip(),
                          package, version)
    with cache_lock(directory / ".lock"):
        if not (kernel.exists() and initramfs.exists()
                and release_file.exists()):
            _build(directory, package, version, package_deb, kernel,
                   initramfs, release_file, busybox)
    return GuestImage(kernel, initramfs, release_file.read_text().strip(),
                      package, version)


def _build(directory, package, version, package_deb, kernel, initramfs,
           release_file, busybox) -> None:
    """Fill the cache directory (the caller holds its lock)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        tmp = Path(tmp)
        deb = package_deb
        if deb is None:
            _run(["apt-get", "download", "-q", f"{package}={version}"],
                 cwd=tmp)
            debs = list(tmp.glob("*.deb"))
            if not debs:
                raise ImageError(f"apt-get download {package} gave no .deb")
            deb = debs[0]
        tree = tmp / "tree"
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
        vmlinuz = sorted((tree / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise ImageError(f"{package} has no /boot/vmlinuz-*")
        release = vmlinuz[0].name[len("vmlinuz-"):]
        if not kernel.exists():
            staged = tmp / "vmlinux"
            staged.write_bytes(extract_vmlinux(vmlinuz[0].read_bytes()))
            os.replace(staged, kernel)
        modules_root = tree / "lib" / "modules" / release / "kernel"
        order = _module_load_order(modules_root, MODULES)
        staged = tmp / "initramfs.cpio"
        build_initramfs(staged, busybox, order, modules_root)
        os.replace(staged, initramfs)
        staged = tmp / "release"
        staged.write_text(release + "\n")
        os.replace(staged, release_file)
    for old in directory.glob("initramfs-*.cpio"):
        if old != initramfs:
            old.unlink(missing_ok=True)


def main(argv=None):  # pragma: no cover - thin command-line wrapper
    """`python -m lp_services.slave.vmimage`: prepare and print the image."""
    image = prepare_image()
    print(f"kernel     {image.kernel}")
    print(f"initramfs  {image.initramfs}")
    print(f"release    {image.kernel_release} ({image.package} "
          f"{image.version})")


if __name__ == "__main__":  # pragma: no cover
    main()
