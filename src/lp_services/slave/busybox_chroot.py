"""A small busybox-static chroot tarball, for tests and the local farm.

``python -m lp_services.slave.busybox_chroot [--format gz|xz|zst]
[--cache-dir DIR]`` prints the tarball's path (built on first use, then
reused: the name carries the busybox binary's hash and the layout version).

The rootfs: ``/bin/busybox`` (from the Debian package ``busybox-static``)
with a symbolic link for every applet at its usual place (``/bin/sh``,
``/usr/bin/nc``, ...), ``/etc/passwd`` and ``/etc/group`` with root and
nobody, and empty ``/proc``, ``/dev``, ``/tmp``, ``/work``. Members are
sorted, owned by root and dated 0, so the same busybox gives the same
bytes.
"""

import gzip
import hashlib
import io
import lzma
import os
import posixpath
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import click
import zstandard

__all__ = ["DEFAULT_BUSYBOX", "busybox_chroot", "default_cache_dir"]

DEFAULT_BUSYBOX = "/bin/busybox"
#: Bump when the layout changes (it is part of the cached file's name).
LAYOUT_VERSION = 1
_FORMATS = ("gz", "xz", "zst")
_DIRS = ["bin", "dev", "etc", "proc", "root", "sbin", "tmp", "usr",
         "usr/bin", "usr/sbin", "work"]
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/work:/bin/sh\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def default_cache_dir() -> Path:
    """``$LP_CHROOT_CACHE``, else ``$XDG_CACHE_HOME/lp-services/chroots``
    (``~/.cache/lp-services/chroots``)."""
    if os.environ.get("LP_CHROOT_CACHE"):
        return Path(os.environ["LP_CHROOT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lp-services" / "chroots"


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], capture_output=True,
                         text=True, check=True).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip()})


def _tar_bytes(busybox: str) -> bytes:
    data = Path(busybox).read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add(name, kind, mode, content=None, link=None):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if link is not None:
                info.linkname = link
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)

        for d in _DIRS:
            add(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, data)
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP)
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD)
        for applet in _applets(busybox):
            if applet == "bin/busybox" or applet.startswith("/"):
                continue
            target = posixpath.relpath("bin/busybox", posixpath.dirname(applet))
            add(applet, tarfile.SYMTYPE, 0o777, link=target)
    return buf.getvalue()


def _compress(raw: bytes, fmt: str) -> bytes:
    if fmt == "gz":
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            gz.write(raw)
        return out.getvalue()
    if fmt == "xz":
        return lzma.compress(raw)
    if fmt == "zst":
        return zstandard.ZstdCompressor(level=10).compress(raw)
    raise ValueError("format must be one of %s" % ", ".join(_FORMATS))


def busybox_chroot(cache_dir: Path | None = None, fmt: str = "gz",
                   busybox: str = DEFAULT_BUSYBOX) -> Path:
    """The path of the busybox chroot tarball, built if not cached.

    :raises FileNotFoundError: busybox is not installed (Debian package
        ``busybox-static``).
    """
    if fmt not in _FORMATS:
        raise ValueError("format must be one of %s" % ", ".join(_FORMATS))
    if not os.path.exists(busybox):
        raise FileNotFoundError(
            "%s not found: install the Debian package busybox-static" % busybox)
    cache_dir = Path(cache_dir or default_cache_dir())
    with open(busybox, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()[:12]
    path = cache_dir / ("busybox-%s-v%d.tar.%s" % (digest, LAYOUT_VERSION, fmt))
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    payload = _compress(_tar_bytes(busybox), fmt)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".busybox-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


@click.command()
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="gz",
              show_default=True, help="Compression of the tarball.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where tarballs are kept "
              "(default $LP_CHROOT_CACHE or ~/.cache/lp-services/chroots).")
@click.option("--busybox", default=DEFAULT_BUSYBOX, show_default=True,
              help="The static busybox binary to use.")
@click.option("--sha1", "show_sha1", is_flag=True,
              help="Also print the tarball's sha1 (path SHA1).")
def main(fmt, cache_dir, busybox, show_sha1):
    """Build (or find) the busybox-static chroot tarball; print its path."""
    try:
        path = busybox_chroot(cache_dir, fmt, busybox)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        raise click.ClickException(str(e)) from None
    if show_sha1:
        click.echo("%s %s" % (path, hashlib.sha1(path.read_bytes()).hexdigest()))
    else:
        click.echo(str(path))


if __name__ == "__main__":
    sys.exit(main())
