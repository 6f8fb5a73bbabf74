"""Test tiers: fast and slow.

The tiers are directories: ``tests/slow/`` holds the slow tier (VMs, real
package builds, chaos, browsers, fuzzing at volume), everything else under
``tests/`` is the fast tier. ``./run tests`` runs both, ``--fast`` all but
``tests/slow``, ``--slow`` only it. Every slow test is also marked with
:func:`slow`, so one named explicitly under ``LP_TEST_TIER=fast`` skips
with a reason instead of running for half an hour.
"""

import os

__all__ = ["slow", "slow_tier_enabled"]


def slow_tier_enabled() -> bool:
    """Whether this run includes the slow tier."""
    return os.environ.get("LP_TEST_TIER", "all") != "fast"


def slow(test_or_class):
    """Mark a test method or class as slow-tier."""
    if not slow_tier_enabled():
        test_or_class.skip = "slow tier (LP_TEST_TIER=fast)"
    return test_or_class
