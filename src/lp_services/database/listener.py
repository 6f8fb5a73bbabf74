"""One reconnecting LISTEN connection (txpostgres), for the job runner and
the buildmaster.

Like Twisted's ``ClientService``: the connection is (re)made in a loop
whose clock and retry policy are injected, so tests step it with
``task.Clock``; whoever uses it asks for the live connection
(:attr:`Listener.connection`, None while it is down) or waits for one
(:meth:`Listener.when_connected`). After every (re)connection the
``prepare`` hook runs on the new connection before anything else sees it
(the runner prepares its statements there), the channels are LISTENed
to, and ``on_connected`` is called (a listener that was away may have
missed notifications: its user catches up there).

A lost server is noticed three ways: txpostgres reports the socket closed;
psycopg2's ``poll()`` raises in ``doRead`` (reported as a loss, not as an
unhandled error in the reactor); or, with ``keepalive``, a ``SELECT 1``
every so many seconds fails (a dead peer otherwise goes unnoticed until
the kernel gives up on it).
"""

from typing import Callable

import psycopg2
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python import failure
from txpostgres import txpostgres

from lp_services.config import redact_url

__all__ = ["Listener", "ListeningConnection", "reconnect_delay"]

log = Logger()


def reconnect_delay(attempt: int) -> float:
    """Seconds before reconnection attempt ``attempt`` (1-based): 0.1 s
    doubling to 5 s — quick after a blip, gentle during an outage."""
    return min(0.1 * 2 ** (attempt - 1), 5.0)


class ListeningConnection(txpostgres.Connection):
    """A txpostgres connection that reports losing its server once."""

    def __init__(self, reactor, on_lost):
        cooperator = task.Cooperator(
            scheduler=lambda f: reactor.callLater(0, f))
        super().__init__(reactor=reactor, cooperator=cooperator)
        self.on_lost = on_lost
        self.closing = False

    def doRead(self):
        # A server that went away makes psycopg2's poll() raise here; report
        # it as the lost connection it is (one clear log line) rather than
        # as an unhandled error in the reactor.
        try:
            super().doRead()
        except psycopg2.Error as error:
            self.reactor.removeReader(self)
            self.connectionLost(failure.Failure(error))
        except ValueError:
            # txpostgres re-adds a connection whose socket libpq already
            # closed (fd -1) after a failed connection attempt; the attempt
            # itself has failed through its Deferred.
            pass

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if not self.closing:
            self.on_lost(self, reason.value)

    def close_quietly(self):
        """Close without reporting a loss."""
        self.closing = True
        try:
            self.close()
        except Exception:
            pass


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)


class Listener:
    """A LISTEN connection kept up until :meth:`stop`.

    :param database_url: libpq URL.
    :param channels: channels to LISTEN on.
    :param on_notify: ``f(notify)`` for each notification on them.
    :param reactor: the reactor (sockets).
    :param clock: IReactorTime for the retry delays and the keepalive;
        default the reactor.
    :param retry_policy: seconds before reconnection attempt n (1-based).
    :param prepare: ``f(connection) -> Deferred``, run on each new
        connection before it is used.
    :param on_connected: ``f()`` after each (re)connection.
    :param on_lost: ``f(reason)`` when a live connection is lost (the
        listener logs one line itself when this is not given).
    :param keepalive: seconds between ``SELECT 1`` checks; None: none.
    :param name: how log lines name the process (``jobrunner``, ...).
    """

    def __init__(self, database_url: str, channels, on_notify, *, reactor,
                 clock=None, retry_policy: Callable[[int], float] =
                 reconnect_delay, prepare=None, on_connected=None,
                 on_lost=None, keepalive: float | None = None,
                 name: str = "listener"):
        self.database_url = database_url
        self.channels = tuple(channels)
        self.on_notify = on_notify
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.retry_policy = retry_policy
        self.prepare = prepare
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.keepalive = keepalive
        self.name = name
        #: The live connection, or None while there is none.
        self.connection: ListeningConnection | None = None
        self._connecting = None
        self._stopped = False
        self._waiters: list[defer.Deferred] = []
        self._keepalive_loop = None
        self._retry_call = None
        self._retry_wait = None

    def start(self) -> defer.Deferred:
        """Connect (retrying until connected or stopped); fire then."""
        self._stopped = False
        return self.reconnect()

    def reconnect(self) -> defer.Deferred:
        """Connect now unless connected or connecting; fire once connected
        (or stopped)."""
        if self.connection is not None:
            return defer.succeed(None)
        if self._connecting is None:
            token = object()
            self._connecting = token
            defer.ensureDeferred(self._connect_loop(token))
        d = defer.Deferred()
        self._waiters.append(d)
        return d

    def when_connected(self, timeout: float | None = None) -> defer.Deferred:
        """Fire once connected (at once if connected); with ``timeout``,
        fire anyway after that many seconds (the caller checks
        :attr:`connection`)."""
        d = self.reconnect()
        if timeout is not None and not d.called:
            timer = self.clock.callLater(
                timeout, lambda: d.called or d.callback(None))
            d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._stopped = True
        self._stop_keepalive()
        if self._retry_call is not None and self._retry_call.active():
            # The loop wakes at once, sees it is stopped and ends.
            self._retry_call.cancel()
            self._retry_wait.callback(None)
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.close_quietly()
        self._release_waiters()

    # -- internals ----------------------------------------------------------

    def _release_waiters(self):
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    async def _connect_loop(self, token):
        attempt = 0
        began = self.clock.seconds()
        try:
            while not self._stopped:
                conn = ListeningConnection(self.reactor, self.lost)
                try:
                    await conn.connect(self.database_url)
                    if self.prepare is not None:
                        await self.prepare(conn)
                    for channel in self.channels:
                        await conn.runOperation("LISTEN %s" % channel)
                except Exception as error:
                    conn.close_quietly()
                    attempt += 1
                    delay = self.retry_policy(attempt)
                    if attempt == 1 or attempt % 20 == 0:
                        log.warn("{name} cannot reach the database at {db} "
                                 "({error}); retrying in {delay:.1f} s",
                                 name=self.name,
                                 db=redact_url(self.database_url),
                                 error=_first_line(error), delay=delay)
                    waited = defer.Deferred()
                    self._retry_call = self.clock.callLater(
                        delay, waited.callback, None)
                    self._retry_wait = waited
                    await waited
                    self._retry_call = self._retry_wait = None
                    continue
                if self._stopped:
                    conn.close_quietly()
                    return
                conn.addNotifyObserver(self._notified)
                self.connection = conn
                if attempt:
                    log.warn("{name} reconnected to the database after "
                             "{s:.1f} s ({n} attempts)", name=self.name,
                             s=self.clock.seconds() - began, n=attempt + 1)
                else:
                    log.info("{name} connected to the database",
                             name=self.name)
                self._start_keepalive(conn)
                # Done before anyone is told: a waiter may report the new
                # connection lost at once, and must then start a new loop.
                self._connecting = None
                if self.on_connected is not None:
                    self.on_connected()
                self._release_waiters()
                return
        finally:
            if self._connecting is token:
                self._connecting = None
            if self._stopped:
                self._release_waiters()

    def _notified(self, notify):
        if notify.channel in self.channels:
            self.on_notify(notify)

    def lost(self, conn, reason):
        """``conn`` failed (noticed by its user, by txpostgres or by the
        keepalive): drop it and reconnect. Stale connections are ignored."""
        if conn is not self.connection:
            return
        self.connection = None
        self._stop_keepalive()
        conn.close_quietly()
        if self.on_lost is not None:
            self.on_lost(reason)
        else:
            log.warn("{name} lost its database connection ({reason}); "
                     "reconnecting", name=self.name,
                     reason=_first_line(reason))
        if not self._stopped:
            self.reconnect()

    def _start_keepalive(self, conn):
        if not self.keepalive:
            return
        loop = task.LoopingCall(conn.runQuery, "SELECT 1")
        loop.clock = self.clock
        self._keepalive_loop = loop
        loop.start(self.keepalive, now=False).addErrback(
            lambda f: self.lost(conn, f.value))

    def _stop_keepalive(self):
        loop, self._keepalive_loop = self._keepalive_loop, None
        if loop is not None and loop.running:
            loop.stop()
