"""Prometheus metrics: every metric of lp-services, defined in one place.

Each process (buildmaster, job runner) has one :data:`REGISTRY` of its own,
holding the event metrics below; the daemons record events by calling the
small ``record_*`` functions, which never touch the database and never
raise for a label they have not seen before.

Gauges that describe the farm as a whole (queue depth per processor,
builder states) are not kept up to date by the daemons: the
:class:`lp_services.ops.gauges.OpsGauges` collector reads them from the
ops views when ``/metrics`` is scraped.

``/metrics`` is served by :class:`MetricsResource` (mounted by the status
site, see ``lp_services.web.site``) or, on a job runner, by the small site
:func:`make_metrics_site` returns. Names and meanings: docs/metrics.md.
"""

import math
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
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


def seconds_of(value) -> float:
    """A duration (timedelta or number) in seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _name(value) -> str:
    """An enum member's name, or the string itself."""
    return getattr(value, "name", None) or str(value)


def record_dispatch_latency(seconds) -> None:
    """A build was dispatched ``seconds`` (float or timedelta) after it
    became dispatchable. Negative values (clock skew) count as 0."""
    DISPATCH_LATENCY.observe(max(0.0, seconds_of(seconds)))


def record_scan_duration(seconds) -> None:
    """One scanner cycle of one builder took ``seconds``."""
    SCAN_DURATION.observe(max(0.0, seconds_of(seconds)))


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
            max(0.0, seconds_of(duration)))


def record_lease_expiry(job_type: str) -> None:
    """A running job of ``job_type`` lost its lease and was reclaimed."""
    LEASE_EXPIRIES.labels(type=job_type).inc()


def record_retry(job_type: str) -> None:
    """A failed attempt of a ``job_type`` job was scheduled again."""
    RETRIES.labels(type=job_type).inc()


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
        scrape (``lp_services.ops.gauges.OpsGauges.refresh``), or None.

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
