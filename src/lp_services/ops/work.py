"""Any job by its id: the one namespace of builds and native jobs.

:func:`describe_work` is the single code path behind ``lp-services show``
and the status pages' job and build pages. The common part (kind, type,
status, timeline, attempts, errors, prerequisite, dependents) comes from
``ops_work`` for every job; a build adds its build-specific part (processor,
score, builder, build status, log and result files) on top.
"""

from dataclasses import dataclass, field
from dataclasses import fields as dataclasses_fields
from datetime import datetime, timedelta

from lp_services.ops import queries as Q

__all__ = [
    "BuildDetails",
    "Change",
    "EVERYONE",
    "FileLink",
    "UnknownWork",
    "WorkDetails",
    "describe_work",
    "may_see",
    "work_from_json",
    "work_to_json",
]

from lp_services.job.admin import EVERYONE  # noqa: E402 (one sentinel)


def may_see(viewer, private: bool, requester: str | None) -> bool:
    """Whether ``viewer`` (:data:`EVERYONE`, a token's name, or None for
    anonymous) may see work that is ``private`` and was asked for by
    ``requester``."""
    return (not private or viewer is EVERYONE
            or (viewer is not None and viewer == requester))


class UnknownWork(LookupError):
    """No job has that id."""

    def __init__(self, job_id):
        self.job_id = job_id
        super().__init__("no job or build with id %s" % (job_id,))


#: How these records appear as JSON (``work_to_json``), said for pydantic,
#: which describes the API's answers from these very classes
#: (``lp_services.api.openapi``): durations in seconds, no other field,
#: every field present.
JSON_SHAPE = {"ser_json_timedelta": "float", "extra": "forbid",
              "json_schema_serialization_defaults_required": True}


@dataclass(frozen=True)
class FileLink:
    """A stored file: name, hashes, size and where to download it."""

    __pydantic_config__ = JSON_SHAPE

    filename: str
    sha1: str
    size: int
    url: str | None


@dataclass(frozen=True)
class Related:
    """Another job named from this one (prerequisite or dependent)."""

    __pydantic_config__ = JSON_SHAPE

    id: int
    kind: str
    type: str
    status: str


@dataclass(frozen=True)
class Change:
    """A change made to a job: when, by whom, what (``change_log``)."""

    __pydantic_config__ = JSON_SHAPE

    date: datetime
    actor: str
    action: str
    detail: str | None


@dataclass(frozen=True)
class BuildDetails:
    """What only builds have."""

    __pydantic_config__ = JSON_SHAPE

    build_type: str
    build_status: str
    processor: str
    virtualized: bool
    series: str
    #: The effective score now (``scoring.effective_score``), not the
    #: stored sort key; None once the build left the queue.
    score: int | None
    score_pinned: bool
    builder: str | None
    estimated_duration: timedelta | None
    expected_start: datetime | None
    dependencies: str | None
    logtail: str | None
    log: FileLink | None
    files: tuple[FileLink, ...]
    #: What the build was asked to do (``build_queue``): its arguments and
    #: {file name: sha1} of its input files; None once it left the queue.
    build_args: dict | None = None
    filemap: dict | None = None
    #: The buildmaster holding its builder's lease while it runs.
    master: str | None = None
    #: Why a waiting build is not dispatched (no available builder of
    #: its processor, or none that offers its build type), else None.
    waiting_reason: str | None = None


@dataclass(frozen=True)
class WorkDetails:
    """A job of either kind, as ``show`` prints it."""

    __pydantic_config__ = JSON_SHAPE

    id: int
    kind: str
    type: str
    status: str
    outcome: str | None
    priority: int
    requester: str | None
    reason: str | None
    date_created: datetime
    scheduled_start: datetime
    date_started: datetime | None
    date_finished: datetime | None
    duration: timedelta | None
    attempts: int
    max_retries: int
    lease_holder: str | None
    lease_expires: datetime | None
    last_error: str | None
    data: dict
    prerequisite: Related | None
    dependents: tuple[Related, ...]
    build: BuildDetails | None = field(default=None)
    #: Shown only to its requester and to operators.
    private: bool = False
    #: Who changed it through the API or the command line, oldest first.
    changes: tuple[Change, ...] = ()


def _one(cursor, sql, params):
    cursor.execute(sql, params)
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row))


def _related(cursor, sql, params, viewer) -> list[Related]:
    cursor.execute(sql, params)
    return [Related(*row[:4]) for row in cursor.fetchall()
            if may_see(viewer, row[4], row[5])]


def describe_work(cursor, job_id: int, file_url=None, now=None,
                  viewer=EVERYONE) -> WorkDetails:
    """Describe job ``job_id``, build or native.

    :param cursor: a psycopg2 cursor (any transaction).
    :param file_url: ``f(sha1, filename) -> url`` for download links, or
        None to leave URLs out.
    :param now: the time expected starts are computed from (default: the
        database's now()).
    :param viewer: who asks (see :func:`may_see`): private work another
        requester asked for is unknown to them, and so are private
        prerequisites and dependents.
    :raises UnknownWork: no such job, or one ``viewer`` may not see.
    """
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise UnknownWork(job_id)
    common = _one(cursor, Q.WORK, {"id": job_id})
    if common is None or not may_see(viewer, common["private"],
                                     common["requester"]):
        raise UnknownWork(job_id)
    prerequisite = None
    if common["prerequisite"] is not None:
        found = _related(cursor, Q.RELATED, {"id": common["prerequisite"]},
                         viewer)
        prerequisite = found[0] if found else None
    dependents = _related(cursor, Q.DEPENDENTS, {"id": job_id}, viewer)
    cursor.execute(Q.CHANGES, {"id": job_id})
    changes = tuple(Change(*row) for row in cursor.fetchall())
    build = None
    if common["kind"] == "build":
        build = _describe_build(cursor, job_id, file_url, now)
    return WorkDetails(
        id=common["id"], kind=common["kind"], type=common["type"],
        status=common["status"], outcome=common["outcome"],
        priority=common["priority"], requester=common["requester"],
        reason=common["reason"], date_created=common["date_created"],
        scheduled_start=common["scheduled_start"],
        date_started=common["date_started"],
        date_finished=common["date_finished"], duration=common["duration"],
        attempts=common["attempts"], max_retries=common["max_retries"],
        lease_holder=common["lease_holder"],
        lease_expires=common["lease_expires"],
        last_error=common["last_error"], data=common["json_data"] or {},
        prerequisite=prerequisite, dependents=tuple(dependents), build=build,
        private=common["private"], changes=changes)


def work_to_json(details: WorkDetails) -> dict:
    """``details`` as JSON values (``show --json`` and the API's work):
    times in ISO 8601, durations in seconds."""
    import dataclasses

    from lp_services.ops.reports import jsonable

    def tree(value):
        if isinstance(value, dict):
            return {k: tree(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [tree(v) for v in value]
        return jsonable(value)
    return tree(dataclasses.asdict(details))


_TIMES = ("date_created", "scheduled_start", "date_started", "date_finished",
          "lease_expires", "expected_start", "date")
_DURATIONS = ("duration", "estimated_duration")


def work_from_json(value: dict) -> WorkDetails:
    """The inverse of :func:`work_to_json` (the remote command line prints
    what the API answers as ``show`` prints what the database holds)."""
    def parse(obj: dict) -> dict:
        obj = dict(obj)
        for key in _TIMES:
            if obj.get(key) is not None:
                obj[key] = datetime.fromisoformat(obj[key])
        for key in _DURATIONS:
            if obj.get(key) is not None:
                obj[key] = timedelta(seconds=obj[key])
        return obj

    top = parse(value)
    names = {f.name for f in dataclasses_fields(WorkDetails)}
    top = {k: v for k, v in top.items() if k in names}
    if top.get("prerequisite") is not None:
        top["prerequisite"] = Related(**top["prerequisite"])
    top["dependents"] = tuple(Related(**r) for r in top.get("dependents", ()))
    top["changes"] = tuple(Change(**parse(c)) for c in top.get("changes", ()))
    if top.get("build") is not None:
        b = parse(top["build"])
        b = {k: v for k, v in b.items()
             if k in {f.name for f in dataclasses_fields(BuildDetails)}}
        b["files"] = tuple(FileLink(**f) for f in b.get("files", ()))
        if b.get("log") is not None:
            b["log"] = FileLink(**b["log"])
        top["build"] = BuildDetails(**b)
    return WorkDetails(**top)


def _link(file_url, sha1, filename, size) -> FileLink:
    return FileLink(filename, sha1, size,
                    file_url(sha1, filename) if file_url else None)


def _now(cursor, now):
    if now is not None:
        return now
    cursor.execute(Q.DATABASE_NOW)
    return cursor.fetchone()[0]


def waiting_reason(cursor, job_id: int) -> str | None:
    """Why waiting build ``job_id`` is not dispatched, or None (it is not
    waiting, or some available builder can take it)."""
    row = _one(cursor, Q.WAITING_REASON, {"id": job_id})
    if row is None:
        return None
    queue = "%s (%s)" % (row["name"], "virtualized" if row["virtualized"]
                         else "non-virtualized")
    if not row["any_builder"]:
        return "no available builder for %s" % queue
    if not row["offered"]:
        return ("no available builder for %s offers build type %s"
                % (queue, row["build_type"]))
    return None


def _describe_build(cursor, job_id, file_url, now) -> BuildDetails:
    from lp_services.buildmaster.scoring import effective_score
    from lp_services.buildmaster.estimates import expected_start

    row = _one(cursor, Q.BUILD_DETAILS, {"id": job_id})
    cursor.execute(Q.BUILD_FILES, {"id": job_id})
    files = tuple(_link(file_url, sha1, name, size)
                  for sha1, name, size in cursor.fetchall())
    log = None
    if row["log_sha1"] is not None:
        log = _link(file_url, row["log_sha1"], row["log_name"], row["log_size"])
    return BuildDetails(
        build_type=row["build_type"], build_status=row["build_status"],
        processor=row["processor"], virtualized=row["virtualized"],
        series=row["series"],
        score=(None if row["lastscore"] is None
               else effective_score(row["lastscore"], _now(cursor, now))),
        score_pinned=bool(row["manual"]), builder=row["builder"],
        estimated_duration=row["estimated_duration"],
        expected_start=expected_start(cursor, job_id, now),
        waiting_reason=waiting_reason(cursor, job_id),
        master=row["master"],
        dependencies=row["dependencies"], logtail=row["logtail"], log=log,
        files=files, build_args=row["build_args"], filemap=row["filemap"])
