"""Builder rows in SQL: adding and changing builders, their vitals (what a
scan needs to know, as plain records), clean status and failure counts."""

from dataclasses import dataclass
from datetime import datetime

from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.buildmaster import queries as BQ
from lp_services.buildmaster.queue import NOTIFY_CHANNEL, cursor_of
from lp_services.job.status import JobStatus

__all__ = [
    "BuildVitals",
    "BuilderError",
    "BuilderVitals",
    "add_builder",
    "builder_failed",
    "count_failure",
    "find_chroot",
    "forget_info",
    "list_builders",
    "load_vitals",
    "pending_work",
    "record_info",
    "record_version",
    "register_chroot",
    "repoint_builder",
    "reset_failure_count",
    "set_builder_mode",
    "set_clean_status",
]


class BuilderError(ValueError):
    """A builder request that cannot be done; the message is one line."""


@dataclass(frozen=True)
class BuildVitals:
    """The build a builder holds, as the database has it."""

    job_id: int
    cookie: str
    build_type: str
    status: BuildStatus
    job_status: JobStatus
    failure_count: int
    #: When a CANCELLING build is forced CANCELLED (None until the master
    #: first asked the builder to abort it).
    cancel_deadline: datetime | None = None


@dataclass(frozen=True)
class BuilderVitals:
    """A builder as the database has it, plus its current build if any."""

    id: int
    name: str
    url: str
    processors: tuple[int, ...]
    processor_names: tuple[str, ...]
    virtualized: bool
    manual: bool
    builderok: bool
    failure_count: int
    clean_status: BuilderCleanStatus
    reset_command: str | None
    secret: str | None
    resources: tuple[str, ...]
    failnotes: str | None
    build: BuildVitals | None
    #: The agent version last recorded (``status()``'s builder_version).
    version: str | None = None
    #: The build types its agent offers (``info()``), None until read.
    build_types: tuple[str, ...] | None = None
    #: When ``info()`` was last read (None: never, or since the version
    #: changed).
    date_info_read: datetime | None = None
    #: The lease epoch of its current owner (sent with every agent call).
    lease_epoch: int = 0
    #: The master holding its lease (None: nobody).
    owner: str | None = None


def _vitals(row) -> BuilderVitals:
    (bid, name, url, virt, manual, ok, failures, clean, reset, secret,
     resources, failnotes, procs, proc_names, job, cookie, build_type,
     bstatus, jstatus, bfailures, version, cancel_deadline, build_types,
     date_info_read, lease_epoch, owner) = row
    build = None
    if job is not None:
        build = BuildVitals(job, cookie, build_type, BuildStatus(bstatus),
                            JobStatus(jstatus), bfailures, cancel_deadline)
    return BuilderVitals(bid, name, url, tuple(procs), tuple(proc_names),
                         virt, manual, ok, failures,
                         BuilderCleanStatus(clean), reset, secret,
                         tuple(resources or ()), failnotes, build, version,
                         None if build_types is None else tuple(build_types),
                         date_info_read, lease_epoch, owner)


def load_vitals(store_or_cursor, name: str | None = None) -> list[BuilderVitals]:
    """Vitals of every active builder (or of the one named), one statement."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.VITALS, {"name": name})
    return [_vitals(row) for row in cursor.fetchall()]


def pending_work(store_or_cursor) -> frozenset[tuple[int, bool]]:
    """The (processor, virtualized) pairs some active builder serves that
    have builds not on a builder: one index probe per pair."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.PENDING_WORK)
    return frozenset((p, v) for p, v in cursor.fetchall())


def set_clean_status(store_or_cursor, builder_id: int,
                     status: BuilderCleanStatus, now: datetime,
                     expected: BuilderCleanStatus | None = None) -> bool:
    """Set a builder's clean status (only from ``expected`` when given)."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.SET_CLEAN_STATUS, {
        "status": int(status), "now": now, "id": builder_id,
        "expected": None if expected is None else int(expected)})
    return cursor.fetchone() is not None


def count_failure(store_or_cursor, builder_id: int,
                  job_id: int | None) -> tuple[int, int]:
    """Count one failure against the builder and its build (if any);
    return the new (builder failure count, build failure count)."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.COUNT_FAILURE, {"builder": builder_id, "job": job_id})
    return tuple(cursor.fetchone())


def record_version(store_or_cursor, builder_id: int, version: str) -> None:
    """Remember the agent version a builder reported."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.RECORD_VERSION, {"v": version[:200], "id": builder_id})


def forget_info(store_or_cursor, builder_id: int) -> None:
    """Have the scanner read the builder's ``info()`` again."""
    cursor_of(store_or_cursor).execute(BQ.FORGET_INFO, {"id": builder_id})


def record_info(store_or_cursor, builder_id: int, arch_tag: str,
                build_types, now: datetime) -> None:
    """Remember what a builder's agent offers (its ``info()`` answer)."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.RECORD_INFO, {"id": builder_id, "arch": arch_tag,
                                    "types": sorted(build_types),
                                    "now": now})


def reset_failure_count(store_or_cursor, builder_id: int) -> None:
    """A builder did its job: forget its past failures."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.RESET_FAILURE_COUNT, {"id": builder_id})


def builder_failed(store_or_cursor, builder_id: int, notes: str) -> None:
    """Disable a builder that failed too often (``builderok`` false)."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.BUILDER_FAILED, {"n": notes, "id": builder_id})


def add_builder(store_or_cursor, *, name: str, url: str,
                processors: list[str], virtualized: bool = False,
                reset_command: str | None = None, secret: str | None = None,
                resources: list[str] = (), manual: bool = False) -> int:
    """Add a builder (creating its processors if new); return its id."""
    from urllib.parse import urlsplit

    cursor = cursor_of(store_or_cursor)
    import re

    if not re.match(r"^[a-z0-9][a-z0-9_.-]{0,63}$", name or ""):
        raise BuilderError("invalid builder name %r (lower-case letters, "
                           "digits, '.', '_' and '-')" % name)
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BuilderError(
            "invalid agent URL %r (want http://HOST:PORT)" % url)
    if not processors:
        raise BuilderError("a builder needs at least one --processor")
    for proc in processors:
        if not re.match(r"^[a-z0-9][a-z0-9_.-]{0,31}$", proc):
            raise BuilderError("invalid processor name %r" % proc)
    if virtualized and not reset_command:
        raise BuilderError("a virtualized builder needs --reset-command")
    cursor.execute(BQ.BUILDER_EXISTS, {"n": name})
    if cursor.fetchone():
        raise BuilderError("a builder named %r already exists" % name)
    cursor.execute(BQ.ADD_BUILDER, {
        "procs": list(processors), "name": name, "url": url,
        "virt": virtualized, "manual": manual, "reset": reset_command,
        "secret": secret, "resources": list(resources)})
    builder_id = cursor.fetchone()[0]
    cursor.execute(BQ.LINK_PROCESSORS, {
        "id": builder_id, "procs": list(processors),
        "channel": NOTIFY_CHANNEL})
    return builder_id


def set_builder_mode(store_or_cursor, name: str, mode: str,
                     reason: str | None = None) -> None:
    """``enable`` (ok, automatic, failures forgotten), ``disable`` (not ok,
    with fail notes) or ``manual`` (never dispatched to automatically)."""
    cursor = cursor_of(store_or_cursor)
    if mode not in BQ.SET_BUILDER_MODE:
        raise BuilderError("unknown builder mode %r" % (mode,))
    cursor.execute(BQ.SET_BUILDER_MODE[mode],
                   {"name": name, "reason": reason or "disabled by an operator"
                    if mode == "disable" else reason})
    if cursor.fetchone() is None:
        raise BuilderError("unknown builder %r" % name)
    cursor.execute(BQ.NOTIFY_BUILDERS, {"channel": NOTIFY_CHANNEL})


def list_builders(store_or_cursor, now: datetime | None = None) -> list[dict]:
    """Every builder with its state, current build and the master holding
    its lease (at ``now``, default the present), as plain values."""
    from datetime import timezone

    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.LIST_BUILDERS,
                   {"now": now or datetime.now(timezone.utc)})
    result = []
    for (name, url, virt, manual, active, ok, notes, failures, clean,
         resources, version, by_operator, procs, job,
         status, master) in cursor.fetchall():
        result.append({
            "name": name, "url": url, "virtualized": virt, "manual": manual,
            "active": active, "builderok": ok, "failnotes": notes,
            "disabled_by_operator": by_operator,
            "failure_count": failures,
            "clean_status": BuilderCleanStatus(clean).name,
            "resources": list(resources or ()), "version": version,
            "processors": list(procs), "current_build": job,
            "current_build_status": (BuildStatus(status).name
                                     if status is not None else None),
            "master": master,
        })
    return result


def repoint_builder(store_or_cursor, name: str, url: str,
                    secret: str | None) -> None:
    """Builder ``name``'s agent now answers at ``url`` with ``secret``
    (the local demo's restarted agent): trusted again, failures forgotten,
    automatic (a missing builder changes nothing)."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.REPOINT_BUILDER, {"name": name, "url": url,
                                        "secret": secret,
                                        "channel": NOTIFY_CHANNEL})


def find_chroot(store_or_cursor, processor: str,
                series: str) -> tuple[int | None, int | None]:
    """(processor id, chroot id) for ``processor``/``series``; either is
    None when missing."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.PROCESSOR_AND_CHROOT,
                   {"processor": processor, "series": series})
    return tuple(cursor.fetchone())


def register_chroot(store_or_cursor, processor: str, series: str,
                    library_file: int) -> None:
    """Library file ``library_file`` becomes the chroot of
    ``processor``/``series``, replacing the previous one.
    :raises BuilderError: an unknown processor."""
    processor_id, _ = find_chroot(store_or_cursor, processor, series)
    if processor_id is None:
        raise BuilderError("unknown processor %r (add a builder for it "
                           "first)" % processor)
    cursor_of(store_or_cursor).execute(BQ.REGISTER_CHROOT, {
        "processor": processor_id, "series": series, "file": library_file})
