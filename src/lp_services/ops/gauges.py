"""Farm-wide gauges for /metrics, read from the ops views.

Gauges that describe the farm as a whole (queue depth per processor,
builder states) are not kept up to date by the daemons: the
:class:`OpsGauges` collector reads them from the ops views
(:mod:`lp_services.ops.reports`) through the transactor when ``/metrics``
is scraped, at most once per :data:`OPS_REFRESH_INTERVAL`, so the figures
on ``/metrics``, on the status pages and in ``lp-services report`` agree.
"""

import math

from prometheus_client.core import GaugeMetricFamily
from twisted.logger import Logger

from lp_services.metrics import BUILDER_STATES, seconds_of

__all__ = ["OPS_REFRESH_INTERVAL", "OpsGauges"]

_log = Logger()

#: How stale the ops gauges may be: scrapes within this many seconds of a
#: refresh reuse it, so many scrapers (or a dashboard's refresh) cost at
#: most one round of ops queries per interval. Prometheus scrapes every
#: 15-60 s, so 10 s never serves a scrape its predecessor's figures.
OPS_REFRESH_INTERVAL = 10.0


def _read_ops(store):
    from lp_services.database.sql import raw_cursor
    from lp_services.ops.reports import fetch_report

    cursor = raw_cursor(store)
    _, queue = fetch_report(cursor, "queue")
    _, builders = fetch_report(cursor, "builders")
    _, masters = fetch_report(cursor, "masters")
    return ([{k: r[k] for k in ("processor", "virtualized", "waiting_builds",
                                "building", "oldest_wait",
                                "estimated_time_to_clear")} for r in queue],
            [r["state"] for r in builders],
            [{k: r[k] for k in ("master", "builders_owned", "builds_running",
                                "heartbeat_age")} for r in masters])


class OpsGauges:
    """A collector of farm-wide gauges read from the ops views.

    :meth:`refresh` (a Deferred; run it before a scrape) reads
    ``ops_queue`` and ``ops_builders`` through the transactor;
    :meth:`collect` yields the last figures read and never blocks.

    :param transactor: a started ``Transactor``.
    :param clock: an IReactorTime (its ``seconds()`` spaces refreshes).
    :param interval: see :data:`OPS_REFRESH_INTERVAL`.
    """

    def __init__(self, transactor, clock, interval: float = OPS_REFRESH_INTERVAL):
        self._transactor = transactor
        self._clock = clock
        self._interval = interval
        self._queue = []
        self._states = []
        self._masters = []
        self._refreshed_at = None
        self._waiters = None
        self.errors = 0

    def refresh(self):
        """Read the ops views unless read less than ``interval`` ago.

        Concurrent callers share one read. A failed read is logged and
        counted; the previous figures stay. The Deferred never fails.
        """
        from twisted.internet.defer import Deferred, succeed

        now = self._clock.seconds()
        if (self._refreshed_at is not None
                and now - self._refreshed_at < self._interval):
            return succeed(None)
        waiter = Deferred()
        if self._waiters is not None:
            self._waiters.append(waiter)
            return waiter
        self._waiters = [waiter]
        d = self._transactor.run(_read_ops)
        d.addCallbacks(self._store, self._failed)
        d.addBoth(self._notify)
        return waiter

    def _store(self, result):
        self._queue, self._states, self._masters = result
        self._refreshed_at = self._clock.seconds()

    def _failed(self, failure):
        self.errors += 1
        _log.failure("reading the ops views for /metrics failed", failure)

    def _notify(self, _):
        waiters, self._waiters = self._waiters, None
        for waiter in waiters:
            waiter.callback(None)

    def collect(self):
        """See ``prometheus_client.registry.Collector``."""
        labels = ["processor", "virtualized"]
        waiting = GaugeMetricFamily(
            "lp_queue_waiting_builds",
            "Builds waiting for a builder (ops_queue.waiting_builds).", labels=labels)
        building = GaugeMetricFamily(
            "lp_queue_building_builds",
            "Builds on a builder now (ops_queue.building).", labels=labels)
        oldest = GaugeMetricFamily(
            "lp_queue_oldest_wait_seconds",
            "How long the oldest waiting build has waited (0 when none waits).",
            labels=labels)
        clear = GaugeMetricFamily(
            "lp_queue_estimated_seconds_to_clear",
            "Estimated time to clear the queue (ops_queue); +Inf when builds "
            "wait and no builder can take them.", labels=labels)
        for row in self._queue:
            values = [row["processor"], "true" if row["virtualized"] else "false"]
            waiting.add_metric(values, row["waiting_builds"])
            building.add_metric(values, row["building"])
            oldest.add_metric(values, seconds_of(row["oldest_wait"] or 0))
            ttc = row["estimated_time_to_clear"]
            clear.add_metric(values, math.inf if ttc is None else seconds_of(ttc))
        yield waiting
        yield building
        yield oldest
        yield clear
        states = GaugeMetricFamily(
            "lp_builders", "Builders by state (ops_builders.state).",
            labels=["state"])
        for state in BUILDER_STATES:
            states.add_metric([state], self._states.count(state))
        yield states
        owned = GaugeMetricFamily(
            "lp_master_builders_owned",
            "Builders whose lease each buildmaster holds (ops_masters).",
            labels=["master"])
        running = GaugeMetricFamily(
            "lp_master_builds_running",
            "Builds on each buildmaster's builders (ops_masters).",
            labels=["master"])
        heartbeat = GaugeMetricFamily(
            "lp_master_heartbeat_age_seconds",
            "Since each registered buildmaster's last heartbeat; past one "
            "builder lease it is presumed dead.", labels=["master"])
        for row in self._masters:
            owned.add_metric([row["master"]], row["builders_owned"])
            running.add_metric([row["master"]], row["builds_running"])
            heartbeat.add_metric([row["master"]],
                                 seconds_of(row["heartbeat_age"] or 0))
        yield owned
        yield running
        yield heartbeat
        errors = GaugeMetricFamily(
            "lp_ops_refresh_errors",
            "Failed reads of the ops views for these gauges since start.")
        errors.add_metric([], self.errors)
        yield errors
