"""The one adapter between Storm and raw psycopg2 (see docs/design.md,
"Database access").

Hot statements (claims, guarded transitions) are named SQL with psycopg2
named parameters (``%(now)s``), arrays and ``unnest``; they run inside the
Store's transaction through the Store's own psycopg2 connection, so a
transactor commits or rolls back everything together.

Why not ``Store.execute``: Storm's PostgreSQL backend turns every
datetime and timedelta parameter into a string (``to_database``), so
``%(now)s + interval`` and ``timestamptz[]`` parameters change meaning;
it has no named parameters and rewrites every ``?`` (jsonb's operator
too) into a parameter mark. So this module is the only code that reads
Storm's private ``Store._connection`` and ``Connection._raw_connection``;
nothing else may.
"""

__all__ = ["raw_cursor"]


def raw_cursor(store):
    """A psycopg2 cursor on ``store``'s connection and transaction.

    The store is flushed first so that pending ORM changes are visible to
    the raw statements. A connection Storm has marked for reconnection
    (after a lost server) is reconnected by one trivial statement through
    Storm; a connected one costs no extra statement.
    """
    from storm.database import STATE_CONNECTED

    store.flush()
    connection = store._connection
    if (connection._state != STATE_CONNECTED
            or connection._raw_connection is None):
        store.execute("SELECT 1")
    return connection._raw_connection.cursor()
