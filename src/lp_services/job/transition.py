"""Applying a job status change with guarded SQL.

The transition table (:mod:`lp_services.job.status`) is enforced in the
database statement itself: ``UPDATE job ... WHERE id = ? AND status =
ANY(legal sources)``. If no row changes, the job was not in a legal source
status (perhaps because another process moved it first) and
:class:`InvalidTransition` names what it was.
"""

from datetime import datetime

from lp_services.job.status import InvalidTransition, JobStatus, transition_sources

__all__ = ["UnknownJob", "transition_job"]

# Columns a transition may set besides status; anything else is a bug.
_SETTABLE = frozenset({
    "date_started", "date_finished", "scheduled_start", "lease_expires",
    "lease_holder", "attempt_count", "last_error",
})


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
    unknown = set(columns) - _SETTABLE
    if unknown:
        raise TypeError("transition_job cannot set %s" % ", ".join(sorted(unknown)))
    if new_status in (JobStatus.COMPLETED, JobStatus.FAILED):
        columns.setdefault("date_finished", now)
    names = sorted(columns)
    assignments = "".join(", %s = %%(%s)s" % (n, n) for n in names)
    params = dict(columns, id=job_id, status=int(new_status),
                  sources=list(transition_sources(new_status)))
    cursor.execute(
        "UPDATE job SET status = %(status)s" + assignments +
        " WHERE id = %(id)s AND status = ANY(%(sources)s::smallint[])"
        " RETURNING id", params)
    if cursor.fetchone() is not None:
        return
    cursor.execute("SELECT status FROM job WHERE id = %(id)s", {"id": job_id})
    row = cursor.fetchone()
    if row is None:
        raise UnknownJob(job_id)
    raise InvalidTransition(JobStatus(row[0]), new_status)
