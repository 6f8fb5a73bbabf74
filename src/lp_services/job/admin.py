"""Operator actions on jobs (the ``lp-services job`` commands), each in the
caller's transaction through the guarded transitions."""

from dataclasses import asdict, dataclass
from datetime import datetime

from lp_services.job import queries as Q
from lp_services.job.status import InvalidTransition, JobStatus
from lp_services.job.transition import UnknownJob, transition_job

__all__ = ["EVERYONE", "JobOwner", "JobRecord", "NotANativeJob", "cancel_job",
           "get_job", "job_owners", "list_jobs", "retry_job"]

#: ``viewer`` of :func:`list_jobs` that sees all jobs, private too.
EVERYONE = object()

@dataclass(frozen=True)
class JobRecord:
    """A job row as plain values."""

    id: int
    job_type: str
    status: JobStatus
    priority: int
    requester: str | None
    reason: str | None
    date_created: datetime
    scheduled_start: datetime
    date_started: datetime | None
    date_finished: datetime | None
    lease_expires: datetime | None
    lease_holder: str | None
    attempt_count: int
    max_retries: int
    json_data: object
    last_error: str | None
    prerequisite: int | None
    private: bool = False

    def as_json(self) -> dict:
        value = asdict(self)
        value["status"] = self.status.name
        for key, item in value.items():
            if isinstance(item, datetime):
                value[key] = item.isoformat()
        return value


@dataclass(frozen=True)
class JobOwner:
    """What decides who may see and change a job."""

    job_type: str
    private: bool
    requester: str | None


def job_owners(cursor, job_ids) -> dict[int, JobOwner]:
    """{id: JobOwner} of those of ``job_ids`` that exist (one statement)."""
    cursor.execute(Q.JOB_OWNERS, {"ids": list(job_ids)})
    return {row[0]: JobOwner(*row[1:]) for row in cursor.fetchall()}


class NotANativeJob(ValueError):
    """An operator action meant for native jobs, aimed at a build."""


def _record(row) -> JobRecord:
    values = dict(zip(Q.JOB_COLUMNS, row))
    values["status"] = JobStatus(values["status"])
    return JobRecord(**values)


def get_job(cursor, job_id: int) -> JobRecord:
    """The job ``job_id``. :raises UnknownJob:"""
    cursor.execute(Q.GET_JOB, {"id": job_id})
    row = cursor.fetchone()
    if row is None:
        raise UnknownJob(job_id)
    return _record(row)


def list_jobs(cursor, status: JobStatus | None = None,
              job_type: str | None = None, limit: int = 50,
              viewer=EVERYONE) -> list[JobRecord]:
    """Newest first, optionally filtered.

    :param viewer: who lists (see ``lp_services.ops.work.may_see``):
        :data:`EVERYONE` sees private jobs, a token's name its own, None
        (anonymous) none.
    """
    everyone = viewer is EVERYONE
    cursor.execute(
        Q.LIST_JOBS,
        {"status": None if status is None else int(status),
         "type": job_type, "limit": limit, "everyone": everyone,
         "viewer": None if everyone else viewer})
    return [_record(row) for row in cursor.fetchall()]


def _native(cursor, job_id):
    job = get_job(cursor, job_id)
    if job.job_type == "build":
        raise NotANativeJob("job %d is a build; use the build commands"
                            % job_id)
    return job


def cancel_job(cursor, job_id: int, now: datetime,
               reason: str = "cancelled by an operator") -> JobRecord:
    """WAITING, SUSPENDED or RUNNING -> FAILED with ``reason``. A running
    job's runner notices at its next lease renewal and stops the job.

    :raises InvalidTransition: the job already finished.
    """
    _native(cursor, job_id)
    transition_job(cursor, job_id, JobStatus.FAILED, now, last_error=reason,
                   lease_expires=None, lease_holder=None)
    cursor.execute(Q.NOTIFY_OF_JOB, {"id": job_id})
    return get_job(cursor, job_id)


def retry_job(cursor, job_id: int, now: datetime) -> JobRecord:
    """FAILED -> WAITING, due now, with its full retry allowance again.

    :raises InvalidTransition: the job has not failed.
    """
    job = _native(cursor, job_id)
    if job.status != JobStatus.FAILED:
        raise InvalidTransition(job.status, JobStatus.WAITING)
    transition_job(cursor, job_id, JobStatus.WAITING, now,
                   scheduled_start=now, attempt_count=0, date_finished=None)
    cursor.execute(Q.NOTIFY_OF_JOB, {"id": job_id})
    return get_job(cursor, job_id)
