"""The file store's SQL, by name: ``library_file`` rows (the bytes live
on disk, see :mod:`lp_services.filestore.store`) and the library GC.

Every statement takes psycopg2 named parameters and runs in the caller's
transaction. Storm code reaches the same rows through
:class:`lp_services.filestore.model.LibraryFile`.
"""

from psycopg2 import sql

__all__ = [
    "ADD_FILE",
    "BUILD_NEEDS_FILE",
    "FILE_OPEN",
    "FILE_READERS",
    "FILE_ID",
    "HAS_FILEMAP",
    "LIVE_SHA1S",
    "REFERENCING_COLUMNS",
    "UPLOADED_BY",
    "gc_delete_statement",
]

#: The id of a ``library_file`` row holding %(sha1)s, if any.
FILE_ID = "SELECT id FROM library_file WHERE sha1 = %(sha1)s LIMIT 1"

#: Whether %(uploader)s uploaded content %(sha1)s through the API.
UPLOADED_BY = """
SELECT 1 FROM library_file WHERE sha1 = %(sha1)s AND uploader = %(uploader)s
LIMIT 1"""

#: A new ``library_file`` row; returns its id.
ADD_FILE = """
INSERT INTO library_file (sha1, sha256, size, filename, restricted, uploader)
VALUES (%(sha1)s, %(sha256)s, %(size)s, %(filename)s, %(restricted)s,
        %(uploader)s)
RETURNING id"""

#: Whether the store holds %(sha1)s, and whether anybody may read it
#: without looking further: some row of it is not restricted, or a chroot
#: uses it (the agents' hot path: one index probe).
FILE_OPEN = """
WITH rows AS (SELECT id, restricted FROM library_file WHERE sha1 = %(sha1)s)
SELECT EXISTS (SELECT 1 FROM rows),
       EXISTS (SELECT 1 FROM rows WHERE NOT restricted)
       OR EXISTS (SELECT 1 FROM chroot WHERE library_file IN
                  (SELECT id FROM rows))"""

#: For restricted %(sha1)s: whether public work uses it (then anybody may
#: read it), and whether %(viewer)s may (it uploaded the content, or its
#: private work uses it). Work uses a file by its log, its result files,
#: and (while queued) its filemap.
FILE_READERS = """
WITH rows AS (SELECT id, uploader FROM library_file WHERE sha1 = %(sha1)s),
users AS MATERIALIZED (
    SELECT j.private, j.requester FROM build_farm_job f
    JOIN job j ON j.id = f.job WHERE f.log IN (SELECT id FROM rows)
    UNION ALL
    SELECT j.private, j.requester FROM build_file bf
    JOIN job j ON j.id = bf.build WHERE bf.library_file IN (SELECT id FROM rows)
    UNION ALL
    SELECT j.private, j.requester FROM build_queue bq
    JOIN job j ON j.id = bq.job, jsonb_each_text(bq.filemap) m
    WHERE m.value = %(sha1)s)
SELECT EXISTS (SELECT 1 FROM users WHERE NOT private),
       EXISTS (SELECT 1 FROM rows WHERE uploader = %(viewer)s)
       OR EXISTS (SELECT 1 FROM users WHERE requester = %(viewer)s)"""

#: Whether the build %(job)s, dispatched with cookie %(cookie)s, needs
#: %(sha1)s (its filemap names it): the credentials the master gives an
#: agent for a restricted file.
BUILD_NEEDS_FILE = """
SELECT build_cookie FROM build_queue bq
WHERE job = %(job)s AND build_cookie IS NOT NULL
  AND EXISTS (SELECT 1 FROM jsonb_each_text(bq.filemap) m
              WHERE m.value = %(sha1)s)"""

#: (table, column) of every single-column foreign key to library_file:
#: the GC keeps a row any of them references, so a new table cannot be
#: forgotten.
REFERENCING_COLUMNS = """
SELECT c.conrelid::regclass::text, a.attname
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.confrelid = 'library_file'::regclass
  AND array_length(c.conkey, 1) = 1
ORDER BY 1, 2"""

#: Whether ``build_queue.filemap`` exists (it references files by sha1,
#: not by key, so REFERENCING_COLUMNS cannot see it).
HAS_FILEMAP = """
SELECT 1 FROM information_schema.columns
WHERE table_name = 'build_queue' AND column_name = 'filemap'"""

#: Which of %(sha1s)s some ``library_file`` row still holds.
LIVE_SHA1S = ("SELECT DISTINCT sha1 FROM library_file"
              " WHERE sha1 = ANY(%(sha1s)s)")


def gc_delete_statement(references, filemap: bool) -> sql.Composed:
    """Delete the ``library_file`` rows created before %(cutoff)s that no
    column in ``references`` ((table, column) pairs, from
    REFERENCING_COLUMNS) and, with ``filemap``, no queued build's filemap
    refers to; returns their ids."""
    guards = [
        sql.SQL("NOT EXISTS (SELECT 1 FROM {t} r WHERE r.{c} = lf.id)")
        .format(t=sql.SQL(table), c=sql.Identifier(column))
        for table, column in references]
    if filemap:
        guards.append(sql.SQL(
            "NOT EXISTS (SELECT 1 FROM build_queue bq, "
            "jsonb_each_text(bq.filemap) f WHERE f.value = lf.sha1)"))
    condition = sql.SQL(" AND ").join(
        [sql.SQL("lf.date_created < %(cutoff)s")] + guards)
    return sql.SQL("DELETE FROM library_file lf WHERE {} "
                   "RETURNING lf.id").format(condition)
