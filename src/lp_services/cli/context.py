"""What every command shares: where the database is, and clean errors."""

import functools
import json
import sys
from dataclasses import dataclass

import click

__all__ = ["CLIContext", "echo_json", "pass_context", "user_errors"]


@dataclass
class CLIContext:
    """The root command's options, handed to every subcommand."""

    database: str | None
    home: str | None

    def database_url(self, start_embedded: bool = True) -> str:
        """The database URL; starts the embedded server when needed."""
        from lp_services.database.connection import resolve_database_url

        return resolve_database_url(self.database, self.home, start_embedded)

    def file_url(self, sha1: str, filename: str) -> str | None:
        """The download URL of a stored file, when a file server is known.

        ``LP_FILES_URL`` is the buildmaster's public base URL (its
        ``--files-url``); files are at ``<base>/files/<sha1>/<name>``.
        """
        import os
        from urllib.parse import quote

        base = os.environ.get("LP_FILES_URL")
        if not base:
            return None
        return "%s/files/%s/%s" % (base.rstrip("/"), sha1, quote(filename))

    def connect(self):
        """A psycopg2 connection to the database."""
        from lp_services.database.connection import connect

        return connect(self.database_url())

    def transactor(self):
        """A transactor for running Storm code in this (non-reactor) process."""
        from lp_services.database.transactor import Transactor

        return Transactor(self.database_url())


pass_context = click.make_pass_decorator(CLIContext)


def _user_error_types():
    from lp_services.database.connection import DatabaseUnreachable
    from lp_services.database.embedded import EmbeddedServerError
    from lp_services.database.schema import SchemaError

    return (DatabaseUnreachable, EmbeddedServerError, SchemaError)


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
