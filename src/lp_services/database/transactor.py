"""Running Storm code from Twisted: the transactor.

Storm is blocking, so Twisted processes touch it only here: a function runs
in a worker thread with that thread's own Store, the transaction commits if
it returns and rolls back if it raises, and only plain values come back to
the reactor thread. Serialization failures, deadlocks and lost connections
are retried with a bounded back-off; anything else propagates at once.
"""

import dataclasses
import threading
import time
from collections.abc import Callable

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

__all__ = [
    "StormObjectLeak",
    "after_commit",
    "Transactor",
    "default_backoff",
    "is_retryable",
]


class StormObjectLeak(TypeError):
    """A transacted function tried to return a Storm object to the reactor."""


def default_backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): 0.05 s doubling,
    at most 2 s. Short because the caller's Deferred is waiting."""
    return min(0.05 * 2 ** (attempt - 1), 2.0)


def is_retryable(error: BaseException) -> bool:
    """Whether running the whole transaction again may succeed."""
    import psycopg2.extensions

    return _is_disconnection(error) or isinstance(
        error, psycopg2.extensions.TransactionRollbackError)


_transaction = threading.local()


def after_commit(callback: Callable[[], None]) -> None:
    """Call ``callback`` once the current transactor transaction commits.

    For effects that must not happen twice or for nothing: metrics of what
    a transaction did, above all. A rolled-back or retried transaction
    drops its callbacks. Outside a transactor transaction (plain psycopg2
    code, the CLI) the callback is dropped: nothing there is counted.
    """
    pending = getattr(_transaction, "callbacks", None)
    if pending is not None:
        pending.append(callback)


def _is_disconnection(error: BaseException) -> bool:
    """Whether ``error`` is the connection lost: Storm's DisconnectionError,
    or psycopg2's from a raw cursor (``database.sql.raw_cursor``; Storm
    learns of it at the rollback and reconnects next time). An error
    without a SQLSTATE never came from the server's SQL; class 08 is a
    connection exception, 57P01-03 a server shutting down."""
    import psycopg2
    import psycopg2.extensions
    from storm.exceptions import DisconnectionError

    if isinstance(error, DisconnectionError):
        return True
    if isinstance(error, psycopg2.InterfaceError):
        return True  # "connection already closed"
    if isinstance(error, psycopg2.OperationalError) and not isinstance(
            error, (psycopg2.extensions.TransactionRollbackError,
                    psycopg2.extensions.QueryCanceledError)):
        code = getattr(error, "pgcode", None)
        if not isinstance(code, str):
            return True
        return code.startswith("08") or code in ("57P01", "57P02", "57P03")
    return False


def _check_plain(value, path="result"):
    """Raise StormObjectLeak if ``value`` holds a Storm object anywhere."""
    from storm.store import ResultSet

    if value is None or isinstance(value, (str, bytes, int, float, bool)):
        return
    if hasattr(value, "__storm_object_info__") or hasattr(
            type(value), "__storm_table__") or isinstance(value, ResultSet):
        raise StormObjectLeak(
            "%s is a Storm object (%s); return plain values or records"
            % (path, type(value).__name__))
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, path)
            _check_plain(item, "%s[%r]" % (path, key))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            _check_plain(item, "%s[%d]" % (path, index))
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _check_plain(getattr(value, f.name), "%s.%s" % (path, f.name))
    elif hasattr(type(value), "__attrs_attrs__"):
        for a in type(value).__attrs_attrs__:
            _check_plain(getattr(value, a.name), "%s.%s" % (path, a.name))


class Transactor:
    """Run functions of a Store in a thread pool, one transaction each.

    It also watches the database's health for the whole process: the first
    lost connection after a success logs one warning ("lost the database"),
    the first success after that one line saying it is back and after how
    long, so an outage reads as two lines, not a traceback per call.

    :param url: the database URL (libpq form).
    :param reactor: the reactor whose thread pool results come back to.
    :param min_threads, max_threads: the pool's size; each thread holds at
        most one connection.
    :param max_retries: how many times a retryable failure is retried.
    :param backoff: seconds to sleep (in the worker thread) before retry n.
    """

    def __init__(self, url: str, reactor=None, min_threads: int = 0,
                 max_threads: int = 4, max_retries: int = 5,
                 backoff: Callable[[int], float] = default_backoff,
                 sleep: Callable[[float], None] = time.sleep):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url
        self._reactor = reactor
        self._pool = ThreadPool(min_threads, max_threads,
                                name="transactor")
        self._local = threading.local()
        self._stores = []
        self._stores_lock = threading.Lock()
        self.max_retries = max_retries
        self._backoff = backoff
        self._sleep = sleep
        self._database = None
        self._down_since = None
        self._health_lock = threading.Lock()

    log = Logger()

    def start(self) -> None:
        """Start the worker threads. Opens no connection yet."""
        self._pool.start()

    def stop(self) -> None:
        """Wait for running work, stop the threads, close every connection."""
        self._pool.stop()
        with self._stores_lock:
            stores, self._stores = self._stores, []
        for store in stores:
            try:
                store.close()
            except Exception:
                pass

    def run(self, function: Callable, *args, **kwargs):
        """Run ``function(store, *args, **kwargs)`` in a worker thread.

        :return: a Deferred firing with the function's (plain) result, or
            failing with its exception after the transaction rolled back.
        """
        return deferToThreadPool(self._reactor, self._pool, self.run_blocking,
                                 function, *args, **kwargs)

    def run_blocking(self, function: Callable, *args, **kwargs):
        """As :meth:`run`, but in the calling thread (CLI and scripts)."""
        store = self._store()
        attempt = 0
        while True:
            _transaction.callbacks = []
            try:
                result = function(store, *args, **kwargs)
                _check_plain(result)
                store.commit()
            except BaseException as error:
                _transaction.callbacks = None
                try:
                    store.rollback()
                except Exception:
                    pass
                if _is_disconnection(error):
                    self._lost(error)
                attempt += 1
                if not is_retryable(error) or attempt > self.max_retries:
                    raise
                self._sleep(self._backoff(attempt))
            else:
                callbacks, _transaction.callbacks = _transaction.callbacks, None
                self._reached()
                for callback in callbacks:
                    try:
                        callback()
                    except Exception:
                        self.log.failure("an after-commit callback failed")
                return result

    @property
    def database_down(self) -> bool:
        """Whether the last attempt to reach the database failed."""
        return self._down_since is not None

    def _lost(self, error) -> None:
        from lp_services.config import redact_url

        with self._health_lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        reason = str(error).strip().splitlines()
        self.log.warn("lost the database at {url}: {reason}; retrying",
                      url=redact_url(self.url),
                      reason=reason[0] if reason else type(error).__name__)

    def _reached(self) -> None:
        with self._health_lock:
            if self._down_since is None:
                return
            down = time.monotonic() - self._down_since
            self._down_since = None
        from lp_services.config import redact_url

        self.log.info("the database at {url} is back after {seconds:.1f}s",
                      url=redact_url(self.url), seconds=down)

    def _store(self):
        store = getattr(self._local, "store", None)
        if store is None:
            from storm.database import create_database
            from storm.store import Store

            from lp_services.database.connection import storm_uri

            if self._database is None:
                self._database = create_database(storm_uri(self.url))
            store = Store(self._database)
            self._local.store = store
            with self._stores_lock:
                self._stores.append(store)
        return store
