"""Time from an injected clock.

Code that must be testable takes an ``IReactorTime`` (the reactor in
production, a ``task.Clock`` in tests) and reads the time through
:func:`utcnow`, never ``datetime.now()``: one time source.
"""

from datetime import datetime, timezone

__all__ = ["utcnow", "to_seconds"]


def utcnow(clock) -> datetime:
    """The clock's current time as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.seconds(), timezone.utc)


def to_seconds(when: datetime) -> float:
    """An aware datetime as clock seconds (the inverse of :func:`utcnow`)."""
    return when.timestamp()
