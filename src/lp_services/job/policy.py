"""Retry-delay policies: plain functions of the attempt number.

A policy takes the number of the attempt that just failed (1 for the first
run) and returns the seconds to wait before the job may be claimed again.
"""

import random
from collections.abc import Callable

__all__ = ["constant", "exponential_backoff"]


def exponential_backoff(base: float = 5.0, factor: float = 2.0,
                        cap: float = 3600.0, jitter: float = 0.2,
                        rand: Callable[[], float] = random.random
                        ) -> Callable[[int], float]:
    """``base * factor ** (attempt - 1)``, at most ``cap``, then spread by
    up to ``jitter`` (a fraction) either way so that jobs failing together
    do not all come back together.

    :param rand: a source of uniform numbers in [0, 1) (tests pin it).
    """
    if base < 0 or factor < 1 or cap < 0 or not 0 <= jitter < 1:
        raise ValueError("nonsensical back-off parameters")

    def delay(attempt: int) -> float:
        raw = min(base * factor ** max(attempt - 1, 0), cap)
        return raw * (1 + jitter * (2 * rand() - 1))

    return delay


def constant(seconds: float) -> Callable[[int], float]:
    """The same delay after every attempt."""

    def delay(attempt: int) -> float:
        return seconds

    return delay
