"""What every command shares: where the database is, and clean errors."""

import functools
import json
import sys
from dataclasses import dataclass

import click

__all__ = [
    "CLIContext",
    "SchemaMissing",
    "check_schema",
    "echo_json",
    "pass_context",
    "recorded",
    "user_errors",
    "utc_now",
]


@dataclass
class CLIContext:
    """The root command's options, handed to every subcommand."""

    database: str | None
    home: str | None
    #: The buildmaster's URL: commands go through its API (remote mode).
    server: str | None = None
    token_file: str | None = None

    def remote(self):
        """The API client of remote mode, or None in the database's direct
        mode (the administrator's, with the database's credentials)."""
        if not self.server:
            return None
        from lp_services.api.client import (
            ApiClient, ApiClientError, read_token_file)

        token = None
        if self.token_file:
            try:
                token = read_token_file(self.token_file)
            except ApiClientError as error:
                raise click.ClickException(str(error)) from None
        return ApiClient(self.server, token)

    def database_url(self, start_embedded: bool = False) -> str:
        """The database URL.

        Only the commands whose job it is (``db start``, ``db upgrade``,
        ``db url``, ``demo``) pass ``start_embedded``: any other command
        against a stopped embedded server says so, rather than leave a
        server running that nobody asked for.
        """
        from lp_services.database.connection import resolve_database_url

        if self.server:
            # Remote mode reaches the farm through its API only: a command
            # the API does not offer must not fall back on the database.
            raise click.ClickException(
                "this command needs the database (the administrator's "
                "direct mode); run it without --server/LP_SERVER")
        return resolve_database_url(self.database, self.home, start_embedded)

    def file_url(self, sha1: str, filename: str) -> str | None:
        """The download URL of a stored file, when a file server is known.

        ``LP_FILES_URL`` is the buildmaster's public base URL (its
        ``--files-url``); files are at ``<base>/files/<sha1>/<name>``.
        """
        from urllib.parse import quote

        base = self.files_base()
        if base is None:
            return None
        return "%s/files/%s/%s" % (base, sha1, quote(filename))

    def files_base(self) -> str | None:
        """``LP_FILES_URL`` without a trailing slash, or None if unset."""
        import os

        base = os.environ.get("LP_FILES_URL", "").rstrip("/")
        return base or None

    def connect(self, require_schema: bool = True,
                start_embedded: bool = False):
        """A psycopg2 connection to the database (see :meth:`database_url`).

        :raises SchemaMissing: ``require_schema`` and the database has no
            schema, or an older one than this code's.
        """
        from lp_services.database.connection import connect

        url = self.database_url(start_embedded)
        conn = connect(url)
        if require_schema:
            try:
                check_schema(conn, url)
            except BaseException:
                conn.close()
                raise
        return conn

    def transactor(self):
        """A transactor for running Storm code in this (non-reactor) process."""
        from lp_services.database.transactor import Transactor

        return Transactor(self.database_url())

    def run_with_cursor(self, function, *args, errors=(), **kwargs):
        """Run ``function(cursor, *args, **kwargs)`` in one committed
        transaction and return its result; an exception of a type in
        ``errors`` becomes one error line (ClickException).

        An unreachable database is one clear line too (checked first).
        """
        import click

        from lp_services.database.sql import raw_cursor

        self.connect().close()
        transactor = self.transactor()
        try:
            return transactor.run_blocking(
                lambda store: function(raw_cursor(store), *args, **kwargs))
        except tuple(errors) as error:
            raise click.ClickException(str(error)) from None
        finally:
            transactor.stop()


class SchemaMissing(Exception):
    """The database lacks the schema (or is behind); one line naming
    ``lp-services db upgrade``."""


def check_schema(conn, url: str) -> None:
    """Raise :class:`SchemaMissing` unless the database behind ``conn`` is
    at this code's schema revision (or newer: that the upgrade refuses)."""
    from lp_services.config import redact_url
    from lp_services.database.schema import applied_revision, known_patches

    revision = applied_revision(conn)
    conn.rollback()
    patches = known_patches()
    latest = patches[-1].number if patches else 0
    if revision is None:
        raise SchemaMissing(
            "the database at %s has no lp-services schema; create it with "
            "`lp-services db upgrade`" % redact_url(url))
    if revision < latest:
        raise SchemaMissing(
            "the database at %s is at schema revision %d, this code needs "
            "%d; run `lp-services db upgrade`"
            % (redact_url(url), revision, latest))


pass_context = click.make_pass_decorator(CLIContext)


def _user_error_types():
    from lp_services.api.client import ApiClientError
    from lp_services.config import BadDatabaseURL
    from lp_services.database.connection import DatabaseUnreachable
    from lp_services.database.embedded import EmbeddedServerError
    from lp_services.database.schema import SchemaError

    return (ApiClientError, BadDatabaseURL, DatabaseUnreachable,
            EmbeddedServerError, SchemaError, SchemaMissing)


def user_errors(function):
    """Turn the errors a user can cause into one clear line and exit 1."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except _user_error_types() as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def echo_json(value) -> None:
    """Print ``value`` as indented JSON (for ``--json`` options)."""
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def utc_now():
    """Now, in UTC: when a command's change happens."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def recorded(change, job_id: int, action: str, detail: str | None = None):
    """``change(cursor)`` followed, in its transaction, by the
    ``change_log`` row saying the local user did ``action`` to job
    ``job_id`` (the direct mode's actor is ``local:<user>``)."""
    def run(cursor):
        from lp_services.job.changes import local_actor, record_change

        result = change(cursor)
        record_change(cursor, local_actor(), action, utc_now(), job=job_id,
                      detail=detail)
        return result
    return run
