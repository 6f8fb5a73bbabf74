"""The buildmaster: builders, build queue, scoring, dispatch, scanning and
result collection."""

__all__ = []
