"""Where the database is and how code reaches it: the embedded server,
schema upgrades, Storm stores and the transactor."""

__all__ = []
