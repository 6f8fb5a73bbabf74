"""Creating and upgrading the database schema.

The SQL lives in the ``lp_services.schema`` package (``schema/`` in the
tree): ``current.sql`` creates a fresh database, ``baseline.sql`` is the
frozen revision 0, ``patches/NNNN-name.sql`` move a database forward one
revision each, and ``views.sql`` (re)creates the reporting views after
every upgrade.

:func:`upgrade` holds a session-level advisory lock for its whole run, so
two upgrades at once are safe: the second waits, then finds nothing to do.
Each patch runs in its own transaction together with its
``schema_revision`` row, so a failing patch leaves the database at the
revision before it.
"""

import re
from dataclasses import dataclass, field
from importlib import resources

__all__ = [
    "Patch",
    "SchemaError",
    "UpgradeResult",
    "applied_revision",
    "known_patches",
    "read_sql",
    "upgrade",
]

# Any fixed 64-bit key; only our own upgrades take it.
_ADVISORY_LOCK_KEY = 0x6C7073636865_6D61  # "lpschema"

_PATCH_NAME = re.compile(r"^(\d{4})-([a-z0-9][a-z0-9-]*)\.sql$")


class SchemaError(Exception):
    """The schema cannot be brought up to date; nothing further was changed."""


@dataclass(frozen=True)
class Patch:
    """One numbered schema patch."""

    number: int
    name: str
    sql: str = field(repr=False)


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade` did."""

    created: bool
    applied: tuple[Patch, ...]
    revision: int
    views_changed: bool

    @property
    def changed(self) -> bool:
        return self.created or bool(self.applied) or self.views_changed


def read_sql(name: str) -> str:
    """Return the text of a top-level SQL file of the schema package."""
    return resources.files("lp_services.schema").joinpath(name).read_text()


def known_patches() -> list[Patch]:
    """Return every patch this code ships, in order.

    :raises SchemaError: on a misnamed file or two patches with one number.
    """
    patches = {}
    directory = resources.files("lp_services.schema").joinpath("patches")
    entries = directory.iterdir() if directory.is_dir() else ()
    for entry in entries:
        if not entry.name.endswith(".sql"):
            continue
        match = _PATCH_NAME.match(entry.name)
        if match is None:
            raise SchemaError("badly named schema patch: %s" % entry.name)
        number = int(match.group(1))
        if number == 0 or number in patches:
            raise SchemaError("duplicate or zero patch number: %s" % entry.name)
        patches[number] = Patch(number, entry.name[:-4], entry.read_text())
    return [patches[n] for n in sorted(patches)]


def applied_revision(connection) -> int | None:
    """Return the highest applied patch number, or None on an empty database."""
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_revision') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT max(patch) FROM schema_revision")
        return cur.fetchone()[0]


def upgrade(connection, from_baseline: bool = False) -> UpgradeResult:
    """Bring the database behind ``connection`` up to date.

    :param connection: a psycopg2 connection; its autocommit mode is set
        and restored.
    :param from_baseline: create an empty database from ``baseline.sql`` and
        the patches instead of ``current.sql`` (the schema-equivalence test
        uses this; it is also how every pre-existing database got here).
    :raises SchemaError: the database is newer than this code, or a patch
        failed (named in the message); the database is left at the last
        revision that applied cleanly.
    """
    patches = known_patches()
    latest = patches[-1].number if patches else 0
    saved_autocommit = connection.autocommit
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        try:
            return _upgrade_locked(connection, patches, latest, from_baseline)
        finally:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
    finally:
        connection.autocommit = saved_autocommit


def _upgrade_locked(connection, patches, latest, from_baseline) -> UpgradeResult:
    created = False
    applied = []
    revision = applied_revision(connection)
    if revision is None:
        created = True
        if from_baseline:
            _in_transaction(connection, read_sql("baseline.sql"),
                            [(0, "baseline", "patch")], "baseline.sql")
            revision = 0
        else:
            rows = [(0, "baseline", "current")]
            rows += [(p.number, p.name, "current") for p in patches]
            _in_transaction(connection, read_sql("current.sql"), rows,
                            "current.sql")
            revision = latest
    if revision > latest:
        raise SchemaError(
            "the database is at schema revision %d, newer than this "
            "lp-services knows (%d); upgrade lp-services instead"
            % (revision, latest))
    with connection.cursor() as cur:
        cur.execute("SELECT patch FROM schema_revision")
        done = {row[0] for row in cur.fetchall()}
    for patch in patches:
        if patch.number in done:
            continue
        _in_transaction(connection, patch.sql,
                        [(patch.number, patch.name, "patch")],
                        "patch %s" % patch.name)
        applied.append(patch)
    views_changed = _apply_views(connection)
    return UpgradeResult(created, tuple(applied), latest, views_changed)


def _apply_views(connection) -> bool:
    """(Re)create the views when views.sql differs from the applied one."""
    import hashlib

    sql = read_sql("views.sql")
    digest = hashlib.sha1(sql.encode()).hexdigest()
    with connection.cursor() as cur:
        cur.execute("SELECT sha1 FROM schema_views")
        row = cur.fetchone()
    if row is not None and row[0] == digest:
        return False
    sql += ("\nINSERT INTO schema_views (sha1) VALUES ('%s')"
            " ON CONFLICT (singleton) DO UPDATE SET sha1 = EXCLUDED.sha1;"
            % digest)
    _in_transaction(connection, sql, [], "views.sql")
    return True


def _in_transaction(connection, sql, revision_rows, what) -> None:
    import psycopg2

    with connection.cursor() as cur:
        cur.execute("BEGIN")
        try:
            cur.execute(sql)
            for number, name, applied_by in revision_rows:
                cur.execute(
                    "INSERT INTO schema_revision (patch, name, applied_by)"
                    " VALUES (%s, %s, %s)", (number, name, applied_by))
        except psycopg2.Error as error:
            cur.execute("ROLLBACK")
            message = (error.pgerror or str(error)).strip()
            raise SchemaError("%s failed and was rolled back: %s"
                              % (what, message)) from None
        cur.execute("COMMIT")
