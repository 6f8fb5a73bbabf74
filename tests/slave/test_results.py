"""Tests of result collection (lp_services.slave.results)."""

import hashlib
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from lp_services.slave import results
from lp_services.slave.cache import FileCache
from lp_services.slave.results import DIR_FLAGS, collect_directory
from lp_services.slave.volume import create_volume, detach_mounts

from tests.slave.test_volume import volume_unavailable


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


class ResultSizeTests(TestCase):
    """Results are bounded by the build's quota and the cache's room."""

    skip = volume_unavailable()

    def setUp(self):
        self.base = Path(self.mktemp()).resolve()
        self.out = self.base / "out"
        self.out.mkdir(parents=True)
        self.addCleanup(detach_mounts, self.base)

    def collect(self, cache, **kwargs):
        fd = os.open(self.out, DIR_FLAGS)
        try:
            return collect_directory(fd, cache, **kwargs)
        finally:
            os.close(fd)

    def test_sparse_result_over_the_budget(self):
        """A sparse 7 GiB result with 8 KiB inside is skipped at once (its
        copy would take 7 GiB) and marks the collection over_quota; the
        other results are kept."""
        cache = FileCache(self.base / "cache", reactor, 8 << 30, 10)
        with open(self.out / "sparse", "wb") as f:
            f.write(os.urandom(8192))
            f.truncate(7 << 30)
        (self.out / "small").write_bytes(b"ok")
        found = self.collect(cache, budget=64 << 20)
        self.assertEqual(list(found.filemap), ["small"])
        self.assertTrue(found.over_quota)
        self.assertFalse(found.no_space)
        self.assertIn("skipped sparse: %d bytes (8192 really allocated)"
                      % (7 << 30), found.notes[0])

    def test_cache_without_room(self):
        """With the cache on a small full file system, results that do not
        fit are skipped (no_space; NoSpace for callers that do not take
        it), nothing partial stays in the cache, and a later collection
        that fits works."""
        create_volume(self.base / "img", self.base / "cache", 8 << 20)
        cache = FileCache(self.base / "cache", reactor, 8 << 30, 10)
        (self.out / "big").write_bytes(os.urandom(12 << 20))
        self.assertRaises(results.NoSpace, self.collect, cache)
        found = self.collect(cache, raise_no_space=False)
        self.assertEqual(found.filemap, {})
        self.assertTrue(found.no_space)
        self.assertIn("cache has only", found.notes[0])
        self.assertEqual([p.name for p in (self.base / "cache").iterdir()],
                         [])
        (self.out / "big").unlink()
        (self.out / "fits").write_bytes(b"x" * 1000)
        found = self.collect(cache)
        self.assertEqual(list(found.filemap), ["fits"])
        self.assertFalse(found.no_space)

    def test_enospc_while_copying(self):
        """A copy that passes the free-space check but runs out of space
        half-way (the file system's own metadata needs room too) is
        abandoned cleanly: no_space, a note, no temporary file left."""
        create_volume(self.base / "img", self.base / "cache", 8 << 20)
        cache = FileCache(self.base / "cache", reactor, 8 << 30, 10)
        free = results._free_bytes(self.base / "cache")
        (self.out / "exactly").write_bytes(os.urandom(free))
        found = self.collect(cache, raise_no_space=False)
        self.assertEqual(found.filemap, {})
        self.assertTrue(found.no_space)
        self.assertIn("cannot store it: No space left on device",
                      found.notes[0])
        self.assertEqual(list((self.base / "cache").rglob("*")), [])
