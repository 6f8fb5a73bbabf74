"""The file store's SQL, by name: ``library_file`` rows (the bytes live
on disk, see :mod:`lp_services.filestore.store`) and the library GC.

Every statement takes psycopg2 named parameters and runs in the caller's
transaction. Storm code reaches the same rows through
:class:`lp_services.filestore.model.LibraryFile`.
"""

from psycopg2 import sql

__all__ = [
    "ADD_FILE",
    "FILE_ID",
    "HAS_FILEMAP",
    "LIVE_SHA1S",
    "REFERENCING_COLUMNS",
    "gc_delete_statement",
]

#: The id of a ``library_file`` row holding %(sha1)s, if any.
FILE_ID = "SELECT id FROM library_file WHERE sha1 = %(sha1)s LIMIT 1"

#: A new ``library_file`` row; returns its id.
ADD_FILE = """
INSERT INTO library_file (sha1, sha256, size, filename)
VALUES (%(sha1)s, %(sha256)s, %(size)s, %(filename)s)
RETURNING id"""

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
