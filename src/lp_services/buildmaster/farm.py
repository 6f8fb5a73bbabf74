"""The farm: what every scanner shares (database, clock, file store,
agents) and the buildmaster's settings."""

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from twisted.internet import defer, error as ierror
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from lp_services.buildmaster.agentclient import AgentClient
from lp_services.buildmaster.logtail import LogtailBuffer
from lp_services.clock import utcnow

__all__ = [
    "Farm",
    "FarmConfig",
    "ScanError",
    "database_lost",
    "run_shell_command",
    "transaction",
]


#: Seconds between two scans of one builder. Launchpad's value: a build
#: takes minutes, so 15 s of delay in noticing its end costs little, while
#: 1,000 builders cost ~67 status calls a second. Dispatch does not wait
#: for it: NOTIFY wakes idle builders' scanners at once.
SCAN_INTERVAL = 15.0
#: How long a RUNNING build's lease lasts; scans renew it every interval,
#: so an expired lease means no buildmaster has looked for 40 intervals.
LEASE = timedelta(minutes=10)
#: Seconds after ``abort`` before a CANCELLING build is forced CANCELLED:
#: longer than any agent's own abort (launchpad-buildd gives a build 180 s
#: to die; our agent kills the sandbox at once), so the agent answers first.
CANCEL_TIMEOUT = 240.0
#: Seconds after which a builder's ``info()`` (arch tag, build types) is
#: read again; it is read at first contact and whenever the agent's
#: version changes too.
INFO_INTERVAL = 300.0
#: Seconds a master's lease on a builder lasts, and after which a master
#: without a heartbeat is presumed dead: its builders go to the others
#: within one lease plus one renewal (40 s by default).
BUILDER_LEASE = 30.0
#: Seconds between a master's heartbeats (and lease renewals).
LEASE_RENEWAL = 10.0
#: Seconds a virtual builder's reset command may run.
RESET_TIMEOUT = 300.0
#: Seconds to keep pinging (``echo``) a reset builder before giving up: a
#: VM needs time to boot.
ECHO_TIMEOUT = 180.0
#: Seconds between pings of a resetting builder.
ECHO_INTERVAL = 2.0
#: Seconds between logtail/lease writes: one statement per flush for all
#: builders, instead of one transaction per builder per scan.
LOGTAIL_FLUSH_INTERVAL = 5.0


def database_lost(error: BaseException) -> bool:
    """Whether ``error`` is the database being out of reach (which the
    transactor logs once per outage), not a fault of a builder or build."""
    import psycopg2
    from storm.exceptions import DisconnectionError

    return isinstance(error, (DisconnectionError, psycopg2.OperationalError,
                              psycopg2.InterfaceError))


class ScanError(Exception):
    """A scan found something wrong.

    :param immediate: counts as a failure at once (it cannot be a glitch:
        a bad result, a failed dispatch, a failed reset) rather than after
        :data:`SCAN_FAILURE_THRESHOLD` consecutive failed scans.
    """

    def __init__(self, message, immediate=True):
        super().__init__(message)
        self.immediate = immediate


@dataclass
class FarmConfig:
    """The buildmaster's settings (see ``twistd buildmaster --help``)."""

    identity: str
    files_url: str
    interval: float = SCAN_INTERVAL
    lease: timedelta = LEASE
    cancel_timeout: float = CANCEL_TIMEOUT
    reset_timeout: float = RESET_TIMEOUT
    echo_timeout: float = ECHO_TIMEOUT
    echo_interval: float = ECHO_INTERVAL
    logtail_interval: float = LOGTAIL_FLUSH_INTERVAL
    info_interval: float = INFO_INTERVAL
    builder_lease: float = BUILDER_LEASE
    lease_renewal: float = LEASE_RENEWAL


class _CommandProtocol(ProcessProtocol):
    def __init__(self, finished):
        self.finished = finished
        self.output = b""

    def outReceived(self, data):
        self.output = (self.output + data)[-4096:]

    errReceived = outReceived

    def processEnded(self, reason):
        code = getattr(reason.value, "exitCode", None)
        self.finished.callback(-1 if code is None else code)


def run_shell_command(reactor, command: str, env: dict, timeout: float):
    """Run ``command`` with /bin/sh (reactor.spawnProcess); fire with its
    exit code (-1 when killed by a signal or the timeout)."""
    finished = defer.Deferred()
    proto = _CommandProtocol(finished)
    transport = reactor.spawnProcess(
        proto, "/bin/sh", ["/bin/sh", "-c", command],
        env=dict(os.environ, **env))

    def kill():
        try:
            transport.signalProcess("KILL")
        except ierror.ProcessExitedAlready:
            pass
    timer = reactor.callLater(timeout, kill)

    def done(code):
        if timer.active():
            timer.cancel()
        return code
    return finished.addCallback(done)


class Farm:
    """What every scanner shares: database, clock, file store, agents.

    :param transactor: runs every database function (in threads).
    :param clock: the IReactorTime scans and timeouts use.
    :param file_store: where results are stored and chroots served from.
    :param agent_factory: ``f(vitals) -> IAgentClient``; default real
        :class:`AgentClient` instances.
    :param run_command: ``f(command, env, timeout) -> Deferred[int]``
        for virtual builders' reset commands.
    """

    log = Logger()

    def __init__(self, transactor, clock, file_store, config: FarmConfig,
                 agent_factory=None, run_command=None, reactor=None):
        self.transactor = transactor
        self.clock = clock
        self.file_store = file_store
        self.config = config
        self.reactor = reactor if reactor is not None else clock
        self._agent_factory = agent_factory
        self._agents = {}
        self._run_command = run_command
        #: (processor id, virtualized) pairs with work not on a builder.
        self.pending: set[tuple[int, bool]] = set()
        self.logtails = LogtailBuffer(self)

    def now(self):
        return utcnow(self.clock)

    def agent_for(self, vitals):
        """The agent client of a builder (cached per url and secret)."""
        key = (vitals.url, vitals.secret)
        agent = self._agents.get(key)
        if agent is None:
            if self._agent_factory is not None:
                agent = self._agent_factory(vitals)
            else:
                agent = AgentClient(vitals.url, vitals.secret, self.reactor)
            self._agents[key] = agent
        set_lease = getattr(agent, "set_lease", None)
        if set_lease is not None:
            # Every call carries this master's lease epoch: the agent
            # refuses state changes from an older one (leases.py).
            set_lease(self.config.identity, vitals.lease_epoch)
        return agent

    def file_url(self, sha1: str) -> str:
        """Where agents fetch a stored file (the master's file store)."""
        return "%s/files/%s" % (self.config.files_url.rstrip("/"), sha1)

    def build_url(self, job_id: int) -> str:
        """Where people see a build."""
        return "%s/builds/%d" % (self.config.files_url.rstrip("/"), job_id)

    def run_command(self, command, env, timeout):
        if self._run_command is not None:
            return self._run_command(command, env, timeout)
        return run_shell_command(self.reactor, command, env, timeout)

    def incoming_dir(self) -> Path:
        path = self.file_store.root / ".incoming"
        path.mkdir(parents=True, exist_ok=True)
        return path


def transaction(function, *args, **kwargs):
    """A transactor function running ``function(cursor, *args, **kwargs)``
    on the Store's connection: ``farm.transactor.run(transaction(f, ...))``."""
    def run(store):
        from lp_services.database.sql import raw_cursor

        return function(raw_cursor(store), *args, **kwargs)
    return run
