"""The runner's pool of long-lived child processes.

Each :class:`Worker` is one ``python -m lp_services.job.worker`` child
that runs one job at a time (see that module for the protocol). The pool
keeps ``size`` of them alive: a child that dies — killed for a timeout or a
lost lease, crashed, ``os._exit``-ed, out of memory — is replaced, and the
job it was running gets an outcome (``timeout``, ``cancelled``,
``crashed``) instead of a reply. Job code never runs in the runner's own
process.
"""

import json
import os
import signal
import sys
from collections import deque

from twisted.internet import defer, error as txerror, protocol
from twisted.logger import Logger

__all__ = ["Worker", "WorkerPool", "encode_request"]

log = Logger()


def encode_request(request: dict) -> bytes:
    """One job for a child: a line of JSON (see lp_services.job.worker)."""
    return json.dumps(request).encode("utf-8") + b"\n"


class Worker(protocol.ProcessProtocol):
    """One child process and the jobs sent to it.

    The child runs jobs one at a time, in the order sent, and answers each
    as soon as it ends. The parent may send up to the pool's ``depth`` jobs
    ahead, several in one write (:meth:`send`), so that short jobs do not
    wait for a round trip each. The timeout of a job starts when it reaches
    the head of the queue, i.e. when the child answered the job before it;
    one timer per child is re-armed only when a new head's deadline is
    earlier than the armed one (replies cost no timer work).
    """

    def __init__(self, pool):
        self.pool = pool
        self.pid = None
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.alive = False
        self.queue = deque()   # (job id, timeout, on_reply)
        self._buffer = b""
        self._err_buffer = b""
        self._timer = None
        #: When the head job must have ended (clock seconds), or None.
        self._deadline = None
        self._kill_reason = None
        #: The child said it will exit (after a MemoryError): send no more.
        self.retiring = False

    @property
    def job_id(self):
        """The job the child is running (the head of the queue), or None."""
        return self.queue[0][0] if self.queue else None

    @property
    def free(self) -> int:
        """How many more jobs this worker may be sent."""
        if not self.alive or self._kill_reason is not None or self.retiring:
            return 0
        return self.pool.depth - len(self.queue)

    # -- process events ------------------------------------------------

    def connectionMade(self):
        self.alive = True
        self.pid = self.transport.pid

    def outReceived(self, data):
        if b"\n" not in data:
            self._buffer += data
            return
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        # All the replies that arrived together, decoded in one call.
        messages = json.loads(b"[" + b",".join(
            line for line in lines if line.strip()) + b"]")
        for message in messages:
            if "ready" in message:
                if not self.ready.called:
                    self.ready.callback(self)
            elif self.queue and message.get("job") == self.queue[0][0]:
                if message.get("outcome") == "memory":
                    self.retiring = True
                self._finish(message)

    def errReceived(self, data):
        self._err_buffer += data
        while b"\n" in self._err_buffer:
            line, self._err_buffer = self._err_buffer.split(b"\n", 1)
            log.info("worker {pid} (job {job}): {line}", pid=self.pid,
                     job=self.job_id, line=line.decode("utf-8", "replace"))

    def processEnded(self, reason):
        self.alive = False
        self._cancel_timer()
        if self.queue:
            if self._kill_reason is not None:
                outcome, message = self._kill_reason
            else:
                outcome, message = "crashed", "its worker process died (%s)" % (
                    _describe(reason.value),)
            self._finish({"job": self.job_id, "outcome": outcome,
                          "message": message, "traceback": None})
        while self.queue:
            self._finish({"job": self.job_id, "outcome": "not_started",
                          "message": "its worker process died before "
                          "starting it", "traceback": None})
        if not self.ready.called:
            self.ready.errback(reason)
        self.ended.callback(None)
        self.pool._worker_ended(self)

    # -- driving it ----------------------------------------------------

    def send(self, batch, on_reply) -> None:
        """Send several jobs in one write.

        :param batch: ``(job id, encoded request, timeout)`` triples, the
            requests as :func:`encode_request` makes them (or equivalent
            bytes: one JSON object and a newline each).
        :param on_reply: called with each job's reply dict (``job``,
            ``outcome``, ``message``, ``traceback``), in the order sent.
        """
        assert 0 < len(batch) <= self.free
        idle = not self.queue
        for job_id, _, timeout in batch:
            self.queue.append((job_id, timeout, on_reply))
        if idle:
            self._head_started()
        self.transport.write(b"".join(item[1] for item in batch))

    def run(self, request: dict, timeout: float | None):
        """Send one job; return a Deferred firing with the reply dict."""
        result = defer.Deferred()
        self.send([(request["job"], encode_request(request), timeout)],
                  result.callback)
        return result

    def kill(self, outcome: str, message: str, job_id=None) -> None:
        """Kill the child. The job it runs ends with ``outcome`` if it is
        ``job_id`` (or ``job_id`` is None), else ``handed_back``; jobs
        queued behind it end ``not_started``."""
        if self._kill_reason is None:
            if job_id is None or job_id == self.job_id:
                self._kill_reason = (outcome, message)
            else:
                self._kill_reason = ("handed_back", "its worker was stopped "
                                     "to cancel job %s" % job_id)
        if self.alive:
            try:
                self.transport.signalProcess("KILL")
            except txerror.ProcessExitedAlready:
                pass

    def _head_started(self):
        """The head of the queue just started: set its deadline."""
        timeout = self.queue[0][1]
        if timeout is None:
            self._deadline = None
            return
        self._deadline = self.pool.clock.seconds() + timeout
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self._deadline:
                return  # it fires first and re-arms for this deadline
            self._timer.cancel()
        self._timer = self.pool.clock.callLater(timeout, self._check_deadline)

    def _check_deadline(self):
        self._timer = None
        if not self.queue or self._deadline is None:
            return
        left = self._deadline - self.pool.clock.seconds()
        if left > 1e-6:
            self._timer = self.pool.clock.callLater(left, self._check_deadline)
            return
        self.kill("timeout", "timed out after %s seconds" % self.queue[0][1])

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _finish(self, message):
        _, _, on_reply = self.queue.popleft()
        if self.queue and self.alive and self._kill_reason is None:
            self._head_started()
        else:
            # Idle (or dying): no deadline, and no timer left behind.
            self._deadline = None
            self._cancel_timer()
        on_reply(message)


def _describe(error) -> str:
    if isinstance(error, txerror.ProcessTerminated):
        if error.signal is not None:
            try:
                return "killed by %s" % signal.Signals(error.signal).name
            except ValueError:
                return "killed by signal %d" % error.signal
        return "exit status %s" % error.exitCode
    return str(error)


class WorkerPool:
    """``size`` workers, replaced as they die.

    :param modules: job-type modules each child imports.
    :param env: extra environment for the children (LP_DATABASE_URL).
    :param clock: IReactorTime for timeouts (a task.Clock in tests).
    :param reactor: IReactorProcess that spawns the children.
    """

    #: A child that dies before saying it is ready is restarted after this
    #: long, so that a broken installation does not spin the CPU.
    RESPAWN_DELAY = 1.0

    def __init__(self, size: int, modules=(), env=None, clock=None,
                 reactor=None, on_idle=None, depth: int = 1):
        if reactor is None:
            from twisted.internet import reactor
        self.size = size
        self.depth = depth
        self.modules = tuple(modules)
        self.env = dict(env or {})
        self.clock = clock if clock is not None else reactor
        self.reactor = reactor
        self.on_idle = on_idle
        self.workers: set[Worker] = set()
        self._stopping = False

    def start(self):
        """Spawn the children; fire when every one is ready."""
        return defer.gatherResults([self._spawn() for _ in range(self.size)],
                                   consumeErrors=True)

    def _spawn(self):
        worker = Worker(self)
        env = dict(os.environ)
        env.update(self.env)
        args = [sys.executable, "-m", "lp_services.job.worker"]
        for module in self.modules:
            args += ["--module", module]
        self.workers.add(worker)
        self.reactor.spawnProcess(worker, sys.executable, args, env=env,
                                  childFDs={0: "w", 1: "r", 2: "r"})

        def ready(w):
            if w.alive and not self._stopping and self.on_idle is not None:
                self.on_idle()
            return w

        return worker.ready.addCallback(ready)

    def _worker_ended(self, worker):
        self.workers.discard(worker)
        if self._stopping:
            return
        delay = 0 if worker.ready.called and worker.ready.result is worker \
            else self.RESPAWN_DELAY
        log.info("worker {pid} ended; starting a replacement", pid=worker.pid)
        self.reactor.callLater(delay, self._respawn)

    def _respawn(self):
        if not self._stopping:
            self._spawn().addErrback(
                lambda f: log.warn("a replacement worker failed to start: "
                                   "{e}", e=f.getErrorMessage()))

    def ready_workers(self):
        """The ready workers that may be sent more jobs."""
        return [w for w in self.workers if w.ready.called and w.free > 0]

    def take(self):
        """The ready worker with the most room, or None if all are full."""
        best = None
        for worker in self.workers:
            if worker.ready.called and worker.free > 0 and (
                    best is None or worker.free > best.free):
                best = worker
        return best

    @property
    def idle_count(self) -> int:
        """How many more jobs the pool may be sent."""
        return sum(w.free for w in self.workers if w.ready.called)

    def stop(self, timeout: float = 5.0):
        """Close the children's stdin (they exit), kill any still alive
        after ``timeout``; fire when all have ended."""
        self._stopping = True
        ended = [w.ended for w in self.workers]
        for worker in list(self.workers):
            try:
                worker.transport.closeStdin()
            except Exception:
                pass

        def kill_rest():
            for worker in list(self.workers):
                worker.kill("cancelled", "the runner stopped")

        timer = self.reactor.callLater(timeout, kill_rest)
        d = defer.DeferredList(ended)

        def done(result):
            if timer.active():
                timer.cancel()
            return None

        return d.addCallback(done)
