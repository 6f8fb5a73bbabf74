"""Resolving and reaching the database.

``resolve_database_url`` is the one place that decides which PostgreSQL
server a process uses (see :mod:`lp_services.config`).
"""

import os

from lp_services.config import (
    DATABASE_URL_ENV, check_database_url, lp_home, redact_url)

__all__ = [
    "DatabaseUnreachable",
    "connect",
    "resolve_database_url",
    "storm_uri",
]


class DatabaseUnreachable(Exception):
    """The database could not be reached; the message is one clear line."""


def resolve_database_url(explicit: str | None = None,
                         home: str | None = None,
                         start_embedded: bool = True) -> str:
    """Return the database URL this process should use.

    An explicit URL wins, then ``LP_DATABASE_URL``; otherwise the embedded
    server under the state directory, started if ``start_embedded``.

    :raises DatabaseUnreachable: no URL given and the embedded server is
        stopped while ``start_embedded`` is false.
    :raises BadDatabaseURL: the URL given is not a PostgreSQL URL.
    """
    url = explicit or os.environ.get(DATABASE_URL_ENV)
    if url:
        return check_database_url(url)
    from lp_services.database.embedded import EmbeddedServer

    server = EmbeddedServer(lp_home(home))
    if start_embedded:
        return server.start()
    url = server.url()
    if url is None:
        raise DatabaseUnreachable(
            "the embedded database under %s is not running; "
            "start it with `lp-services db start`" % server.home)
    return url


def connect(url: str, connect_timeout: int = 10, **kwargs):
    """Open a psycopg2 connection, or raise :class:`DatabaseUnreachable`."""
    import psycopg2

    try:
        return psycopg2.connect(url, connect_timeout=connect_timeout, **kwargs)
    except psycopg2.ProgrammingError as error:
        # libpq could not parse the URL (a bad port, an unknown option).
        reason = str(error).strip().splitlines()
        raise DatabaseUnreachable(
            "invalid database URL %s: %s"
            % (redact_url(url), reason[0] if reason else "unknown error")
        ) from None
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()
        raise DatabaseUnreachable(
            "cannot reach the database at %s: %s"
            % (redact_url(url), reason[0] if reason else "unknown error")
        ) from None


def storm_uri(url: str) -> str:
    """Return the Storm URI for a libpq URL (Storm names the scheme postgres)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgres://" + url[len(prefix):]
    raise ValueError("not a PostgreSQL URL: %s" % redact_url(url))
