"""Tests of the file store (lp_services.filestore.store)."""

import hashlib
import io
import shutil
import tempfile
from pathlib import Path

from storm.database import create_database
from storm.store import Store
from twisted.trial.unittest import TestCase

from lp_services.database.connection import storm_uri
from lp_services.protocol.names import InvalidFileName, check_filename
from lp_services.filestore.store import FileStore
from lp_services.testing.database import DatabaseTestMixin


class CheckFilenameTests(TestCase):
    """check_filename refuses every way out of a directory."""

    def test_refused(self):
        """Traversal, separators, control characters and huge names fail."""
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\0b",
                    "a\nb", "x" * 256, None, 3]:
            self.assertRaises(InvalidFileName, check_filename, bad)

    def test_accepted(self):
        """Ordinary names, dots inside and unicode pass unchanged."""
        for good in ["hello_1.0-1_amd64.deb", "..hidden", "a..b", "ünï.txt"]:
            self.assertEqual(check_filename(good), good)


class FileStoreTests(DatabaseTestMixin, TestCase):
    """Storing and reading files with their library_file rows."""

    def setUp(self):
        super().setUp()
        self.root = Path(tempfile.mkdtemp(prefix="lp-files-"))
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.files = FileStore(self.root)
        self.store = Store(create_database(storm_uri(self.database_url)))
        self.addCleanup(self.store.close)

    def test_add_and_read_back(self):
        """Content lands under its sha1 and its row records name and hashes."""
        data = b"hello world\n"
        record = self.files.add(self.store, "hello.txt", io.BytesIO(data))
        self.store.commit()
        self.assertEqual(record.sha1, hashlib.sha1(data).hexdigest())
        self.assertEqual(record.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual(record.size, len(data))
        with self.files.open(record.sha1) as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(self.files.get(self.store, record.id), record)

    def test_wrong_hash_keeps_nothing(self):
        """A sha1 mismatch raises and leaves no file or temporary behind."""
        self.assertRaises(ValueError, self.files.add, self.store, "x",
                          io.BytesIO(b"data"), expected_sha1="0" * 40)
        self.assertEqual(list(self.root.rglob("*")), [])

    def test_size_cap(self):
        """Content over max_size is refused and not kept."""
        self.assertRaises(ValueError, self.files.put_stream,
                          io.BytesIO(b"x" * 100), max_size=10)
        self.assertEqual(list(self.root.rglob("*")), [])

    def test_unsafe_name_refused_before_storing(self):
        """A traversal name is refused and nothing is written."""
        self.assertRaises(InvalidFileName, self.files.add, self.store,
                          "../evil", io.BytesIO(b"x"))
        self.assertEqual(list(self.root.rglob("*")), [])

    def test_path_for_rejects_non_sha1(self):
        """path_for only takes 40 lowercase hex digits."""
        self.assertRaises(ValueError, self.files.path_for, "../../etc/passwd")
