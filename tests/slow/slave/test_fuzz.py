"""Slow tier: the agent's RPC fuzzed at volume."""

from lp_services.testing.tiers import slow
from tests.slave.test_fuzz import FuzzTestCase


@slow
class SlowFuzzTests(FuzzTestCase):
    """The volume run."""

    def test_ten_thousand_fuzzed_calls(self):
        """10,000 fuzzed calls in random states: answers, no state leaks."""
        return self.fuzz(10_000)

    test_ten_thousand_fuzzed_calls.timeout = 1800
