"""Test support: a PostgreSQL per test run, databases per test class, clocks.

Shipped with the package so that benchmarks and other projects' tests can
use it; nothing here runs unless a test asks for it.
"""

__all__ = []
