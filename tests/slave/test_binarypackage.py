"""Tests of the ``binarypackage`` build type: .dsc parsing and
verification (fast), and real Debian package builds in a cached buildd
chroot in the sandbox backend (slow)."""

import hashlib
import shutil
import subprocess
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from lp_services.slave.binarypackage import (
    BinaryPackageBuildManager,
    DscError,
    build_script,
    dep_install_argv,
    dep_install_command,
    dep_install_script,
    parse_dsc,
    parse_unmet_dependencies,
    verify_source,
)
from lp_services.slave.errors import BadArguments
from lp_services.slave.interfaces import IBuildManagerFactory
from lp_services.protocol.states import BuildStatus
from lp_services.testing.tiers import slow


def _dsc_text(files, signed=False):
    sha = "".join(" %s %d %s\n" % (hashlib.sha256(d).hexdigest(), len(d), n)
                  for n, d in files.items())
    md5 = "".join(" %s %d %s\n" % (hashlib.md5(d).hexdigest(), len(d), n)
                  for n, d in files.items())
    body = ("Format: 3.0 (native)\nSource: hello\nVersion: 1.0\n"
            "Build-Depends: debhelper-compat (= 13),\n libfoo-dev\n"
            "Checksums-Sha256:\n" + sha + "Files:\n" + md5)
    if signed:
        return ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
                + body + "\n-----BEGIN PGP SIGNATURE-----\n\nabc\n"
                "-----END PGP SIGNATURE-----\n")
    return body


class ParseDscTests(unittest.SynchronousTestCase):
    """parse_dsc()."""

    def test_fields_and_files(self):
        """Source, version, build-depends and every listed file with its
        size and both hashes are read."""
        data = b"source tarball"
        package = parse_dsc(_dsc_text({"hello_1.0.tar.xz": data}))
        self.assertEqual(("hello", "1.0"), (package.source, package.version))
        self.assertEqual("debhelper-compat (= 13), libfoo-dev",
                         package.build_depends)
        self.assertEqual(
            {"hello_1.0.tar.xz": (len(data), hashlib.sha256(data).hexdigest(),
                                  hashlib.md5(data).hexdigest())},
            package.files)

    def test_clear_signed(self):
        """A clear-signed .dsc parses to the same content."""
        files = {"hello_1.0.tar.xz": b"x"}
        self.assertEqual(parse_dsc(_dsc_text(files)),
                         parse_dsc(_dsc_text(files, signed=True)))

    def test_no_files(self):
        """A .dsc listing no files is refused."""
        with self.assertRaisesRegex(DscError, "lists no files"):
            parse_dsc("Source: a\nVersion: 1\n")

    def test_missing_source(self):
        """A .dsc without Source is refused."""
        with self.assertRaisesRegex(DscError, "no Source"):
            parse_dsc("Version: 1\nFiles:\n %s 1 a.tar.xz\n" % ("0" * 32))

    def test_unsafe_name(self):
        """A listed file whose name is a path is refused."""
        text = "Source: a\nVersion: 1\nFiles:\n %s 1 ../etc/passwd\n" % (
            "0" * 32)
        with self.assertRaisesRegex(DscError, "unsafe file name"):
            parse_dsc(text)

    def test_malformed_line(self):
        """A checksum line that is not 'hash size name' is refused."""
        text = "Source: a\nVersion: 1\nChecksums-Sha256:\n abc 1 a.tar.xz\n"
        with self.assertRaisesRegex(DscError, "malformed"):
            parse_dsc(text)


class VerifySourceTests(unittest.SynchronousTestCase):
    """verify_source() against the build's files."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.tarball = self.dir / "hello_1.0.tar.xz"
        self.tarball.write_bytes(b"the real tarball")
        self.dsc = self.dir / "hello_1.0.dsc"
        self.dsc.write_text(_dsc_text({self.tarball.name: b"the real tarball"}))

    def files(self):
        return {p.name: p for p in (self.dsc, self.tarball) if p.exists()}

    def test_good(self):
        """Files matching the .dsc pass."""
        self.assertEqual("hello", verify_source(self.dsc.name,
                                                self.files()).source)

    def test_missing_file(self):
        """A listed file absent from the filemap is named."""
        self.tarball.unlink()
        with self.assertRaisesRegex(DscError, "hello_1.0.tar.xz .* missing"):
            verify_source(self.dsc.name, self.files())

    def test_wrong_hash(self):
        """Same size, different content: the SHA-256 mismatch is named."""
        self.tarball.write_bytes(b"the fake tarball")
        with self.assertRaisesRegex(DscError, "SHA-256 .* does not match"):
            verify_source(self.dsc.name, self.files())

    def test_wrong_size(self):
        """A file of another size is refused."""
        self.tarball.write_bytes(b"short")
        with self.assertRaisesRegex(DscError, "size 5"):
            verify_source(self.dsc.name, self.files())

    def test_dsc_missing(self):
        """The named .dsc must be among the files."""
        with self.assertRaisesRegex(DscError, "not among"):
            verify_source("other.dsc", self.files())


class UnmetDependencyTests(unittest.SynchronousTestCase):
    """parse_unmet_dependencies() on dpkg-checkbuilddeps output."""

    def test_list(self):
        """Unmet dependencies come back comma-separated, versions and
        alternatives kept together."""
        output = ("dpkg-checkbuilddeps: error: Unmet build dependencies: "
                  "libfoo-dev (>= 1.2) bar | baz quux:native\n")
        self.assertEqual("libfoo-dev (>= 1.2), bar | baz, quux:native",
                         parse_unmet_dependencies(output))

    def test_none(self):
        """Output without the message gives None."""
        self.assertIsNone(parse_unmet_dependencies("all fine\n"))


class ArgsTests(unittest.SynchronousTestCase):
    """validate_args(), needed_files() and the dependency step's commands."""

    def test_provides(self):
        """The class is a build manager factory named binarypackage."""
        verifyObject(IBuildManagerFactory, BinaryPackageBuildManager)
        self.assertEqual("binarypackage", BinaryPackageBuildManager.name)

    def test_bad_args(self):
        """Bad dsc names and archive lines are refused."""
        for args in ({"dsc": "../x.dsc"}, {"dsc": "x.tar.gz"},
                     {"archives": "deb http://x y z"},
                     {"archives": ["rm -rf /"]},
                     {"archives": ["deb http://x y z\ndeb http://evil a b"]},
                     {"arch_indep": "yes"}):
            self.assertRaises(BadArguments,
                              BinaryPackageBuildManager.validate_args, args)

    def test_good_args(self):
        """A dsc name and deb lines pass; the dsc is a needed file."""
        args = {"dsc": "hello_1.0.dsc",
                "archives": ["deb http://deb.debian.org/debian bookworm main"]}
        BinaryPackageBuildManager.validate_args(args)
        self.assertEqual(["hello_1.0.dsc"],
                         BinaryPackageBuildManager.needed_files(args))
        self.assertEqual([], BinaryPackageBuildManager.needed_files({}))

    def test_dep_install_argv(self):
        """The dependency step shares the network, writes the chroot, is
        root only in the id range's user namespace (never bubblewrap's
        one-id map, which as root means host root), with /proc/sys
        read-only and nested user namespaces asserted off, and sees /work
        read-only."""
        argv = dep_install_argv(Path("/r"), Path("/w"), "true", as_root=True)
        self.assertEqual(["--assert-userns-disabled", "--unshare-ipc"],
                         argv[1:3])
        self.assertNotIn("--unshare-user", argv)
        self.assertNotIn("--unshare-net", argv)
        i = argv.index("--bind")
        self.assertEqual(["/r", "/"], argv[i + 1:i + 3])
        i = argv.index("--ro-bind")
        self.assertEqual(["/proc/sys", "/proc/sys"], argv[i + 1:i + 3])
        self.assertIn("/w /work", " ".join(argv))
        unprivileged = dep_install_argv(Path("/r"), Path("/w"), "true",
                                        as_root=False)
        self.assertEqual(["--unshare-user", "--uid", "0"], unprivileged[1:4])
        self.assertIn("--share-net", unprivileged)

    def test_dep_install_command(self):
        """With an id range the step starts through the id-map launcher,
        which makes it the namespace's root and shows the chroot and /work
        at its aliases."""
        from lp_services.slave import idmap
        argv = dep_install_command(Path("/r"), Path("/w"), "true",
                                   idmap.IdRange(300000))
        end = argv.index("--")
        self.assertEqual(argv[4:end], ["300000", "root", "/r", "/w"])
        line = " ".join(argv[end:])
        self.assertIn("--bind %s /" % idmap.alias(0), line)
        self.assertIn("--ro-bind %s /work" % idmap.alias(1), line)

    def test_build_script(self):
        """The build step names its user, then runs dpkg-buildpackage
        with fakeroot as the gain-root command, unsigned, -b or -B."""
        script = build_script("-B")
        self.assertIn('echo "build user: ', script)
        self.assertTrue(script.endswith(
            "cd /work/src && exec dpkg-buildpackage -rfakeroot -us -uc -B"))

    def test_dep_install_script(self):
        """The archives replace the chroot's sources; a failed update
        exits 90; after a failed build-dep each dependency is tried
        alone."""
        script = dep_install_script(
            "a.dsc", ["deb http://m bookworm main"], need_fakeroot=True,
            build_depends="xxd, foo (>= 1.0) [amd64],")
        self.assertIn("deb http://m bookworm main\nLP_EOF", script)
        self.assertIn("for dep in xxd 'foo (>= 1.0) [amd64]'; do", script)
        self.assertIn('satisfy "$dep"', script)
        self.assertIn("update || exit 90", script)
        self.assertIn("build-dep /work/a.dsc", script)
        self.assertIn("install fakeroot", script)


# -- slow: real builds ------------------------------------------------------

_CONTROL = """\
Source: lptest
Section: misc
Priority: optional
Maintainer: lp-services tests <tests@example.invalid>
Build-Depends: {build_depends}
Rules-Requires-Root: no
Standards-Version: 4.6.2

Package: lptest
Architecture: all
Description: lp-services test package
 A package the binarypackage tests build.
"""

_CHANGELOG = """\
lptest (1.0) unstable; urgency=medium

  * Test build.

 -- lp-services tests <tests@example.invalid>  Sun, 29 Nov 2026 00:00:00 +0000
"""

# A debhelper-free rules file: fast, and xxd (the build dependency the
# test installs) must really be there for the build to pass.
_RULES = """\
#!/usr/bin/make -f
build build-arch build-indep:
\techo lptest | xxd -p > hexdump.txt
binary binary-arch binary-indep: build
\trm -rf debian/tmp
\tmkdir -p debian/tmp/DEBIAN debian/tmp/usr/share/lptest
\tcp hexdump.txt debian/tmp/usr/share/lptest/
\tdpkg-gencontrol -plptest -Pdebian/tmp
\tdpkg-deb --root-owner-group --build debian/tmp ..
clean:
\trm -rf debian/tmp debian/files hexdump.txt
"""


def make_source_package(where: Path, build_depends: str) -> dict:
    """Make lptest 1.0 (3.0 native) with dpkg-source -b; return the
    files of the source package, name -> Path."""
    src = where / "lptest-1.0"
    (src / "debian" / "source").mkdir(parents=True)
    (src / "debian" / "control").write_text(
        _CONTROL.format(build_depends=build_depends))
    (src / "debian" / "changelog").write_text(_CHANGELOG)
    (src / "debian" / "rules").write_text(_RULES)
    (src / "debian" / "rules").chmod(0o755)
    (src / "debian" / "source" / "format").write_text("3.0 (native)\n")
    subprocess.run(["dpkg-source", "-b", src.name], cwd=where, check=True,
                   capture_output=True)
    return {p.name: p for p in where.iterdir() if p.is_file()}


def buildd_chroot() -> Path:
    """The cached bookworm buildd chroot tarball (built on first use)."""
    from lp_services.images.chroots import build_chroot
    return build_chroot("bookworm", "buildd").path


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
        rules.write_text(_RULES.replace("xxd -p", "false && xxd -p"))
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


# -- through the agent's XML-RPC ------------------------------------------

from tests.slave.helpers import AgentTestCase  # noqa: E402


class AgentBinaryPackageTests(AgentTestCase):
    """``binarypackage`` as the agent offers it over XML-RPC."""

    @defer.inlineCallbacks
    def test_listed_and_refuses_bad_source_before_building(self):
        """info() lists binarypackage; a build whose .dsc does not match
        its tarball ends PACKAGEFAIL in the verify step, the chroot never
        unpacked, and clean() makes the agent IDLE again."""
        from lp_services.protocol.states import BuilderStatus
        info = yield self.call("info")
        self.assertIn("binarypackage", info[2])
        good = b"the real tarball"
        dsc = _dsc_text({"hello_1.0.tar.xz": good}).encode()
        files = {"hello_1.0.dsc": self.seed(dsc),
                 "hello_1.0.tar.xz": self.seed(b"the fake tarball")}
        chroot = self.seed(b"never unpacked")
        reply = yield self.call("build", "bp-1", "binarypackage", chroot,
                                files, {"dsc": "hello_1.0.dsc"})
        self.assertEqual(["BuilderStatus.BUILDING", "bp-1"], reply)
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual("BuildStatus.PACKAGEFAIL", status["build_status"])
        code, log = yield self.fetch("/filecache/buildlog")
        self.assertIn(b"source package refused: hello_1.0.tar.xz: SHA-256",
                      log)
        self.assertNotIn(b"=== unpack", log)
        self.assertEqual("BuilderStatus.IDLE", (yield self.call("clean")))


# -- slow: through the buildmaster ------------------------------------------

from tests.buildmaster.test_integration import (  # noqa: E402
    IntegrationBase, wait_until)


@slow
class BuildmasterBinaryPackageTests(IntegrationBase):
    """A real binarypackage build dispatched by the buildmaster to a real
    agent (sandbox backend), its results stored like any other."""

    timeout = 600

    async def test_binarypackage_end_to_end(self):
        """The master uploads the buildd chroot and the source package,
        the agent builds it, and the build ends FULLYBUILT with the .deb,
        .changes and .buildinfo in the master's file store."""
        from lp_services.buildmaster import builders as B
        from lp_services.buildmaster import queue as Q
        from lp_services.clock import utcnow
        from lp_services.database.sql import raw_cursor
        from tests.buildmaster.support import InProcessMaster

        agent_url, secret = await self.start_agent()
        self.running.agent.config.build_timeout = 600.0
        master = InProcessMaster(self, self.database_url, "bp", interval=1.0,
                                 logtail_interval=0.5)
        file_store = master.file_store
        where = Path(self.mktemp())
        where.mkdir()
        sources = make_source_package(where, "xxd")

        def setup(store):
            B.add_builder(store, name="bp1", url=agent_url,
                          processors=["amd64"], secret=secret)
            record = file_store.add_path(store, buildd_chroot())
            raw_cursor(store).execute(
                "INSERT INTO chroot (processor, series, library_file)"
                " SELECT id, 'bookworm', %s FROM processor WHERE name = %s",
                (record.id, "amd64"))
            filemap = {name: file_store.add_path(store, path).sha1
                       for name, path in sources.items()}
            return Q.request_build(
                store, build_type="binarypackage", processor="amd64",
                series="bookworm", now=utcnow(reactor),
                build_args={"archives": [
                    "deb http://deb.debian.org/debian bookworm main"]},
                filemap=filemap)
        job = self.blocking(setup)
        await master.start()
        info = await wait_until(
            lambda: (lambda i: i if i["status"] in (
                "FULLYBUILT", "FAILEDTOBUILD", "MANUALDEPWAIT",
                "CHROOTWAIT") else None)(self.show(job)), timeout=500,
            step=0.5)
        log = file_store.path_for(info["log"]["sha1"]).read_bytes()
        self.assertEqual("FULLYBUILT", info["status"], log[-3000:])
        files = {f["filename"]: f["sha1"] for f in info["files"]}
        self.assertEqual(["lptest_1.0_all.deb", "lptest_1.0_amd64.buildinfo",
                          "lptest_1.0_amd64.changes"], sorted(files))
        deb = file_store.path_for(files["lptest_1.0_all.deb"])
        self.assertEqual(b"!<arch>\n", deb.read_bytes()[:8])
        self.assertIn(b"dpkg-buildpackage", log)


class CollectTests(unittest.TestCase):
    """The binarypackage collector keeps within the build's quota, as the
    script one does (the hostile-build issue's sparse result)."""

    def test_sparse_deb_over_the_quota_is_skipped(self):
        """A sparse 7 GiB '.deb' with 8 KiB inside is skipped at once and
        marks the collection over_quota (PACKAGEFAIL: the build's doing);
        the other results are kept; nothing of it enters the cache."""
        import os

        from lp_services.slave.binarypackage import _collect
        from lp_services.slave.cache import FileCache
        base = Path(self.mktemp()).resolve()
        work = base / "work"
        work.mkdir(parents=True)
        with open(work / "big_1_amd64.deb", "wb") as f:
            f.write(os.urandom(8192))
            f.truncate(7 << 30)
        (work / "hello_1_amd64.changes").write_bytes(b"Format: 1.8\n")
        cache = FileCache(base / "cache", reactor, 8 << 30, 10)
        found = _collect(work, cache, budget=64 << 20)
        self.assertEqual(list(found.filemap), ["hello_1_amd64.changes"])
        self.assertTrue(found.over_quota)
        self.assertFalse(found.no_space)
        self.assertEqual(len(found.added), 1)

    def test_missing_work_directory_is_a_note(self):
        """No build directory: no results, one note, nothing raised."""
        from lp_services.slave.binarypackage import _collect
        from lp_services.slave.cache import FileCache
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        cache = FileCache(base / "cache", reactor, 8 << 30, 10)
        found = _collect(base / "nothing", cache)
        self.assertEqual((found.filemap, len(found.notes)), ({}, 1))
        self.assertIn("no build directory", found.notes[0])
