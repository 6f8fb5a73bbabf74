"""The Storm model that stays (library files) and the schema's guard
against a double dispatch, through real PostgreSQL.

Everything else reaches its tables through named SQL (docs/design.md,
"Database access"); Storm models are kept only where they are the
clearest code.
"""

from storm.database import create_database
from storm.store import Store
from twisted.trial.unittest import TestCase

from lp_services.database.connection import storm_uri
from lp_services.filestore.model import LibraryFile
from lp_services.testing.database import DatabaseTestMixin


class ModelTests(DatabaseTestMixin, TestCase):
    """Round trips through the models and the schema's own checks."""

    def setUp(self):
        super().setUp()
        self.store = Store(create_database(storm_uri(self.database_url)))
        self.addCleanup(self.store.close)

    def test_library_file_round_trip(self):
        """A library file writes and reads back its columns."""
        s = self.store
        record = s.add(LibraryFile())
        record.sha1, record.size, record.filename = "a" * 40, 10, "log.txt"
        s.flush()
        key = record.id
        s.commit()
        s.invalidate()
        s.reset()
        again = s.get(LibraryFile, key)
        self.assertEqual((again.sha1.strip(), again.size, again.filename,
                          again.mimetype),
                         ("a" * 40, 10, "log.txt", "application/octet-stream"))
        self.assertIsNotNone(again.date_created)

    def test_double_dispatch_is_impossible(self):
        """The unique index refuses a second build on one builder."""
        from storm.exceptions import IntegrityError

        s = self.store
        s.execute("INSERT INTO processor (name) VALUES ('amd64')")
        s.execute("INSERT INTO builder (name, url) VALUES ('b', 'http://x')")
        for n in (1, 2):
            s.execute("INSERT INTO job (job_type) VALUES ('build')")
            s.execute("INSERT INTO build_farm_job (job, build_type, processor)"
                      " VALUES (%d, 'script', 1)" % n)
        s.execute("INSERT INTO build_queue (job, build_farm_job, build_type,"
                  " processor, builder, build_cookie)"
                  " VALUES (1, 1, 'script', 1, 1, 'c1')")
        self.assertRaises(
            IntegrityError, s.execute,
            "INSERT INTO build_queue (job, build_farm_job, build_type,"
            " processor, builder, build_cookie)"
            " VALUES (2, 2, 'script', 1, 1, 'c2')")
