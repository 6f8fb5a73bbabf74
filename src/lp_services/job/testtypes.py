"""Job types for tests and demonstrations of failure handling.

Not loaded by default: runners load them with ``--module
lp_services.job.testtypes``. Each misbehaves in one specific way.
"""

import os
import time

from lp_services.job.policy import constant
from lp_services.job.registry import JobType, RetryableError, job_types

__all__ = []


class _Base(JobType):
    max_retries = 0
    timeout_seconds = 30.0
    memory_limit = None


class Record(_Base):
    """Appends ``start <id> <pid> <attempt> <unix time>`` and ``end ...``
    lines to ``data["log"]`` (O_APPEND: lines from many processes never
    interleave), sleeping ``data.get("seconds", 0)`` between them."""

    name = "test.record"

    def run(self, data, context):
        path = data["log"]
        _append(path, "start %d %d %d %.6f\n" % (
            context.job_id, os.getpid(), context.attempt, time.time()))
        if data.get("seconds"):
            time.sleep(data["seconds"])
        _append(path, "end %d %d %d %.6f\n" % (
            context.job_id, os.getpid(), context.attempt, time.time()))


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class ShortLease(Record):
    """Record with a 1.5 s lease, for tests of dead runners."""

    name = "test.short-lease"
    lease_seconds = 1.5
    max_retries = 2


class Fail(_Base):
    """Raises an unexpected error."""

    name = "test.fail"

    def run(self, data, context):
        raise ValueError("something unexpected: %s" % data.get("why", "boom"))


class Flaky(_Base):
    """Raises a retryable error until attempt ``data["succeed_on"]``."""

    name = "test.flaky"
    max_retries = 3
    _backoff = staticmethod(constant(10.0))

    def run(self, data, context):
        if context.attempt < data.get("succeed_on", 1 << 30):
            raise RetryableError("not yet (attempt %d)" % context.attempt)


class Crash(_Base):
    """Kills its own process with ``os._exit``."""

    name = "test.crash"
    max_retries = 1
    _backoff = staticmethod(constant(0.0))

    def run(self, data, context):
        os._exit(7)


class CrashOnce(Record):
    """Record's start line, then ``os._exit`` on the first attempt; the
    second attempt runs as Record."""

    name = "test.crash-once"
    max_retries = 1
    _backoff = staticmethod(constant(0.0))

    def run(self, data, context):
        if context.attempt == 1:
            _append(data["log"], "start %d %d %d %.6f\n" % (
                context.job_id, os.getpid(), context.attempt, time.time()))
            os._exit(7)
        super().run(data, context)


class Hang(_Base):
    """Sleeps far past its timeout."""

    name = "test.hang"
    timeout_seconds = 2.0
    max_retries = 1
    _backoff = staticmethod(constant(0.0))

    def run(self, data, context):
        time.sleep(3600)


class Hog(_Base):
    """Allocates ``data["mib"]`` MiB under a 256 MiB address-space limit."""

    name = "test.hog"
    memory_limit = 256 << 20

    def run(self, data, context):
        block = bytearray(data["mib"] << 20)
        block[-1] = 1


class Alloc(Hog):
    """Hog without a memory limit."""

    name = "test.alloc"
    memory_limit = None


class Transactional(_Base):
    """Inserts a job row (as its "work") in the transaction that completes
    it; raises afterwards when ``data["fail"]``."""

    name = "test.transactional"
    transactional = True

    def run(self, data, context):
        context.cursor.execute(
            "INSERT INTO job (job_type, reason) VALUES ('noop', %s)",
            ("written by job %d" % context.job_id,))
        if data.get("fail"):
            raise ValueError("failing after writing")


for _type in (Record(), ShortLease(), Fail(), Flaky(), Crash(), CrashOnce(),
              Hang(), Hog(), Alloc(), Transactional()):
    job_types.register(_type)
