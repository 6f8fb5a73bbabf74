"""`twistd buildmaster`: options and the service.

``makeService`` builds a MultiService of small services, started in
order and stopped in reverse:

1. the transactor (threads for every Storm/SQL call),
2. the HTTP site (file store for agents, logs and results for people),
3. the builder manager (refresher, one scanner per builder, logtail
   writer),
4. the LISTEN/NOTIFY listener that wakes scanners.

Nothing touches the database or the network before ``startService``.
"""

import os
import socket
from datetime import timedelta

from twisted.application import service, strports
from twisted.internet import defer
from twisted.python import usage

from lp_services.buildmaster import farm as F
from lp_services.buildmaster.service import BuilderManager

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    """Options of `twistd buildmaster` (also readable from ``--config``, a
    TOML file with a ``[buildmaster]`` table: ``files_url = "..."``)."""

    optParameters = [
        ["config", "c", None, "Configuration file (TOML, [buildmaster] table)."],
        ["database", "d", None,
         "PostgreSQL URL (default $LP_DATABASE_URL, else the embedded "
         "server under --home, which must be running)."],
        ["home", None, None, "State directory (default $LP_HOME, else "
         "the one of docs/configuration.md)."],
        ["port", "p", "tcp:8220",
         "strports description of the HTTP file store and build pages."],
        ["files-url", None, None,
         "Base URL agents and people reach the HTTP site at "
         "(default http://<fqdn>:<port>)."],
        ["identity", None, None,
         "Lease holder name of this buildmaster (default "
         "buildmaster@<hostname>); keep it stable across restarts."],
        ["interval", None, str(F.SCAN_INTERVAL), "Seconds between scans."],
        ["cancel-timeout", None, str(F.CANCEL_TIMEOUT),
         "Seconds after abort before a cancellation is forced."],
        ["builder-lease", None, str(F.BUILDER_LEASE),
         "Seconds a master's lease on a builder lasts (several masters "
         "share builders by lease; see docs/buildmaster.md)."],
        ["lease-renewal", None, str(F.LEASE_RENEWAL),
         "Seconds between a master's heartbeats and lease renewals."],
        ["info-interval", None, str(F.INFO_INTERVAL),
         "Seconds after which each builder's info() (arch tag, build "
         "types) is read again."],
        ["reset-timeout", None, str(F.RESET_TIMEOUT),
         "Seconds a virtual builder's reset command may run."],
        ["echo-timeout", None, str(F.ECHO_TIMEOUT),
         "Seconds to wait for a reset builder to answer."],
        ["lease", None, str(int(F.LEASE.total_seconds())),
         "Seconds of a running build's lease."],
        ["threads", None, "4", "Database threads."],
        ["upload-limit", None, str(2 << 30),
         "Largest file, in bytes, the API accepts as an upload (413 "
         "beyond; the rest of the body is dropped as it arrives)."],
    ]

    def postOptions(self):
        path = self["config"]
        if path:
            for key, value in _read_config(path).items():
                if self[key] == self.defaults.get(key):
                    self[key] = value
        for key in ("interval", "cancel-timeout", "info-interval",
                    "builder-lease", "lease-renewal",
                    "reset-timeout",
                    "echo-timeout", "lease"):
            try:
                if float(self[key]) <= 0:
                    raise ValueError
            except ValueError:
                raise usage.UsageError("--%s must be a positive number" % key)
        if 2 * float(self["lease-renewal"]) > float(self["builder-lease"]):
            raise usage.UsageError(
                "--lease-renewal must be at most half of --builder-lease "
                "(a lease must survive one missed renewal)")
        try:
            self["threads"] = int(self["threads"])
        except ValueError:
            raise usage.UsageError("--threads must be an integer")
        try:
            self["upload-limit"] = int(self["upload-limit"])
            if self["upload-limit"] < 0:
                raise ValueError
        except ValueError:
            raise usage.UsageError("--upload-limit must be a whole number "
                                   "of bytes")


def _read_config(path) -> dict:
    """The ``[buildmaster]`` settings of a TOML file, as option strings."""
    from lp_services.config import ConfigError, read_daemon_config

    known = {key for key, *_ in Options.optParameters} - {"config"}
    try:
        settings = read_daemon_config(path, "buildmaster", known)
    except ConfigError as error:
        raise usage.UsageError(str(error)) from None
    return {option: str(value) for option, value in settings.items()}


class TransactorService(service.Service):
    """Starts and stops a transactor's threads."""

    def __init__(self, transactor):
        self.transactor = transactor

    def startService(self):
        super().startService()
        self.transactor.start()

    def stopService(self):
        super().stopService()
        self.transactor.stop()


class SequentialMultiService(service.MultiService):
    """Starts children in order and stops them in reverse order, each
    after the previous one has finished stopping (the manager's last
    writes need the transactor, which stops last)."""

    def stopService(self):
        service.Service.stopService(self)

        async def stop_all():
            for child in reversed(list(self)):
                await defer.maybeDeferred(child.stopService)
        return defer.Deferred.fromCoroutine(stop_all())


def _port_number(description: str) -> int:
    for part in description.split(":")[1:]:
        if part.isdigit():
            return int(part)
    return 8220


def makeService(options, reactor=None):
    """Build the buildmaster service from its options."""
    if reactor is None:
        from twisted.internet import reactor
    from lp_services.buildmaster.notify import NotifyListener
    from lp_services.buildmaster.web import build_site
    from lp_services.database.connection import resolve_database_url
    from lp_services.database.transactor import Transactor
    from lp_services.filestore.store import default_file_store

    url = resolve_database_url(options["database"], options["home"],
                               start_embedded=False)
    files_url = options["files-url"] or "http://%s:%d" % (
        socket.getfqdn(), _port_number(options["port"]))
    identity = options["identity"] or "buildmaster@%s" % socket.gethostname()
    config = F.FarmConfig(
        identity=identity, files_url=files_url,
        interval=float(options["interval"]),
        lease=timedelta(seconds=float(options["lease"])),
        cancel_timeout=float(options["cancel-timeout"]),
        info_interval=float(options["info-interval"]),
        builder_lease=float(options["builder-lease"]),
        lease_renewal=float(options["lease-renewal"]),
        reset_timeout=float(options["reset-timeout"]),
        echo_timeout=float(options["echo-timeout"]))
    transactor = Transactor(url, reactor=reactor,
                            max_threads=options["threads"])
    home = options["home"] or os.environ.get("LP_HOME")
    farm = F.Farm(transactor, reactor, default_file_store(home), config,
                  reactor=reactor)
    top = SequentialMultiService()
    TransactorService(transactor).setServiceParent(top)
    manager = BuilderManager(farm)
    strports.service(options["port"], build_site(
        farm, manager, upload_limit=options["upload-limit"]),
        reactor=reactor).setServiceParent(top)
    manager.setServiceParent(top)
    NotifyListener(url, manager, reactor).setServiceParent(top)
    top.farm, top.manager = farm, manager
    return top
