"""Real Debian source packages for the slow tests and the benchmark.

The corpus is a few small source packages from the archive, each chosen
for a build system a build farm must handle (see :data:`CORPUS`).
:func:`fetch_source` downloads one with ``apt-get source --download-only``
from this machine's configured Debian archive and caches it under
``cache_root()/sources/<name>/`` (``/var/cache/lp-services`` for root,
``~/.cache/lp-services`` otherwise; see lp_services.images.chroots.cache_root), so
that warm runs do not touch the network.

apt runs with a private configuration of its own
(``cache_root()/sources/apt/``): a sources list made from the machine's
``deb`` entries with ``deb-src`` beside them, and its own state and cache
directories. The system's apt configuration and lists are never changed.

Why ``apt-get`` and not a Python library: apt already verifies the
archive's signatures and every file's hash against the signed indexes;
python-apt is not in the virtualenv, and a hand-written downloader would
have to redo that verification.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from lp_services.images.chroots import (
    cache_lock, cache_root, deb822_stanzas)
from lp_services.slave.binarypackage import (
    DscError, dsc_fields, verify_source)

__all__ = [
    "CORPUS",
    "CorpusError",
    "CorpusPackage",
    "FetchedSource",
    "SourceUnavailable",
    "archive_lines",
    "expected_binaries",
    "fetch_source",
    "private_sources",
]

#: The machine's apt sources: deb822 files and one-line files.
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
APT_SOURCES_LIST = Path("/etc/apt/sources.list")
# apt-get update and source fetch a few MB; more than this is a hung
# download, not a slow one.
APT_TIMEOUT = 600.0


@dataclasses.dataclass(frozen=True)
class CorpusPackage:
    """One source package of the corpus."""

    name: str
    #: What it covers (build system, binary layout).
    covers: str


#: Small packages with few build dependencies, one per build system.
CORPUS = (
    CorpusPackage("hello", "autotools through debhelper (dh, "
                  "dh_auto_configure), texinfo and help2man"),
    CorpusPackage("tree", "plain Makefile through debhelper, one "
                  "arch:any binary"),
    CorpusPackage("nyancat", "plain Makefile, an arch:any binary and an "
                  "arch:all one from one source (-b builds both)"),
    # python-toml was the first choice; the package mirror these machines
    # reach answers 404 for its pool files (and for six, python-idna,
    # python-tabulate and others tried), but serves this one.
    CorpusPackage("python-xmltodict", "a Python package built by pybuild "
                  "(dh --buildsystem=pybuild --with python3, setuptools, "
                  "its test suite run by nose2), arch:all"),
)


class CorpusError(Exception):
    """The corpus could not be fetched (one clear line)."""


class SourceUnavailable(CorpusError):
    """The archive refused the package's files (a 404 from the mirror:
    the package or one of its files is not there)."""


@dataclasses.dataclass(frozen=True)
class FetchedSource:
    """A source package in the cache."""

    name: str
    version: str
    dsc: Path
    #: Every file of the source package (the .dsc too), name -> Path.
    files: dict[str, Path]
    cached: bool


def _sources_files(directory: Path, legacy: Path):
    """The machine's apt source files: (path, is_deb822)."""
    found = []
    if legacy.is_file():
        found.append((legacy, False))
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix == ".sources":
                found.append((path, True))
            elif path.suffix == ".list":
                found.append((path, False))
    return found


def _one_line_entries(text: str):
    """``(options, uri, suite, components)`` of each one-line ``deb``
    entry."""
    for line in text.splitlines():
        m = re.match(r"\s*deb\s+(\[[^]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)", line)
        if m:
            yield ((m.group(1) or "").strip(), m.group(2), m.group(3),
                   m.group(4).split("#")[0].strip())


def private_sources(directory: Path = APT_SOURCES_DIR,
                    legacy: Path = APT_SOURCES_LIST) -> str:
    """A deb822 sources list holding each of the machine's ``deb`` entries
    with ``deb-src`` beside it (same URIs, suites, components and
    keyring).

    :raises CorpusError: if the machine has no ``deb`` entry.
    """
    stanzas = []
    for path, deb822 in _sources_files(directory, legacy):
        text = path.read_text()
        if deb822:
            for stanza in deb822_stanzas(text):
                if "deb" not in stanza.get("types", "").split():
                    continue
                if stanza.get("enabled", "yes").lower() == "no":
                    continue
                fields = {k: v for k, v in stanza.items() if k != "types"}
                stanzas.append({"types": "deb deb-src", **fields})
        else:
            for options, uri, suite, components in _one_line_entries(text):
                stanza = {"types": "deb deb-src", "uris": uri,
                          "suites": suite}
                if components:
                    stanza["components"] = components
                m = re.search(r"signed-by=(\S+?)[\s\]]", options + " ")
                if m:
                    stanza["signed-by"] = m.group(1)
                stanzas.append(stanza)
    if not stanzas:
        raise CorpusError(f"no deb entry in {legacy} or {directory}")
    return "\n".join(
        "".join(f"{key.title()}: {value}\n" for key, value in s.items())
        for s in stanzas)


def archive_lines(directory: Path = APT_SOURCES_DIR,
                  legacy: Path = APT_SOURCES_LIST) -> list[str]:
    """The machine's ``deb`` entries as one-line ``sources.list`` lines
    (``deb URI SUITE COMPONENTS``) for a build's ``archives`` argument.
    Keyring options are left out: the build's chroot trusts the Debian
    archive keys of its own ``/etc/apt/trusted.gpg.d``."""
    lines = []
    for stanza in deb822_stanzas(private_sources(directory, legacy)):
        for uri in stanza["uris"].split():
            for suite in stanza["suites"].split():
                lines.append(f"deb {uri} {suite} "
                             f"{stanza.get('components', '')}".rstrip())
    return lines


class _PrivateApt:
    """apt-get with its own sources, state and cache (see the module
    docstring)."""

    def __init__(self, base: Path, sources_text: str):
        self.base = base
        self.parts = base / "sources.list.d"
        for d in (self.parts, base / "preferences.d", base / "state" /
                  "lists" / "partial", base / "cache" / "archives" /
                  "partial"):
            d.mkdir(parents=True, exist_ok=True)
        for old in self.parts.iterdir():
            old.unlink()
        (self.parts / "machine.sources").write_text(sources_text)

    def argv(self, *args: str) -> list[str]:
        b = self.base
        return ["apt-get", "-q",
                "-o", "Dir::Etc::SourceList=/dev/null",
                "-o", f"Dir::Etc::SourceParts={self.parts}",
                "-o", "Dir::Etc::Preferences=/dev/null",
                "-o", f"Dir::Etc::PreferencesParts={b / 'preferences.d'}",
                "-o", f"Dir::State={b / 'state'}",
                "-o", f"Dir::State::status={b / 'state' / 'status'}",
                "-o", f"Dir::Cache={b / 'cache'}",
                "-o", "Acquire::Retries=3",
                *args]

    def run(self, *args: str, cwd: Path | None = None) -> str:
        (self.base / "state" / "status").touch()
        try:
            proc = subprocess.run(
                self.argv(*args), cwd=cwd, capture_output=True, text=True,
                timeout=APT_TIMEOUT,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive",
                     "LC_ALL": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            raise CorpusError(f"apt-get {' '.join(args)} timed out after "
                              f"{APT_TIMEOUT:.0f} s") from None
        except FileNotFoundError:
            raise CorpusError("apt-get is not installed") from None
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            errors = [line for line in output.splitlines()
                      if line.startswith("E:")] or output.splitlines()[-1:]
            message = f"apt-get {' '.join(args)}: " + "; ".join(errors)
            if " 404 " in output or "Unable to find a source package" \
                    in output:
                raise SourceUnavailable(message)
            raise CorpusError(message)
        return output


def _cached(directory: Path, name: str) -> FetchedSource | None:
    """The complete source package in `directory`, or None."""
    if not directory.is_dir():
        return None
    dscs = sorted(directory.glob(f"{name}_*.dsc"))
    if len(dscs) != 1:
        return None
    files = {p.name: p for p in directory.iterdir() if p.is_file()}
    try:
        package = verify_source(dscs[0].name, files)
    except (DscError, OSError):
        return None
    needed = set(package.files) | {dscs[0].name}
    return FetchedSource(name, package.version, dscs[0],
                         {n: files[n] for n in sorted(needed)}, True)


def fetch_source(name: str, cache: Path | None = None,
                 sources: str | None = None, log=None) -> FetchedSource:
    """The source package `name` (the archive's current version), from
    the cache or downloaded into it.

    :param sources: the private sources list (deb822 text); default
        :func:`private_sources`.
    :param log: a callable taking one line of progress text (optional).
    :raises SourceUnavailable: the archive does not serve it.
    :raises CorpusError: anything else (one clear line).
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", name):
        raise CorpusError(f"bad source package name: {name!r}")
    say = log or (lambda line: None)
    root = (cache or cache_root()) / "sources"
    root.mkdir(parents=True, exist_ok=True)
    directory = root / name
    with cache_lock(root / f"{name}.lock"):
        found = _cached(directory, name)
        if found is not None:
            say(f"cached: {found.dsc}")
            return found
        with cache_lock(root / "apt.lock"):
            _download(root, directory, name, sources, say)
    found = _cached(directory, name)
    if found is None:
        raise CorpusError(f"{directory} is incomplete after the download")
    return dataclasses.replace(found, cached=False)


def _download(root: Path, directory: Path, name: str, sources, say):
    """apt-get source into a staging directory, then move it in place
    (the caller holds the package's lock and the private apt's)."""
    apt = _PrivateApt(root / "apt", sources or private_sources())
    say("apt-get update (private configuration)")
    apt.run("update")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        # apt downloads as the _apt user where it can: let it write here.
        staging.chmod(0o777)
        say(f"apt-get source --download-only {name}")
        apt.run("source", "--download-only", name, cwd=staging)
        staging.chmod(0o755)
        if _cached(staging, name) is None:
            raise CorpusError(f"apt-get source {name} left no complete "
                              "source package")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def expected_binaries(dsc: Path, arch: str = "amd64",
                      arch_indep: bool = True) -> list[str]:
    """The ``.deb`` names a ``-b`` (or ``-B``) build of `dsc` must make
    on `arch`, from its ``Package-List`` (``udeb`` entries become
    ``.udeb``). Epochs are not part of file names."""
    fields = dsc_fields(dsc.read_text())
    version = fields["version"].split(":", 1)[-1]
    names = []
    for line in fields.get("package-list", "").splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        package, kind = parts[0], parts[1]
        archs = next((p[len("arch="):].split(",") for p in parts[4:]
                      if p.startswith("arch=")), ["any"])
        if "all" in archs:
            if arch_indep:
                names.append(f"{package}_{version}_all.{kind}")
        elif "any" in archs or arch in archs or f"linux-{arch}" in archs \
                or f"any-{arch}" in archs:
            names.append(f"{package}_{version}_{arch}.{kind}")
    if not names:
        raise CorpusError(f"{dsc.name} has no Package-List for {arch}")
    return sorted(names)
