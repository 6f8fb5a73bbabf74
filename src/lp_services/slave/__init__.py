"""The builder agent: the buildd XML-RPC protocol, file cache, build
managers and sandbox backends."""

__all__ = []
