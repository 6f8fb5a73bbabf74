"""The builder manager: the twistd service that keeps this master's
registration and builder leases (:mod:`.leases`), one scanner per active
builder it holds, refreshes their vitals and the pending work, flushes
logtails, and wakes scanners on notifications."""

import zlib

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.enums import BuildStatus
from lp_services.buildmaster.farm import Farm, database_lost, transaction
from lp_services.buildmaster.leases import LeaseKeeper
from lp_services.buildmaster.scanner import BuilderScanner

__all__ = ["BuilderManager", "TAKEOVER_SPREAD", "WAKE_PER_NOTIFICATION"]

#: Seconds over which the first scans of builders taken from another
#: master are spread (the first refresh spreads over the whole interval).
TAKEOVER_SPREAD = 2.0

#: Idle scanners woken per "queued" notification (the rest pick work up
#: at their next scan); bounds the claims a burst of requests causes.
WAKE_PER_NOTIFICATION = 2


class BuilderManager(Service):
    """Keeps this master's builder leases, one scanner per builder it
    holds, refreshes their vitals and the pending-work set every interval
    in two statements, flushes logtails, and wakes scanners on
    notifications."""

    log = Logger()

    def __init__(self, farm: Farm):
        self.farm = farm
        self.leases = LeaseKeeper(farm)
        self.scanners: dict[str, BuilderScanner] = {}
        self._refresh_loop = None
        self._logtail_loop = None
        self._lease_loop = None
        self.refreshes = 0

    def startService(self):
        super().startService()
        clock = self.farm.clock
        self._refresh_loop = task.LoopingCall(self.refresh)
        self._refresh_loop.clock = clock
        self._refresh_loop.start(self.farm.config.interval, now=True).addErrback(
            lambda f: self.log.failure("builder refresher died", f))
        self._lease_loop = task.LoopingCall(self._renew_leases)
        self._lease_loop.clock = clock
        self._lease_loop.start(self.farm.config.lease_renewal,
                               now=False).addErrback(
            lambda f: self.log.failure("lease keeper died", f))
        self._logtail_loop = task.LoopingCall(self._flush_logtails)
        self._logtail_loop.clock = clock
        self._logtail_loop.start(self.farm.config.logtail_interval,
                                 now=False).addErrback(
            lambda f: self.log.failure("logtail writer died", f))

    async def _stop(self):
        for loop in (self._refresh_loop, self._logtail_loop,
                     self._lease_loop):
            if loop is not None and loop.running:
                loop.stop()
        await defer.DeferredList([s.stop() for s in self.scanners.values()])
        await self._flush_logtails()
        try:
            # Hand the builders back at once: the other masters take them
            # at their next renewal, without waiting for leases to expire.
            await self.leases.stop()
        except Exception as error:
            if not database_lost(error):
                self.log.failure("handing builders back failed")

    async def _renew_leases(self):
        """Heartbeat, renew, rebalance; refresh when the held set
        changed."""
        before = set(self.leases.held)
        try:
            held = await self.leases.tick()
        except Exception as error:
            if not database_lost(error):
                self.log.failure("renewing builder leases failed")
            return
        if held != before:
            await self._refresh()

    def _lease_lost(self, scanner):
        """A scanner found its lease gone: forget the builder until a
        renewal hands it back."""
        if scanner.vitals is not None:
            self.leases.held.discard(scanner.vitals.id)
        if self.scanners.get(scanner.name) is scanner:
            del self.scanners[scanner.name]

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
        if not self.leases.registered:
            try:
                await self.leases.tick()
            except Exception as error:
                if not database_lost(error):
                    self.log.failure("taking builder leases failed")
                return
        generations = {n: s.generation for n, s in self.scanners.items()}

        now = self.farm.now()

        def read(cursor):
            Q.fail_orphaned_builds(cursor, now)
            return B.load_vitals(cursor), B.pending_work(cursor)
        try:
            vitals, pending = await self.farm.transactor.run(transaction(read))
        except Exception as error:
            if not database_lost(error):
                self.log.failure("refreshing builders failed")
            return
        self.refreshes += 1
        self.farm.pending = set(pending)
        seen = set()
        interval = self.farm.config.interval
        held = self.leases.held
        identity = self.farm.config.identity
        for v in vitals:
            if v.id not in held:
                continue  # another master's
            seen.add(v.name)
            if v.owner != identity:
                # Read before this master took it: its lease epoch is the
                # previous owner's. The next refresh reads it afresh.
                continue
            scanner = self.scanners.get(v.name)
            if scanner is None:
                scanner = BuilderScanner(self.farm, v)
                scanner.on_lease_lost = self._lease_lost
                self.scanners[v.name] = scanner
                if self.running:
                    # Spread scans over the interval: 1,000 builders must
                    # not all be asked at the same instant. Builders taken
                    # later (from a master that died or left) are spread
                    # over a few seconds only: their builds wait for us.
                    offset = (zlib.crc32(v.name.encode()) % 1000) / 1000.0
                    spread = (interval if self.refreshes <= 1
                              else min(interval, TAKEOVER_SPREAD))
                    scanner.start(offset * spread)
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
