"""Slow tier: real source packages from the archive built through the farm, on
the sandbox and qemu backends."""

import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial import unittest

from lp_services.testing import corpus as C
from lp_services.testing.tiers import slow
from tests.buildmaster.test_integration import IntegrationBase
from tests.slave.corpus_support import farm_build, step_times


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

    async def test_python_xmltodict(self):
        """python-xmltodict (pybuild, arch:all, tests run at build time)
        builds python3-xmltodict."""
        source, done = await self.build("python-xmltodict")
        self.check_fullybuilt(source, done)
        self.assertTrue(any(n.startswith("python3-xmltodict_")
                            and n.endswith("_all.deb") for n in done.files),
                        done.files)

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
    """Real packages built through the farm on a virtualized builder
    whose agent runs the ``qemu`` backend: ``tree`` and ``hello``."""

    timeout = 3600

    def backend(self):
        from lp_services.slave.qemu import QemuBackend, QemuConfig
        from lp_services.slave.vmimage import prepare_image

        return QemuBackend(QemuConfig(memory=1024), image=prepare_image())

    async def build_in_guest(self, name, build_timeout, backend):
        """Build source package ``name`` in a guest; check FULLYBUILT and
        every binary of its .dsc; return the build."""
        from lp_services.testing.agents import TEST_SECRET, start_agent

        source = fetch_or_skip(name)
        tmp = Path(tempfile.mkdtemp(prefix="corpus-qemu-agent-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.running = await start_agent(tmp, backend=backend)
        self.addCleanup(self.running.stop)
        self.running.agent.config.build_timeout = build_timeout
        done = await farm_build(self, self.running.base_url, TEST_SECRET,
                                source.files, virtualized=True,
                                timeout=build_timeout + 300.0)
        tail = done.log[-4000:].decode("utf-8", "replace")
        self.assertEqual("FULLYBUILT", done.info["status"], tail)
        self.assertIn(b"[qemu] accelerator:", done.log)
        expected = C.expected_binaries(source.dsc)
        self.assertEqual(expected, sorted(
            n for n in done.files
            if n.endswith(".deb") and "-dbgsym_" not in n))
        report(source.name, source.version, "qemu", done)
        return done

    async def test_tree_in_guest(self):
        """tree (plain Makefile, C) through the master to a qemu agent:
        dependencies installed into the build's chroot before the guest
        boots, the build in a guest VM without network, FULLYBUILT with
        tree's .deb."""
        await self.build_in_guest("tree", 1500.0, self.backend())

    async def test_hello_in_guest(self):
        """GNU hello (autotools, texinfo, its test suite) the same way:
        about 7 minutes under TCG on this machine when it is not loaded
        (docs/virtualization.md)."""
        await self.build_in_guest("hello", 3000.0, self.backend())
