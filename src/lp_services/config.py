"""Where things live: the state directory and the database URL.

Every process resolves these the same way, so that the CLI, the daemons and
the tests agree without passing paths around:

- The state directory holds the embedded PostgreSQL data, the file store
  and daemon logs. It never depends on the working directory, so commands
  run from any folder see one farm: ``--home DIR`` or ``LP_HOME`` if set,
  else systemd's ``$STATE_DIRECTORY`` (``StateDirectory=lp-services`` gives
  ``/var/lib/lp-services`` to a system service), else
  ``$XDG_STATE_HOME/lp-services`` when that is set, else
  ``/var/lib/lp-services`` for root and ``~/.local/state/lp-services`` for
  anyone else. A relative ``LP_HOME`` is resolved once, against the
  directory the command started in.
- ``LP_DATABASE_URL`` (or an explicit ``--database URL``) names a real
  PostgreSQL server. Without it the embedded server under ``LP_HOME`` is
  used, and started if it is not running.
"""

import os
from pathlib import Path

__all__ = [
    "BadDatabaseURL",
    "ConfigError",
    "DATABASE_URL_ENV",
    "HOME_ENV",
    "check_database_url",
    "default_home",
    "lp_home",
    "read_daemon_config",
    "redact_url",
]

HOME_ENV = "LP_HOME"
DATABASE_URL_ENV = "LP_DATABASE_URL"


#: Set by systemd for a unit with ``StateDirectory=`` (a system service).
SYSTEMD_STATE_ENV = "STATE_DIRECTORY"
#: The system-wide state directory (FHS): root's default.
SYSTEM_HOME = Path("/var/lib/lp-services")


def default_home() -> Path:
    """The state directory when neither ``--home`` nor ``LP_HOME`` is set.

    A systemd service with ``StateDirectory=lp-services`` gets
    ``/var/lib/lp-services`` (systemd exports it as ``$STATE_DIRECTORY``,
    a colon-separated list when a unit names several: the first is ours);
    anyone else gets the XDG state directory of their user, but root
    without ``XDG_STATE_HOME`` gets ``/var/lib/lp-services``: as root the
    embedded server runs as another user, and the directories above its
    data must let that user through (pgserver opens them up), which
    ``/root`` must never be.
    """
    systemd = os.environ.get(SYSTEMD_STATE_ENV)
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    # The XDG spec: a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lp-services"
    if os.geteuid() == 0:
        return SYSTEM_HOME
    return Path.home() / ".local" / "state" / "lp-services"


def lp_home(explicit: str | os.PathLike | None = None) -> Path:
    """Return the absolute state directory, creating it if needed."""
    home = Path(explicit or os.environ.get(HOME_ENV) or default_home())
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


class BadDatabaseURL(ValueError):
    """A database URL that is not a PostgreSQL URL; the message is one line."""


def check_database_url(url: str) -> str:
    """Return ``url`` if it is a PostgreSQL URL, else raise
    :class:`BadDatabaseURL` naming what was given (password hidden).

    Only ``postgresql://`` and ``postgres://`` URLs are taken: libpq would
    read anything else as a ``key=value`` string and fail with a message
    about a missing ``=``, which says nothing useful.
    """
    from urllib.parse import urlsplit

    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = None
    if scheme not in ("postgresql", "postgres"):
        raise BadDatabaseURL(
            "not a PostgreSQL database URL: %r (expected "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE)" % redact_url(url))
    return url


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


class ConfigError(ValueError):
    """A daemon's configuration file is unreadable or wrong; one line."""


def read_daemon_config(path, table: str, options, lists=()) -> dict:
    """Read a daemon's TOML configuration file.

    The settings are the ``[table]`` table's keys (or the top-level keys
    when there is no such table), named like the daemon's options with
    ``_`` for ``-``: ``files_url = "..."`` is ``--files-url``. The
    buildmaster and the job runner read theirs with this; the agent's
    format is the same.

    :param options: the option names a file may set.
    :param lists: option names whose values are lists of strings; every
        other value must be a string or a number.
    :return: {option name: value}.
    :raises ConfigError: unreadable, not TOML, unknown keys, wrong types.
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as error:
        raise ConfigError("cannot read config file %s: %s"
                          % (path, error.strerror)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config file %s is not valid TOML: %s"
                          % (path, error)) from None
    settings = data.get(table, data)
    if not isinstance(settings, dict):
        raise ConfigError("[%s] in %s must be a table" % (table, path))
    found = {}
    for key, value in settings.items():
        option = key.replace("_", "-")
        if option in lists:
            if not (isinstance(value, list)
                    and all(isinstance(v, str) for v in value)):
                raise ConfigError("setting %r in %s must be a list of "
                                  "names" % (key, path))
        elif option not in options:
            raise ConfigError("unknown setting %r in %s" % (key, path))
        elif isinstance(value, bool) or not isinstance(value,
                                                        (str, int, float)):
            raise ConfigError("setting %r in %s must be a string or a "
                              "number" % (key, path))
        found[option] = value
    return found
