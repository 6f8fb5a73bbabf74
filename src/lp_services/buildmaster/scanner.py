"""Scanning one builder: the decision table. The actions live beside it:
:mod:`.dispatch`, :mod:`.collect`, :mod:`.cancel`, :mod:`.reset`; what
scanners share in :mod:`.farm`; the service that runs them in
:mod:`.service`.

A scan asks the builder's agent for its status and acts on what it says
together with what the database says (:class:`BuilderVitals`):

========================  ==================================================
agent / database           action
========================  ==================================================
IDLE, no build             clean builder: read ``info()`` if due (build
                           types), claim the best candidate of a type it
                           offers and dispatch it (ensurepresent chroot and
                           files, build)
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

from twisted.internet import defer, task
from twisted.logger import Logger

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import cancel, collect, dispatch, reset
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.blame import (
    SCAN_FAILURE_THRESHOLD,
    Action,
    judge_failure,
)
from lp_services.buildmaster.enums import BuilderCleanStatus, BuildStatus
from lp_services.buildmaster.farm import Farm, database_lost
from lp_services.buildmaster.leases import LeaseLost, hold
from lp_services.protocol import states as wire

__all__ = ["BuilderScanner"]


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
        #: Called with this scanner when it finds its lease lost.
        self.on_lease_lost = None
        #: The agent's state at the last scan (a wire.BuilderStatus).
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
                and self.last_state in (None, wire.BuilderStatus.IDLE)
                and (v.clean_status == BuilderCleanStatus.CLEAN
                     or not v.virtualized))

    # -- database -------------------------------------------------------
    async def commit(self, function, *args, _store=False, **kwargs):
        """Run ``function(cursor, ...)`` (``function(store, cursor, ...)``
        with ``_store``) and re-read our vitals, in one transaction;
        return the function's result."""
        name = self.name
        builder_id = self.vitals.id if self.vitals is not None else None
        master = self.farm.config.identity
        now = self.farm.now()

        def run(store):
            from lp_services.database.sql import raw_cursor

            cursor = raw_cursor(store)
            result = None
            if function is not None and builder_id is not None:
                # The fence: nothing changes unless this master still
                # holds the builder's lease (see leases.py).
                hold(cursor, builder_id, name, master, now)
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

    def reload(self):
        return self.commit(None)

    def check_lease(self):
        """Raise LeaseLost unless this master holds the builder's lease:
        for agent calls that change its state without a database write
        (cleaning or aborting a leftover)."""
        return self.commit(lambda cursor: None)

    # -- the scan -------------------------------------------------------
    async def _scan_once(self):
        from lp_services.metrics import record_scan_duration

        started = self.farm.clock.seconds()
        try:
            await self._scan()
        except LeaseLost:
            self._let_go()
        except Exception as error:  # one bad scan never kills the loop
            if database_lost(error):
                # Not the builder's fault: the transactor has logged the
                # outage once; the next scan after it is back carries on.
                return
            immediate = getattr(error, "immediate", False)
            self.log.warn("scan of {name} failed: {error}", name=self.name,
                          error=str(error) or type(error).__name__)
            try:
                await self._scan_failed(error, immediate)
            except LeaseLost:
                self._let_go()
            except Exception:
                self.log.failure("failure handling of {name} failed",
                                 name=self.name)
        else:
            self.scan_failures = 0
        finally:
            record_scan_duration(self.farm.clock.seconds() - started)

    def _let_go(self):
        """Another master holds this builder now: change nothing, blame
        nobody, stop scanning it (said once)."""
        self.log.warn("{name}: this master no longer holds its lease; "
                      "letting it go", name=self.name)
        self.stop()
        if self.on_lease_lost is not None:
            self.on_lease_lost(self)

    async def _scan(self):
        v = self.vitals
        if v is None:
            return
        if v.build is None:
            if not v.builderok:
                return  # disabled and empty: leave it alone
            if v.virtualized and v.clean_status != BuilderCleanStatus.CLEAN:
                await reset.reset_virtual(self, v)
                v = self.vitals
                if v is None or v.build is not None:
                    return
        agent = self.farm.agent_for(v)
        status = await agent.status()
        self.last_state = status.state
        if status.version and status.version != v.version:
            await self.commit(B.record_version, v.id, status.version)
            v = self.vitals
            if v is None:
                return
        if v.build is None:
            await self._scan_without_build(v, agent, status)
            return
        if status.build_id != v.build.cookie:
            await self.reload()
            v = self.vitals
            if v is None or v.build is None:
                return  # finished meanwhile; the next scan sees the rest
            if status.build_id != v.build.cookie:
                await cancel.reset_lost_build(self, v, agent, status)
                return
        if v.build.status == BuildStatus.CANCELLING:
            await cancel.scan_cancelling(self, v, agent, status)
            return
        if status.state == wire.BuilderStatus.BUILDING:
            self.farm.logtails.put(v.build.job_id, v.build.cookie,
                                   status.logtail)
        elif status.state == wire.BuilderStatus.WAITING:
            await collect.collect(self, v, agent, status)

    async def _scan_without_build(self, v, agent, status):
        if status.state != wire.BuilderStatus.IDLE:
            await self.reload()
            v = self.vitals
            if v is None or v.build is not None:
                return
            if status.state == wire.BuilderStatus.WAITING:
                await self.check_lease()
                self.log.info("{name}: cleaning a build it no longer holds",
                              name=self.name)
                await agent.clean()
            elif status.state == wire.BuilderStatus.BUILDING:
                await self.check_lease()
                self.log.info("{name}: aborting unknown build {id}",
                              name=self.name, id=status.build_id)
                await agent.abort()
            return
        if v.clean_status != BuilderCleanStatus.CLEAN:
            # A non-virtual builder whose agent is IDLE is clean: the
            # agent's `clean` already removed the last build's files.
            await self.commit(B.set_clean_status, v.id,
                              BuilderCleanStatus.CLEAN, self.farm.now())
            v = self.vitals
        if v is not None and v.build is None and self._info_due(v):
            await self._read_info(v, agent)
            v = self.vitals
        if (v is not None and v.build is None and v.builderok
                and not v.manual
                and v.clean_status == BuilderCleanStatus.CLEAN):
            await dispatch.dispatch(self, v, agent)

    def _info_due(self, v) -> bool:
        """Whether to read the agent's ``info()`` now: never read, read
        before its version changed, or ``info_interval`` ago."""
        if v.build_types is None or v.date_info_read is None:
            return True
        age = (self.farm.now() - v.date_info_read).total_seconds()
        return age >= self.farm.config.info_interval

    async def _read_info(self, v, agent):
        """Read and store what the agent offers (arch tag, build types):
        builds go only to builders that offer their type."""
        from lp_services.buildmaster.agentclient import parse_info

        info = parse_info(await agent.info())
        if v.build_types != info.build_types:
            self.log.info("{name}: offers {types} ({arch})", name=self.name,
                          types=", ".join(info.build_types) or "nothing",
                          arch=info.arch_tag)
        await self.commit(B.record_info, v.id, info.arch_tag,
                          info.build_types, self.farm.now())

    # -- failure handling ------------------------------------------------
    async def _scan_failed(self, error, immediate):
        """Count and judge a failure (Launchpad's rules, see .blame)."""
        self.scan_failures += 1
        if not immediate and self.scan_failures % SCAN_FAILURE_THRESHOLD:
            return
        await self.reload()
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
        await self.commit(judge)
