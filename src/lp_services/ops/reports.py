"""Reading the ops_* views (schema/views.sql) as plain rows.

The CLI's ``report`` command and the status pages read through here, so
every presentation shows the same figures with the same ordering.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from lp_services.job.status import JobStatus
from lp_services.ops.queries import REPORT_FILTERS, REPORTS, report_statement
from lp_services.ops.work import EVERYONE

__all__ = ["EVERYONE", "REPORTS", "WORK_CHOICES", "attempts_text",
           "fetch_report", "humanize", "jsonable"]

# Filters the work report accepts (the CLI's options).
WORK_FILTERS = REPORT_FILTERS["work"]

#: The values the work report's enumerated filters can match (from the
#: ops_work view): the status pages' selects and the API's checks.
WORK_CHOICES = {
    "kind": ("build", "native"),
    "status": tuple(s.name for s in JobStatus),
    "outcome": ("succeeded", "failed", "cancelled"),
}


def fetch_report(cursor, name: str, limit: int | None = None,
                 viewer=EVERYONE, before: int | None = None,
                 **filters) -> tuple[list[str], list[dict]]:
    """Return (columns, rows) of one report.

    :param viewer: who reads the work report: :data:`EVERYONE` (operators
        and the administrator's command line) sees private work; a token's
        name sees its own private work besides public work; None
        (anonymous) sees public work only.
    :param before: the work report: only ids below it (paging).
    :param filters: equality filters on the work report (kind, type,
        status, outcome) or the durations report (kind); None values are
        ignored.
    :raises KeyError: an unknown report name.
    """
    filters = {k: v for k, v in filters.items() if v is not None}
    hide = viewer is not EVERYONE
    params = dict(filters, viewer=None if not hide else viewer,
                  before=before)
    cursor.execute(report_statement(name, sorted(filters), limit,
                                    hide_private=hide,
                                    before=before is not None), params)
    columns = [d[0] for d in cursor.description]
    return columns, [dict(zip(columns, row)) for row in cursor.fetchall()]


def humanize(value) -> str:
    """A cell for people: short durations, minute-precision times."""
    if value is None:
        return "-"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds < 0:
            return "-" + humanize(-value)
        if seconds < 60:
            return "%.1fs" % seconds if seconds < 10 else "%ds" % seconds
        minutes, secs = divmod(int(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        days, hours = divmod(hours, 24)
        if days:
            return "%dd %02dh" % (days, hours)
        if hours:
            return "%dh %02dm" % (hours, minutes)
        return "%dm %02ds" % (minutes, secs)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return "%.1f%%" % (value * 100)
    return str(value)


def attempts_text(attempts: int, max_retries: int) -> str:
    """A job's attempts as every presentation says them: "1 of at most 6"
    (``max_retries`` retries after the first attempt)."""
    return "%d of at most %d" % (attempts, max_retries + 1)


def jsonable(value):
    """A JSON value: durations as seconds, times as ISO 8601."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value
