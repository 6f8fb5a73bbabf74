"""The Storm model of the common ``job`` table. See schema/current.sql."""

from datetime import timezone

from storm.locals import DateTime, Int, Reference, Storm, Unicode

from lp_services.database.storm_types import JSONB, IntEnumCol
from lp_services.job.status import JobStatus

__all__ = ["Job"]


class Job(Storm):
    """One unit of work: a native job or a package build."""

    __storm_table__ = "job"

    id = Int(primary=True)
    job_type = Unicode(allow_none=False)
    status = IntEnumCol(JobStatus, allow_none=False, default=JobStatus.WAITING)
    priority = Int(allow_none=False, default=0)
    requester = Unicode()
    reason = Unicode()
    date_created = DateTime(tzinfo=timezone.utc)
    scheduled_start = DateTime(tzinfo=timezone.utc)
    date_started = DateTime(tzinfo=timezone.utc)
    date_finished = DateTime(tzinfo=timezone.utc)
    lease_expires = DateTime(tzinfo=timezone.utc)
    lease_holder = Unicode()
    attempt_count = Int(allow_none=False, default=0)
    max_retries = Int(allow_none=False, default=0)
    json_data = JSONB(allow_none=False, default_factory=dict)
    last_error = Unicode()
    prerequisite_id = Int(name="prerequisite")
    prerequisite = Reference(prerequisite_id, "Job.id")
