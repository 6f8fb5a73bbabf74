"""library-gc: unreferenced, old file-store content goes; the rest stays."""

import io
import os
from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import TestCase

from lp_services.filestore.store import FileStore
from lp_services.filestore.gc import collect, referencing_columns
from lp_services.testing.database import DatabaseTestMixin

OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
CUTOFF = datetime(2021, 1, 1, tzinfo=timezone.utc)


class LibraryGCTests(DatabaseTestMixin, TestCase):
    """collect() against real PostgreSQL and a real file store."""

    def setUp(self):
        super().setUp()
        self.conn = self.connect()
        self.store = FileStore(self.mktemp())

    def add(self, content, created=OLD):
        sha1, sha256, size = self.store.put_stream(io.BytesIO(content))
        os.utime(self.store.path_for(sha1), (OLD.timestamp(),) * 2)
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO library_file (sha1, size, filename,"
                        " date_created) VALUES (%s, %s, 'f', %s) RETURNING id",
                        (sha1, size, created))
            file_id = cur.fetchone()[0]
        self.conn.commit()
        return file_id, sha1

    def sql(self, statement, *params):
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            row = cur.fetchone() if cur.description else None
        self.conn.commit()
        return row

    def test_references_come_from_the_schema(self):
        """Every foreign key to library_file is found."""
        with self.conn.cursor() as cur:
            found = set(referencing_columns(cur))
        self.assertTrue({("build_file", "library_file"),
                         ("chroot", "library_file"),
                         ("build_farm_job", "log")} <= found, found)

    def test_only_unreferenced_old_content_goes(self):
        """Old unreferenced content is removed (row and file); content
        referenced by build_file, chroot, build_farm_job.log or a pending
        build's filemap, or newer than the cutoff, stays."""
        processor = self.sql("INSERT INTO processor (name) VALUES ('amd64')"
                             " RETURNING id")[0]
        garbage, garbage_sha1 = self.add(b"garbage")
        chroot, _ = self.add(b"chroot")
        log, _ = self.add(b"log")
        result, _ = self.add(b"result")
        mapped, mapped_sha1 = self.add(b"mapped")
        new, _ = self.add(b"new", created=CUTOFF + timedelta(days=1))
        self.sql("INSERT INTO chroot (processor, library_file) VALUES (%s, %s)",
                 processor, chroot)
        job = self.sql("INSERT INTO job (job_type) VALUES ('build')"
                       " RETURNING id")[0]
        self.sql("INSERT INTO build_farm_job (job, build_type, processor, log)"
                 " VALUES (%s, 'binary', %s, %s)", job, processor, log)
        self.sql("INSERT INTO build_file (build, library_file, filename)"
                 " VALUES (%s, %s, 'x.deb')", job, result)
        self.sql("INSERT INTO build_queue (job, build_farm_job, build_type,"
                 " processor, filemap) VALUES (%s, %s, 'binary', %s, %s)",
                 job, job, processor, '{"src.tar": "%s"}' % mapped_sha1)
        outcome = collect(self.conn, self.store, CUTOFF)
        self.assertEqual((outcome.rows_deleted, outcome.files_removed),
                         (1, 1))
        left = {row[0] for row in self._ids()}
        self.assertEqual(left, {chroot, log, result, mapped, new})
        self.assertFalse(self.store.has(garbage_sha1))
        self.assertTrue(self.store.has(mapped_sha1))

    def _ids(self):
        with self.conn.cursor() as cur:
            cur.execute("SELECT id FROM library_file")
            rows = cur.fetchall()
        self.conn.commit()
        return rows

    def test_shared_content_stays_while_one_row_needs_it(self):
        """Two rows, one content: deleting the garbage row keeps the file
        the other (referenced) row still names."""
        processor = self.sql("INSERT INTO processor (name) VALUES ('amd64')"
                             " RETURNING id")[0]
        _, sha1 = self.add(b"same")
        keep, _ = self.add(b"same")
        self.sql("INSERT INTO chroot (processor, library_file) VALUES (%s, %s)",
                 processor, keep)
        outcome = collect(self.conn, self.store, CUTOFF)
        self.assertEqual((outcome.rows_deleted, outcome.files_removed), (1, 0))
        self.assertTrue(self.store.has(sha1))

    def test_orphan_files_and_temporaries(self):
        """Files no row names, and abandoned temporaries, go once old;
        recent ones stay (an upload may be about to commit its row)."""
        sha1, _, _ = self.store.put_stream(io.BytesIO(b"orphan"))
        recent, _, _ = self.store.put_stream(io.BytesIO(b"recent"))
        os.utime(self.store.path_for(sha1), (OLD.timestamp(),) * 2)
        temp = self.store.root / ".incoming-abc"
        temp.write_bytes(b"partial")
        os.utime(temp, (OLD.timestamp(),) * 2)
        outcome = collect(self.conn, self.store, CUTOFF)
        self.assertEqual(outcome.files_removed, 2)
        self.assertFalse(self.store.has(sha1))
        self.assertTrue(self.store.has(recent))
        self.assertFalse(temp.exists())
