"""lp-services: one job table for a software build farm.

Package builds dispatched by a Twisted buildmaster to builder agents, and
native jobs run by job runners, share one PostgreSQL ``job`` table.
"""

__all__ = []
