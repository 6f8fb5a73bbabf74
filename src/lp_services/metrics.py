"""Prometheus metrics: every metric of lp-services, defined in one place.

Each process (buildmaster, job runner) has one :data:`REGISTRY` of its own,
holding the event metrics below; the daemons record events by calling the
small ``record_*`` functions, which never touch the database and never
raise for a label they have not seen before.

Gauges that describe the farm as a whole (queue depth per processor,
builder states) are not kept up to date by the daemons: an
:class:`OpsGauges` collector reads them from the ops views
(``lp_services.reports``) through the transactor when ``/metrics`` is
scraped, at most once per :data:`OPS_REFRESH_INTERVAL`, so the figures on
``/metrics``, on the status pages and in ``lp-services report`` agree.

``/metrics`` is served by :class:`MetricsResource` (mounted by the status
site, see ``lp_services.web.site``) or, on a job runner, by the small site
:func:`make_metrics_site` returns. Names and meanings: docs/metrics.md.
"""

import math
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

__all__ = [
    "BUILDER_STATES",
    "BUILD_RESULTS",
    "DISPATCH_LATENCY",
    "JOB_DURATION",
    "JOB_OUTCOMES",
    "LEASE_EXPIRIES",
    "MetricsResource",
    "OPS_REFRESH_INTERVAL",
    "OpsGauges",
    "REGISTRY",
    "RETRIES",
    "SCAN_DURATION",
    "make_metrics_service",
    "make_metrics_site",
    "record_build_result",
    "record_dispatch_latency",
    "record_job_outcome",
    "record_lease_expiry",
    "record_retry",
    "record_scan_duration",
]

_log = Logger()

#: This process's registry. Not prometheus_client's global REGISTRY, so
#: that importing a library that registers there cannot add to ours.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

#: The states ops_builders reports, all exported (0 when no builder is in
#: one) so that a dashboard sees a state disappear rather than go stale.
BUILDER_STATES = ("building", "idle", "dirty", "cleaning", "manual",
                  "failed", "disabled")

#: Job outcomes the runner and the buildmaster report.
#: How an attempt of a job ended. The first three are final (the ops views'
#: outcomes); the others mean the job goes on: retried after a retryable
#: failure, lost (its lease was lost or it was cancelled under the runner),
#: handed_back (returned unrun, or at shutdown).
OUTCOMES = ("succeeded", "failed", "cancelled", "retried", "lost",
            "handed_back")

# Dispatch latency spans "picked at once" (a NOTIFY wake-up: well under a
# second) to "waited hours for a free builder".
DISPATCH_LATENCY = Histogram(
    "lp_dispatch_latency_seconds",
    "Time from a build becoming dispatchable (scheduled start, or creation "
    "if later) to its dispatch to a builder.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600,
             math.inf),
    registry=REGISTRY)

# A scan is one scanner cycle for one builder: a few SQL statements and one
# or two XML-RPC calls on a LAN, so milliseconds to seconds; anything past
# the scan interval (seconds) is trouble.
SCAN_DURATION = Histogram(
    "lp_scan_duration_seconds",
    "Duration of one scanner cycle of one builder.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
             math.inf),
    registry=REGISTRY)

BUILD_RESULTS = Counter(
    "lp_build_results",
    "Builds finished, by final build status (FULLYBUILT, FAILEDTOBUILD, "
    "CHROOTWAIT, CANCELLED, ...).",
    ["status"], registry=REGISTRY)

JOB_OUTCOMES = Counter(
    "lp_job_outcomes",
    "Work finished, by job type and outcome (succeeded, failed, cancelled).",
    ["type", "outcome"], registry=REGISTRY)

# Native jobs run from milliseconds (noop) to hours (gc of a big store).
JOB_DURATION = Histogram(
    "lp_job_duration_seconds",
    "Duration of finished work (one attempt), by job type and outcome.",
    ["type", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600,
             4 * 3600, math.inf),
    registry=REGISTRY)

LEASE_EXPIRIES = Counter(
    "lp_lease_expiries",
    "Running jobs whose lease expired (holder died or hung), by job type.",
    ["type"], registry=REGISTRY)

RETRIES = Counter(
    "lp_retries",
    "Attempts that failed and were scheduled to run again, by job type.",
    ["type"], registry=REGISTRY)


def _seconds(value) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _name(value) -> str:
    """An enum member's name, or the string itself."""
    return getattr(value, "name", None) or str(value)


def record_dispatch_latency(seconds) -> None:
    """A build was dispatched ``seconds`` (float or timedelta) after it
    became dispatchable. Negative values (clock skew) count as 0."""
    DISPATCH_LATENCY.observe(max(0.0, _seconds(seconds)))


def record_scan_duration(seconds) -> None:
    """One scanner cycle of one builder took ``seconds``."""
    SCAN_DURATION.observe(max(0.0, _seconds(seconds)))


def record_build_result(status) -> None:
    """A build finished with ``status`` (a BuildStatus or its name)."""
    BUILD_RESULTS.labels(status=_name(status)).inc()


def record_job_outcome(job_type: str, outcome: str, duration=None) -> None:
    """Work of ``job_type`` finished with ``outcome`` (succeeded, failed,
    cancelled) after ``duration`` (seconds or timedelta; None if unknown).

    :raises ValueError: an outcome that is not one of :data:`OUTCOMES`
        (a programming error; labels must stay a small fixed set).
    """
    outcome = _name(outcome).lower()
    if outcome not in OUTCOMES:
        raise ValueError("unknown outcome %r (expected one of %s)"
                         % (outcome, ", ".join(OUTCOMES)))
    JOB_OUTCOMES.labels(type=job_type, outcome=outcome).inc()
    if duration is not None:
        JOB_DURATION.labels(type=job_type, outcome=outcome).observe(
            max(0.0, _seconds(duration)))


def record_lease_expiry(job_type: str) -> None:
    """A running job of ``job_type`` lost its lease and was reclaimed."""
    LEASE_EXPIRIES.labels(type=job_type).inc()


def record_retry(job_type: str) -> None:
    """A failed attempt of a ``job_type`` job was scheduled again."""
    RETRIES.labels(type=job_type).inc()


#: How stale the ops gauges may be: scrapes within this many seconds of a
#: refresh reuse it, so many scrapers (or a dashboard's refresh) cost at
#: most one round of ops queries per interval. Prometheus scrapes every
#: 15-60 s, so 10 s never serves a scrape its predecessor's figures.
OPS_REFRESH_INTERVAL = 10.0


def _read_ops(store):
    from lp_services.database.sql import raw_cursor
    from lp_services.reports import fetch_report

    cursor = raw_cursor(store)
    _, queue = fetch_report(cursor, "queue")
    _, builders = fetch_report(cursor, "builders")
    return ([{k: r[k] for k in ("processor", "virtualized", "waiting_builds",
                                "building", "oldest_wait",
                                "estimated_time_to_clear")} for r in queue],
            [r["state"] for r in builders])


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
        self._queue, self._states = result
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
            oldest.add_metric(values, _seconds(row["oldest_wait"] or 0))
            ttc = row["estimated_time_to_clear"]
            clear.add_metric(values, math.inf if ttc is None else _seconds(ttc))
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
        errors = GaugeMetricFamily(
            "lp_ops_refresh_errors",
            "Failed reads of the ops views for these gauges since start.")
        errors.add_metric([], self.errors)
        yield errors


class _Union:
    """Several collectors exposed as one (what generate_latest needs)."""

    def __init__(self, collectors):
        self._collectors = collectors

    def collect(self):
        for collector in self._collectors:
            yield from collector.collect()


class MetricsResource(Resource):
    """``/metrics``: the exposition of ``registries``.

    :param registries: collectors (registries) to expose, default
        ``[REGISTRY]``.
    :param refresh: a callable returning a Deferred, run before each
        scrape (``OpsGauges.refresh``), or None.

    Honours ``Accept`` (Prometheus text or OpenMetrics).
    """

    isLeaf = True

    def __init__(self, registries=None, refresh=None):
        super().__init__()
        self._collector = _Union(list(registries or [REGISTRY]))
        self._refresh = refresh

    def render_GET(self, request):
        if self._refresh is None:
            return self._render(request)
        finished = []
        request.notifyFinish().addBoth(finished.append)

        def write(_):
            if finished:
                return
            request.write(self._render(request))
            request.finish()

        d = self._refresh()
        d.addCallback(write)
        d.addErrback(lambda f: _log.failure("serving /metrics failed", f))
        return NOT_DONE_YET

    def _render(self, request) -> bytes:
        accept = request.getHeader("accept") or ""
        encoder, content_type = choose_encoder(accept)
        request.setHeader("content-type", content_type)
        request.setHeader("cache-control", "no-store")
        return encoder(self._collector)


class _MetricsRoot(Resource):
    """A site holding ``/metrics`` and nothing else."""

    def __init__(self, metrics):
        super().__init__()
        self.putChild(b"metrics", metrics)

    def render_GET(self, request):
        request.setHeader("content-type", "text/plain; charset=utf-8")
        return b"lp-services metrics: see /metrics\n"


def make_metrics_site(registries=None, refresh=None):
    """A ``twisted.web.server.Site`` serving ``/metrics`` alone (job runner).

    Arguments as for :class:`MetricsResource`.
    """
    from twisted.web.server import Site

    site = Site(_MetricsRoot(MetricsResource(registries, refresh)))
    site.displayTracebacks = False
    return site


def make_metrics_service(description: str, reactor=None, registries=None):
    """A service listening on strports ``description`` (e.g.
    ``tcp:9101:interface=127.0.0.1``) with :func:`make_metrics_site`."""
    from twisted.application import strports

    if reactor is None:
        from twisted.internet import reactor
    return strports.service(description, make_metrics_site(registries),
                            reactor=reactor)
