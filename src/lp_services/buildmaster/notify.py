"""LISTEN/NOTIFY wake-ups for the buildmaster.

A :class:`lp_services.database.listener.Listener` on
:data:`queue.NOTIFY_CHANNEL` hands each notification to
:meth:`BuilderManager.notified`. After every (re)connection a full refresh
catches up on anything missed while away; scans every interval remain the
fallback that reconciles everything.
"""

from twisted.application.service import Service
from twisted.internet import defer

from lp_services.buildmaster.queue import NOTIFY_CHANNEL
from lp_services.database.listener import Listener, reconnect_delay

__all__ = ["NotifyListener"]

#: Seconds between liveness checks of the LISTEN connection (a dead
#: connection otherwise goes unnoticed until the kernel says so).
KEEPALIVE_INTERVAL = 30.0


class NotifyListener(Service):
    """Listens on ``lp_build`` and wakes the manager.

    :param clock: IReactorTime for retries and the keepalive (default the
        reactor).
    :param retry_policy: seconds before reconnection attempt n.
    """

    def __init__(self, database_url: str, manager, reactor, clock=None,
                 retry_policy=reconnect_delay):
        self.manager = manager
        self.notifications = 0
        #: Fires at the first connection.
        self.connected = defer.Deferred()
        self.listener = Listener(
            database_url, [NOTIFY_CHANNEL], self._notified, reactor=reactor,
            clock=clock, retry_policy=retry_policy,
            on_connected=self._connected, keepalive=KEEPALIVE_INTERVAL,
            name="buildmaster")

    def startService(self):
        super().startService()
        self.listener.start()

    def stopService(self):
        super().stopService()
        self.listener.stop()

    def _connected(self):
        if not self.connected.called:
            self.connected.callback(None)
        # Anything queued while we were not listening:
        self.manager.refresh()

    def _notified(self, notify):
        self.notifications += 1
        self.manager.notified(notify.payload)
