"""The buildmaster records its metrics where the events happen."""


from lp_services import metrics as M
from tests.buildmaster.test_manager import ScannerTestBase


def sample(name, labels=None):
    return M.REGISTRY.get_sample_value(name, labels or {}) or 0.0


class BuildmasterMetricsTests(ScannerTestBase):
    """Dispatch latency, scan durations and build results are counted."""

    def test_dispatch_scan_and_result(self):
        """A dispatched and collected build moves the three metrics once."""
        latency = sample("lp_dispatch_latency_seconds_count")
        scans = sample("lp_scan_duration_seconds_count")
        built = sample("lp_build_results_total", {"status": "FULLYBUILT"})
        agent, scanner, job = self.dispatched()
        self.assertEqual(sample("lp_dispatch_latency_seconds_count"),
                         latency + 1)
        agent.model.finish("OK", files={"out.bin": b"out"})
        self.scan(scanner)
        self.assertEqual(sample("lp_build_results_total",
                                {"status": "FULLYBUILT"}), built + 1)
        self.assertGreater(sample("lp_scan_duration_seconds_count"), scans)

    def test_database_outage_blames_no_builder(self):
        """A scan failing because the database is gone counts no failure."""
        from storm.exceptions import DisconnectionError

        agent, scanner, job = self.dispatched()
        before = self.builder_row()["failure_count"]

        async def gone():
            raise DisconnectionError("server closed the connection")

        self.patch(scanner, "_scan", gone)
        self.scan(scanner)
        self.assertEqual(scanner.scan_failures, 0)
        self.assertEqual(self.builder_row()["failure_count"], before)
