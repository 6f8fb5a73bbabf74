"""Tests of result collection (lp_services.slave.results)."""

import hashlib
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from lp_services.slave import results
from lp_services.slave.cache import FileCache
from lp_services.slave.results import DIR_FLAGS, collect_directory


class CollectDirectoryTests(TestCase):
    """Only safe, regular, accepted files become results."""

    def setUp(self):
        base = Path(self.mktemp()).resolve()
        self.out = base / "out"
        self.out.mkdir(parents=True)
        self.cache = FileCache(base / "cache", reactor, max_file_size=100,
                               download_timeout=10)

    def collect(self, **kwargs):
        fd = os.open(self.out, DIR_FLAGS)
        try:
            return collect_directory(fd, self.cache, **kwargs)
        finally:
            os.close(fd)

    def test_regular_files_only(self):
        """Links (even to real files), directories and oversized files are
        skipped with a note; regular files land in the cache by sha1."""
        (self.out / "a.txt").write_bytes(b"alpha")
        (self.out / "dir").mkdir()
        (self.out / "link").symlink_to("/etc/passwd")
        (self.out / "big").write_bytes(b"x" * 101)
        found = self.collect()
        sha1 = hashlib.sha1(b"alpha").hexdigest()
        self.assertEqual(found.filemap, {"a.txt": sha1})
        self.assertEqual(found.added, {sha1})
        self.assertEqual(len(found.notes), 3, found.notes)
        self.assertTrue(any("link" in n for n in found.notes))

    def test_accept_and_special(self):
        """accept filters names; special() consumes the files it handles."""
        for name in ("x.deb", "x.log", ".depwait"):
            (self.out / name).write_bytes(name.encode())
        seen = []

        def special(name, fd):
            if name == ".depwait":
                seen.append(os.read(fd, 100))
                return True
            return False

        found = self.collect(accept=lambda n: not n.endswith(".log"),
                             special=special)
        self.assertEqual(sorted(found.filemap), ["x.deb"])
        self.assertEqual(seen, [b".depwait"])

    def test_result_count_is_bounded(self):
        """At most MAX_RESULTS files are taken; the rest are noted."""
        self.patch(results, "MAX_RESULTS", 2)
        for n in range(4):
            (self.out / ("f%d" % n)).write_bytes(b"%d" % n)
        found = self.collect()
        self.assertEqual(sorted(found.filemap), ["f0", "f1"])
        self.assertEqual(len(found.notes), 2)

    def test_known_content_is_not_added_twice(self):
        """Content already cached is listed but not counted as added."""
        (self.out / "a").write_bytes(b"same")
        first = self.collect()
        (self.out / "b").write_bytes(b"same")
        second = self.collect()
        self.assertEqual(first.added, set(first.filemap.values()))
        self.assertEqual(second.added, set())
        self.assertEqual(set(second.filemap), {"a", "b"})
