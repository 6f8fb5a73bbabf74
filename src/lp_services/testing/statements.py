"""Counting the SQL statements sent through raw cursors (tests and
benchmarks: "one statement per flush", "no claim without work").

:class:`StatementCounter` replaces :func:`lp_services.database.sql.raw_cursor`
while installed with one whose cursors count every ``execute``; callers
import ``raw_cursor`` at call time, so they all go through it. Domain code
knows nothing of it.
"""

import psycopg2.extensions

from lp_services.database import sql

__all__ = ["StatementCounter"]


class StatementCounter:
    """``count``: statements executed through raw cursors since install."""

    def __init__(self):
        self.count = 0
        self._original = None
        counter = self

        class CountingCursor(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):
                counter.count += 1
                return super().execute(query, vars)

        self._cursor_class = CountingCursor

    def _raw_cursor(self, store):
        cursor = self._original(store)
        return cursor.connection.cursor(cursor_factory=self._cursor_class)

    def install(self):
        """Count from now on (until :meth:`uninstall`)."""
        if self._original is None:
            self._original = sql.raw_cursor
            sql.raw_cursor = self._raw_cursor
        return self

    def uninstall(self):
        if self._original is not None:
            sql.raw_cursor = self._original
            self._original = None
