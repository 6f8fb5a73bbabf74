"""Tests of the ``binarypackage`` build type: .dsc parsing and
verification (fast), and real Debian package builds in a cached buildd
chroot in the sandbox backend (slow)."""

import base64
import hashlib
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from lp_services.slave.binarypackage import (
    MAX_TRUSTED_KEYS,
    TRUSTED_KEYS_DIR,
    BinaryPackageBuildManager,
    DscError,
    build_script,
    dep_install_argv,
    dep_install_command,
    dep_install_script,
    parse_dsc,
    parse_unmet_dependencies,
    trusted_keys,
    verify_source,
    write_trusted_keys,
)
from lp_services.slave.errors import BadArguments
from lp_services.slave.interfaces import IBuildManagerFactory
from tests.slave.helpers import AgentTestCase


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


ARMORED_KEY = (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n"
               b"-----END PGP PUBLIC KEY BLOCK-----\n")


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

    def test_launchpads_arguments(self):
        """Everything Launchpad's master sends with a binarypackage build
        (BinaryPackageBuildBehaviour.extraBuildArgs and the common ones)
        passes, with the types it sends."""
        key = base64.b64encode(ARMORED_KEY).decode()
        BinaryPackageBuildManager.validate_args({
            "arch_tag": "amd64", "archive_private": False,
            "build_url": "https://launchpad.test/~x/+build/1",
            "builder_constraints": [], "fast_cleanup": True,
            "series": "bookworm", "launchpad_instance": "devel",
            "launchpad_server_url": "launchpad.test", "image_type": "chroot",
            "arch_indep": True, "suite": "bookworm-proposed",
            "archive_purpose": "PRIMARY", "ogrecomponent": "main",
            "archives": ["deb http://ftpmaster.internal/debian bookworm main"],
            "trusted_keys": [key], "build_debug_symbols": False})

    def test_bad_launchpad_arguments(self):
        """Wrong types, keys that are not base64 and oversized keys are
        refused with a message naming the argument."""
        big = base64.b64encode(b"k" * (MAX_TRUSTED_KEYS + 1)).decode()
        for args, named in (
                ({"build_debug_symbols": "yes"}, "build_debug_symbols"),
                ({"ogrecomponent": 3}, "ogrecomponent"),
                ({"archive_purpose": None}, "archive_purpose"),
                ({"trusted_keys": "AAAA"}, "trusted_keys"),
                ({"trusted_keys": ["not base64!"]}, "trusted_keys"),
                ({"trusted_keys": [big]}, "trusted_keys")):
            error = self.assertRaises(
                BadArguments, BinaryPackageBuildManager.validate_args, args)
            self.assertIn(named, str(error))

    def test_trusted_keys_named_by_kind(self):
        """An armored key becomes a .asc file, a binary one a .gpg (apt
        reads both from trusted.gpg.d), numbered in order."""
        found = trusted_keys({"trusted_keys": [
            base64.b64encode(ARMORED_KEY).decode(),
            base64.b64encode(b"\x99\x01\x0dbinary").decode()]})
        self.assertEqual([("launchpad-buildd-1.asc", ARMORED_KEY),
                          ("launchpad-buildd-2.gpg", b"\x99\x01\x0dbinary")],
                         found)
        self.assertEqual([], trusted_keys({}))

    def test_write_trusted_keys_follows_no_link(self):
        """The keys' directory must be new: a link the build left in /work
        under that name is not followed."""
        work = Path(self.mktemp())
        work.mkdir()
        write_trusted_keys(work, [("launchpad-buildd-1.asc", ARMORED_KEY)])
        self.assertEqual(
            ARMORED_KEY,
            (work / TRUSTED_KEYS_DIR / "launchpad-buildd-1.asc").read_bytes())
        other = Path(self.mktemp())
        other.mkdir()
        elsewhere = Path(self.mktemp())
        elsewhere.mkdir()
        (other / TRUSTED_KEYS_DIR).symlink_to(elsewhere)
        self.assertRaises(FileExistsError, write_trusted_keys, other,
                          [("launchpad-buildd-1.asc", ARMORED_KEY)])
        self.assertEqual([], list(elsewhere.iterdir()))

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
            "cd /work/src && exec env DEB_BUILD_OPTIONS=noautodbgsym "
            "dpkg-buildpackage -rfakeroot -us -uc -B"))

    def test_debug_symbols_only_when_asked(self):
        """As launchpad-buildd: no automatic -dbgsym packages unless
        build_debug_symbols is true."""
        self.assertNotIn("noautodbgsym", build_script("-b", True))
        self.assertIn("noautodbgsym", build_script("-b", False))

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
        self.assertNotIn("trusted.gpg.d", script)

    def test_dep_install_script_installs_trusted_keys_first(self):
        """With trusted keys, they go into apt's trusted.gpg.d before the
        first apt-get update."""
        script = dep_install_script("a.dsc", None, need_fakeroot=False,
                                    with_trusted_keys=True)
        install = script.index(
            'install -m 644 "$key" /etc/apt/trusted.gpg.d/')
        self.assertLess(install, script.index("apt-get"))
        self.assertIn("/work/.lp-trusted-keys/*", script)



# -- through the agent's XML-RPC ------------------------------------------


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
