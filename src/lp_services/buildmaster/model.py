"""Storm models of the build farm's tables. See schema/current.sql.

Every build row is keyed by its job id: ``build_farm_job.job`` and
``build_queue.job`` are both the id of the build's row in ``job``.
"""

from datetime import timedelta, timezone

from storm.locals import (
    Bool,
    DateTime,
    Int,
    List,
    Reference,
    Storm,
    TimeDelta,
    Unicode,
)

from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.database.storm_types import JSONB, IntEnumCol

__all__ = [
    "BuildFarmJob",
    "BuildFile",
    "BuildQueue",
    "Builder",
    "BuilderProcessor",
    "Chroot",
    "Processor",
]

_UTC = timezone.utc


class Processor(Storm):
    """An architecture that builds target."""

    __storm_table__ = "processor"

    id = Int(primary=True)
    name = Unicode(allow_none=False)
    title = Unicode(allow_none=False, default="")
    description = Unicode(allow_none=False, default="")


class Builder(Storm):
    """A builder machine, reached through its agent's URL."""

    __storm_table__ = "builder"

    id = Int(primary=True)
    name = Unicode(allow_none=False)
    url = Unicode(allow_none=False)
    virtualized = Bool(allow_none=False, default=False)
    manual = Bool(allow_none=False, default=False)
    active = Bool(allow_none=False, default=True)
    builderok = Bool(allow_none=False, default=True)
    failnotes = Unicode()
    failure_count = Int(allow_none=False, default=0)
    clean_status = IntEnumCol(
        BuilderCleanStatus, allow_none=False, default=BuilderCleanStatus.DIRTY)
    date_clean_status_changed = DateTime(tzinfo=_UTC)
    reset_command = Unicode()
    secret = Unicode()
    resources = List(type=Unicode(), default_factory=list)
    version = Unicode()
    date_created = DateTime(tzinfo=_UTC)
    date_state_changed = DateTime(tzinfo=_UTC)


class BuilderProcessor(Storm):
    """That a builder can build for a processor."""

    __storm_table__ = "builder_processor"
    __storm_primary__ = ("builder_id", "processor_id")

    builder_id = Int(name="builder")
    builder = Reference(builder_id, Builder.id)
    processor_id = Int(name="processor")
    processor = Reference(processor_id, Processor.id)


class Chroot(Storm):
    """The chroot tarball for a processor and series."""

    __storm_table__ = "chroot"

    id = Int(primary=True)
    processor_id = Int(name="processor", allow_none=False)
    processor = Reference(processor_id, Processor.id)
    series = Unicode(allow_none=False, default="default")
    library_file_id = Int(name="library_file", allow_none=False)
    library_file = Reference(library_file_id, "LibraryFile.id")
    date_created = DateTime(tzinfo=_UTC)


class BuildFarmJob(Storm):
    """A build's history and final status."""

    __storm_table__ = "build_farm_job"

    job_id = Int(name="job", primary=True)
    job = Reference(job_id, "Job.id")
    build_type = Unicode(allow_none=False)
    processor_id = Int(name="processor", allow_none=False)
    processor = Reference(processor_id, Processor.id)
    virtualized = Bool(allow_none=False, default=False)
    series = Unicode(allow_none=False, default="default")
    status = IntEnumCol(BuildStatus, allow_none=False,
                        default=BuildStatus.NEEDSBUILD)
    builder_id = Int(name="builder")
    builder = Reference(builder_id, Builder.id)
    date_first_dispatched = DateTime(tzinfo=_UTC)
    date_started = DateTime(tzinfo=_UTC)
    date_finished = DateTime(tzinfo=_UTC)
    log_id = Int(name="log")
    log = Reference(log_id, "LibraryFile.id")
    dependencies = Unicode()
    failure_count = Int(allow_none=False, default=0)


class BuildQueue(Storm):
    """A pending or running build: what the buildmaster schedules."""

    __storm_table__ = "build_queue"

    job_id = Int(name="job", primary=True)
    job = Reference(job_id, "Job.id")
    build_farm_job_id = Int(name="build_farm_job", allow_none=False)
    build_farm_job = Reference(build_farm_job_id, BuildFarmJob.job_id)
    build_type = Unicode(allow_none=False)
    processor_id = Int(name="processor", allow_none=False)
    processor = Reference(processor_id, Processor.id)
    virtualized = Bool(allow_none=False, default=False)
    lastscore = Int(allow_none=False, default=0)
    manual = Bool(allow_none=False, default=False)
    estimated_duration = TimeDelta(allow_none=False,
                                   default=timedelta(minutes=5))
    builder_id = Int(name="builder")
    builder = Reference(builder_id, Builder.id)
    build_cookie = Unicode()
    date_dispatched = DateTime(tzinfo=_UTC)
    logtail = Unicode()
    build_args = JSONB(allow_none=False, default_factory=dict)
    filemap = JSONB(allow_none=False, default_factory=dict)
    required_resources = List(type=Unicode(), default_factory=list)


class BuildFile(Storm):
    """A result file of a build."""

    __storm_table__ = "build_file"

    id = Int(primary=True)
    build_id = Int(name="build", allow_none=False)
    build = Reference(build_id, BuildFarmJob.job_id)
    library_file_id = Int(name="library_file", allow_none=False)
    library_file = Reference(library_file_id, "LibraryFile.id")
    filename = Unicode(allow_none=False)
