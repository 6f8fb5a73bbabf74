"""Slow tier: the status site fuzzed at volume."""

from lp_services.testing.tiers import slow
from tests.web.test_fuzz import SiteFuzzTestCase


@slow
class SlowSiteFuzzTests(SiteFuzzTestCase):
    """The volume run."""

    def test_five_thousand_fuzzed_requests(self):
        """5,000 fuzzed requests: no 5xx, bounded answers, security
        headers, no open files."""
        return self.fuzz(5000)

    test_five_thousand_fuzzed_requests.timeout = 1800
