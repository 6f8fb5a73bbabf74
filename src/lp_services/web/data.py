"""What the status pages read, as plain values, in one transaction each.

These functions run in the transactor's threads (``Transactor.run(fn,
...)``) and read through the same code as the CLI: ``reports.fetch_report``
over the ops views and ``work.describe_work`` for one job. The only query
of their own fetches the log tails of the builds running now, which no ops
view carries (a log is too big for a report row).
"""

import re
import threading
from dataclasses import dataclass
from datetime import datetime

from lp_services.database.sql import raw_cursor
from lp_services.ops import queries as OQ
from lp_services.ops.reports import WORK_CHOICES, fetch_report
from lp_services.ops.work import EVERYONE, describe_work, may_see

__all__ = [
    "BadFilter",
    "CHARTS_REFRESH",
    "ChartRows",
    "FARM_LOG_LINES",
    "Farm",
    "STORED_LOG_TAIL",
    "StoredLog",
    "WORK_CHOICES",
    "WORK_LIMIT",
    "load_farm",
    "load_job_page",
    "load_work",
    "load_work_list",
    "parse_work_filters",
    "read_tail",
]

#: Lines of each running build's log the farm page shows: enough to see
#: what it is doing, few enough that a farm of builders fits on a screen.
FARM_LOG_LINES = 5
#: Recent work shown by default, and the most a request may ask for.
WORK_LIMIT = 100
WORK_LIMIT_MAX = 1000
#: Latest work on the farm page.
FARM_RECENT = 10
#: Seconds the charts' rows are reused between farm pages. The charts
#: show hours and 30-day percentiles, which a minute does not change, while
#: reading them costs several times the rest of the page on a big farm
#: (bench/farm_charts.py) and every open farm page reloads every 30 s.
CHARTS_REFRESH = 60.0
#: How much of the end of a finished build's stored log its page shows:
#: where a build fails, without downloading the whole log.
STORED_LOG_TAIL = 64 * 1024

# job.job_type and build types share this shape (schema CHECKs).
_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class BadFilter(ValueError):
    """A filter of the work list that cannot be applied; str() says why."""


@dataclass(frozen=True)
class Farm:
    """What the farm page shows."""

    builders: list
    queue: list
    recent: list
    now: datetime
    #: ops_hourly rows (the last 24 hours, oldest first) and ops_durations
    #: rows, for the charts.
    hourly: list = ()
    durations: list = ()


def last_lines(text: str | None, count: int) -> str | None:
    """The last ``count`` non-empty-trailing lines of ``text``."""
    if not text:
        return None
    lines = text.rstrip("\n").split("\n")
    return "\n".join(lines[-count:])


class ChartRows:
    """The farm charts' rows (ops_hourly; ops_durations of builds), read at
    most once per ``interval`` seconds and shared by the pages in between.

    :param clock: an IReactorTime (only its ``seconds()``, which may be
        called from any thread).
    """

    def __init__(self, clock, interval: float = CHARTS_REFRESH):
        self._clock = clock
        self._interval = interval
        # Held while reading: farm pages loading at once share one read.
        self._lock = threading.Lock()
        self._rows = None
        self._read_at = None

    def rows(self, cursor) -> tuple[list, list]:
        """(hourly rows, build duration rows), fresh or from the last read."""
        with self._lock:
            now = self._clock.seconds()
            if self._rows is None or now - self._read_at >= self._interval:
                self._rows = read_chart_rows(cursor)
                self._read_at = now
            return self._rows


def read_chart_rows(cursor) -> tuple[list, list]:
    """The charts' rows, read now: (ops_hourly, ops_durations of builds)."""
    _, hourly = fetch_report(cursor, "hourly")
    _, durations = fetch_report(cursor, "durations", kind="build")
    return hourly, durations


def load_farm(store, log_lines: int = FARM_LOG_LINES,
              charts: ChartRows | None = None, viewer=EVERYONE) -> Farm:
    """Builders (ops_builders) with their current build's log tail, the
    queue (ops_queue), the latest work (ops_work), and the charts' rows
    (from ``charts``, else read now). Private work ``viewer`` may not see
    (``lp_services.ops.work.may_see``) is left out: a builder running it
    shows "private build" with no id, type or log."""
    cursor = raw_cursor(store)
    _, builders = fetch_report(cursor, "builders")
    _, queue = fetch_report(cursor, "queue")
    _, recent = fetch_report(cursor, "work", limit=FARM_RECENT,
                             viewer=viewer)
    hourly, durations = (charts.rows(cursor) if charts is not None
                         else read_chart_rows(cursor))
    current = [b["current_build"] for b in builders
               if b["current_build"] is not None]
    running = {}
    if current:
        cursor.execute(OQ.RUNNING_LOGTAILS, {"jobs": current})
        running = {row[0]: row[1:] for row in cursor.fetchall()}
    for b in builders:
        build_type, tail, private, requester = running.get(
            b["current_build"], (None, None, False, None))
        b["build_type"] = build_type
        b["logtail"] = last_lines(tail, log_lines)
        b["private_build"] = False
        if not may_see(viewer, private, requester):
            b.update(current_build=None, build_type=None, logtail=None,
                     private_build=True)
    cursor.execute(OQ.DATABASE_NOW)
    return Farm(builders=builders, queue=queue, recent=recent,
                now=cursor.fetchone()[0], hourly=hourly, durations=durations)


def load_work(store, job_id: int, file_url=None, viewer=EVERYONE):
    """``describe_work`` of one job (raises ``UnknownWork``, also for
    private work ``viewer`` may not see)."""
    return describe_work(raw_cursor(store), job_id, file_url=file_url,
                         viewer=viewer)


@dataclass(frozen=True)
class StoredLog:
    """The end of a finished build's stored log."""

    text: str
    truncated: bool


def read_tail(path, limit: int = STORED_LOG_TAIL) -> StoredLog | None:
    """The last ``limit`` bytes of the file at ``path`` as text (from a
    line start when cut), or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        return None
    truncated = size > limit
    if truncated and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    return StoredLog(data.decode("utf-8", "replace"), truncated)


def load_job_page(store, job_id: int, file_url=None, file_store=None,
                  viewer=EVERYONE):
    """A job page's data: (``describe_work``, the end of the stored log of
    a finished build when ``file_store`` is given, else None)."""
    details = load_work(store, job_id, file_url, viewer)
    stored = None
    build = details.build
    if (file_store is not None and build is not None
            and build.log is not None and not build.logtail):
        stored = read_tail(file_store.path_for(build.log.sha1))
    return details, stored


def load_work_list(store, filters: dict, limit: int,
                   viewer=EVERYONE) -> list:
    """The recent-work list (ops_work), newest first (private work only
    if ``viewer`` may see it)."""
    _, rows = fetch_report(raw_cursor(store), "work", limit=limit,
                           viewer=viewer, **filters)
    return rows


def _text(args: dict, name: str) -> str | None:
    values = args.get(name.encode()) or []
    if len(values) > 1:
        raise BadFilter("give %s at most once" % name)
    if not values:
        return None
    try:
        value = values[0].decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadFilter("%s is not UTF-8" % name) from None
    return value or None


def parse_work_filters(args: dict) -> tuple[dict, int]:
    """Validate the work list's query arguments (``request.args``).

    :return: (filters for ``fetch_report``, limit).
    :raises BadFilter: an unknown argument or a value that cannot match,
        with a message naming it and what is allowed.
    """
    known = set(WORK_CHOICES) | {"type", "limit"}
    for raw in args:
        name = raw.decode("utf-8", "replace")
        if name not in known:
            raise BadFilter("unknown filter %r; filters are %s"
                            % (name, ", ".join(sorted(known))))
    filters = {}
    for name, allowed in WORK_CHOICES.items():
        value = _text(args, name)
        if value is None:
            continue
        normal = value.upper() if name == "status" else value
        if normal not in allowed:
            raise BadFilter("%s must be one of %s, not %r"
                            % (name, ", ".join(allowed), value))
        filters[name] = normal
    job_type = _text(args, "type")
    if job_type is not None:
        if not _TYPE.match(job_type):
            raise BadFilter("type must be a job or build type name (lower-case "
                            "letters, digits, '.', '_', '-'), not %r" % job_type)
        filters["type"] = job_type
    limit = WORK_LIMIT
    raw_limit = _text(args, "limit")
    if raw_limit is not None:
        if (not re.fullmatch(r"[0-9]{1,4}", raw_limit)
                or not 1 <= int(raw_limit) <= WORK_LIMIT_MAX):
            raise BadFilter("limit must be a whole number from 1 to %d, not %r"
                            % (WORK_LIMIT_MAX, raw_limit))
        limit = int(raw_limit)
    return filters, limit
