"""Support for the chaos suite (tests/slow/acceptance/test_chaos.py).

- The ``chaos-record`` job type records every execution (job, attempt,
  runner, pid, start and end, from the database clock) in
  ``chaos_execution``, so the suite can prove that no job ran twice at once
  and that every run is accounted for by an attempt.
- :func:`install_audit` adds a trigger that records every assignment of a
  build to a builder (job, builder, cookie), so agents' build ids (their
  cookies) can be traced back to jobs.
- :func:`json_log_observer` is a twistd ``--logger`` factory writing JSON
  events with exact times to ``$LP_JSON_LOG``, so agents' build start and
  end can be compared with sub-second precision.

Runners load the type with ``--module lp_services.testing.chaos``.
"""

import os
import random
import time

import psycopg2

from lp_services.job.registry import JobType, job_types

__all__ = ["AUDIT_SQL", "ChaosRecordJobType", "install_audit",
           "json_log_observer"]

AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS chaos_execution (
    id bigserial PRIMARY KEY,
    job bigint NOT NULL,
    attempt integer NOT NULL,
    holder text NOT NULL,
    pid integer NOT NULL,
    started timestamptz NOT NULL,
    ended timestamptz
);
CREATE TABLE IF NOT EXISTS chaos_assignment (
    id bigserial PRIMARY KEY,
    job bigint NOT NULL,
    builder integer NOT NULL,
    cookie text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION chaos_record_assignment() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.builder IS NOT NULL AND NEW.build_cookie IS NOT NULL AND
       (TG_OP = 'INSERT' OR OLD.build_cookie IS DISTINCT FROM NEW.build_cookie)
    THEN
        INSERT INTO chaos_assignment (job, builder, cookie)
        VALUES (NEW.job, NEW.builder, NEW.build_cookie);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS chaos_assignment ON build_queue;
CREATE TRIGGER chaos_assignment AFTER INSERT OR UPDATE ON build_queue
    FOR EACH ROW EXECUTE FUNCTION chaos_record_assignment();
"""


def install_audit(connection) -> None:
    """Create the chaos tables and the assignment trigger."""
    with connection.cursor() as cur:
        cur.execute(AUDIT_SQL)
    connection.commit()


class ChaosRecordJobType(JobType):
    """Records its execution; short leases so killed runs come back fast."""

    name = "chaos-record"
    # A database restart or a killed runner interrupts a run: try again.
    retryable_errors = (psycopg2.OperationalError, psycopg2.InterfaceError)
    max_retries = 20
    lease_seconds = 3.0
    timeout_seconds = 30.0
    _backoff = staticmethod(lambda attempt: 0.2)

    def run(self, data, context) -> None:
        conn = context.connect()
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO chaos_execution (job, attempt, holder, pid,"
                " started) VALUES (%s, %s, %s, %s, clock_timestamp())"
                " RETURNING id",
                (context.job_id, context.attempt, context.lease_holder,
                 os.getpid()))
            execution = cur.fetchone()[0]
        conn.commit()
        time.sleep(random.uniform(0.0, data.get("max_sleep", 0.05)))
        with conn.cursor() as cur:
            cur.execute("UPDATE chaos_execution SET ended = clock_timestamp()"
                        " WHERE id = %s", (execution,))
        conn.commit()


job_types.register(ChaosRecordJobType())


def json_log_observer():
    """twistd ``--logger`` factory: JSON events to ``$LP_JSON_LOG``."""
    from twisted.logger import jsonFileLogObserver

    return jsonFileLogObserver(open(os.environ["LP_JSON_LOG"], "a"))
