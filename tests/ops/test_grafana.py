"""docs/grafana-dashboard.json against what lp_services.metrics exports:
a dashboard that names a metric the code does not export would load in
Grafana and silently draw nothing."""

import json
import re
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lp_services import metrics as M
from lp_services.ops import gauges as G

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

# The sample names each metric family type exposes (Prometheus text format
# as prometheus-client writes it).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "unknown": ("",),
}
# Our metric names all start so; label names and PromQL words never do.
_OUR_METRIC = re.compile(r"\blp_[a-z0-9_]+\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")


def exported() -> tuple[set, set]:
    """(sample names, label names) this code can export: the process
    registry's families and the ops gauges'."""
    names, labels = set(), {"le", "quantile"}
    gauges = list(G.OpsGauges(transactor=None, clock=Clock()).collect())
    for family in list(M.REGISTRY.collect()) + gauges:
        for suffix in _SUFFIXES[family.type]:
            names.add(family.name + suffix)
    # Label names as declared (an event metric has no samples, so no
    # labels on the wire, until its first event).
    for declared in [M.DISPATCH_LATENCY, M.SCAN_DURATION, M.BUILD_RESULTS,
                     M.JOB_OUTCOMES, M.JOB_DURATION, M.LEASE_EXPIRIES,
                     M.RETRIES] + gauges:
        labels.update(declared._labelnames)
    return names, labels


def check_expression(expr: str, names: set, labels: set) -> list[str]:
    """What in one PromQL expression the code does not export."""
    problems = ["unknown metric %s" % name
                for name in _OUR_METRIC.findall(expr) if name not in names]
    for group in _GROUPING.findall(expr):
        for label in filter(None, (s.strip() for s in group.split(","))):
            if label not in labels:
                problems.append("unknown label %s" % label)
    for matchers in _MATCHERS.findall(expr):
        for matcher in filter(None, (s.strip() for s in matchers.split(","))):
            label = re.split(r"=~|!~|!=|=", matcher, maxsplit=1)[0].strip()
            if label not in labels:
                problems.append("unknown label %s" % label)
    return problems


class DashboardTests(SynchronousTestCase):
    """The dashboard loads and draws only what /metrics serves."""

    def setUp(self):
        self.dashboard = json.loads(DASHBOARD.read_text())
        self.names, self.labels = exported()

    def targets(self):
        return [(panel["title"], target)
                for panel in self.dashboard["panels"]
                for target in panel["targets"]]

    def test_loads(self):
        """The fields Grafana needs to import it: a title, a uid, panels
        with a type, a position and targets, and the datasource variable
        every panel and target names."""
        d = self.dashboard
        self.assertTrue(d["title"] and d["uid"])
        self.assertIsInstance(d["schemaVersion"], int)
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        source = {"type": "prometheus", "uid": "${datasource}"}
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in d["panels"]:
            self.assertEqual(panel["datasource"], source, panel["title"])
            self.assertEqual(set(panel["gridPos"]), {"x", "y", "w", "h"})
            self.assertTrue(panel["targets"], panel["title"])
            ref_ids = [t["refId"] for t in panel["targets"]]
            self.assertEqual(len(ref_ids), len(set(ref_ids)), panel["title"])
        for title, target in self.targets():
            self.assertEqual(target["datasource"], source, title)

    def test_only_exported_metrics_and_labels(self):
        """Every lp_* metric and every label an expression names is one
        this code exports; each of the farm's main metrics is drawn."""
        used = set()
        for title, target in self.targets():
            expr = target["expr"]
            self.assertEqual(
                check_expression(expr, self.names, self.labels), [],
                "%s: %s" % (title, expr))
            used.update(_OUR_METRIC.findall(expr))
        for name in ("lp_queue_waiting_builds", "lp_build_results_total",
                     "lp_builders", "lp_dispatch_latency_seconds_bucket",
                     "lp_job_duration_seconds_bucket"):
            self.assertIn(name, used)

    def test_the_check_catches_mistakes(self):
        """A misspelt metric, a counter without _total and an unknown
        label are each reported (the check can fail)."""
        self.assertEqual(
            check_expression("sum by (status) (rate(lp_build_results[5m]))",
                             self.names, self.labels),
            ["unknown metric lp_build_results"])
        self.assertEqual(
            check_expression('lp_queue_waiting_build{arch="amd64"}',
                             self.names, self.labels),
            ["unknown metric lp_queue_waiting_build", "unknown label arch"])
        self.assertEqual(
            check_expression("sum by (host) (lp_builders)", self.names,
                             self.labels),
            ["unknown label host"])
