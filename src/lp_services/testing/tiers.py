"""Test tiers: fast (default) and slow.

``./run tests`` runs every tier; ``./run tests --fast`` sets
``LP_TEST_TIER=fast`` and the slow tier (VMs, real package builds, chaos,
browser, fuzzing at volume) is skipped with a reason.
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
