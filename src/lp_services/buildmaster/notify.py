"""LISTEN/NOTIFY wake-ups for the buildmaster (txpostgres).

The connection is non-blocking (txpostgres polls psycopg2's socket from
the reactor). Each notification on :data:`queue.NOTIFY_CHANNEL` is handed
to :meth:`BuilderManager.notified`. If the connection drops, it is
re-opened after a delay and a full refresh catches up on anything missed;
scans every interval remain the fallback that reconciles everything.
"""

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from lp_services.buildmaster.queue import NOTIFY_CHANNEL

__all__ = ["NotifyListener"]

#: Seconds before re-opening a lost LISTEN connection.
RECONNECT_DELAY = 5.0
#: Seconds between liveness checks of the LISTEN connection (a dead
#: connection otherwise goes unnoticed until the kernel says so).
KEEPALIVE_INTERVAL = 30.0


class NotifyListener(Service):
    """Listens on ``lp_build`` and wakes the manager."""

    log = Logger()

    def __init__(self, database_url: str, manager, reactor):
        self.database_url = database_url
        self.manager = manager
        self.reactor = reactor
        self._conn = None
        self._retry = None
        self._keepalive = None
        self.notifications = 0
        self.connected = defer.Deferred()

    def startService(self):
        super().startService()
        self._connect()

    def _connect(self):
        self._retry = None
        d = defer.Deferred.fromCoroutine(self._open())
        d.addErrback(self._lost)

    async def _open(self):
        from txpostgres import txpostgres

        conn = txpostgres.Connection(reactor=self.reactor)
        await conn.connect(self.database_url)
        conn.addNotifyObserver(self._notified)
        await conn.runOperation("LISTEN %s" % NOTIFY_CHANNEL)
        self._conn = conn
        self.log.info("listening on {channel}", channel=NOTIFY_CHANNEL)
        from twisted.internet import task

        self._keepalive = task.LoopingCall(self._ping)
        self._keepalive.clock = self.reactor
        self._keepalive.start(KEEPALIVE_INTERVAL, now=False).addErrback(
            self._lost)
        if not self.connected.called:
            self.connected.callback(None)
        # Anything queued while we were not listening:
        self.manager.refresh()

    def _ping(self):
        return self._conn.runQuery("SELECT 1")

    def _notified(self, notify):
        if notify.channel != NOTIFY_CHANNEL:
            return
        self.notifications += 1
        self.manager.notified(notify.payload)

    def _lost(self, failure):
        self.log.warn("LISTEN connection failed: {error}; retrying in "
                      "{delay}s", error=failure.getErrorMessage(),
                      delay=RECONNECT_DELAY)
        self._close()
        if self.running:
            self._retry = self.reactor.callLater(RECONNECT_DELAY,
                                                 self._connect)

    def _close(self):
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def stopService(self):
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._close()
