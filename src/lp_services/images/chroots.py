"""Chroot tarballs made with debootstrap, and the machine cache they live in.

``build_chroot()`` runs ``debootstrap --variant=minbase|buildd`` from the
Debian mirror this machine's apt is configured with, removes what a build
does not need (downloaded .debs, package lists), and packs the tree into a
zstd-compressed tarball whose members are the root's own (``./bin``,
``./etc``...: the layout lp_services.slave.chroot.unpack expects).  The result is cached under
``cache_root()/chroots/`` by series, variant, architecture and mirror;
``lp-services chroot build`` calls it (lp_services.cli.chroot_build).

``cache_root()`` is the one cache directory of the project's prepared
images (chroots here; VM kernels and initramfs in lp_services.slave.vmimage):
``$LP_SERVICES_CACHE`` if set, else ``/var/cache/lp-services`` for root,
else ``$XDG_CACHE_HOME/lp-services`` (``~/.cache/lp-services``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import zstandard

__all__ = [
    "ChrootError",
    "ChrootTarball",
    "DEFAULT_SOURCES",
    "VARIANTS",
    "build_chroot",
    "cache_lock",
    "cache_root",
    "deb822_stanzas",
    "debian_mirror",
]

#: Where the machine's Debian mirror is configured (deb822 format).
DEFAULT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
VARIANTS = ("minbase", "buildd")
# Part of every cache key: bump when the tarball's layout or cleaning
# changes, so that stale cached tarballs are not reused.
_LAYOUT = "3"
# debootstrap takes ~30 s for minbase here; buildd a little more; a slow
# mirror can take minutes. Anything beyond this is a hung download.
DEBOOTSTRAP_TIMEOUT = 1800.0


class ChrootError(Exception):
    """A chroot could not be built (one clear line)."""


@dataclasses.dataclass(frozen=True)
class ChrootTarball:
    """A built chroot tarball."""

    path: Path
    series: str
    variant: str
    processor: str
    mirror: str
    sha1: str
    size: int
    cached: bool     # True if it came from the cache, not a fresh build


def cache_root() -> Path:
    """The project's cache directory (see the module docstring)."""
    explicit = os.environ.get("LP_SERVICES_CACHE")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/var/cache/lp-services")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "lp-services"


def deb822_stanzas(text: str):
    """The stanzas of a deb822 text (apt's ``.sources``): one dict per
    stanza, field names lower-cased, continuation lines joined by a
    space, comments skipped."""
    stanza: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
        elif line[0] in " \t" and key:
            stanza[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def debian_mirror(sources: Path = DEFAULT_SOURCES,
                  legacy: Path = Path("/etc/apt/sources.list")) -> str:
    """The Debian mirror URI apt uses here: the first ``deb`` source in
    ``sources`` (deb822) that is not a security archive, else the first
    such ``deb`` line of ``legacy`` (one-line format)."""
    candidates = []
    if sources.exists():
        for stanza in deb822_stanzas(sources.read_text()):
            if "deb" not in stanza.get("types", "").split():
                continue
            if stanza.get("enabled", "yes").lower() == "no":
                continue
            candidates.extend(stanza.get("uris", "").split())
    if not candidates and legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
            if m:
                candidates.append(m.group(1))
    for uri in candidates:
        if "security" not in uri:
            return uri
    raise ChrootError(f"no Debian mirror configured in {sources}")


@contextlib.contextmanager
def cache_lock(path: Path):
    """An exclusive lock on ``path`` (created): one process builds a cache
    entry while the others wait for it, instead of building it too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pack(tree: Path, out: Path, level: int = 3) -> None:
    """tar the tree (numeric owners, members ./...) through zstd."""
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(tree), "-cf", "-", "."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cctx = zstandard.ZstdCompressor(level=level, threads=-1)
    with open(out, "wb") as f:
        cctx.copy_stream(tar.stdout, f)
    _, err = tar.communicate()
    if tar.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise ChrootError("tar failed: " + (lines[-1] if lines else "?"))


def _clean_tree(tree: Path) -> None:
    """Drop what debootstrap leaves that no build needs."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                    "var/lib/apt/lists/*_*", "var/log/*.log",
                    "var/log/apt/*"):
        for path in tree.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    # Device nodes: builds get /dev from bubblewrap (or the guest's
    # devtmpfs), and the agent refuses archives holding device nodes.
    dev = tree / "dev"
    if dev.is_dir():
        for entry in dev.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    # Builds and the VM backend mount these; make sure the mount points
    # exist (the root is read-only when a build runs).
    for d in ("work", "proc", "dev", "tmp", "sys"):
        (tree / d).mkdir(exist_ok=True)


def build_chroot(series: str = "bookworm", variant: str = "minbase",
                 processor: str = "amd64", mirror: str | None = None,
                 cache: Path | None = None, rebuild: bool = False,
                 include: tuple[str, ...] = (),
                 log=None) -> ChrootTarball:
    """Build (or take from the cache) a chroot tarball.

    :param log: a callable taking one line of progress text (optional).
    :raises ChrootError: with one clear line (debootstrap missing, the
        mirror unreachable, an unknown series...).
    """
    if variant not in VARIANTS:
        raise ChrootError(f"unknown variant {variant!r} "
                          f"(choose from {', '.join(VARIANTS)})")
    for value, what in ((series, "series"), (processor, "processor")):
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", value):
            raise ChrootError(f"bad {what}: {value!r}")
    for package in include:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", package):
            raise ChrootError(f"bad package name: {package!r}")
    mirror = mirror or debian_mirror()
    say = log or (lambda line: None)
    key = hashlib.sha1(f"{_LAYOUT} {mirror} {','.join(sorted(include))}"
                       .encode()).hexdigest()[:8]
    directory = (cache or cache_root()) / "chroots"
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{series}-{variant}-{processor}-{key}.tar.zst"
    out = directory / name
    with cache_lock(directory / (name + ".lock")):
        if out.exists() and not rebuild:
            say(f"cached: {out}")
            return ChrootTarball(out, series, variant, processor, mirror,
                                 _sha1(out), out.stat().st_size, True)
        _debootstrap(series, variant, processor, mirror, include, directory,
                     name, out, say)
    return ChrootTarball(out, series, variant, processor, mirror,
                         _sha1(out), out.stat().st_size, False)


def _debootstrap(series, variant, processor, mirror, include, directory,
                 name, out, say) -> None:
    """Build the tarball `out` (the caller holds the cache lock)."""
    if shutil.which("debootstrap") is None:
        raise ChrootError("debootstrap is not installed "
                          "(apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ChrootError("debootstrap needs root")
    with tempfile.TemporaryDirectory(prefix="chroot-", dir=directory) as tmp:
        tree = Path(tmp) / "tree"
        argv = ["debootstrap", f"--variant={variant}", f"--arch={processor}"]
        if include:
            argv.append("--include=" + ",".join(include))
        argv += [series, str(tree), mirror]
        say("running " + " ".join(argv))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=DEBOOTSTRAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ChrootError("debootstrap timed out after "
                              f"{DEBOOTSTRAP_TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            errors = [l for l in lines if l.startswith("E:")] or lines[-1:]
            raise ChrootError("debootstrap failed: "
                              + (errors[0] if errors else "no output"))
        _clean_tree(tree)
        say(f"packing {out}")
        staged = Path(tmp) / name
        _pack(tree, staged)
        os.replace(staged, out)
