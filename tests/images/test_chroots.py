"""Tests of lp_services.images.chroots and ``lp-services chroot build``."""

import hashlib
import os
from pathlib import Path

from click.testing import CliRunner
from twisted.trial import unittest

from lp_services.images.chroots import (
    ChrootError,
    build_chroot,
    cache_root,
    debian_mirror,
)
from lp_services.cli.chroot_build import build
from lp_services.testing.database import DatabaseTestMixin

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://off.example/debian
Enabled: no
Suites: bookworm

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
"""


class MirrorTests(unittest.SynchronousTestCase):
    """debian_mirror()."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def test_deb822(self):
        """The first enabled deb source that is not a security archive."""
        sources = self.dir / "debian.sources"
        sources.write_text(DEB822)
        self.assertEqual("http://mirror.example/debian",
                         debian_mirror(sources, self.dir / "none"))

    def test_legacy(self):
        """Without deb822 sources, the one-line sources.list is read."""
        legacy = self.dir / "sources.list"
        legacy.write_text("# comment\ndeb [arch=amd64] http://old.example/d "
                          "bookworm main\n")
        self.assertEqual("http://old.example/d",
                         debian_mirror(self.dir / "none", legacy))

    def test_none(self):
        """No mirror configured is a clear error."""
        with self.assertRaisesRegex(ChrootError, "no Debian mirror"):
            debian_mirror(self.dir / "none", self.dir / "none2")


class CacheTests(unittest.SynchronousTestCase):
    """cache_root() and the tarball cache."""

    def setUp(self):
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.saved = os.environ.get("LP_SERVICES_CACHE")
        self.addCleanup(self.restore)

    def restore(self):
        if self.saved is None:
            os.environ.pop("LP_SERVICES_CACHE", None)
        else:
            os.environ["LP_SERVICES_CACHE"] = self.saved

    def test_cache_root_env(self):
        """$LP_SERVICES_CACHE wins; otherwise root uses /var/cache."""
        os.environ["LP_SERVICES_CACHE"] = str(self.dir)
        self.assertEqual(self.dir, cache_root())
        del os.environ["LP_SERVICES_CACHE"]
        if os.geteuid() == 0:
            self.assertEqual(Path("/var/cache/lp-services"), cache_root())
        else:
            self.assertEqual("lp-services", cache_root().name)

    def test_bad_input(self):
        """Unknown variants, odd series names and package names are
        refused before anything runs."""
        for kwargs in ({"variant": "fat"}, {"series": "../x"},
                       {"processor": "amd64; rm"},
                       {"include": ("ok", "bad name")}):
            with self.assertRaises(ChrootError):
                build_chroot(mirror="http://m", cache=self.dir, **kwargs)

    def seed(self):
        """Put a fake tarball where the cache key for bookworm minbase
        amd64 from http://m points."""
        directory = self.dir / "chroots"
        directory.mkdir()
        import lp_services.images.chroots as chroots
        key = hashlib.sha1(f"{chroots._LAYOUT} http://m ".encode()) \
            .hexdigest()[:8]
        path = directory / f"bookworm-minbase-amd64-{key}.tar.zst"
        path.write_bytes(b"tarball")
        return path

    def test_cache_hit(self):
        """A cached tarball is returned without running debootstrap."""
        path = self.seed()
        result = build_chroot(mirror="http://m", cache=self.dir)
        self.assertTrue(result.cached)
        self.assertEqual(path, result.path)
        self.assertEqual(hashlib.sha1(b"tarball").hexdigest(), result.sha1)

    def test_cli(self):
        """`chroot build` prints the sha1 and path; --output copies it;
        a bad variant is a usage error."""
        self.seed()
        os.environ["LP_SERVICES_CACHE"] = str(self.dir)
        out = self.dir / "copy.tar.zst"
        result = CliRunner().invoke(build, ["--mirror", "http://m",
                                            "--output", str(out)])
        self.assertEqual(0, result.exit_code, result.output)
        self.assertIn(hashlib.sha1(b"tarball").hexdigest(), result.output)
        self.assertEqual(b"tarball", out.read_bytes())
        result = CliRunner().invoke(build, ["--variant", "fat"])
        self.assertEqual(2, result.exit_code)


class RegisterTests(DatabaseTestMixin, unittest.TestCase):
    """``chroot build --register`` hands the tarball to ``chroot add``."""

    def test_register(self):
        """The (cached) tarball is stored in the file store and becomes
        the chroot of the processor and series."""
        import click

        from lp_services.cli.context import CLIContext

        cache = Path(self.mktemp())
        (cache / "chroots").mkdir(parents=True)
        import lp_services.images.chroots as chroots
        key = hashlib.sha1(f"{chroots._LAYOUT} http://m ".encode()) \
            .hexdigest()[:8]
        (cache / "chroots" / f"bookworm-buildd-amd64-{key}.tar.zst") \
            .write_bytes(b"a buildd tarball")
        home = Path(self.mktemp())
        home.mkdir()
        saved = os.environ.get("LP_SERVICES_CACHE")
        os.environ["LP_SERVICES_CACHE"] = str(cache)
        self.addCleanup(lambda: os.environ.pop("LP_SERVICES_CACHE")
                        if saved is None else
                        os.environ.__setitem__("LP_SERVICES_CACHE", saved))
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO processor (name) VALUES ('amd64')")
        conn.commit()

        @click.group()
        @click.pass_context
        def root(ctx):
            ctx.obj = CLIContext(database=self.database_url, home=str(home))
        root.add_command(build)
        result = CliRunner().invoke(root, [
            "build", "--series", "bookworm", "--variant", "buildd",
            "--mirror", "http://m", "--register"], catch_exceptions=False)
        self.assertEqual(0, result.exit_code, result.output)
        sha1 = hashlib.sha1(b"a buildd tarball").hexdigest()
        self.assertIn("chroot for amd64/bookworm: " + sha1, result.output)
        with conn.cursor() as cur:
            cur.execute("SELECT c.series, f.sha1 FROM chroot c"
                        " JOIN library_file f ON f.id = c.library_file")
            self.assertEqual([("bookworm", sha1)], cur.fetchall())
