"""Hostile chroot tarballs, as an attacker made them (issue 19): small
archives that expand to a lot of data or a huge header. Written as a
stream, so making them costs little memory and about a second; kept in
the busybox chroot's cache directory and reused."""

import os
import tarfile
from pathlib import Path

import zstandard

from lp_services.slave.busybox_chroot import default_cache_dir

_CHUNK = b"\0" * (4 << 20)
#: Bump when the bytes made change.
_VERSION = 1


def _stream_member(out, info: tarfile.TarInfo, size: int, fill=_CHUNK):
    info.size = size
    out.write(info.tobuf(format=tarfile.GNU_FORMAT))
    left = size
    while left:
        piece = fill[:min(left, len(fill))]
        out.write(piece)
        left -= len(piece)
    out.write(b"\0" * (-size % 512))


def _make(key, write) -> Path:
    cache = default_cache_dir()
    path = cache / ("bomb-%s-%d-v%d.tar.zst" % (key[0], key[1], _VERSION))
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".%d.tmp" % os.getpid())
        with open(tmp, "wb") as raw:
            with zstandard.ZstdCompressor(level=1).stream_writer(raw) as out:
                write(out)
                out.write(b"\0" * 1024)
        os.replace(tmp, path)
    return path


def zero_bomb(size: int = 1800 << 20) -> Path:
    """One regular member of ``size`` zero bytes (1.8 GB from ~60 KB)."""
    def write(out):
        _stream_member(out, tarfile.TarInfo("bin/sh"), size)
    return _make(("zero", size), write)


def long_name_bomb(size: int = 2500 << 20) -> Path:
    """A GNU long-name header of ``size`` bytes ('a's) in front of a small
    file: tarfile would read the whole name into memory."""
    def write(out):
        header = tarfile.TarInfo("././@LongLink")
        header.type = tarfile.GNUTYPE_LONGNAME
        header.size = size
        # The header block alone, then the name's data.
        out.write(_raw_header(header))
        left = size
        fill = b"a" * (4 << 20)
        while left:
            piece = fill[:min(left, len(fill))]
            out.write(piece)
            left -= len(piece)
        out.write(b"\0" * (-size % 512))
        _stream_member(out, tarfile.TarInfo("x"), 1, b"x")
    return _make(("longname", size), write)


def _raw_header(info: tarfile.TarInfo) -> bytes:
    # tobuf() would expand the name itself; build the one 512-byte block.
    return tarfile.TarInfo._create_header(
        {"name": info.name, "mode": 0o644, "uid": 0, "gid": 0,
         "size": info.size, "mtime": 0, "type": info.type, "linkname": "",
         "uname": "", "gname": "", "devmajor": 0, "devminor": 0,
         "prefix": ""}, tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def many_members(count: int) -> Path:
    """``count`` empty files in one directory."""
    def write(out):
        for n in range(count):
            _stream_member(out, tarfile.TarInfo("f/%d" % n), 0)
    return _make(("many", count), write)
