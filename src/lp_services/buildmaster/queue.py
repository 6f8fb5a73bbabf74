"""The build queue in SQL: requesting, claiming, resetting and finishing
builds, and rescoring and cancelling them.

Every function takes a psycopg2 cursor inside the caller's transaction (or
a Storm Store, whose connection is used through
:func:`lp_services.database.sql.raw_cursor`), so that other code can queue a
build inside its own transaction and the buildmaster can do several things
in one. Nothing here commits. The SQL is named in :mod:`.queries`.

Job status changes are guarded statements (``WHERE status = <legal
source>`` or :func:`lp_services.job.transition.transition_job`); build
queue changes are guarded by the build cookie, so a scanner that acts on
stale knowledge changes nothing instead of the wrong thing.
"""

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lp_services.buildmaster import queries as BQ
from lp_services.buildmaster.enums import BuildStatus
from lp_services.buildmaster.scoring import (
    ScoreInputs,
    base_score,
    effective_score,
    sort_key,
    sort_key_for_score,
)
from lp_services.job.status import JobStatus
from lp_services.job.transition import transition_job

__all__ = [
    "ARCHIVE_PURPOSES",
    "BUILD_JOB_TYPE",
    "BuildNotFound",
    "BuildRequestError",
    "Claim",
    "NOTIFY_CHANNEL",
    "binarypackage_args",
    "cancel_build",
    "check_request",
    "claim_build",
    "cursor_of",
    "fail_orphaned_builds",
    "finish_build",
    "give_back_build",
    "mark_gathering",
    "request_build",
    "rescore_build",
    "reset_build",
    "set_cancel_deadline",
    "retry_delay",
    "show_build",
]

#: ``job.job_type`` of every build. Native job runners must never claim it.
BUILD_JOB_TYPE = "build"

#: The one NOTIFY channel of the build farm. Payloads:
#: ``queued <processor id> <virtualized 0|1>`` (a build became WAITING),
#: ``freed <builder id>`` (a builder finished a build),
#: ``cancel <job id>`` (a running build is to be cancelled),
#: ``builders`` (builders were added or changed).
NOTIFY_CHANNEL = "lp_build"

#: Default retries of a build (dispatches beyond the first) before a reset
#: fails it instead.
DEFAULT_MAX_RETRIES = 5


class BuildRequestError(ValueError):
    """A build request that cannot be queued; the message is one line."""


class BuildNotFound(LookupError):
    """No build has that id."""


def cursor_of(store_or_cursor):
    """A psycopg2 cursor from a cursor or a Storm Store."""
    if hasattr(store_or_cursor, "fetchone"):
        return store_or_cursor
    from lp_services.database.sql import raw_cursor

    return raw_cursor(store_or_cursor)


def new_cookie() -> str:
    """A fresh build cookie: the id the agent builds under."""
    return secrets.token_hex(12)


def retry_delay(attempt: int) -> timedelta:
    """How long a reset build waits before it may be dispatched again:
    none after the first dispatch, then 30 s doubling, at most 10 min
    (a build that keeps breaking builders must not hot-loop)."""
    if attempt <= 1:
        return timedelta(0)
    return timedelta(seconds=min(30 * 2 ** (attempt - 2), 600))


def check_request(store_or_cursor, *, build_type: str, processor: str,
                  urgency: str = "medium",
                  prerequisite: int | None = None) -> None:
    """Raise :class:`BuildRequestError` for an unknown build type,
    urgency, processor or prerequisite (before any file is stored)."""
    cursor = cursor_of(store_or_cursor)
    try:
        base_score(ScoreInputs(build_type, urgency))
    except ValueError as error:
        raise BuildRequestError(str(error)) from None
    cursor.execute(BQ.CHECK_REQUEST, {
        "processor": processor, "prerequisite": prerequisite})
    processor_id, found = cursor.fetchone()
    if processor_id is None:
        raise BuildRequestError("unknown processor %r" % processor)
    if prerequisite is not None and not found:
        raise BuildRequestError("unknown prerequisite job %s" % prerequisite)


#: ``archive_purpose`` values Launchpad's master sends.
ARCHIVE_PURPOSES = ("PRIMARY", "PPA", "PARTNER", "COPY")


def binarypackage_args(build_args: dict, filemap: dict, *, series: str,
                       pocket: str | None, component: str | None,
                       private: bool) -> dict:
    """``build_args`` of a binarypackage build with what launchpad-buildd
    needs filled in where the request left it out: ``series``, ``suite``
    (the series, or ``series-pocket``), ``ogrecomponent`` (the component,
    else main), ``archive_purpose`` (PRIMARY), ``archive_private``,
    ``arch_indep`` (true) and ``distribution`` (debian). launchpad-buildd
    fails with a KeyError, after it has gone BUILDING, without ``suite``
    or ``ogrecomponent``.

    :raises BuildRequestError: a wrong type, an unknown archive purpose, or
        no .dsc among the files (or ``dsc`` naming one that is not).
    """
    args = dict(build_args)
    suite = series if pocket in (None, "release") else "%s-%s" % (series,
                                                                 pocket)
    for key, default in (("series", series), ("suite", suite),
                         ("ogrecomponent", component or "main"),
                         ("archive_purpose", "PRIMARY"),
                         ("distribution", "debian")):
        args.setdefault(key, default)
        if not isinstance(args[key], str) or not args[key]:
            raise BuildRequestError("build arg %r must be a non-empty string"
                                    % key)
    if args["archive_purpose"] not in ARCHIVE_PURPOSES:
        raise BuildRequestError("archive_purpose %r is not one of %s" % (
            args["archive_purpose"], ", ".join(ARCHIVE_PURPOSES)))
    for key, default in (("arch_indep", True), ("archive_private", private)):
        args.setdefault(key, default)
        if not isinstance(args[key], bool):
            raise BuildRequestError("build arg %r must be true or false"
                                    % key)
    archives = args.get("archives", [])
    if not isinstance(archives, list) or not all(
            isinstance(a, str) for a in archives):
        raise BuildRequestError("build arg 'archives' must be a list of "
                                "sources.list lines")
    dscs = sorted(n for n in filemap if n.endswith(".dsc"))
    dsc = args.get("dsc")
    if dsc is not None and dsc not in dscs:
        raise BuildRequestError("build arg 'dsc' names %r, which is not "
                                "among the files" % (dsc,))
    if dsc is None and len(dscs) != 1:
        raise BuildRequestError(
            "a binarypackage build needs exactly one .dsc among its files "
            "(or build arg 'dsc'); it has %d" % len(dscs))
    return args


def request_build(store_or_cursor, *, build_type: str, processor: str,
                  now: datetime, virtualized: bool = False,
                  series: str = "default", build_args: dict | None = None,
                  filemap: dict | None = None, urgency: str = "medium",
                  private: bool = False, pocket: str | None = None,
                  component: str | None = None, archive_relative: int = 0,
                  required_resources: list[str] | None = None,
                  prerequisite: int | None = None,
                  scheduled_start: datetime | None = None,
                  max_retries: int = DEFAULT_MAX_RETRIES,
                  requester: str | None = None, reason: str | None = None,
                  estimated_duration: timedelta | None = None) -> int:
    """Queue a build in the caller's transaction; return its job id.

    Creates the ``job`` (type ``build``, WAITING), ``build_farm_job``
    (NEEDSBUILD) and ``build_queue`` rows in one statement and notifies
    the buildmasters (delivered when the caller commits). ``filemap`` maps
    file names the build sees to sha1s of files in the file store.
    ``estimated_duration`` defaults to
    :func:`lp_services.buildmaster.estimates.estimate_duration` of the build type and
    of ``build_args["recipe"]``, which is also kept in the job's data.

    :raises BuildRequestError: unknown processor, build type, urgency,
        prerequisite, or a filemap naming a file the store lacks.
    """
    cursor = cursor_of(store_or_cursor)
    try:
        base = base_score(ScoreInputs(build_type, urgency, private, pocket,
                                      component, archive_relative))
    except ValueError as error:
        raise BuildRequestError(str(error)) from None
    filemap = dict(filemap or {})
    from lp_services.protocol.names import InvalidFileName, check_filename

    for name in filemap:
        try:
            check_filename(name)
        except InvalidFileName as error:
            raise BuildRequestError(str(error)) from None
    cursor.execute(BQ.REQUEST_LOOKUPS, {
        "processor": processor, "prerequisite": prerequisite,
        "sha1s": sorted(set(filemap.values()))})
    processor_id, prerequisite_found, files_found = cursor.fetchone()
    if processor_id is None:
        raise BuildRequestError("unknown processor %r" % processor)
    if prerequisite is not None and not prerequisite_found:
        raise BuildRequestError("unknown prerequisite job %s" % prerequisite)
    if files_found != len(set(filemap.values())):
        raise BuildRequestError("the filemap names a file the store lacks")
    if build_type == "binarypackage":
        build_args = binarypackage_args(
            build_args or {}, filemap, series=series, pocket=pocket,
            component=component, private=private)
    json_data = {"urgency": urgency, "private": private, "base_score": base}
    recipe = (build_args or {}).get("recipe")
    if isinstance(recipe, str):
        # Estimates learn from earlier builds of the same recipe.
        json_data["recipe"] = recipe
    if estimated_duration is None:
        from lp_services.buildmaster.estimates import estimate_duration

        estimated_duration = estimate_duration(
            cursor, build_type, recipe if isinstance(recipe, str) else None)
    for key, value in (("pocket", pocket), ("component", component)):
        if value is not None:
            json_data[key] = value
    if archive_relative:
        json_data["archive_relative"] = archive_relative
    cursor.execute(BQ.REQUEST_BUILD, {
        "job_type": BUILD_JOB_TYPE, "requester": requester, "reason": reason,
        "now": now, "scheduled_start": scheduled_start or now,
        "max_retries": max_retries, "json_data": json.dumps(json_data),
        "prerequisite": prerequisite, "build_type": build_type,
        "private": bool(private), "processor": processor_id, "virtualized": virtualized,
        "series": series, "lastscore": sort_key(base, now),
        "estimated_duration": estimated_duration,
        "build_args": json.dumps(build_args or {}),
            "filemap": json.dumps(filemap),
            "resources": list(required_resources or []),
            "channel": NOTIFY_CHANNEL})
    return cursor.fetchone()[0]


@dataclass(frozen=True)
class Claim:
    """A build just claimed for a builder: what dispatching it needs."""

    job_id: int
    cookie: str
    build_type: str
    processor: str
    series: str
    build_args: dict = field(default_factory=dict)
    filemap: dict = field(default_factory=dict)
    #: sha1 of the chroot for the build's processor and series, or None.
    chroot_sha1: str | None = None
    virtualized: bool = False
    #: When it became dispatchable (requested, or its scheduled start):
    #: dispatch latency is measured from here.
    queued_at: datetime | None = None


def claim_build(store_or_cursor, *, builder_id: int, processors: list[int],
                virtualized: bool, resources: list[str], now: datetime,
                holder: str, lease: timedelta,
                build_types: list[str]) -> Claim | None:
    """Claim the best eligible build for a builder, or None (one statement).

    Eligible: WAITING, one of ``processors``, same virtualization, one of
    the ``build_types`` the builder offers, required resources a subset of
    ``resources``, scheduled start passed, prerequisite (if any)
    COMPLETED, not locked by a concurrent claim.
    """
    cursor = cursor_of(store_or_cursor)
    cookie = new_cookie()
    cursor.execute(BQ.CLAIM, {
        "processors": list(processors), "virtualized": virtualized,
        "resources": list(resources), "now": now, "holder": holder,
        "lease_expires": now + lease, "builder": builder_id, "cookie": cookie,
        "build_types": list(build_types)})
    row = cursor.fetchone()
    if row is None:
        return None
    (job_id, build_type, processor, series, args, filemap, chroot, virt,
     queued_at) = row
    return Claim(job_id, cookie, build_type, processor, series, args or {},
                 filemap or {}, chroot.strip() if chroot else None, virt,
                 queued_at)


def _release_queue_row(cursor, job_id, cookie):
    """Detach a build from its builder if the cookie still matches."""
    cursor.execute(BQ.RELEASE_QUEUE_ROW, {"job": job_id, "cookie": cookie})
    return cursor.fetchone()


def reset_build(store_or_cursor, job_id: int, cookie: str, now: datetime,
                error: str) -> str | None:
    """Send a dispatched build back to WAITING through the job's retry
    policy, or fail it when its attempts are spent.

    :return: ``"waiting"``, ``"failed"``, or None when the build no longer
        holds ``cookie`` (someone else already dealt with it).
    """
    cursor = cursor_of(store_or_cursor)
    released = _release_queue_row(cursor, job_id, cookie)
    if released is None:
        return None
    processor_id, virtualized = released
    cursor.execute(BQ.JOB_ATTEMPTS, {"job": job_id})
    attempts, max_retries = cursor.fetchone()
    if attempts > max_retries:
        _finish(cursor, job_id, now, BuildStatus.FAILEDTOBUILD,
                JobStatus.FAILED,
                last_error="%s; gave up after %d attempts" % (error, attempts))
        return "failed"
    transition_job(cursor, job_id, JobStatus.WAITING, now,
                   scheduled_start=now + retry_delay(attempts),
                   lease_holder=None, lease_expires=None, last_error=error)
    cursor.execute(BQ.REQUEUE_FARM_JOB, {
        "job": job_id, "channel": NOTIFY_CHANNEL, "processor": processor_id,
        "virtualized": virtualized})
    from lp_services.database.transactor import after_commit
    from lp_services.metrics import record_retry

    after_commit(lambda: record_retry(BUILD_JOB_TYPE))
    return "waiting"


def give_back_build(store_or_cursor, job_id: int, cookie: str,
                    now: datetime, reason: str) -> bool:
    """Send a build its builder refused before starting it (its type is
    not offered there) back to WAITING at once, the attempt not counted
    and nobody blamed. False when the build no longer holds ``cookie``."""
    cursor = cursor_of(store_or_cursor)
    released = _release_queue_row(cursor, job_id, cookie)
    if released is None:
        return False
    processor_id, virtualized = released
    cursor.execute(BQ.GIVE_BACK_JOB, {"job": job_id, "now": now,
                                      "reason": reason})
    cursor.execute(BQ.REQUEUE_FARM_JOB, {
        "job": job_id, "channel": NOTIFY_CHANNEL, "processor": processor_id,
        "virtualized": virtualized})
    return True


def mark_gathering(store_or_cursor, job_id: int, cookie: str) -> bool:
    """Mark a build GATHERING while its results are fetched."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.MARK_GATHERING, {"job": job_id, "cookie": cookie})
    return cursor.fetchone() is not None


def _finish(cursor, job_id, now, build_status, job_status, *, log_id=None,
            dependencies=None, last_error=None, files=()):
    """End a build whose queue row is already dealt with."""
    _count_result(build_status)
    transition_job(cursor, job_id, job_status, now, lease_holder=None,
                   lease_expires=None, last_error=last_error)
    cursor.execute(BQ.FINISH_FARM_JOB, {
        "status": int(build_status), "now": now, "log": log_id,
        "dependencies": dependencies, "job": job_id})
    if files:
        cursor.execute(BQ.ADD_BUILD_FILES, {
            "job": job_id, "ids": [f[1] for f in files],
            "names": [f[0] for f in files]})


def _count_result(build_status) -> None:
    from lp_services.database.transactor import after_commit
    from lp_services.metrics import record_build_result

    after_commit(lambda: record_build_result(build_status))


def finish_build(store_or_cursor, job_id: int, cookie: str, now: datetime,
                 build_status: BuildStatus, *, log_id: int | None = None,
                 dependencies: str | None = None,
                 last_error: str | None = None,
                 files: list[tuple[str, int]] = ()) -> int | None:
    """End a dispatched build with its final status, in one transaction:
    the job COMPLETED (FULLYBUILT) or FAILED (anything else), the farm job
    updated with status, log and result files, the queue row deleted, the
    builder announced free.

    :param files: (filename, library_file id) of each result file.
    :return: the builder id the build ran on, or None when the build no
        longer holds ``cookie``.
    """
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.LOCK_DISPATCHED, {"job": job_id, "cookie": cookie})
    row = cursor.fetchone()
    if row is None:
        return None
    job_status = (JobStatus.COMPLETED if build_status == BuildStatus.FULLYBUILT
                  else JobStatus.FAILED)
    _finish(cursor, job_id, now, build_status, job_status, log_id=log_id,
            dependencies=dependencies, last_error=last_error, files=files)
    cursor.execute(BQ.NOTIFY_FREED, {
        "channel": NOTIFY_CHANNEL, "builder": row[0]})
    return row[0]


def _lock_build(cursor, job_id):
    cursor.execute(BQ.LOCK_BUILD, {"job": job_id})
    row = cursor.fetchone()
    if row is None:
        raise BuildNotFound("no build with id %s" % job_id)
    return JobStatus(row[0]), BuildStatus(row[1])


def set_cancel_deadline(store_or_cursor, job_id: int, cookie: str,
                        deadline: datetime) -> datetime | None:
    """Set build ``job_id``'s cancel deadline unless one is set (cookie-
    guarded); the deadline in force, or None if the build moved on."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.SET_CANCEL_DEADLINE, {"job": job_id, "cookie": cookie,
                                            "deadline": deadline})
    row = cursor.fetchone()
    return None if row is None else row[0]


def cancel_build(store_or_cursor, job_id: int, now: datetime) -> BuildStatus:
    """Cancel a build: at once if it is not on a builder (CANCELLED), else
    mark it CANCELLING and tell the buildmasters, whose scanner aborts it.

    :return: the build's new status.
    :raises BuildNotFound: no such build.
    :raises BuildRequestError: the build has already finished.
    """
    cursor = cursor_of(store_or_cursor)
    job_status, build_status = _lock_build(cursor, job_id)
    cursor.execute(BQ.LOCK_QUEUE_ROW, {"job": job_id})
    row = cursor.fetchone()
    if row is None:
        raise BuildRequestError("build %s has already finished (%s)"
                                % (job_id, build_status.name))
    if build_status in (BuildStatus.CANCELLING, BuildStatus.CANCELLED):
        return build_status
    if row[0] is None:
        _finish(cursor, job_id, now, BuildStatus.CANCELLED, JobStatus.FAILED,
                last_error="cancelled")
        return BuildStatus.CANCELLED
    cursor.execute(BQ.MARK_CANCELLING, {
        "job": job_id, "channel": NOTIFY_CHANNEL})
    return BuildStatus.CANCELLING


def fail_orphaned_builds(store_or_cursor, now: datetime) -> int:
    """Fail WAITING builds whose prerequisite job FAILED (they could never
    start); return how many. One statement; a chain fails one link per
    call (the buildmaster calls it every refresh)."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.FAIL_ORPHANED_BUILDS, {
        "now": now, "types": [BUILD_JOB_TYPE]})
    return cursor.rowcount


def rescore_build(store_or_cursor, job_id: int, score: int,
                  now: datetime) -> None:
    """Pin a waiting build's score: SCORE now, ageing from there.

    :raises BuildNotFound, BuildRequestError: no such build, or it is no
        longer waiting.
    """
    cursor = cursor_of(store_or_cursor)
    _lock_build(cursor, job_id)
    cursor.execute(
        BQ.RESCORE, {"key": sort_key_for_score(score, now), "job": job_id})
    if cursor.fetchone() is None:
        raise BuildRequestError(
            "build %s is not waiting; only a waiting build can be rescored"
            % job_id)


def show_build(store_or_cursor, job_id: int, now: datetime) -> dict:
    """Everything about one build, as plain values."""
    cursor = cursor_of(store_or_cursor)
    cursor.execute(BQ.SHOW_BUILD, {"job": job_id})
    row = cursor.fetchone()
    if row is None:
        raise BuildNotFound("no build with id %s" % job_id)
    (jid, jstatus, requester, reason, created, scheduled, started, finished,
     attempts, max_retries, last_error, prerequisite, holder, lease,
     json_data, build_type, processor, virtualized, series, status, builder,
     first_dispatched, bfinished, log_sha1, log_name, dependencies,
     failures, lastscore, manual, cookie, logtail, args, filemap, resources,
     queue_builder) = row
    cursor.execute(BQ.SHOW_BUILD_FILES, {"job": job_id})
    files = [{"filename": n, "sha1": s.strip(), "size": z}
             for n, s, z in cursor.fetchall()]
    return {
        "id": jid, "job_status": JobStatus(jstatus).name,
        "status": BuildStatus(status).name, "build_type": build_type,
        "processor": processor, "virtualized": virtualized,
        "series": series, "builder": queue_builder or builder,
        "requester": requester, "reason": reason,
        "date_created": created, "scheduled_start": scheduled,
        "date_started": started, "date_finished": finished or bfinished,
        "date_first_dispatched": first_dispatched,
        "attempt_count": attempts, "max_retries": max_retries,
        "failure_count": failures, "last_error": last_error,
        "prerequisite": prerequisite, "lease_holder": holder,
        "lease_expires": lease, "urgency": json_data.get("urgency"),
        "score": (effective_score(lastscore, now)
                  if lastscore is not None else None),
        "score_pinned": manual, "cookie": cookie, "logtail": logtail,
        "build_args": args, "filemap": filemap,
        "required_resources": resources, "dependencies": dependencies,
        "log": ({"filename": log_name, "sha1": log_sha1.strip()}
                if log_sha1 else None),
        "files": files,
    }
