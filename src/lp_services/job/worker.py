"""A job runner's child process: ``python -m lp_services.job.worker``.

Long-lived: it runs one job at a time, for as many jobs as its parent sends.
It speaks line-delimited JSON with its parent over stdin/stdout (the job's
own prints go to stderr, which the parent logs):

- child → parent, once at start: ``{"ready": <pid>}``
- parent → child: ``{"job": id, "type": name, "data": ..., "attempt": n,
  "holder": lease holder, "now": unix seconds}``
- child → parent, as each job ends: ``{"job": id, "outcome": o,
  "message": text, "traceback": text or null}`` (``message`` and
  ``traceback`` may be left out when null), ``o`` one of ``completed``
  (the parent completes it), ``self_completed`` (a transactional type completed it in
  its own transaction), ``lease_lost`` (a transactional type found its
  lease gone and rolled back), ``retryable``, ``user_error``, ``memory``
  or ``error``.

The parent may send several jobs in one write; the child still answers
each as soon as it ends, so that the parent knows which job is running
(for its timeout) and a child that dies loses no finished job's outcome.
A job type's memory limit stays set between two jobs (only the protocol
loop runs then), so a stream of one type costs no system call per job.

The child exits on EOF, when its runner dies (PR_SET_PDEATHSIG), and after
a MemoryError (its heap may be in a bad state; the parent starts a fresh
one). The parent enforces timeouts by
killing it. The database URL comes from ``LP_DATABASE_URL`` in the
environment (never the command line, where ``ps`` would show a password).
"""

import argparse
import json
import os
import resource
import signal
import sys
import traceback
from datetime import datetime, timezone

from zope.interface import implementer

from lp_services.job.interfaces import IJobContext
from lp_services.job.registry import (
    InvalidJobData, UnknownJobType, UserError, job_types, load_modules)

__all__ = ["JobContext", "main", "run_one"]


@implementer(IJobContext)
class JobContext:
    """See :class:`IJobContext`."""

    def __init__(self, job_id, attempt, lease_holder, now, database_url,
                 connection_holder):
        self.job_id = job_id
        self.attempt = attempt
        self.lease_holder = lease_holder
        self.now = now
        self.database_url = database_url
        self.cursor = None
        self._holder = connection_holder

    def connect(self):
        """See :meth:`IJobContext.connect`."""
        return self._holder.get()


class _ConnectionHolder:
    """The child's one database connection, opened lazily."""

    def __init__(self, url):
        self.url = url
        self._connection = None

    def get(self):
        from lp_services.database.connection import connect

        if self.url is None:
            raise RuntimeError("this worker was given no database URL")
        if self._connection is None or self._connection.closed:
            self._connection = connect(self.url)
        return self._connection


def _classify(job_type, error) -> tuple[str, str, str | None]:
    if isinstance(error, MemoryError):
        return ("memory", "exceeded its memory limit of %s bytes"
                % job_type.memory_limit, None)
    if isinstance(error, (UserError, *job_type.user_errors)):
        return "user_error", str(error) or type(error).__name__, None
    if isinstance(error, tuple(job_type.retryable_errors)):
        return ("retryable", "%s: %s" % (type(error).__name__, error), None)
    return ("error", "%s: %s" % (type(error).__name__, error),
            traceback.format_exc())


#: RLIMIT_AS as this process last set it: {"hard": ..., "soft": ...}.
_limits = {"hard": None, "soft": None}


def _set_memory_limit(limit):
    """Make ``limit`` (None: the hard limit) the address-space limit; a
    system call only when it changes."""
    if _limits["hard"] is None:
        _limits["soft"], _limits["hard"] = resource.getrlimit(
            resource.RLIMIT_AS)
    hard = _limits["hard"]
    if limit is None:
        new = hard
    else:
        new = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    if new != _limits["soft"]:
        resource.setrlimit(resource.RLIMIT_AS, (new, hard))
        _limits["soft"] = new


def run_one(request: dict, connections, keep_limit: bool = False) -> dict:
    """Run one job described by ``request``; return the reply.

    :param keep_limit: leave the job type's memory limit set afterwards
        (a child between jobs only reads its next line; the next job of
        the same type then needs no system call). Otherwise the limit is
        lifted when the job ends.
    """
    from lp_services.job.queries import COMPLETE_ONE

    job_id = request["job"]
    reply = {"job": job_id, "outcome": "completed", "message": None,
             "traceback": None}
    try:
        job_type = job_types.get(request["type"])
    except UnknownJobType as error:
        reply.update(outcome="error", message=str(error))
        return reply
    now = datetime.fromtimestamp(request["now"], timezone.utc)
    context = JobContext(job_id, request["attempt"], request["holder"], now,
                         connections.url, connections)
    data = request["data"]
    connection = None
    try:
        try:
            job_type.validate(data)
        except InvalidJobData as error:
            raise InvalidJobData("invalid data for %s: %s"
                                 % (job_type.name, error)) from None
        if job_type.transactional:
            connection = connections.get()
            context.cursor = connection.cursor()
        _set_memory_limit(job_type.memory_limit)
        try:
            job_type.run(data, context)
        finally:
            if not keep_limit:
                _set_memory_limit(None)
        if connection is not None:
            context.cursor.execute(COMPLETE_ONE, {
                "id": job_id, "holder": request["holder"],
                "now": datetime.now(timezone.utc)})
            if context.cursor.fetchone() is None:
                connection.rollback()
                reply.update(outcome="lease_lost", message=(
                    "job %s is no longer held by %s; its work was rolled back"
                    % (job_id, request["holder"])))
            else:
                connection.commit()
                reply["outcome"] = "self_completed"
    except BaseException as error:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        if connection is not None:
            try:
                connection.rollback()
            except Exception:
                pass
        outcome, message, trace = _classify(job_type, error)
        reply.update(outcome=outcome, message=message, traceback=trace)
    return reply


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when its runner dies, so that a job
    whose runner was killed cannot still be running when another runner
    claims it again after the lease expires."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        sys.exit(0)  # the runner died before we could ask


def main(argv=None) -> int:
    _die_with_parent()
    parser = argparse.ArgumentParser(prog="lp_services.job.worker")
    parser.add_argument("--module", action="append", default=[],
                        help="Import this module to register job types.")
    args = parser.parse_args(argv)
    # Keep the protocol channel private: job output goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    load_modules(args.module)
    connections = _ConnectionHolder(os.environ.get("LP_DATABASE_URL"))
    protocol.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = run_one(json.loads(line), connections, keep_limit=True)
        if reply["outcome"] == "completed":
            # The common reply, without the encoder.
            protocol.write('{"job":%d,"outcome":"completed"}\n' % reply["job"])
        else:
            protocol.write(json.dumps(reply) + "\n")
        if reply["outcome"] == "memory":
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
