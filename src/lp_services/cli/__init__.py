"""The ``lp-services`` command line."""

__all__ = []
