"""`twistd jobrunner`: options and service.

::

    twistd -n jobrunner --database URL --concurrency 8 \\
        --include noop --include http-notify --exclude sleep \\
        --poll-interval 5 --grace 30 --holder runner-1 \\
        --module lp_services.buildmaster.recipe

See docs/jobrunner.md.
"""

from twisted.application.service import MultiService
from twisted.python import usage

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    """Options of `twistd jobrunner`."""

    optParameters = [
        ["database", "d", None,
         "PostgreSQL URL (default: $LP_DATABASE_URL, else the running "
         "embedded server under $LP_HOME)."],
        ["concurrency", "n", 4, "Jobs at once (child processes).", int],
        ["poll-interval", None, 5.0,
         "Seconds between polls: NOTIFY wakes the runner at once; the poll "
         "catches scheduled jobs coming due, expired leases and anything a "
         "lost connection missed.", float],
        ["grace", None, 30.0,
         "On SIGTERM, seconds to let running jobs finish before handing "
         "them back.", float],
        ["holder", None, None,
         "Lease holder name, unique per live runner (default host:pid)."],
        ["claim-batch", None, None,
         "At most this many jobs per claim statement (default: "
         "concurrency x depth).", int],
        ["depth", None, 1,
         "Jobs sent ahead to each child process; more than 1 helps the "
         "throughput of very short jobs (a job's timeout starts when its "
         "child starts it).", int],
        ["config", "c", None, "Unused; accepted for compatibility."],
    ]

    def __init__(self):
        super().__init__()
        self["include"] = []
        self["exclude"] = []
        self["module"] = []

    def opt_include(self, name):
        """Claim only this job type (repeatable; default: all known)."""
        self["include"].append(name)

    def opt_exclude(self, name):
        """Never claim this job type (repeatable)."""
        self["exclude"].append(name)

    def opt_module(self, name):
        """Import this module to register more job types (repeatable)."""
        self["module"].append(name)

    def postOptions(self):
        if self["concurrency"] < 1:
            raise usage.UsageError("--concurrency must be at least 1")
        if self["poll-interval"] <= 0:
            raise usage.UsageError("--poll-interval must be positive")
        if self["depth"] < 1:
            raise usage.UsageError("--depth must be at least 1")
        if self["grace"] < 0:
            raise usage.UsageError("--grace must be >= 0")
        from lp_services.job.registry import job_types, load_modules

        try:
            load_modules(self["module"])
        except ImportError as error:
            raise usage.UsageError("cannot import job-type module: %s" % error)
        known = set(job_types.names())
        for name in self["include"] + self["exclude"]:
            if name not in known:
                raise usage.UsageError(
                    "unknown job type %r (known: %s)"
                    % (name, ", ".join(sorted(known))))
        names = set(self["include"]) or known
        names -= set(self["exclude"])
        if not names:
            raise usage.UsageError("no job types left to run")
        self["types"] = sorted(names)
        from lp_services.database.connection import (
            DatabaseUnreachable, resolve_database_url)

        try:
            self["url"] = resolve_database_url(self["database"],
                                               start_embedded=False)
        except DatabaseUnreachable as error:
            raise usage.UsageError(str(error))


def makeService(options):
    """Build the jobrunner service from its options."""
    from lp_services.job.registry import job_types
    from lp_services.job.runner import JobRunner, default_holder

    top = MultiService()
    runner = JobRunner(
        options["url"], [job_types.get(n) for n in options["types"]],
        holder=options["holder"] or default_holder(),
        concurrency=options["concurrency"], modules=options["module"],
        poll_interval=options["poll-interval"], grace=options["grace"],
        claim_batch=options["claim-batch"], depth=options["depth"])
    runner.setName("jobrunner")
    runner.setServiceParent(top)
    return top
