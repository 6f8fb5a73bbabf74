"""Creating native jobs, inside the caller's transaction.

::

    from lp_services.job.enqueue import enqueue

    job_id = enqueue(cursor, "http-notify",
                     {"url": "https://example.com/hook", "payload": {...}},
                     priority=10, prerequisite=recipe_job_id)

``cursor`` is a psycopg2 cursor or a Storm Store (through
:func:`lp_services.database.sql.raw_cursor`); the insert and its ``NOTIFY
lp_job`` happen in that transaction, so idle runners wake when — and only
if — the caller commits. Nothing is written when the type is unknown, its
data is rejected, or the prerequisite does not exist.
"""

import json
from datetime import datetime

from lp_services.job import queries as Q
from lp_services.job.registry import (
    InvalidJobData, job_types, load_modules)
from lp_services.job.transition import UnknownJob

__all__ = ["enqueue", "InvalidJobData", "UnknownJob"]


def _cursor(target):
    if hasattr(target, "execute") and hasattr(target, "fetchone"):
        return target
    from lp_services.database.sql import raw_cursor

    return raw_cursor(target)


def enqueue(target, job_type: str, data=None, *, priority: int = 0,
            scheduled_start: datetime | None = None,
            max_retries: int | None = None, prerequisite: int | None = None,
            requester: str | None = None, reason: str | None = None,
            registry=None, private: bool = False) -> int:
    """Insert a WAITING job and NOTIFY runners; return its id.

    :param target: a psycopg2 cursor or a Storm Store.
    :param data: the job's JSON data (default ``{}``); checked by the
        type's ``validate``.
    :param scheduled_start: not before this time (default: the database's
        now()).
    :param max_retries: default: the type's.
    :param prerequisite: a job that must COMPLETE first.
    :param registry: default: the process registry with the built-ins.
    :param private: shown only to ``requester`` and to operators.
    :raises UnknownJobType: no such type (``build`` never is one).
    :raises InvalidJobData: the type rejects ``data`` (or it is not JSON).
    :raises UnknownJob: the prerequisite does not exist.
    """
    if registry is None:
        load_modules()
        registry = job_types
    kind = registry.get(job_type)
    data = {} if data is None else data
    try:
        encoded = json.dumps(data)
    except (TypeError, ValueError) as error:
        raise InvalidJobData("job data is not JSON: %s" % error) from None
    try:
        kind.validate(data)
    except InvalidJobData as error:
        raise InvalidJobData("invalid data for %s: %s" % (job_type, error)) \
            from None
    if max_retries is None:
        max_retries = kind.max_retries
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    cursor = _cursor(target)
    if prerequisite is not None:
        cursor.execute(Q.JOB_EXISTS, {"id": prerequisite})
        if cursor.fetchone() is None:
            raise UnknownJob(prerequisite)
    cursor.execute(
        Q.ADD_JOB,
        {"type": job_type, "priority": priority, "requester": requester,
         "reason": reason, "start": scheduled_start,
         "max_retries": max_retries, "data": encoded,
         "prerequisite": prerequisite, "private": bool(private)})
    job_id = cursor.fetchone()[0]
    cursor.execute(Q.NOTIFY_JOB_TYPE, {"type": job_type})
    return job_id
