"""The native job runner: claims jobs, runs them in child processes, and
records their outcomes.

One :class:`JobRunner` per ``twistd jobrunner`` process. It talks to
PostgreSQL through one non-blocking txpostgres connection (claims, batched
outcome writes, lease renewals, maintenance, and ``LISTEN lp_job``), and runs
jobs in a :class:`~lp_services.job.pool.WorkerPool`. All database work is
done by one loop, :meth:`JobRunner.wake`, so that statements never overlap
and whatever accumulated while one ran goes out in the next:

1. flush outcomes: one statement each for retries, failures and
   hand-backs, covering every job that finished since the last flush;
2. renew leases of running jobs when the heartbeat is due;
3. maintenance when the poll is due: reclaim expired leases, fail jobs
   whose prerequisite failed;
4. claim as many jobs as there are free worker slots (at most
   ``claim_batch``) and complete every job that succeeded since the last
   run, in one statement (``COMPLETE_AND_CLAIM``), and hand the new jobs to
   the workers. (Completions go alone only when nothing can be claimed.)

The loop runs on a NOTIFY, when a job ends, on the heartbeat and on the
poll. If the connection is lost it reconnects with back-off; jobs keep
running and their outcomes wait in memory until it is back.
"""

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg2
import psycopg2.extras
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from lp_services import metrics
from lp_services.clock import utcnow
from lp_services.config import redact_url
from lp_services.database.listener import Listener, reconnect_delay
from lp_services.job import queries
from lp_services.job.pool import WorkerPool

__all__ = ["JobRunner", "default_holder"]

log = Logger()


def default_holder() -> str:
    """``host:pid``: unique among live runners, readable in `job show`."""
    return "%s:%d" % (socket.gethostname(), os.getpid())


class NotConnected(Exception):
    """The runner has no database connection at the moment."""


_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError,
                      NotConnected)


@dataclass
class _Running:
    job_id: int
    job_type: object
    attempt: int
    max_retries: int
    worker: object
    #: Clock seconds when it was sent to its child (for the duration metric).
    started: float = 0.0


def _count_outcome(running, outcome: str, now: float) -> None:
    """Record an attempt's end in the runner's metrics (lp_services.metrics).

    Outcomes: completed, retried, failed, lost (cancelled or lease lost),
    handed_back (not run, or stopped at shutdown).
    """
    name = running.job_type.name
    if outcome in ("completed", "self_completed"):
        label = "succeeded"
    elif outcome in ("lease_lost", "cancelled"):
        label = "lost"
    elif outcome in ("handed_back", "not_started"):
        label = "handed_back"
    elif (outcome in ("retryable", "timeout", "crashed")
          and running.attempt <= running.max_retries):
        label = "retried"
        metrics.record_retry(name)
    else:
        label = "failed"
    children = _metric_children.get((name, label))
    if children is None:
        # The first of its kind goes through the checked entry point; the
        # labelled series are kept, since looking them up per job costs
        # the runner more than the rest of recording an outcome.
        metrics.record_job_outcome(name, label,
                                   max(0.0, now - running.started))
        _metric_children[name, label] = (
            metrics.JOB_OUTCOMES.labels(type=name, outcome=label),
            metrics.JOB_DURATION.labels(type=name, outcome=label))
        return
    children[0].inc()
    children[1].observe(max(0.0, now - running.started))


#: (job type, outcome label) -> that series of JOB_OUTCOMES and of
#: JOB_DURATION.
_metric_children: dict = {}


class JobRunner(Service):
    """Claims and runs native jobs of ``types``.

    :param database_url: libpq URL.
    :param types: the IJobType providers this runner claims.
    :param holder: lease holder name (unique per live runner).
    :param concurrency: child processes, i.e. jobs at once.
    :param modules: modules the children import to know the types.
    :param poll_interval: seconds between polls (claims NOTIFY missed,
        scheduled jobs that came due, maintenance).
    :param grace: seconds a stopping runner lets running jobs finish.
    :param claim_batch: at most this many jobs per claim statement.
    :param depth: jobs sent ahead to each child (1: one at a time; more
        helps throughput of very short jobs, see docs/jobrunner.md).
    :param clock: IReactorTime for every timer and timestamp.
    :param reactor: the reactor (processes, sockets).
    :param reconnect_policy: seconds before reconnection attempt n.
    """

    def __init__(self, database_url: str, types, holder: str,
                 concurrency: int = 4, modules=(), poll_interval: float = 5.0,
                 grace: float = 30.0, claim_batch: int | None = None,
                 depth: int = 1,
                 clock=None, reactor=None,
                 reconnect_policy: Callable[[int], float] = reconnect_delay):
        if reactor is None:
            from twisted.internet import reactor
        self.database_url = database_url
        self.types = {t.name: t for t in types}
        if not self.types:
            raise ValueError("a runner needs at least one job type")
        self.holder = holder
        self._holder_json = json.dumps(holder)
        self.concurrency = concurrency
        self.modules = tuple(modules)
        self.poll_interval = poll_interval
        self.grace = grace
        self.claim_batch = claim_batch or concurrency * depth
        self.clock = clock if clock is not None else reactor
        self.reactor = reactor
        self.reconnect_policy = reconnect_policy
        # Renew well before the shortest lease runs out: a third of it
        # leaves two chances to miss a renewal (a slow statement, a blip).
        self.heartbeat_interval = max(
            0.2, min(t.lease_seconds for t in self.types.values()) / 3)
        self._type_names = sorted(self.types)
        self._leases = [float(self.types[n].lease_seconds)
                        for n in self._type_names]
        self.pool = WorkerPool(concurrency, self.modules,
                               env={"LP_DATABASE_URL": database_url},
                               clock=self.clock, reactor=reactor,
                               on_idle=self.wake, depth=depth)
        self._listener = Listener(
            database_url, [queries.NOTIFY_CHANNEL], self._notified,
            reactor=reactor, clock=self.clock, retry_policy=reconnect_policy,
            prepare=defer.inlineCallbacks(self._prepare),
            on_connected=self._connected, on_lost=self._lost,
            name="jobrunner")
        self._claiming = False
        self._running: dict[int, _Running] = {}
        self._complete: list[int] = []
        self._retry: list[tuple] = []
        self._fail: list[tuple] = []
        self._hand_back: list[int] = []
        self._cycling = False
        self._wake_pending = False
        self._again = False
        self._maintenance_due = True
        self._heartbeat_due = False
        self._cycle_waiters: list[defer.Deferred] = []
        self._drain_waiters: list[defer.Deferred] = []
        self._poll = task.LoopingCall(self._poll_due)
        self._poll.clock = self.clock
        self._heartbeat = task.LoopingCall(self._heartbeat_tick)
        self._heartbeat.clock = self.clock
        self.started = defer.Deferred()
        #: Counters for logs, tests and benchmarks.
        self.stats = {"claimed": 0, "completed": 0, "retried": 0,
                      "failed": 0, "handed_back": 0, "lost": 0}

    @property
    def _conn(self):
        """The live database connection, or None while it is down."""
        return self._listener.connection

    # -- service -------------------------------------------------------

    def startService(self):
        super().startService()
        log.info("jobrunner {holder} starting: {n} workers, types {types}, "
                 "database {db}", holder=self.holder, n=self.concurrency,
                 types=", ".join(self._type_names),
                 db=redact_url(self.database_url))
        self._claiming = True
        d = defer.gatherResults([self.pool.start(), self._listener.start()],
                                consumeErrors=True)

        def up(_):
            self._poll.start(self.poll_interval, now=False)
            self._heartbeat.start(self.heartbeat_interval, now=False)
            log.info("jobrunner {holder} ready", holder=self.holder)
            self.wake(maintenance=True)
            self.started.callback(None)

        def failed(f):
            log.failure("jobrunner failed to start", f)
            self.started.errback(f)

        d.addCallbacks(up, failed)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self._claiming = False
        if self._poll.running:
            self._poll.stop()
        yield self._wait_cycle()
        if self._running:
            log.info("jobrunner stopping: waiting up to {grace} s for {n} "
                     "running jobs", grace=self.grace, n=len(self._running))
            yield self._wait_drained(self.grace)
        if self._running:
            log.info("jobrunner stopping: handing {n} unfinished jobs back",
                     n=len(self._running))
            for running in list(self._running.values()):
                running.worker.kill("handed_back", "the runner stopped")
            yield self._wait_drained(10.0)
        if self._heartbeat.running:
            self._heartbeat.stop()
        yield self._final_flush()
        self._listener.stop()
        yield self.pool.stop()
        log.info("jobrunner {holder} stopped: {stats}", holder=self.holder,
                 stats=self.stats)

    # -- the loop ------------------------------------------------------

    def wake(self, maintenance: bool = False) -> None:
        """Run the database loop now (or again once the current run ends)."""
        if maintenance:
            self._maintenance_due = True
        if self._cycling:
            self._again = True
            return
        self._cycle()

    def _poll_due(self):
        self.wake(maintenance=True)

    def _heartbeat_tick(self):
        if self._running:
            self._heartbeat_due = True
            self.wake()

    @defer.inlineCallbacks
    def _cycle(self):
        self._cycling = True
        try:
            while True:
                self._again = False
                if self._conn is None:
                    break
                try:
                    yield self._flush()
                    if self._heartbeat_due:
                        self._heartbeat_due = False
                        yield self._renew_leases()
                    if self._maintenance_due and self._claiming:
                        self._maintenance_due = False
                        yield self._maintain()
                    if self._claiming:
                        yield self._claim()
                except _CONNECTION_ERRORS:
                    break
                except Exception:
                    log.failure("jobrunner database loop failed; it runs "
                                "again at the next wake-up or poll")
                    break
                if not self._again:
                    break
        finally:
            self._cycling = False
            waiters, self._cycle_waiters = self._cycle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _wait_cycle(self):
        if not self._cycling:
            return defer.succeed(None)
        d = defer.Deferred()
        self._cycle_waiters.append(d)
        return d

    def _query(self, sql, params):
        conn = self._conn
        if conn is None:
            return defer.fail(NotConnected())
        prepared = queries.PREPARED.get(sql)
        d = conn.runQuery(prepared.execute if prepared else sql, params)

        def failed(f):
            if f.check(*_CONNECTION_ERRORS):
                self._listener.lost(conn, f.value)
            return f

        return d.addErrback(failed)

    def _can_claim(self) -> bool:
        return self._claiming and self.pool.idle_count > 0

    @defer.inlineCallbacks
    def _claim(self):
        """Claim for the free slots, completing pending successes in the
        same statement (see queries.COMPLETE_AND_CLAIM)."""
        limit = min(self.pool.idle_count, self.claim_batch)
        if limit <= 0:
            return
        now = utcnow(self.clock)
        params = {"now": now, "holder": self.holder, "limit": limit,
                  "types": self._type_names, "leases": self._leases}
        ids, self._complete = self._complete, []
        if ids:
            try:
                rows = yield self._query(queries.COMPLETE_AND_CLAIM,
                                         dict(params, ids=ids))
            except BaseException:
                self._complete.extend(ids)
                raise
            done = [r[1] for r in rows if not r[0]]
            rows = [r[1:] for r in rows if r[0]]
            self._count_written(ids, done, "completed")
            if done:
                # The claim ran in the statement's snapshot, before these
                # completions: their dependents become claimable only now.
                self._again = True
        else:
            rows = yield self._query(queries.CLAIM, params)
        self.stats["claimed"] += len(rows)
        if rows:
            self._dispatch(rows, now)
        if len(rows) == limit:
            self._again = True

    def _dispatch(self, rows, now):
        """Send claimed jobs to the children, one write per child: each job
        goes to the child with the most room left, so that a batch is
        spread over the children."""
        stamp = self.clock.seconds()
        common = ',"holder":%s,"now":%r}\n' % (self._holder_json,
                                               now.timestamp())
        room = {w: w.free for w in self.pool.ready_workers()}
        batches = {}
        left = []
        for job_id, type_name, data, attempt, max_retries in rows:
            worker = max(room, key=room.get) if room else None
            if worker is None or room[worker] <= 0:
                left.append(job_id)
                continue
            room[worker] -= 1
            job_type = self.types[type_name]
            self._running[job_id] = _Running(
                job_id, job_type, attempt, max_retries, worker, stamp)
            # json_data arrives as JSON text (see _connect_loop) and goes to
            # the child as it is; type names need no escaping (the job
            # table's CHECK allows [a-z0-9_.-] only).
            batches.setdefault(worker, []).append((job_id, (
                '{"job":%d,"type":"%s","data":%s,"attempt":%d' % (
                    job_id, type_name, data, attempt) + common).encode(),
                job_type.timeout_seconds))
        for worker, batch in batches.items():
            try:
                worker.send(batch, self._replied)
            except Exception:
                # Never leave a claimed job unattended until its lease
                # expires: give it back at once.
                log.failure("sending jobs {ids} to a worker failed; handing"
                            " them back", ids=[b[0] for b in batch])
                for job_id, _, _ in batch:
                    self._running.pop(job_id, None)
                    left.append(job_id)
        if left:
            # A worker died between counting and dispatching: give the jobs
            # back untouched rather than hold them until their leases expire.
            self._hand_back.extend(left)
            self._again = True

    def _replied(self, reply):
        running = self._running.get(reply["job"])
        if running is None:
            return
        try:
            self._ended(reply, running)
        except Exception:
            log.failure("recording job {id} failed", id=reply["job"])

    def _ended(self, reply, running):
        """A job's attempt ended: decide its outcome (written by the loop)."""
        job_id = running.job_id
        self._running.pop(job_id, None)
        outcome = reply["outcome"]
        message = reply.get("message") or outcome
        try:
            _count_outcome(running, outcome, self.clock.seconds())
        except Exception:  # a metric never stops a job's outcome
            log.failure("recording the outcome of job {id} failed", id=job_id)
        if outcome == "completed":
            self._complete.append(job_id)
        elif outcome == "self_completed":
            self.stats["completed"] += 1
        elif outcome in ("lease_lost", "cancelled"):
            self.stats["lost"] += 1
            log.info("job {id}: {message}", id=job_id, message=message)
        elif outcome in ("handed_back", "not_started"):
            self._hand_back.append(job_id)
        elif outcome in ("retryable", "timeout", "crashed"):
            if outcome != "retryable":
                message = "%s: %s" % (outcome, message)
            if running.attempt <= running.max_retries:
                delay = running.job_type.retry_delay(running.attempt)
                at = utcnow(self.clock) + timedelta(seconds=delay)
                self._retry.append((job_id, at, "attempt %d: %s" % (
                    running.attempt, message)))
            else:
                self._fail.append((job_id, "attempt %d of %d: %s" % (
                    running.attempt, running.max_retries + 1, message)))
        elif outcome == "error":
            self._fail.append((job_id, reply.get("traceback") or message))
        else:  # user_error, memory
            self._fail.append((job_id, message))
        if not self._running:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(None)
        self._wake_soon()

    def _wake_soon(self):
        """Wake once for all the replies read in this reactor turn, so that
        they are written in one statement."""
        if not self._wake_pending:
            self._wake_pending = True
            self.reactor.callLater(0, self._woken)

    def _woken(self):
        self._wake_pending = False
        self.wake()

    def _wait_drained(self, timeout):
        if not self._running or timeout <= 0:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drain_waiters.append(d)
        timer = self.clock.callLater(timeout, lambda: d.called or d.callback(None))
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    # -- statements ----------------------------------------------------

    @defer.inlineCallbacks
    def _flush(self):
        """Write every pending outcome: at most one statement per kind."""
        now = utcnow(self.clock)
        if self._complete and not self._can_claim():
            # Otherwise the claim completes them in its statement.
            ids, self._complete = self._complete, []
            done = yield self._write(queries.COMPLETE, {"ids": ids}, ids,
                                     lambda: self._complete.extend(ids), now)
            self.stats["completed"] += done
        if self._retry:
            items, self._retry = self._retry, []
            ids = [i[0] for i in items]
            done = yield self._write(queries.RETRY, {
                "ids": ids, "ats": [i[1] for i in items],
                "errors": [i[2] for i in items]}, ids,
                lambda: self._retry.extend(items), now)
            self.stats["retried"] += done
        if self._fail:
            items, self._fail = self._fail, []
            ids = [i[0] for i in items]
            done = yield self._write(queries.FAIL, {
                "ids": ids, "errors": [i[1] for i in items]}, ids,
                lambda: self._fail.extend(items), now)
            self.stats["failed"] += done
        if self._hand_back:
            ids, self._hand_back = self._hand_back, []
            done = yield self._write(queries.HAND_BACK, {"ids": ids}, ids,
                                     lambda: self._hand_back.extend(ids), now)
            self.stats["handed_back"] += done

    @defer.inlineCallbacks
    def _write(self, sql, params, ids, restore, now):
        params = dict(params, now=now, holder=self.holder)
        try:
            rows = yield self._query(sql, params)
        except BaseException:
            restore()  # written after reconnection, still guarded
            raise
        self._count_written(ids, [r[0] for r in rows], None)
        return len(rows)

    def _count_written(self, ids, written, stat):
        if stat is not None:
            self.stats[stat] += len(written)
        if len(written) != len(ids):
            gone = sorted(set(ids) - set(written))
            self.stats["lost"] += len(gone)
            log.warn("jobs {ids} are no longer held by {holder} (cancelled "
                     "or reclaimed); their outcomes were not recorded",
                     ids=gone, holder=self.holder)

    @defer.inlineCallbacks
    def _renew_leases(self):
        running = list(self._running.values())
        if not running:
            return
        rows = yield self._query(queries.HEARTBEAT, {
            "now": utcnow(self.clock), "holder": self.holder,
            "ids": [r.job_id for r in running],
            "seconds": [float(r.job_type.lease_seconds) for r in running]})
        renewed = {row[0] for row in rows}
        for r in running:
            if r.job_id not in renewed and r.job_id in self._running:
                r.worker.kill("cancelled", "job %d is no longer held by %s "
                              "(cancelled, or its lease expired); its worker "
                              "was stopped" % (r.job_id, self.holder),
                              job_id=r.job_id)

    @defer.inlineCallbacks
    def _maintain(self):
        params = {"now": utcnow(self.clock), "types": self._type_names}
        rows = yield self._query(queries.RECLAIM_EXPIRED, params)
        if rows:
            log.info("reclaimed {n} jobs whose lease expired: {ids}",
                     n=len(rows), ids=sorted(r[0] for r in rows))
            for row in rows:
                metrics.record_lease_expiry(row[2])
        for _ in range(20):
            rows = yield self._query(queries.FAIL_ORPHANS, params)
            if not rows:
                break
            log.info("failed {n} jobs whose prerequisite failed", n=len(rows))

    # -- the connection ------------------------------------------------

    def _prepare(self, conn):
        """Ready a new connection: job data arrives as JSON text (the
        children get it as the server sent it: decoding and re-encoding
        it here would cost the runner for nothing), statements prepared."""
        psycopg2.extras.register_default_jsonb(
            conn._connection, loads=lambda text: text)
        yield conn.runOperation(queries.PLAN_CACHE_MODE)
        for prepared in queries.PREPARED.values():
            yield conn.runOperation(prepared.prepare)

    def _connected(self):
        if self.running:
            self.wake(maintenance=True)

    def _lost(self, reason):
        log.warn("jobrunner {holder} lost its database connection ({reason});"
                 " {n} running jobs continue, outcomes are kept until it is "
                 "back; reconnecting with back-off", holder=self.holder,
                 reason=str(reason).strip().splitlines()[0] if str(reason)
                 else type(reason).__name__, n=len(self._running))

    def _notified(self, notify):
        if self._claiming and (not notify.payload
                               or notify.payload in self.types):
            self.wake()

    @defer.inlineCallbacks
    def _final_flush(self):
        pending = (len(self._complete) + len(self._retry) + len(self._fail)
                   + len(self._hand_back))
        if not pending:
            return
        if self._conn is None:
            yield self._listener.when_connected(timeout=10.0)
        yield self._wait_cycle()
        try:
            yield self._flush()
        except Exception as error:
            log.warn("jobrunner could not record {n} outcomes before stopping "
                     "({error}); those jobs run again once their leases "
                     "expire", n=pending, error=error)
