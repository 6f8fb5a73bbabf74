"""Garbage-collecting the file store (the ``library-gc`` job's work).

Content is removed only when nothing references it and it is older than a
cutoff. "References" are read from the schema, not from a list in code:
every foreign key that points at ``library_file`` (``build_file``,
``chroot``, ``build_farm_job.log`` today, and whatever later patches add)
protects the rows it points at, and so do the sha1s named in pending
builds' ``build_queue.filemap``.

1. In one transaction: delete ``library_file`` rows created before the
   cutoff that no foreign key and no filemap refers to (the same statement
   re-checks, so a reference added concurrently wins: the foreign key makes
   one of the two transactions fail, and the job is retried).
2. After commit: walk the store and unlink every content file older than the
   cutoff (by mtime) whose sha1 no ``library_file`` row names any more, and
   abandoned ``.incoming-*`` temporaries older than the cutoff.

The mtime check closes the race with a concurrent upload of the same
content: :meth:`FileStore.put_stream` renames a fresh file into place before
its row commits, so that file's mtime is recent and survives.
"""

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from lp_services.filestore import queries as FQ
from lp_services.job.registry import (
    InvalidJobData,
    JobType,
    RetryableError,
    job_types,
)

__all__ = ["GCResult", "LibraryGCJobType", "collect", "referencing_columns"]

_BATCH = 500


@dataclass(frozen=True)
class GCResult:
    """What a collection removed."""

    rows_deleted: int
    files_removed: int
    bytes_freed: int

    def as_dict(self) -> dict:
        return asdict(self)


def referencing_columns(cursor) -> list[tuple[str, str]]:
    """(table, column) of every single-column foreign key to library_file."""
    cursor.execute(FQ.REFERENCING_COLUMNS)
    return [tuple(row) for row in cursor.fetchall()]


def _has_filemap(cursor) -> bool:
    cursor.execute(FQ.HAS_FILEMAP)
    return cursor.fetchone() is not None


def collect(connection, file_store, cutoff: datetime) -> GCResult:
    """Remove unreferenced content older than ``cutoff``; see the module
    docstring. Commits on ``connection``."""
    with connection.cursor() as cur:
        cur.execute(FQ.gc_delete_statement(referencing_columns(cur),
                                           _has_filemap(cur)),
                    {"cutoff": cutoff})
        rows_deleted = cur.rowcount
    connection.commit()

    files_removed = bytes_freed = 0
    limit = cutoff.timestamp()
    candidates = []
    root = file_store.root
    if root.is_dir():
        for bucket in sorted(os.scandir(root), key=lambda e: e.name):
            if bucket.name.startswith(".incoming-") and bucket.is_file():
                stat = bucket.stat()
                if stat.st_mtime < limit:
                    os.unlink(bucket.path)
                    files_removed += 1
                    bytes_freed += stat.st_size
                continue
            if not bucket.is_dir() or len(bucket.name) != 2:
                continue
            for entry in os.scandir(bucket.path):
                if len(entry.name) == 40 and entry.is_file() \
                        and entry.stat().st_mtime < limit:
                    candidates.append(entry.name)
    for start in range(0, len(candidates), _BATCH):
        batch = candidates[start:start + _BATCH]
        with connection.cursor() as cur:
            cur.execute(FQ.LIVE_SHA1S, {"sha1s": batch})
            live = {row[0] for row in cur.fetchall()}
        connection.rollback()
        for sha1 in batch:
            if sha1 in live:
                continue
            path = file_store.path_for(sha1)
            try:
                stat = path.stat()
                if stat.st_mtime >= limit:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            files_removed += 1
            bytes_freed += stat.st_size
    return GCResult(rows_deleted, files_removed, bytes_freed)


class LibraryGCJobType(JobType):
    """Remove file-store content that nothing references.

    ``{"older_than_days": N}`` (default 7; fractions allowed). See
    :func:`lp_services.filestore.gc.collect`.
    """

    name = "library-gc"
    max_retries = 2
    #: A reference added while collecting (foreign-key violation), a
    #: serialization failure or a lost connection: try again later.
    retryable_errors = (RetryableError, psycopg2.errors.ForeignKeyViolation,
                        psycopg2.extensions.TransactionRollbackError,
                        psycopg2.OperationalError)
    timeout_seconds = 3600.0
    lease_seconds = 120.0

    def validate(self, data):
        super().validate(data)
        days = data.get("older_than_days", 7)
        if isinstance(days, bool) or not isinstance(days, (int, float)) \
                or days < 0:
            raise InvalidJobData("library-gc older_than_days must be a "
                                 "number >= 0, got %r" % (days,))

    def run(self, data, context):
        from lp_services.filestore.store import default_file_store

        cutoff = context.now - timedelta(days=data.get("older_than_days", 7))
        connection = context.connect()
        result = collect(connection, default_file_store(), cutoff)
        print("library-gc: %s" % json.dumps(result.as_dict()), flush=True)


job_types.register(LibraryGCJobType())
