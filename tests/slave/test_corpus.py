"""Real Debian source packages from the archive built through the farm
(slow tier), and the corpus helper's own fast tests.

Each corpus package (lp_services.testing.corpus.CORPUS) is fetched with
``apt-get source`` from this machine's Debian archive (cached), requested
as a ``binarypackage`` build from the real buildmaster's services, built
by a real agent on loopback in the cached bookworm buildd chroot, and must
end FULLYBUILT with every binary its ``.dsc`` lists (plus the automatic
``-dbgsym`` packages) in the master's file store.
"""

import shutil
from pathlib import Path

from twisted.trial import unittest

from lp_services.testing import corpus as C
from tests.slave.corpus_support import step_times

_DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""

_DSC = """\
Format: 3.0 (quilt)
Source: nyancat
Binary: nyancat, nyancat-server
Architecture: any all
Version: 1:1.5.2-0.2
Package-List:
 nyancat deb misc optional arch=any
 nyancat-server deb misc optional arch=all
 nyancat-udeb udeb debian-installer optional arch=amd64,arm64
 nyancat-s390 deb misc optional arch=s390x
Files:
 00000000000000000000000000000000 1 nyancat_1.5.2.orig.tar.gz
"""


class PrivateSourcesTests(unittest.SynchronousTestCase):
    """private_sources() and archive_lines() from the machine's apt
    configuration."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.parts = self.dir / "sources.list.d"
        self.parts.mkdir(parents=True)
        self.legacy = self.dir / "sources.list"

    def test_deb822(self):
        """Each enabled ``deb`` stanza comes back with ``deb-src`` beside
        it, its URIs, suites, components and keyring kept; deb-src-only
        and disabled stanzas are left out."""
        (self.parts / "debian.sources").write_text(_DEB822)
        text = C.private_sources(self.parts, self.legacy)
        self.assertEqual(
            "Types: deb deb-src\nUris: http://mirror.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main contrib\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            text)
        self.assertEqual(
            ["deb http://mirror.example/debian bookworm main contrib",
             "deb http://mirror.example/debian bookworm-updates main "
             "contrib"],
            C.archive_lines(self.parts, self.legacy))

    def test_one_line(self):
        """One-line ``deb`` entries (sources.list and *.list) are read,
        options and comments dropped but for signed-by; ``deb-src`` lines
        are not doubled."""
        self.legacy.write_text(
            "# a comment\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://a.example/d bookworm "
            "main # trailing\n"
            "deb-src http://a.example/d bookworm main\n")
        (self.parts / "extra.list").write_text(
            "deb http://b.example/d bookworm-security main\n")
        self.assertEqual(
            ["deb http://a.example/d bookworm main",
             "deb http://b.example/d bookworm-security main"],
            C.archive_lines(self.parts, self.legacy))
        self.assertIn("Signed-By: /k.gpg\n",
                      C.private_sources(self.parts, self.legacy))

    def test_nothing_configured(self):
        """No ``deb`` entry anywhere is a clear error."""
        with self.assertRaisesRegex(C.CorpusError, "no deb entry"):
            C.private_sources(self.parts, self.legacy)


class ExpectedBinariesTests(unittest.SynchronousTestCase):
    """expected_binaries() from a .dsc's Package-List."""

    def setUp(self):
        self.dsc = Path(self.mktemp())
        self.dsc.write_text(_DSC)

    def test_arch_any_and_all(self):
        """arch=any and arch=all entries on amd64, the epoch dropped, a
        udeb named .udeb, another architecture's package left out."""
        self.assertEqual(
            ["nyancat-server_1.5.2-0.2_all.deb",
             "nyancat-udeb_1.5.2-0.2_amd64.udeb",
             "nyancat_1.5.2-0.2_amd64.deb"],
            C.expected_binaries(self.dsc))

    def test_arch_dependent_only(self):
        """A -B build (arch_indep false) makes no arch:all package."""
        self.assertEqual(
            ["nyancat-udeb_1.5.2-0.2_amd64.udeb",
             "nyancat_1.5.2-0.2_amd64.deb"],
            C.expected_binaries(self.dsc, arch_indep=False))


class FetchSourceTests(unittest.SynchronousTestCase):
    """fetch_source() without the network."""

    def test_bad_name(self):
        """A name that is not a source package name is refused before
        apt runs."""
        for name in ("../etc", "Hello", "a b", "-o"):
            self.assertRaises(C.CorpusError, C.fetch_source, name,
                              cache=Path(self.mktemp()))

    def test_cached_copy_used(self):
        """A complete source package in the cache is returned as is (no
        apt run: the sources list given would fail)."""
        cache = Path(self.mktemp())
        where = cache / "sources" / "lptest"
        where.mkdir(parents=True)
        from tests.slave.packages import make_source_package
        built = Path(self.mktemp())
        built.mkdir()
        for name, path in make_source_package(built, "xxd").items():
            shutil.copy(path, where / name)
        found = C.fetch_source("lptest", cache=cache, sources="broken")
        self.assertTrue(found.cached)
        self.assertEqual("1.0", found.version)
        self.assertEqual(["lptest_1.0.dsc", "lptest_1.0.tar.xz"],
                         sorted(found.files))

    def test_incomplete_cache_refetched(self):
        """A cached copy missing a file is not used: apt runs again (here
        with no usable sources, so the error says apt failed)."""
        cache = Path(self.mktemp())
        where = cache / "sources" / "lptest"
        where.mkdir(parents=True)
        from tests.slave.packages import make_source_package
        built = Path(self.mktemp())
        built.mkdir()
        files = make_source_package(built, "xxd")
        shutil.copy(files["lptest_1.0.dsc"], where)
        with self.assertRaisesRegex(C.CorpusError, "apt-get"):
            C.fetch_source("lptest", cache=cache,
                           sources="Types: deb-src\nURIs: file:/nonexistent"
                           "\nSuites: none\nComponents: main\n")


class StepTimesTests(unittest.SynchronousTestCase):
    """step_times() from a build log's step headers."""

    def test_parts(self):
        """unpack runs from the request to the dependency step, the
        dependencies to the build step, the build to the master's end."""
        from datetime import datetime, timezone
        from tests.slave.corpus_support import FarmBuild
        t0 = datetime(2026, 12, 3, 9, 0, 0, tzinfo=timezone.utc).timestamp()
        log = (b"\n=== verify (2026-12-03 09:00:02 UTC) ===\n"
               b"\n=== install build dependencies (2026-12-03 09:00:10 UTC)"
               b" ===\napt output\n"
               b"\n=== build (2026-12-03 09:00:40 UTC) ===\n")
        done = FarmBuild({}, log, {}, requested=t0, finished=t0 + 100)
        self.assertEqual({"unpack": 10, "dependencies": 30, "build": 60,
                          "total": 100}, step_times(done))
