"""lp_services.metrics: the record_* functions, the ops gauges read from
the database, and /metrics served alone (job runner) or by the site."""

from datetime import timedelta

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from lp_services import metrics as M
from lp_services.ops import gauges as G
from lp_services.database.transactor import Transactor
from lp_services.testing.database import DatabaseTestMixin
from tests.database.test_views import SEED


def sample(name, **labels):
    return M.REGISTRY.get_sample_value(name, labels) or 0.0


class RecordTests(SynchronousTestCase):
    """The record_* functions the buildmaster and runner call."""

    def test_dispatch_latency(self):
        """Dispatch latency is observed in seconds; timedeltas and negative
        values (clock skew) are accepted."""
        count = sample("lp_dispatch_latency_seconds_count")
        total = sample("lp_dispatch_latency_seconds_sum")
        le1 = sample("lp_dispatch_latency_seconds_bucket", le="1.0")
        M.record_dispatch_latency(0.25)
        M.record_dispatch_latency(timedelta(minutes=2))
        M.record_dispatch_latency(-3)
        self.assertEqual(sample("lp_dispatch_latency_seconds_count"), count + 3)
        self.assertEqual(sample("lp_dispatch_latency_seconds_sum"), total + 120.25)
        self.assertEqual(sample("lp_dispatch_latency_seconds_bucket", le="1.0"),
                         le1 + 2)

    def test_scan_duration(self):
        """Scan durations go to their histogram."""
        count = sample("lp_scan_duration_seconds_count")
        M.record_scan_duration(0.02)
        self.assertEqual(sample("lp_scan_duration_seconds_count"), count + 1)

    def test_build_result(self):
        """Build results count by status name, from an enum or a string."""
        from lp_services.buildmaster.enums import BuildStatus

        before = sample("lp_build_results_total", status="FULLYBUILT")
        M.record_build_result(BuildStatus.FULLYBUILT)
        M.record_build_result("FULLYBUILT")
        self.assertEqual(sample("lp_build_results_total", status="FULLYBUILT"),
                         before + 2)

    def test_job_outcome_and_duration(self):
        """Outcomes count by type and outcome; durations, when given, go to
        the duration histogram with the same labels."""
        labels = {"type": "noop", "outcome": "failed"}
        before = sample("lp_job_outcomes_total", **labels)
        durations = sample("lp_job_duration_seconds_count", **labels)
        M.record_job_outcome("noop", "failed", 1.5)
        M.record_job_outcome("noop", "FAILED")
        self.assertEqual(sample("lp_job_outcomes_total", **labels), before + 2)
        self.assertEqual(sample("lp_job_duration_seconds_count", **labels),
                         durations + 1)

    def test_job_outcome_rejects_unknown_outcomes(self):
        """An outcome outside the fixed set is a programming error."""
        self.assertRaises(ValueError, M.record_job_outcome, "noop", "maybe")

    def test_lease_expiry_and_retry(self):
        """Lease expiries and retries count by job type."""
        expiries = sample("lp_lease_expiries_total", type="build")
        retries = sample("lp_retries_total", type="http-notify")
        M.record_lease_expiry("build")
        M.record_retry("http-notify")
        M.record_retry("http-notify")
        self.assertEqual(sample("lp_lease_expiries_total", type="build"),
                         expiries + 1)
        self.assertEqual(sample("lp_retries_total", type="http-notify"),
                         retries + 2)


class FakeTransactor:
    """Counts reads; answers with what the test says (agent-free fake of
    the one method OpsGauges uses)."""

    def __init__(self, result):
        self.result = result
        self.calls = 0
        self.pending = None

    def run(self, function):
        self.calls += 1
        if self.result == "defer":
            self.pending = Deferred()
            return self.pending
        if isinstance(self.result, Exception):
            return fail(self.result)
        return succeed(self.result)


ROWS = ([{"processor": "amd64", "virtualized": False, "waiting_builds": 3,
          "building": 1, "oldest_wait": timedelta(seconds=90),
          "estimated_time_to_clear": None}],
        ["building", "idle", "idle"],
        [{"master": "m1", "builders_owned": 2, "builds_running": 1,
          "heartbeat_age": timedelta(seconds=3)}])


class OpsGaugesUnitTests(SynchronousTestCase):
    """Refresh spacing, sharing and failure handling, on a Clock."""

    def values(self, gauges):
        return {(m.name, tuple(sorted(s.labels.items()))): s.value
                for m in gauges.collect() for s in m.samples}

    def test_collect_before_refresh(self):
        """Before any read: no queue rows, every builder state at 0."""
        values = self.values(G.OpsGauges(FakeTransactor(ROWS), Clock()))
        self.assertEqual(values[("lp_builders", (("state", "idle"),))], 0)
        self.assertFalse([k for k in values if k[0] == "lp_queue_waiting_builds"])

    def test_masters(self):
        """Per master: builders owned, builds running, heartbeat age."""
        gauges = G.OpsGauges(FakeTransactor(ROWS), Clock())
        self.successResultOf(gauges.refresh())
        values = self.values(gauges)
        label = (("master", "m1"),)
        self.assertEqual(
            (values[("lp_master_builders_owned", label)],
             values[("lp_master_builds_running", label)],
             values[("lp_master_heartbeat_age_seconds", label)]),
            (2, 1, 3.0))

    def test_refresh_is_spaced(self):
        """A refresh within the interval reuses the last read."""
        clock = Clock()
        transactor = FakeTransactor(ROWS)
        gauges = G.OpsGauges(transactor, clock, interval=10)
        self.successResultOf(gauges.refresh())
        clock.advance(5)
        self.successResultOf(gauges.refresh())
        self.assertEqual(transactor.calls, 1)
        clock.advance(6)
        self.successResultOf(gauges.refresh())
        self.assertEqual(transactor.calls, 2)
        values = self.values(gauges)
        key = (("processor", "amd64"), ("virtualized", "false"))
        self.assertEqual(values[("lp_queue_waiting_builds", key)], 3)
        self.assertEqual(values[("lp_queue_oldest_wait_seconds", key)], 90)
        self.assertEqual(values[("lp_queue_estimated_seconds_to_clear", key)],
                         float("inf"))
        self.assertEqual(values[("lp_builders", (("state", "idle"),))], 2)
        self.assertEqual(values[("lp_builders", (("state", "failed"),))], 0)

    def test_concurrent_refreshes_share_one_read(self):
        """Scrapes arriving during a read wait for it instead of starting
        another."""
        transactor = FakeTransactor("defer")
        gauges = G.OpsGauges(transactor, Clock())
        first, second = gauges.refresh(), gauges.refresh()
        self.assertNoResult(first)
        self.assertEqual(transactor.calls, 1)
        transactor.pending.callback(ROWS)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_failed_read_keeps_figures(self):
        """A failed read is logged and counted; the refresh still succeeds
        and the previous figures stay."""
        transactor = FakeTransactor(ROWS)
        clock = Clock()
        gauges = G.OpsGauges(transactor, clock, interval=1)
        self.successResultOf(gauges.refresh())
        transactor.result = RuntimeError("database away")
        clock.advance(2)
        self.successResultOf(gauges.refresh())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        values = self.values(gauges)
        self.assertEqual(values[("lp_ops_refresh_errors", ())], 1)
        self.assertEqual(values[("lp_builders", (("state", "building"),))], 1)


class MetricsResourceTests(SynchronousTestCase):
    """The /metrics resource at unit level (DummyRequest)."""

    def render(self, resource, accept=None):
        request = DummyRequest([b""])
        if accept:
            request.requestHeaders.setRawHeaders(b"accept", [accept])
        result = resource.render(request)
        if isinstance(result, bytes):
            request.write(result)
            request.finish()
        return request

    def test_text_format(self):
        """Without Accept: the Prometheus text format."""
        request = self.render(M.MetricsResource())
        body = b"".join(request.written)
        self.assertIn(b"# TYPE lp_retries_total counter", body)
        self.assertTrue(request.responseHeaders.getRawHeaders(
            b"content-type")[0].startswith(b"text/plain"))

    def test_openmetrics(self):
        """Accept: application/openmetrics-text gets OpenMetrics."""
        request = self.render(M.MetricsResource(),
                              "application/openmetrics-text; version=1.0.0")
        self.assertTrue(request.responseHeaders.getRawHeaders(
            b"content-type")[0].startswith(b"application/openmetrics-text"))
        self.assertTrue(b"".join(request.written).endswith(b"# EOF\n"))

    def test_refresh_runs_before_rendering(self):
        """With a refresh, the body is written once the refresh fires."""
        pending = Deferred()
        request = DummyRequest([b""])
        M.MetricsResource(refresh=lambda: pending).render(request)
        self.assertEqual(request.written, [])
        pending.callback(None)
        self.assertEqual(request.finished, 1)
        self.assertIn(b"lp_scan_duration_seconds", b"".join(request.written))


class MetricsSiteTests(DatabaseTestMixin, TestCase):
    """The runner's /metrics-only site and the ops gauges on a real
    database, over loopback."""

    @inlineCallbacks
    def get(self, port, path):
        response = yield Agent(reactor).request(
            b"GET", b"http://127.0.0.1:%d%s" % (port.getHost().port, path),
            Headers())
        body = yield readBody(response)
        return response.code, body.decode()

    @inlineCallbacks
    def test_runner_site_serves_metrics_alone(self):
        """make_metrics_site serves /metrics (recorded events included)
        and nothing else of the status site."""
        M.record_retry("metrics-site-test")
        port = reactor.listenTCP(0, M.make_metrics_site(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        code, body = yield self.get(port, b"/metrics")
        self.assertEqual(code, 200)
        self.assertIn('lp_retries_total{type="metrics-site-test"} 1.0', body)
        self.assertIn("process_cpu_seconds_total", body)
        code, _ = yield self.get(port, b"/builds/1")
        self.assertEqual(code, 404)

    @inlineCallbacks
    def test_ops_gauges_from_the_database(self):
        """The ops gauges match ops_queue and ops_builders on the seed."""
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(SEED)
        transactor = Transactor(self.database_url, reactor=reactor)
        transactor.start()
        self.addCleanup(transactor.stop)
        gauges = G.OpsGauges(transactor, reactor)
        port = reactor.listenTCP(0, M.make_metrics_site(
            [M.REGISTRY, gauges], refresh=gauges.refresh), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        code, body = yield self.get(port, b"/metrics")
        self.assertEqual(code, 200)
        for line in (
                'lp_queue_waiting_builds{processor="amd64",virtualized="false"} 2.0',
                'lp_queue_building_builds{processor="amd64",virtualized="false"} 1.0',
                'lp_queue_estimated_seconds_to_clear{processor="amd64",'
                'virtualized="false"} 900.0',
                'lp_queue_estimated_seconds_to_clear{processor="riscv64",'
                'virtualized="false"} +Inf',
                'lp_builders{state="building"} 1.0',
                'lp_builders{state="failed"} 1.0',
                'lp_builders{state="cleaning"} 0.0'):
            self.assertIn(line, body)
