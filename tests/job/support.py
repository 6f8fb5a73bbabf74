"""Shared helpers for the job tests."""

import json
from datetime import datetime, timezone

from twisted.internet import defer, reactor, task

from lp_services.job.registry import load_modules
from lp_services.job.runner import JobRunner

TEST_MODULES = ("lp_services.job.testtypes",)
load_modules(TEST_MODULES)

__all__ = ["TEST_MODULES", "insert_job", "job_row", "make_runner",
           "real_now_clock", "wait_for"]


def real_now_clock():
    """A task.Clock starting at the real current time (jobs enqueued with
    the database's now() are due on it)."""
    clock = task.Clock()
    clock.advance(datetime.now(timezone.utc).timestamp())
    return clock


@defer.inlineCallbacks
def wait_for(predicate, timeout=20.0, interval=0.01, what="condition"):
    """Poll ``predicate`` on the real reactor until true (integration tests
    wait for real processes; unit tests use task.Clock instead)."""
    waited = 0.0
    while True:
        value = predicate()
        if value:
            return value
        if waited > timeout:
            raise AssertionError("timed out waiting for %s" % (
                what() if callable(what) else what))
        yield task.deferLater(reactor, interval, lambda: None)
        waited += interval


def insert_job(conn, job_type="noop", data=None, **columns):
    """Insert a job directly (bypassing enqueue's checks); return its id."""
    columns = dict(columns, job_type=job_type,
                   json_data=json.dumps(data or {}))
    names = sorted(columns)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO job (%s) VALUES (%s) RETURNING id" % (
            ", ".join(names), ", ".join("%%(%s)s" % n for n in names)),
            columns)
        job_id = cur.fetchone()[0]
    conn.commit()
    return job_id


def job_row(conn, job_id):
    """The job's row as a dict."""
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM job WHERE id = %s", (job_id,))
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
    conn.commit()
    return dict(zip(names, row))


def make_runner(testcase, types, clock=None, **kwargs):
    """A started JobRunner on the test database (stopped at cleanup).

    :return: a Deferred firing with the runner once its workers are ready.
    """
    from lp_services.job.registry import job_types

    kwargs.setdefault("poll_interval", 3600.0)
    kwargs.setdefault("grace", 0.0)
    kwargs.setdefault("concurrency", 2)
    runner = JobRunner(testcase.database_url,
                       [job_types.get(t) for t in types],
                       holder=kwargs.pop("holder", "test-runner"),
                       modules=TEST_MODULES, clock=clock, **kwargs)
    runner.startService()

    def stop():
        if runner.running:
            return runner.stopService()

    testcase.addCleanup(stop)
    return runner.started.addCallback(lambda _: runner)
