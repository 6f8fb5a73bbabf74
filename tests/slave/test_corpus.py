"""Real Debian source packages from the archive built through the farm
(slow tier), and the corpus helper's own fast tests.

Each corpus package (lp_services.testing.corpus.CORPUS) is fetched with
``apt-get source`` from this machine's Debian archive (cached), requested
as a ``binarypackage`` build from the real buildmaster's services, built
by a real agent on loopback in the cached bookworm buildd chroot, and must
end FULLYBUILT with every binary its ``.dsc`` lists (plus the automatic
``-dbgsym`` packages) in the master's file store.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial import unittest

from lp_services.testing import corpus as C
from lp_services.testing.tiers import slow
from tests.buildmaster.test_integration import IntegrationBase
from tests.slave.corpus_support import farm_build, step_times

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
        from tests.slave.test_binarypackage import make_source_package
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
        from tests.slave.test_binarypackage import make_source_package
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


def report(name, version, backend, done):
    """Print the build's step times (the test's log shows them: what the
    CI budget in docs/virtualization.md is made of)."""
    print(f"{name} {version} on {backend}: " + ", ".join(
        f"{part} {seconds:.0f} s"
        for part, seconds in step_times(done).items()))


def fetch_or_skip(name):
    """The corpus package, or SkipTest when this machine's archive does
    not serve it (a mirror that answers 404 for its files)."""
    try:
        return C.fetch_source(name)
    except C.SourceUnavailable as e:
        raise unittest.SkipTest(f"the archive does not serve {name}: {e}")


@slow
class CorpusSandboxTests(IntegrationBase):
    """Each corpus package built through the farm on the sandbox
    backend."""

    timeout = 1500

    async def build_files(self, files):
        """Build `files` through the farm on a real sandbox agent with
        limits fit for real packages."""
        agent_url, secret = await self.start_agent()
        config = self.running.agent.config
        config.build_timeout = 1200.0
        config.memory_limit = 2 << 30
        config.pids_limit = 4096
        return await farm_build(self, agent_url, secret, files)

    async def build(self, name):
        source = fetch_or_skip(name)
        return source, await self.build_files(source.files)

    def check_fullybuilt(self, source, done):
        """FULLYBUILT, built as the unprivileged build user, every binary
        of the .dsc there (plus -dbgsym only), the .changes and
        .buildinfo, real .debs that dpkg-deb reads, every file in them
        owned by root."""
        tail = done.log[-4000:].decode("utf-8", "replace")
        self.assertEqual("FULLYBUILT", done.info["status"], tail)
        self.assertIn(b"build user: build (uid 1000, gid 1000)", done.log)
        expected = C.expected_binaries(source.dsc)
        debs = sorted(n for n in done.files if n.endswith((".deb", ".udeb")))
        self.assertEqual(expected, [n for n in debs
                                    if "-dbgsym_" not in n], tail)
        version = source.version.split(":", 1)[-1]
        for suffix in ("_amd64.changes", "_amd64.buildinfo"):
            self.assertIn(f"{source.name}_{version}{suffix}", done.files)
        for name in expected:
            listing = subprocess.run(
                ["dpkg-deb", "-c", str(done.files[name])],
                capture_output=True, text=True, check=True).stdout
            owners = {line.split()[1] for line in listing.splitlines()}
            self.assertEqual({"root/root"}, owners, name)
        report(source.name, source.version, "sandbox", done)

    async def test_hello(self):
        """GNU hello (autotools through debhelper, texinfo, help2man)
        builds to hello_*_amd64.deb."""
        self.check_fullybuilt(*await self.build("hello"))

    async def test_tree(self):
        """tree (a plain Makefile through debhelper) builds."""
        self.check_fullybuilt(*await self.build("tree"))

    async def test_nyancat(self):
        """nyancat: one source, an arch:any and an arch:all binary; -b
        builds both."""
        source, done = await self.build("nyancat")
        self.check_fullybuilt(source, done)
        self.assertTrue(any(n.endswith("_all.deb") for n in done.files))
        self.assertTrue(any(n.endswith("_amd64.deb") for n in done.files))

    async def test_python_toml(self):
        """python-toml (pybuild) builds python3-toml."""
        self.check_fullybuilt(*await self.build("python-toml"))

    async def test_missing_dependency_manualdepwait(self):
        """tree with one more build dependency that no archive has: the
        real ones (debhelper and its dependencies) are installed, the
        missing one is reported; the build ends MANUALDEPWAIT naming
        exactly it, and dpkg-buildpackage never runs."""
        source = fetch_or_skip("tree")
        where = Path(tempfile.mkdtemp(prefix="corpus-depwait-"))
        self.addCleanup(shutil.rmtree, where, ignore_errors=True)
        for path in source.files.values():
            shutil.copy(path, where)
        subprocess.run(["dpkg-source", "-x", source.dsc.name, "src"],
                       cwd=where, check=True, capture_output=True)
        control = where / "src" / "debian" / "control"
        text = control.read_text()
        marker = "Build-Depends: "
        self.assertIn(marker, text)
        control.write_text(text.replace(
            marker, marker + "lp-services-no-such-package (>= 2.0), ", 1))
        subprocess.run(["dpkg-source", "-b", "src"], cwd=where, check=True,
                       capture_output=True)
        done = await self.build_files(
            {p.name: p for p in where.iterdir() if p.is_file()})
        tail = done.log[-4000:].decode("utf-8", "replace")
        self.assertEqual("MANUALDEPWAIT", done.info["status"], tail)
        self.assertEqual("lp-services-no-such-package (>= 2.0)",
                         done.info["dependencies"])
        self.assertIn(b"Setting up debhelper", done.log)
        self.assertNotIn(b"dpkg-buildpackage: info: source package", done.log)


@slow
class CorpusQemuTests(IntegrationBase):
    """hello built through the farm on a virtualized builder whose agent
    runs the ``qemu`` backend.

    Opt-in (``LP_TEST_QEMU_PACKAGES=1``): under TCG, as on these machines,
    the build takes longer than CI's whole budget (figures in
    docs/virtualization.md, "What real packages need");
    ``bench/packages.py`` measures it."""

    timeout = 3600
    skip = IntegrationBase.skip or (
        None if os.environ.get("LP_TEST_QEMU_PACKAGES") else
        "a real package under TCG takes too long for CI; set "
        "LP_TEST_QEMU_PACKAGES=1 to run it")

    async def test_hello_in_guest(self):
        """GNU hello through the master to a qemu agent: dependencies
        installed into the build's chroot before the guests boot, the
        build in a guest VM without network, FULLYBUILT with hello's
        .deb."""
        from lp_services.slave.qemu import QemuBackend, QemuConfig
        from lp_services.testing.agents import TEST_SECRET, start_agent
        from lp_services.slave.vmimage import prepare_image

        source = fetch_or_skip("hello")
        backend = QemuBackend(QemuConfig(memory=1024), image=prepare_image())
        tmp = Path(tempfile.mkdtemp(prefix="corpus-qemu-agent-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.running = await start_agent(tmp, backend=backend)
        self.addCleanup(self.running.stop)
        self.running.agent.config.build_timeout = 3000.0
        done = await farm_build(self, self.running.base_url, TEST_SECRET,
                                source.files, virtualized=True,
                                timeout=3300.0)
        tail = done.log[-4000:].decode("utf-8", "replace")
        self.assertEqual("FULLYBUILT", done.info["status"], tail)
        self.assertIn(b"[qemu] accelerator:", done.log)
        expected = C.expected_binaries(source.dsc)
        self.assertEqual(expected, sorted(
            n for n in done.files
            if n.endswith(".deb") and "-dbgsym_" not in n))
        report(source.name, source.version, "qemu", done)
