"""Clocks for tests."""

from datetime import datetime, timezone

from twisted.internet.task import Clock

__all__ = ["EPOCH", "clock_at"]

#: A fixed, readable starting time for tests.
EPOCH = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def clock_at(when: datetime = EPOCH) -> Clock:
    """A ``task.Clock`` whose ``seconds()`` reads as ``when``."""
    clock = Clock()
    clock.advance(when.timestamp())
    return clock
