"""Scanning builders: one scanner per builder, what they share, and the
service that keeps the set of scanners in step with the builder table.

A scan asks the builder's agent for its status and acts on what it says
together with what the database says (:class:`BuilderVitals`):

========================  ==================================================
agent / database           action
========================  ==================================================
IDLE, no build             clean builder: claim the best candidate and
                           dispatch it (ensurepresent chroot and files, build)
BUILDING, our cookie       buffer the logtail (written in batches) and renew
                           the build's lease
WAITING, our cookie        collect: fetch log and files, verify, store, map
                           the result, finish the job, ``clean`` the agent
anything, build is         ``abort`` once; CANCELLED when the agent reports
CANCELLING                 ABORTED, forced after ``cancel_timeout``
other cookie, or IDLE      the build was lost: reset it (retry policy)
while we think it builds
busy, no build             a leftover: ``abort`` or ``clean`` it
virtual builder, dirty     run the reset command, ``echo`` until it answers,
                           then CLEAN
========================  ==================================================

A scan never raises: failures go to failure handling (:mod:`.blame`).
Every database change runs through the transactor and re-reads the
builder's vitals in the same transaction, so a scanner always acts on
what it last committed.
"""

import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer, error as ierror, task
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.agent import AgentClient, AgentError
from lp_services.buildmaster.blame import (
    BUILDER_FAILURE_THRESHOLD,
    SCAN_FAILURE_THRESHOLD,
    Action,
    judge_failure,
)
from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.clock import utcnow
from lp_services.filestore.store import InvalidFileName, check_filename

__all__ = [
    "BuilderManager",
    "BuilderScanner",
    "Farm",
    "FarmConfig",
    "LogtailBuffer",
    "ScanError",
    "run_shell_command",
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
#: Idle scanners woken per "queued" notification (the rest pick work up
#: at their next scan); bounds the claims a burst of requests causes.
WAKE_PER_NOTIFICATION = 2

_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_RESULTS = {
    "OK": BuildStatus.FULLYBUILT,
    "PACKAGEFAIL": BuildStatus.FAILEDTOBUILD,
    "DEPFAIL": BuildStatus.MANUALDEPWAIT,
    "CHROOTFAIL": BuildStatus.CHROOTWAIT,
}


def _database_lost(error: BaseException) -> bool:
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


def _txn(function, *args, **kwargs):
    """Adapt ``function(cursor, ...)`` to a transactor function."""
    def run(store):
        from lp_services.database.sql import raw_cursor

        return function(raw_cursor(store), *args, **kwargs)
    return run


class BuilderScanner:
    """Scans one builder on a LoopingCall; see the module docstring."""

    log = Logger()

    def __init__(self, farm: Farm, vitals: B.BuilderVitals):
        self.farm = farm
        self.vitals = vitals
        self.name = vitals.name
        #: Bumped at every commit; the refresher does not overwrite vitals
        #: read before a scanner's own later change.
        self.generation = 0
        self.scan_failures = 0
        self.cancel_deadline = None
        #: The agent's state at the last scan (IDLE, BUILDING, ...).
        self.last_state = None
        self._loop = None
        self._delayed = None
        self._running = False
        self._again = False
        self._waiters = []
        self._stopped = False

    # -- scheduling -----------------------------------------------------
    def start(self, delay: float = 0.0) -> None:
        """Start scanning every ``config.interval`` after ``delay``."""
        def begin():
            self._delayed = None
            self._loop = task.LoopingCall(self.scan)
            self._loop.clock = self.farm.clock
            self._loop.start(self.farm.config.interval, now=True).addErrback(
                lambda f: self.log.failure("scan loop of {name} died",
                                           f, name=self.name))
        self._delayed = self.farm.clock.callLater(delay, begin)

    def stop(self):
        """Stop scanning; fire when a scan in progress has finished."""
        self._stopped = True
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._running:
            d = defer.Deferred()
            self._waiters.append(d)
            return d
        return defer.succeed(None)

    def scan(self):
        """Scan now, or right after the scan in progress; fire when done."""
        if self._stopped:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append(d)
        if self._running:
            self._again = True
        else:
            self._kick()
        return d

    def _kick(self):
        self._running = True
        waiters, self._waiters = self._waiters, []
        d = defer.Deferred.fromCoroutine(self._scan_once())

        def done(_):
            self._running = False
            for waiter in waiters:
                waiter.callback(None)
            again, self._again = self._again, False
            if again and not self._stopped:
                self._kick()
            else:
                rest, self._waiters = self._waiters, []
                for waiter in rest:
                    waiter.callback(None)
        d.addBoth(done)

    @property
    def scanning(self) -> bool:
        return self._running

    def idle_for(self, processor: int, virtualized: bool) -> bool:
        """Whether a "queued" notification for this pair should wake us."""
        v = self.vitals
        return (v is not None and v.build is None and v.builderok
                and not v.manual and v.virtualized == virtualized
                and processor in v.processors
                and self.last_state in (None, "IDLE")
                and (v.clean_status == BuilderCleanStatus.CLEAN
                     or not v.virtualized))

    # -- database -------------------------------------------------------
    async def _commit(self, function, *args, _store=False, **kwargs):
        """Run ``function(cursor, ...)`` (``function(store, cursor, ...)``
        with ``_store``) and re-read our vitals, in one transaction;
        return the function's result."""
        name = self.name

        def run(store):
            from lp_services.database.sql import raw_cursor

            cursor = raw_cursor(store)
            result = None
            if function is not None:
                if _store:
                    result = function(store, cursor, *args, **kwargs)
                    cursor = raw_cursor(store)
                else:
                    result = function(cursor, *args, **kwargs)
            return result, B.load_vitals(cursor, name)
        result, vitals = await self.farm.transactor.run(run)
        self.generation += 1
        self.vitals = vitals[0] if vitals else None
        return result

    def _reload(self):
        return self._commit(None)

    # -- the scan -------------------------------------------------------
    async def _scan_once(self):
        from lp_services.metrics import record_scan_duration

        started = self.farm.clock.seconds()
        try:
            await self._scan()
        except Exception as error:  # one bad scan never kills the loop
            if _database_lost(error):
                # Not the builder's fault: the transactor has logged the
                # outage once; the next scan after it is back carries on.
                return
            immediate = getattr(error, "immediate", False)
            self.log.warn("scan of {name} failed: {error}", name=self.name,
                          error=str(error) or type(error).__name__)
            try:
                await self._scan_failed(error, immediate)
            except Exception:
                self.log.failure("failure handling of {name} failed",
                                 name=self.name)
        else:
            self.scan_failures = 0
        finally:
            record_scan_duration(self.farm.clock.seconds() - started)

    async def _scan(self):
        v = self.vitals
        if v is None:
            return
        if v.build is None:
            if not v.builderok:
                return  # disabled and empty: leave it alone
            if v.virtualized and v.clean_status != BuilderCleanStatus.CLEAN:
                await self._reset_virtual(v)
                v = self.vitals
                if v is None or v.build is not None:
                    return
        agent = self.farm.agent_for(v)
        status = await agent.status()
        self.last_state = status.state
        if status.version and status.version != v.version:
            await self._commit(B.record_version, v.id, status.version)
            v = self.vitals
            if v is None:
                return
        if v.build is None:
            await self._scan_without_build(v, agent, status)
            return
        if status.build_id != v.build.cookie:
            await self._reload()
            v = self.vitals
            if v is None or v.build is None:
                return  # finished meanwhile; the next scan sees the rest
            if status.build_id != v.build.cookie:
                await self._lost(v, agent, status)
                return
        if v.build.status == BuildStatus.CANCELLING:
            await self._scan_cancelling(v, agent, status)
            return
        self.cancel_deadline = None
        if status.state == "BUILDING":
            self.farm.logtails.put(v.build.job_id, v.build.cookie,
                                   status.logtail)
        elif status.state == "WAITING":
            await self._collect(v, agent, status)

    async def _scan_without_build(self, v, agent, status):
        if status.state != "IDLE":
            await self._reload()
            v = self.vitals
            if v is None or v.build is not None:
                return
            if status.state == "WAITING":
                self.log.info("{name}: cleaning a build it no longer holds",
                              name=self.name)
                await agent.clean()
            elif status.state == "BUILDING":
                self.log.info("{name}: aborting unknown build {id}",
                              name=self.name, id=status.build_id)
                await agent.abort()
            return
        if v.clean_status != BuilderCleanStatus.CLEAN:
            # A non-virtual builder whose agent is IDLE is clean: the
            # agent's `clean` already removed the last build's files.
            await self._commit(B.set_clean_status, v.id,
                               BuilderCleanStatus.CLEAN, self.farm.now())
            v = self.vitals
        if (v is not None and v.build is None and v.builderok
                and not v.manual
                and v.clean_status == BuilderCleanStatus.CLEAN):
            await self._dispatch(v, agent)

    # -- dispatch -------------------------------------------------------
    async def _dispatch(self, v, agent):
        pending = self.farm.pending
        if not any((p, v.virtualized) in pending for p in v.processors):
            return
        config = self.farm.config
        now = self.farm.now()

        def claim(cursor):
            import psycopg2.errors

            cursor.execute("SAVEPOINT claim")
            try:
                found = Q.claim_build(
                    cursor, builder_id=v.id, processors=list(v.processors),
                    virtualized=v.virtualized, resources=list(v.resources),
                    now=now, holder=config.identity, lease=config.lease)
            except psycopg2.errors.UniqueViolation:
                # Another buildmaster gave this builder a build first.
                cursor.execute("ROLLBACK TO SAVEPOINT claim")
                return None
            if found is not None:
                B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY,
                                   now)
            return found
        found = await self._commit(claim)
        if found is None:
            return
        if found.chroot_sha1 is None:
            await self._commit(self._no_chroot, found, v.id)
            return
        self.log.info("{name}: dispatching build {job}", name=self.name,
                      job=found.job_id)
        try:
            await self._start_build(v, agent, found)
        except Exception as error:
            await self._dispatch_failed(v, found, error)
        else:
            self.last_state = "BUILDING"
            if found.queued_at is not None:
                from lp_services.metrics import record_dispatch_latency

                record_dispatch_latency(
                    max(0.0, (self.farm.now() - found.queued_at).total_seconds()))

    def _no_chroot(self, cursor, found, builder_id):
        now = self.farm.now()
        Q.finish_build(cursor, found.job_id, found.cookie, now,
                       BuildStatus.CHROOTWAIT,
                       last_error="no chroot for %s series %s"
                       % (found.processor, found.series))
        B.set_clean_status(cursor, builder_id, BuilderCleanStatus.CLEAN, now)

    async def _start_build(self, v, agent, found):
        secret = v.secret or ""
        sha1s = [found.chroot_sha1] + sorted(set(found.filemap.values()))
        for sha1 in sha1s:
            present, info = await agent.ensurepresent(
                sha1, self.farm.file_url(sha1), "buildd", secret)
            if not present:
                raise AgentError("ensurepresent(%s) failed: %s" % (sha1, info))
        args = {"arch_tag": found.processor, "series": found.series,
                "fast_cleanup": found.virtualized,
                "build_url": self.farm.build_url(found.job_id)}
        args.update(found.build_args)
        answer, info = await agent.build(found.cookie, found.build_type,
                                         found.chroot_sha1,
                                         dict(found.filemap), args)
        if answer != "BuilderStatus.BUILDING":
            raise AgentError("build() answered %s: %s" % (answer, info))

    async def _dispatch_failed(self, v, found, error):
        """The agent failed during dispatch: the build goes back to
        WAITING and the builder takes the failure."""
        self.log.warn("{name}: dispatch of {job} failed: {error}",
                      name=self.name, job=found.job_id, error=str(error))
        now = self.farm.now()

        def undo(cursor):
            Q.reset_build(cursor, found.job_id, found.cookie, now,
                          "dispatch failed: %s" % error)
            count, _ = B.count_failure(cursor, v.id, None)
            if count >= BUILDER_FAILURE_THRESHOLD:
                B.builder_failed(cursor, v.id, "dispatch failed %d times; "
                                 "last: %s" % (count, error))
        await self._commit(undo)

    # -- collection -----------------------------------------------------
    async def _collect(self, v, agent, status):
        build = v.build
        result = status.result
        now = self.farm.now()
        if result == "GIVENBACK":
            await self._commit(Q.reset_build, build.job_id, build.cookie, now,
                               "given back by the builder")
            await self._clean_agent(agent)
            return
        if result not in _RESULTS:
            raise ScanError("builder reported %s for build %d"
                            % (result, build.job_id))
        if result == "OK":
            await self._commit(Q.mark_gathering, build.job_id, build.cookie)
        fetched = await self._fetch_results(v, agent, status)
        try:
            await self._commit(self._store_results, v, fetched,
                               _RESULTS[result], status, now, _store=True)
        finally:
            for _, _, path in fetched:
                path.unlink(missing_ok=True)
        self.log.info("{name}: build {job} ended {result}", name=self.name,
                      job=build.job_id, result=_RESULTS[result].name)
        await self._clean_agent(agent)

    async def _fetch_results(self, v, agent, status):
        """Fetch the log and every result file to temporary files;
        return [(name, sha1 or None, path)]. Refuses bad names and
        hashes before fetching anything."""
        build = v.build
        wanted = [("buildlog_%s_%d.txt" % (build.build_type, build.job_id),
                   "buildlog")]
        for name, sha1 in sorted(status.filemap.items()):
            try:
                check_filename(name)
            except InvalidFileName as error:
                raise ScanError("agent returned an unsafe result file name: "
                                "%s" % error) from None
            if not _SHA1.match(sha1):
                raise ScanError("agent returned a bad sha1 %r for %r"
                                % (sha1, name))
            wanted.append((name, sha1))
        fetched = []
        try:
            for name, sha1 in wanted:
                fd, tmp = tempfile.mkstemp(dir=self.farm.incoming_dir(),
                                           prefix="fetch-")
                path = Path(tmp)
                fetched.append((name, None if sha1 == "buildlog" else sha1,
                                path))
                with os.fdopen(fd, "wb") as out:
                    try:
                        await agent.fetch_file(sha1, out)
                    except AgentError as error:
                        raise ScanError(str(error)) from None
        except BaseException:
            for _, _, path in fetched:
                path.unlink(missing_ok=True)
            raise
        return fetched

    def _store_results(self, store, cursor, v, fetched, build_status,
                       status, now):
        from lp_services.database.sql import raw_cursor

        fs = self.farm.file_store
        log_id, files = None, []
        for name, sha1, path in fetched:
            with open(path, "rb") as stream:
                record = fs.add(store, name, stream, expected_sha1=sha1,
                                mimetype="text/plain" if sha1 is None
                                else "application/octet-stream")
            if sha1 is None:
                log_id = record.id
            else:
                files.append((name, record.id))
        cursor = raw_cursor(store)
        builder = Q.finish_build(
            cursor, v.build.job_id, v.build.cookie, now, build_status,
            log_id=log_id, files=files,
            dependencies=(status.dependencies
                          if build_status == BuildStatus.MANUALDEPWAIT
                          else None),
            last_error=(None if build_status == BuildStatus.FULLYBUILT
                        else "build ended %s" % build_status.name))
        if builder is not None:
            B.reset_failure_count(cursor, v.id)

    async def _clean_agent(self, agent):
        """Clean the agent; a non-virtual builder is then CLEAN (a virtual
        one stays DIRTY until it is reset)."""
        await agent.clean()
        self.last_state = "IDLE"
        v = self.vitals
        if v is not None and not v.virtualized and v.build is None:
            await self._commit(B.set_clean_status, v.id,
                               BuilderCleanStatus.CLEAN, self.farm.now(),
                               expected=BuilderCleanStatus.DIRTY)

    # -- lost builds and cancellation ------------------------------------
    async def _lost(self, v, agent, status):
        build = v.build
        now = self.farm.now()
        self.log.warn("{name}: build {job} lost (agent: {state} {id})",
                      name=self.name, job=build.job_id, state=status.state,
                      id=status.build_id)

        def handle(cursor):
            if build.status == BuildStatus.CANCELLING:
                Q.finish_build(cursor, build.job_id, build.cookie, now,
                               BuildStatus.CANCELLED,
                               last_error="cancelled (lost on the builder)")
            else:
                Q.reset_build(cursor, build.job_id, build.cookie, now,
                              "build lost: agent reports %s %s"
                              % (status.state, status.build_id or ""))
            B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY, now)
        await self._commit(handle)
        self.cancel_deadline = None
        if status.state == "BUILDING":
            await agent.abort()
        elif status.state == "WAITING":
            await self._clean_agent(agent)

    async def _scan_cancelling(self, v, agent, status):
        build = v.build
        seconds = self.farm.clock.seconds()
        if status.state == "WAITING":
            await self._commit(Q.finish_build, build.job_id, build.cookie,
                               self.farm.now(), BuildStatus.CANCELLED,
                               last_error="cancelled")
            self.cancel_deadline = None
            self.log.info("{name}: build {job} cancelled", name=self.name,
                          job=build.job_id)
            await self._clean_agent(agent)
            return
        if self.cancel_deadline is None:
            self.cancel_deadline = seconds + self.farm.config.cancel_timeout
            if status.state == "BUILDING":
                await agent.abort()
            return
        if seconds < self.cancel_deadline:
            return
        self.log.warn("{name}: build {job} did not abort in time; "
                      "forcing CANCELLED", name=self.name, job=build.job_id)
        now = self.farm.now()

        def force(cursor):
            Q.finish_build(cursor, build.job_id, build.cookie, now,
                           BuildStatus.CANCELLED,
                           last_error="cancelled (abort timed out)")
            B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY, now)
        await self._commit(force)
        self.cancel_deadline = None

    # -- virtual builders --------------------------------------------------
    async def _reset_virtual(self, v):
        config = self.farm.config
        if not v.reset_command:
            raise ScanError("virtualized builder %s has no reset command"
                            % v.name)
        await self._commit(B.set_clean_status, v.id,
                           BuilderCleanStatus.CLEANING, self.farm.now())
        self.log.info("{name}: resetting", name=self.name)
        code = await self.farm.run_command(
            v.reset_command,
            {"LP_BUILDER_NAME": v.name, "LP_BUILDER_URL": v.url},
            config.reset_timeout)
        if code != 0:
            raise ScanError("reset command of %s exited with %s"
                            % (v.name, code))
        agent = self.farm.agent_for(v)
        clock = self.farm.clock
        deadline = clock.seconds() + config.echo_timeout
        while True:
            try:
                await agent.echo("ping")
                break
            except AgentError as error:
                if clock.seconds() >= deadline:
                    raise ScanError("%s did not answer within %ss of its "
                                    "reset: %s" % (v.name, config.echo_timeout,
                                                   error)) from None
                await task.deferLater(clock, config.echo_interval,
                                      lambda: None)
        await self._commit(B.set_clean_status, v.id, BuilderCleanStatus.CLEAN,
                           self.farm.now(),
                           expected=BuilderCleanStatus.CLEANING)
        self.last_state = None

    # -- failure handling ------------------------------------------------
    async def _scan_failed(self, error, immediate):
        """Count and judge a failure (Launchpad's rules, see .blame)."""
        self.scan_failures += 1
        if not immediate and self.scan_failures % SCAN_FAILURE_THRESHOLD:
            return
        await self._reload()
        v = self.vitals
        if v is None:
            return
        build = v.build
        now = self.farm.now()
        message = str(error) or type(error).__name__

        def judge(cursor):
            builder_count, job_count = B.count_failure(
                cursor, v.id, build.job_id if build else None)
            if build is not None and build.status == BuildStatus.CANCELLING:
                Q.finish_build(cursor, build.job_id, build.cookie, now,
                               BuildStatus.CANCELLED,
                               last_error="cancelled (after: %s)" % message)
                B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY,
                                   now)
                return
            builder_action, job_action = judge_failure(
                builder_count, job_count, retry=not immediate)
            if build is not None:
                if job_action is Action.FAIL:
                    Q.finish_build(cursor, build.job_id, build.cookie, now,
                                   BuildStatus.FAILEDTOBUILD,
                                   last_error=message)
                elif job_action is Action.RESET:
                    Q.reset_build(cursor, build.job_id, build.cookie, now,
                                  message)
            if builder_action is Action.FAIL:
                B.builder_failed(cursor, v.id, "failed %d times; last: %s"
                                 % (builder_count, message))
            if builder_action is not Action.NOTHING or (
                    build is not None and job_action is not Action.NOTHING):
                B.set_clean_status(cursor, v.id, BuilderCleanStatus.DIRTY,
                                   now)
        await self._commit(judge)
        self.cancel_deadline = None


class LogtailBuffer:
    """Collects BUILDING builds' logtails and writes them, and renews
    their leases, in one statement per flush.

    A build whose logtail has not changed is written again only when its
    lease is a quarter spent, so a farm of quiet builds costs few row
    updates.
    """

    log = Logger()

    def __init__(self, farm: Farm):
        self.farm = farm
        self._pending = {}
        self._written = {}   # job -> (cookie, logtail, clock seconds)
        self.flushes = 0

    def put(self, job_id: int, cookie: str, logtail: str | None) -> None:
        logtail = (logtail or "").replace("\x00", "")
        now = self.farm.clock.seconds()
        written = self._written.get(job_id)
        renew_after = self.farm.config.lease.total_seconds() / 4
        if (written is not None and written[:2] == (cookie, logtail)
                and now - written[2] < renew_after):
            return
        self._pending[job_id] = (cookie, logtail)

    def __len__(self):
        return len(self._pending)

    def flush(self):
        """Write what was buffered; fire when committed."""
        if not self._pending:
            return defer.succeed(0)
        batch, self._pending = self._pending, {}
        config = self.farm.config
        seconds = self.farm.clock.seconds()
        for job_id, (cookie, logtail) in batch.items():
            self._written[job_id] = (cookie, logtail, seconds)
        stale = seconds - config.lease.total_seconds()
        for job_id in [j for j, w in self._written.items() if w[2] < stale]:
            del self._written[job_id]
        lease_expires = self.farm.now() + config.lease
        jobs = list(batch)

        def write(cursor):
            Q._execute(cursor, """
                WITH t AS (
                    SELECT * FROM unnest(%(jobs)s::bigint[],
                                         %(cookies)s::text[],
                                         %(tails)s::text[])
                        AS t(job, cookie, tail)),
                q AS (
                    UPDATE build_queue SET logtail = t.tail
                    FROM t
                    WHERE build_queue.job = t.job
                      AND build_queue.build_cookie = t.cookie
                    RETURNING build_queue.job)
                UPDATE job SET lease_expires = %(lease)s,
                               lease_holder = %(holder)s
                FROM q WHERE job.id = q.job AND job.status = 1
                """, {"jobs": jobs, "cookies": [batch[j][0] for j in jobs],
                      "tails": [batch[j][1] for j in jobs],
                      "lease": lease_expires, "holder": config.identity})
            return cursor.rowcount
        self.flushes += 1
        return self.farm.transactor.run(_txn(write))


class BuilderManager(Service):
    """Keeps one scanner per active builder, refreshes their vitals and
    the pending-work set every interval in two statements, flushes
    logtails, and wakes scanners on notifications."""

    log = Logger()

    def __init__(self, farm: Farm):
        self.farm = farm
        self.scanners: dict[str, BuilderScanner] = {}
        self._refresh_loop = None
        self._logtail_loop = None
        self.refreshes = 0

    def startService(self):
        super().startService()
        clock = self.farm.clock
        self._refresh_loop = task.LoopingCall(self.refresh)
        self._refresh_loop.clock = clock
        self._refresh_loop.start(self.farm.config.interval, now=True).addErrback(
            lambda f: self.log.failure("builder refresher died", f))
        self._logtail_loop = task.LoopingCall(self._flush_logtails)
        self._logtail_loop.clock = clock
        self._logtail_loop.start(self.farm.config.logtail_interval,
                                 now=False).addErrback(
            lambda f: self.log.failure("logtail writer died", f))

    async def _stop(self):
        for loop in (self._refresh_loop, self._logtail_loop):
            if loop is not None and loop.running:
                loop.stop()
        await defer.DeferredList([s.stop() for s in self.scanners.values()])
        await self._flush_logtails()

    def stopService(self):
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _flush_logtails(self):
        try:
            await self.farm.logtails.flush()
        except Exception:
            self.log.failure("writing logtails failed")

    def refresh(self):
        """Re-read every builder's vitals and the pending work; start and
        stop scanners to match. Never fails."""
        return defer.Deferred.fromCoroutine(self._refresh())

    async def _refresh(self):
        generations = {n: s.generation for n, s in self.scanners.items()}

        now = self.farm.now()

        def read(cursor):
            Q.fail_orphaned_builds(cursor, now)
            return B.load_vitals(cursor), B.pending_work(cursor)
        try:
            vitals, pending = await self.farm.transactor.run(_txn(read))
        except Exception as error:
            if not _database_lost(error):
                self.log.failure("refreshing builders failed")
            return
        self.refreshes += 1
        self.farm.pending = set(pending)
        seen = set()
        interval = self.farm.config.interval
        for v in vitals:
            seen.add(v.name)
            scanner = self.scanners.get(v.name)
            if scanner is None:
                scanner = BuilderScanner(self.farm, v)
                self.scanners[v.name] = scanner
                if self.running:
                    # Spread scans over the interval: 1,000 builders must
                    # not all be asked at the same instant.
                    offset = (zlib.crc32(v.name.encode()) % 1000) / 1000.0
                    scanner.start(offset * interval)
            elif scanner.generation == generations.get(v.name):
                scanner.vitals = v
        for name in list(self.scanners):
            if name not in seen:
                self.scanners.pop(name).stop()

    def scanner_by_id(self, builder_id: int):
        for scanner in self.scanners.values():
            if scanner.vitals is not None and scanner.vitals.id == builder_id:
                return scanner
        return None

    def notified(self, payload: str):
        """Act on a NOTIFY payload of :data:`queue.NOTIFY_CHANNEL`."""
        words = payload.split()
        if not words:
            return
        try:
            if words[0] == "queued" and len(words) == 3:
                key = (int(words[1]), words[2] == "1")
                self.farm.pending.add(key)
                woken = 0
                for scanner in self.scanners.values():
                    if woken >= WAKE_PER_NOTIFICATION:
                        break
                    if scanner.idle_for(*key):
                        # A scan in progress may have looked for work
                        # before this build was committed: scan() then
                        # queues one more scan right after it.
                        scanner.scan()
                        woken += 1
            elif words[0] == "freed" and len(words) == 2:
                scanner = self.scanner_by_id(int(words[1]))
                if scanner is not None:
                    scanner.scan()
            elif words[0] == "cancel" and len(words) >= 2:
                self.refresh().addCallback(lambda _: self._scan_all_busy())
            elif words[0] == "builders":
                self.refresh()
        except ValueError:
            self.log.warn("ignoring notification {payload!r}", payload=payload)

    def _scan_all_busy(self):
        for scanner in self.scanners.values():
            v = scanner.vitals
            if v is not None and v.build is not None and (
                    v.build.status == BuildStatus.CANCELLING):
                scanner.scan()
