"""Raw SQL from Storm code.

Hot statements (claims, guarded transitions) are written in SQL, not built
through the ORM; they still run inside the Store's transaction through the
Store's own psycopg2 connection, so a transactor commits or rolls back
everything together.
"""

__all__ = ["raw_cursor"]


def raw_cursor(store):
    """A psycopg2 cursor on ``store``'s connection and transaction.

    The store is flushed first so that pending ORM changes are visible to
    the raw statements.
    """
    store.flush()
    connection = store._connection
    # Storm connects lazily; a trivial statement makes it do so (and
    # reconnects after a disconnection, as any Storm statement would).
    store.execute("SELECT 1")
    return connection._raw_connection.cursor()
