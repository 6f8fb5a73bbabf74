"""`twistd jobrunner`: options and service.

::

    twistd -n jobrunner --database URL --concurrency 8 \\
        --include noop --include http-notify --exclude sleep \\
        --poll-interval 5 --grace 30 --holder runner-1 \\
        --metrics-port tcp:9101:interface=127.0.0.1

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
        ["metrics-port", None, None,
         "strports description to serve Prometheus /metrics on (e.g. "
         "tcp:9101:interface=127.0.0.1); default: none."],
        ["config", "c", None,
         "Configuration file (TOML, a [jobrunner] table with the same "
         "names, '_' for '-'; include, exclude and module are lists)."],
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
        if self["config"]:
            self._read_config(self["config"])
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


    _LISTS = ("include", "exclude", "module")
    _TYPES = {"concurrency": int, "claim-batch": int, "depth": int,
              "poll-interval": float, "grace": float}

    def _read_config(self, path) -> None:
        """Apply a TOML file's settings where the command line left the
        default (the command line wins)."""
        from lp_services.config import ConfigError, read_daemon_config

        known = {p[0] for p in self.optParameters} - {"config"}
        try:
            settings = read_daemon_config(path, "jobrunner", known,
                                          lists=self._LISTS)
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None
        for option, value in settings.items():
            if option in self._LISTS:
                if not self[option]:
                    self[option] = list(value)
            elif self[option] == self.defaults.get(option):
                convert = self._TYPES.get(option, str)
                try:
                    self[option] = convert(value)
                except ValueError:
                    raise usage.UsageError(
                        "setting %r in %s: %r is not a %s" % (
                            option, path, value, convert.__name__)) from None


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
    if options["metrics-port"]:
        from lp_services.metrics import make_metrics_service

        make_metrics_service(options["metrics-port"]).setServiceParent(top)
    return top
