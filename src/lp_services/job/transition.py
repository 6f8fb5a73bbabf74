"""Applying a job status change with guarded SQL.

The transition table (:mod:`lp_services.job.status`) is enforced in the
database statement itself: ``UPDATE job ... WHERE id = ? AND status =
ANY(legal sources)``. If no row changes, the job was not in a legal source
status (perhaps because another process moved it first) and
:class:`InvalidTransition` names what it was.
"""

from datetime import datetime

from lp_services.job import queries as Q
from lp_services.job.status import InvalidTransition, JobStatus, transition_sources

__all__ = ["UnknownJob", "transition_job"]

class UnknownJob(LookupError):
    """No job has that id."""

    def __init__(self, job_id):
        self.job_id = job_id
        super().__init__("no job with id %s" % job_id)


def transition_job(cursor, job_id: int, new_status: JobStatus,
                   now: datetime, **columns) -> None:
    """Move job ``job_id`` to ``new_status`` if the table allows it.

    :param cursor: a psycopg2 cursor inside the caller's transaction (from
        Storm code: :func:`lp_services.database.sql.raw_cursor`).
    :param now: the time of the change, from the caller's clock; sets
        ``date_finished`` on COMPLETED and FAILED unless given.
    :param columns: other columns to set in the same statement.
    :raises InvalidTransition: the job's status is not a legal source.
    :raises UnknownJob: there is no such job.
    """
    new_status = JobStatus(new_status)
    if new_status in (JobStatus.COMPLETED, JobStatus.FAILED):
        columns.setdefault("date_finished", now)
    statement = Q.transition_statement(columns)
    cursor.execute(statement, dict(
        columns, id=job_id, status=int(new_status),
        sources=list(transition_sources(new_status))))
    if cursor.fetchone() is not None:
        return
    cursor.execute(Q.JOB_STATUS, {"id": job_id})
    row = cursor.fetchone()
    if row is None:
        raise UnknownJob(job_id)
    raise InvalidTransition(JobStatus(row[0]), new_status)
