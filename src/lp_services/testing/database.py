"""A PostgreSQL server for a test run, and a fresh database per test class.

The server is ``LP_TEST_DATABASE_URL`` when set (any database on the server
that the role may create databases on), else an embedded server started in
a temporary directory on first use and removed at exit. Each test process
builds a template database once (the full schema through ``db upgrade``)
and gives each test class its own ``CREATE DATABASE ... TEMPLATE`` copy;
:class:`DatabaseTestMixin` also empties the tables before every test.
"""

import atexit
import itertools
import os
import shutil
import tempfile
import threading
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DatabaseTestMixin",
    "TEST_DATABASE_URL_ENV",
    "create_test_database",
    "server_url",
    "with_database",
]

TEST_DATABASE_URL_ENV = "LP_TEST_DATABASE_URL"

_lock = threading.Lock()
_server_url = None
_template = None
_counter = itertools.count(1)
_embedded = None


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def server_url() -> str:
    """A URL of the test server's maintenance database (``postgres``)."""
    global _server_url, _embedded
    with _lock:
        if _server_url is None:
            given = os.environ.get(TEST_DATABASE_URL_ENV)
            if given:
                _server_url = with_database(given, "postgres")
            else:
                from pathlib import Path

                from lp_services.database.embedded import EmbeddedServer

                home = Path(tempfile.mkdtemp(prefix="lp-test-pg-"))
                _embedded = EmbeddedServer(home, fast_unsafe=True)
                _server_url = with_database(_embedded.start(), "postgres")
                atexit.register(_stop_embedded, _embedded)
        return _server_url


def embedded_server():
    """The embedded test server, or None when LP_TEST_DATABASE_URL is used."""
    server_url()
    return _embedded


def _stop_embedded(server) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.home, ignore_errors=True)


def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(server_url())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _template_name() -> str:
    """Create (once per process) the template database; return its name."""
    global _template
    with _lock:
        if _template is not None:
            return _template
    import psycopg2

    from lp_services.database.schema import upgrade

    name = "lp_template_%d" % os.getpid()
    _admin('DROP DATABASE IF EXISTS "%s"' % name)
    _admin('CREATE DATABASE "%s"' % name)
    conn = psycopg2.connect(with_database(server_url(), name))
    try:
        upgrade(conn)
    finally:
        conn.close()
    atexit.register(_drop_quietly, name)
    with _lock:
        _template = name
    return name


def _drop_quietly(name: str) -> None:
    try:
        _admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    except Exception:
        pass


def create_test_database(empty: bool = False) -> str:
    """Create a new database and return its URL; dropped at process exit.

    :param empty: no schema at all (for schema tests) instead of a copy of
        the template.
    """
    name = "lp_test_%d_%d" % (os.getpid(), next(_counter))
    if empty:
        _admin('CREATE DATABASE "%s"' % name)
    else:
        _admin('CREATE DATABASE "%s" TEMPLATE "%s"' % (name, _template_name()))
    atexit.register(_drop_quietly, name)
    return with_database(server_url(), name)


# Tables emptied between tests: everything but the schema's bookkeeping.
_KEEP = ("schema_revision", "schema_views")


class DatabaseTestMixin:
    """Give a trial test class its own database, emptied before each test.

    Sets ``self.database_url``. The database is created on the class's
    first test (trial has no setUpClass) and dropped at process exit.
    """

    database_url: str

    def setUp(self):
        super().setUp()
        cls = type(self)
        if "_class_database_url" not in cls.__dict__:
            cls._class_database_url = create_test_database()
        self.database_url = cls._class_database_url
        _truncate_all(self.database_url)

    def connect(self):
        """A psycopg2 connection to the test database, closed after the test."""
        import psycopg2

        conn = psycopg2.connect(self.database_url)
        self.addCleanup(conn.close)
        return conn


def _truncate_all(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> ALL(%s)", (list(_KEEP),))
            tables = [row[0] for row in cur.fetchall()]
            if tables:
                cur.execute("TRUNCATE %s RESTART IDENTITY CASCADE"
                            % ", ".join('"%s"' % t for t in tables))
    finally:
        conn.close()
