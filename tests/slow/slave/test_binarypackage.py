"""Slow tier: binarypackage builds of a generated source package in a real
buildd chroot, alone and through the farm."""

import shutil
import subprocess
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from lp_services.protocol.states import BuildStatus
from lp_services.slave.binarypackage import BinaryPackageBuildManager
from lp_services.testing.tiers import slow
from tests.buildmaster.test_integration import IntegrationBase
from tests.slave.corpus_support import buildd_chroot, farm_build
from tests.slave.packages import RULES, make_source_package
from tests.slave.signed_repo import make_signed_repository, serve


class BuildHarness:
    """Runs one build manager with a real cache, log and backend."""

    def __init__(self, case, backend, files, args, timeout=600.0):
        from lp_services.slave.buildlog import BuildLog
        from lp_services.slave.cache import FileCache
        from lp_services.slave.manager import BuildContext
        base = Path(case.mktemp())
        base.mkdir()
        self.cache = FileCache(base / "cache", reactor, 1 << 30, 60)
        self.log = BuildLog(base / "buildlog", reactor, 64 << 20)
        self.context = BuildContext(
            build_id="test-build", build_dir=base / "build",
            chroot=buildd_chroot(), files=files, args=args, backend=backend,
            cache=self.cache, log=self.log, reactor=reactor, timeout=timeout)
        self.context.build_dir.mkdir()
        self.base = base

    def log_text(self):
        return self.log.path.read_text(errors="replace")

    async def run(self, manager_class=BinaryPackageBuildManager):
        manager = manager_class(self.context)
        try:
            outcome = await manager.start()
        finally:
            manager.destroy()
            self.log.close()
            shutil.rmtree(self.context.build_dir, ignore_errors=True)
        return outcome


def sandbox_backend():
    from lp_services.slave.cgroup import Limits
    from lp_services.slave.sandbox import SandboxBackend
    return SandboxBackend(reactor, Limits(memory=2 << 30, pids=4096))


@slow
class RealBuildTests(unittest.TestCase):
    """Real dpkg-buildpackage runs in a buildd chroot, sandbox backend."""

    timeout = 600

    @defer.inlineCallbacks
    def test_builds_debs(self):
        """A source package whose build dependency (xxd) is not in the
        chroot: it is installed from the archives, the build runs as the
        sandbox's unprivileged user, and the .deb, .changes and .buildinfo
        come back in the cache."""
        where = Path(self.mktemp())
        where.mkdir()
        files = make_source_package(where, "xxd")
        harness = BuildHarness(self, sandbox_backend(), files, {
            "archives": ["deb http://deb.debian.org/debian bookworm main"]})
        outcome = yield defer.ensureDeferred(harness.run())
        log = harness.log_text()
        self.assertEqual(BuildStatus.OK, outcome.status, log[-3000:])
        names = sorted(outcome.filemap)
        self.assertEqual(["lptest_1.0_all.deb", "lptest_1.0_amd64.buildinfo",
                          "lptest_1.0_amd64.changes"], names)
        deb = harness.cache.path_for(outcome.filemap["lptest_1.0_all.deb"])
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)],
                                 capture_output=True, text=True).stdout
        self.assertIn("./usr/share/lptest/hexdump.txt", listing)
        self.assertIn("root/root", listing)
        self.assertIn("=== install build dependencies", log)
        # Built as an unprivileged user.
        self.assertRegex(log, r"build user: \S+ \(uid [1-9][0-9]*, gid ")

    @defer.inlineCallbacks
    def test_trusted_keys_let_apt_use_a_signed_archive(self):
        """A build dependency only a signed private archive has, with its
        key in ``trusted_keys`` as Launchpad sends it: the key goes into
        the chroot's trusted.gpg.d, apt accepts the archive, the build
        passes. Without the key apt refuses the archive (not signed by a
        key it knows) and the build is given back, nothing built."""
        where = Path(self.mktemp())
        where.mkdir()
        repo = make_signed_repository(where / "archive", "lp-keyed-dep")
        url = serve(self, repo.root)
        archives = ["deb http://deb.debian.org/debian bookworm main",
                    "deb %s ./" % url]
        files = make_source_package(where, "xxd, lp-keyed-dep")
        harness = BuildHarness(self, sandbox_backend(), files, {
            "archives": archives, "trusted_keys": [repo.trusted_key]})
        outcome = yield defer.ensureDeferred(harness.run())
        log = harness.log_text()
        self.assertEqual(BuildStatus.OK, outcome.status, log[-3000:])
        self.assertIn("trusted key: launchpad-buildd-1.asc", log)
        self.assertIn("Setting up lp-keyed-dep (1.0)", log)

        unkeyed = BuildHarness(self, sandbox_backend(), files,
                               {"archives": archives})
        outcome = yield defer.ensureDeferred(unkeyed.run())
        log = unkeyed.log_text()
        self.assertEqual(BuildStatus.GIVENBACK, outcome.status, log[-3000:])
        self.assertRegex(log, "NO_PUBKEY|not signed")
        self.assertNotIn("=== build (", log)

    @defer.inlineCallbacks
    def test_missing_dependency_depfail(self):
        """A build dependency no archive has ends in DEPFAIL naming the
        unmet dependencies (dpkg-checkbuilddeps' list), and no build
        runs."""
        where = Path(self.mktemp())
        where.mkdir()
        files = make_source_package(
            where, "xxd, lp-services-no-such-package (>= 1.0)")
        harness = BuildHarness(self, sandbox_backend(), files, {})
        outcome = yield defer.ensureDeferred(harness.run())
        log = harness.log_text()
        self.assertEqual(BuildStatus.DEPFAIL, outcome.status, log[-3000:])
        # build-dep failed as a whole; xxd was then installed on its own:
        # only the dependency no archive has is reported.
        self.assertEqual("lp-services-no-such-package (>= 1.0)",
                         outcome.dependencies)
        self.assertIn("unmet: lp-services-no-such-package (>= 1.0)", log)
        self.assertNotIn("=== build (", log)

    @defer.inlineCallbacks
    def test_failing_build_packagefail(self):
        """A rules file that fails makes PACKAGEFAIL."""
        where = Path(self.mktemp())
        where.mkdir()
        make_source_package(where, "make")
        # Rebuild the package with a failing build target.
        rules = where / "lptest-1.0" / "debian" / "rules"
        rules.write_text(RULES.replace("xxd -p", "false && xxd -p"))
        for p in where.glob("lptest_1.0*"):
            p.unlink()
        subprocess.run(["dpkg-source", "-b", "lptest-1.0"], cwd=where,
                       check=True, capture_output=True)
        files = {p.name: p for p in where.iterdir() if p.is_file()}
        harness = BuildHarness(self, sandbox_backend(), files, {})
        outcome = yield defer.ensureDeferred(harness.run())
        self.assertEqual(BuildStatus.PACKAGEFAIL, outcome.status,
                         harness.log_text()[-3000:])

    @defer.inlineCallbacks
    def test_mismatched_files_fail_first(self):
        """A .dsc whose tarball was swapped, or is missing, fails in the
        verify step: the chroot is never unpacked and no build runs."""
        where = Path(self.mktemp())
        where.mkdir()
        files = make_source_package(where, "xxd")
        tarball = next(p for n, p in files.items() if n.endswith(".tar.xz"))
        data = bytearray(tarball.read_bytes())
        data[-1] ^= 1
        tarball.write_bytes(bytes(data))
        for case_files in (files, {n: p for n, p in files.items()
                                   if not n.endswith(".tar.xz")}):
            harness = BuildHarness(self, sandbox_backend(), case_files, {})
            outcome = yield defer.ensureDeferred(harness.run())
            log = harness.log_text()
            self.assertEqual(BuildStatus.PACKAGEFAIL, outcome.status)
            self.assertIn("source package refused", log)
            self.assertNotIn("=== unpack", log)

    @defer.inlineCallbacks
    def test_builds_debs_in_guest(self):
        """The same build with the qemu backend: dependencies installed
        into the build's chroot before the guest boots, the build in a
        guest VM without network, the same three results."""
        from lp_services.slave.qemu import QemuBackend, QemuConfig
        where = Path(self.mktemp())
        where.mkdir()
        files = make_source_package(where, "xxd")
        backend = QemuBackend(QemuConfig(memory=1024), reactor=reactor)
        harness = BuildHarness(self, backend, files, {})
        outcome = yield defer.ensureDeferred(harness.run())
        log = harness.log_text()
        self.assertEqual(BuildStatus.OK, outcome.status, log[-3000:])
        self.assertEqual(["lptest_1.0_all.deb", "lptest_1.0_amd64.buildinfo",
                          "lptest_1.0_amd64.changes"], sorted(outcome.filemap))
        self.assertIn("[qemu] accelerator:", log)
        self.assertNotIn("\x1b[", log)


@slow
class BuildmasterBinaryPackageTests(IntegrationBase):
    """A real binarypackage build dispatched by the buildmaster to a real
    agent (sandbox backend), its results stored like any other."""

    timeout = 600

    async def test_binarypackage_end_to_end(self):
        """The master uploads the buildd chroot and the source package,
        the agent builds it, and the build ends FULLYBUILT with the .deb,
        .changes and .buildinfo in the master's file store."""
        agent_url, secret = await self.start_agent()
        self.running.agent.config.build_timeout = 600.0
        where = Path(self.mktemp())
        where.mkdir()
        sources = make_source_package(where, "xxd")
        done = await farm_build(
            self, agent_url, secret, sources, timeout=500.0,
            args={"archives": [
                "deb http://deb.debian.org/debian bookworm main"]})
        self.assertEqual("FULLYBUILT", done.info["status"], done.log[-3000:])
        self.assertEqual(["lptest_1.0_all.deb", "lptest_1.0_amd64.buildinfo",
                          "lptest_1.0_amd64.changes"], sorted(done.files))
        deb = done.files["lptest_1.0_all.deb"]
        self.assertEqual(b"!<arch>\n", deb.read_bytes()[:8])
        self.assertIn(b"dpkg-buildpackage", done.log)
