"""Where things live: the state directory and the database URL.

Every process resolves these the same way, so that the CLI, the daemons and
the tests agree without passing paths around:

- ``LP_HOME`` (default ``./var``) is the state directory: the embedded
  PostgreSQL data, the file store and daemon logs live under it.
- ``LP_DATABASE_URL`` (or an explicit ``--database URL``) names a real
  PostgreSQL server. Without it the embedded server under ``LP_HOME`` is
  used, and started if it is not running.
"""

import os
from pathlib import Path

__all__ = [
    "DATABASE_URL_ENV",
    "HOME_ENV",
    "lp_home",
    "redact_url",
]

HOME_ENV = "LP_HOME"
DATABASE_URL_ENV = "LP_DATABASE_URL"


def lp_home(explicit: str | os.PathLike | None = None) -> Path:
    """Return the absolute state directory, creating it if needed."""
    home = Path(explicit or os.environ.get(HOME_ENV) or "var").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
