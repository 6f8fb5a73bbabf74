"""Who changed what: every change made through the API or the command line
(request, cancel, retry, rescore, a builder's mode) is one ``change_log``
row naming its actor, so ``show`` and the pages can say who did it."""

from datetime import datetime

from lp_services.job import queries as Q

__all__ = ["local_actor", "record_change"]


def local_actor() -> str:
    """The actor of a change made from this machine's command line, in the
    database's direct mode: ``local:<user>`` (no token name holds ':')."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return "local:%s" % user


def record_change(cursor, actor: str, action: str, now: datetime, *,
                  job: int | None = None, builder: str | None = None,
                  detail: str | None = None) -> None:
    """Record, in the caller's transaction, that ``actor`` did ``action``
    to ``job`` (an id) or to ``builder`` (a name) at ``now``."""
    if (job is None) == (builder is None):
        raise ValueError("a change is to one job or one builder")
    cursor.execute(Q.RECORD_CHANGE, {
        "now": now, "actor": actor, "action": action, "job": job,
        "builder_name": builder, "detail": detail})
