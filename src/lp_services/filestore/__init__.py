"""The content-addressed file store (``library_file``)."""

__all__ = []
