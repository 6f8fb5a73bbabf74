"""The runner's SQL, by name.

Every status change here is a guarded edge of the transition table
(:mod:`lp_services.job.status`), applied to many jobs in one statement:
each statement names the one source status it moves from (checked against
``TRANSITIONS`` at import, so an edge removed from the table breaks this
module loudly) and, for jobs a runner holds, ``lease_holder = %(holder)s``,
so that a runner that lost a lease (cancelled, or reclaimed after it was
presumed dead) changes nothing. Times are parameters from the runner's
clock, never SQL ``now()``.
"""

import re
from dataclasses import dataclass

from lp_services.job.status import JobStatus, check_transition

__all__ = [
    "ADD_JOB",
    "CLAIM",
    "COMPLETE",
    "COMPLETE_AND_CLAIM",
    "COMPLETE_ONE",
    "FAIL",
    "FAIL_ORPHANS",
    "HAND_BACK",
    "GET_JOB",
    "HEARTBEAT",
    "JOB_COLUMNS",
    "JOB_EXISTS",
    "JOB_STATUS",
    "LIST_JOBS",
    "NOTIFY_JOB_TYPE",
    "NOTIFY_OF_JOB",
    "NOTIFY_CHANNEL",
    "JOB_OWNERS",
    "RECORD_CHANGE",
    "PLAN_CACHE_MODE",
    "PREPARED",
    "Prepared",
    "prepared_statement",
    "RECLAIM_EXPIRED",
    "RETRY",
    "TRANSITION_SETTABLE",
    "transition_statement",
]

W, R, C, F = (int(JobStatus.WAITING), int(JobStatus.RUNNING),
              int(JobStatus.COMPLETED), int(JobStatus.FAILED))
for _source, _target in ((W, R), (R, C), (R, W), (R, F), (W, F)):
    check_transition(_source, _target)

#: LISTEN/NOTIFY channel; the payload is the job type.
NOTIFY_CHANNEL = "lp_job"

#: Claim up to %(limit)s claimable jobs of %(types)s. %(leases)s gives each
#: type's lease in seconds (same order as %(types)s). The selection walks
#: job__waiting__idx (priority DESC, id) WHERE status = 0. It is a
#: MATERIALIZED CTE, evaluated exactly once (a rescan would lock more rows,
#: claiming more than LIMIT), and the UPDATE finds its rows by primary key
#: (``id = ANY(ARRAY(...))``), the prerequisite by a correlated lookup and
#: the lease by position in %(leases)s: so the plan stays index-driven
#: even when it is made once for any parameters (the runner prepares it
#: with a generic plan; a join on the CTE's unknown row count would
#: become a hash join over the whole table).
_CLAIM_CTES = f"""
c AS MATERIALIZED (
    SELECT j.id FROM job j
    WHERE j.status = {W}
      AND j.scheduled_start <= %(now)s
      AND j.job_type = ANY(%(types)s::text[])
      -- Implied by the line above, but spelled out so that the planner can
      -- use job__waiting__idx, which leaves builds out.
      AND j.job_type <> 'build'
      AND (j.prerequisite IS NULL OR (
           SELECT p.status FROM job p WHERE p.id = j.prerequisite) = {C})
    ORDER BY j.priority DESC, j.id
    LIMIT %(limit)s
    FOR NO KEY UPDATE OF j SKIP LOCKED
)"""

_CLAIM_UPDATE = f"""
UPDATE job SET
    status = {R},
    attempt_count = job.attempt_count + 1,
    date_started = %(now)s,
    lease_holder = %(holder)s,
    lease_expires = %(now)s + make_interval(secs => (%(leases)s::float8[])[
        array_position(%(types)s::text[], job.job_type)])
WHERE job.id = ANY(ARRAY(SELECT id FROM c)) AND job.status = {W}
RETURNING job.id, job.job_type, job.json_data, job.attempt_count,
          job.max_retries
"""

CLAIM = "WITH" + _CLAIM_CTES + _CLAIM_UPDATE

#: Complete the jobs %(ids)s this runner holds.
COMPLETE = f"""
UPDATE job SET status = {C}, date_finished = %(now)s,
    lease_expires = NULL, lease_holder = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND status = {R}
  AND lease_holder = %(holder)s
RETURNING id
"""

#: COMPLETE and CLAIM in one statement (one round trip, one commit): the
#: runner's steady state, finishing what its children answered and taking
#: as many new jobs. Rows: (claimed, id, type, data, attempt, max_retries);
#: claimed = false marks a completed id. The two updates touch disjoint
#: rows (RUNNING ones held by this runner; WAITING ones).
COMPLETE_AND_CLAIM = f"""
WITH done AS (
    UPDATE job SET status = {C}, date_finished = %(now)s,
        lease_expires = NULL, lease_holder = NULL
    WHERE id = ANY(%(ids)s::bigint[]) AND status = {R}
      AND lease_holder = %(holder)s
    RETURNING id
),""" + _CLAIM_CTES + """, claimed AS (""" + _CLAIM_UPDATE + """)
SELECT true, id, job_type, json_data, attempt_count, max_retries FROM claimed
UNION ALL
SELECT false, id, NULL, NULL, NULL, NULL FROM done
"""

#: Complete one job inside a transactional type's own transaction (run by
#: the child, see lp_services.job.interfaces).
COMPLETE_ONE = f"""
UPDATE job SET status = {C}, date_finished = %(now)s,
    lease_expires = NULL, lease_holder = NULL
WHERE id = %(id)s AND status = {R} AND lease_holder = %(holder)s
RETURNING id
"""

#: Put jobs back to WAITING until %(ats)s[i], recording %(errors)s[i].
RETRY = f"""
UPDATE job SET status = {W}, scheduled_start = v.at, last_error = v.error,
    lease_expires = NULL, lease_holder = NULL
FROM unnest(%(ids)s::bigint[], %(ats)s::timestamptz[], %(errors)s::text[])
    AS v(id, at, error)
WHERE job.id = v.id AND job.status = {R} AND job.lease_holder = %(holder)s
RETURNING job.id
"""

#: Fail jobs with %(errors)s[i].
FAIL = f"""
UPDATE job SET status = {F}, date_finished = %(now)s, last_error = v.error,
    lease_expires = NULL, lease_holder = NULL
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS v(id, error)
WHERE job.id = v.id AND job.status = {R} AND job.lease_holder = %(holder)s
RETURNING job.id
"""

#: Renew the leases of running jobs: %(seconds)s[i] from now. Ids missing
#: from the result are no longer this runner's (cancelled or reclaimed).
HEARTBEAT = f"""
UPDATE job SET lease_expires = %(now)s + make_interval(secs => v.seconds)
FROM unnest(%(ids)s::bigint[], %(seconds)s::float8[]) AS v(id, seconds)
WHERE job.id = v.id AND job.status = {R} AND job.lease_holder = %(holder)s
RETURNING job.id
"""

#: Graceful stop: unfinished jobs go back to WAITING at once. The attempt
#: is not counted against them (they did not fail; this runner left).
HAND_BACK = f"""
UPDATE job SET status = {W}, lease_expires = NULL, lease_holder = NULL,
    attempt_count = greatest(job.attempt_count - 1, 0)
WHERE id = ANY(%(ids)s::bigint[]) AND status = {R}
  AND lease_holder = %(holder)s
RETURNING id
"""

#: Jobs whose holder stopped renewing: back to WAITING (the attempt counts)
#: or FAILED when that was their last attempt. Any runner does this for the
#: types it knows; SKIP LOCKED keeps two runners from queueing on it.
RECLAIM_EXPIRED = f"""
WITH x AS MATERIALIZED (
    SELECT e.id FROM job e
    WHERE e.status = {R} AND e.lease_expires < %(now)s
      AND e.job_type = ANY(%(types)s::text[])
    ORDER BY e.lease_expires
    LIMIT 1000
    FOR NO KEY UPDATE OF e SKIP LOCKED
)
UPDATE job SET
    status = CASE WHEN job.attempt_count > job.max_retries THEN {F} ELSE {W} END,
    date_finished = CASE WHEN job.attempt_count > job.max_retries
                         THEN %(now)s END,
    last_error = 'attempt ' || job.attempt_count || ' lost: the lease held by '
        || job.lease_holder || ' expired at ' || job.lease_expires
        || CASE WHEN job.attempt_count > job.max_retries
                THEN ' (no attempts left)' ELSE '' END,
    lease_expires = NULL, lease_holder = NULL
FROM x
WHERE job.id = x.id AND job.status = {R}
RETURNING job.id, job.status, job.job_type
"""

#: WAITING jobs whose prerequisite FAILED fail too, naming it. A chain
#: fails one link per run; the runner repeats until nothing changes.
FAIL_ORPHANS = f"""
UPDATE job SET status = {F}, date_finished = %(now)s,
    last_error = left('prerequisite job ' || p.id || ' failed'
                      || coalesce(': ' || p.last_error, ''), 2000)
FROM job p
WHERE job.prerequisite = p.id AND p.status = {F}
  AND job.status = {W} AND job.job_type = ANY(%(types)s::text[])
RETURNING job.id
"""


@dataclass(frozen=True)
class Prepared:
    """One of the runner's hot statements as a server-side prepared
    statement: ``prepare`` runs once per connection, ``execute`` per batch
    with the same named parameters as the plain statement."""

    name: str
    prepare: str
    execute: str


#: Set on a connection that runs PREPARED: without it PostgreSQL re-plans
#: the claim at every execution (its generic plan's estimated cost, with
#: LIMIT unknown, never looks cheaper than a custom plan's).
PLAN_CACHE_MODE = "SET plan_cache_mode = force_generic_plan"

#: Every named parameter of the hot statements and its SQL type.
_PARAMETER_TYPES = {"now": "timestamptz", "holder": "text",
                    "limit": "integer", "types": "text[]",
                    "leases": "float8[]", "ids": "bigint[]"}


def prepared_statement(name: str, sql: str) -> Prepared:
    """``sql`` (with named %(...)s parameters of the types in
    _PARAMETER_TYPES) as the prepared statement ``name``."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    body = sql
    for number, parameter in enumerate(names, 1):
        body = body.replace("%%(%s)s" % parameter, "$%d" % number)
    return Prepared(
        name,
        "PREPARE %s (%s) AS %s" % (
            name, ", ".join(_PARAMETER_TYPES[n] for n in names), body),
        "EXECUTE %s (%s)" % (
            name, ", ".join("%%(%s)s" % n for n in names)))


#: The statements a runner runs once per batch, prepared on each of its
#: connections with a generic plan (PLAN_CACHE_MODE): planning the claim
#: costs the server more than running it for a batch of 10 (see
#: docs/jobrunner.md), and a generic plan is made once per connection.
#: Keyed by the plain statement.
PREPARED = {
    CLAIM: prepared_statement("lp_job_claim", CLAIM),
    COMPLETE: prepared_statement("lp_job_complete", COMPLETE),
    COMPLETE_AND_CLAIM: prepared_statement("lp_job_complete_and_claim",
                                  COMPLETE_AND_CLAIM),
}


# -- one job at a time: enqueue, operator actions, guarded transitions ------

#: The columns of a job row as operators see it (``lp-services job show``).
JOB_COLUMNS = ("id", "job_type", "status", "priority", "requester",
               "reason", "date_created", "scheduled_start", "date_started",
               "date_finished", "lease_expires", "lease_holder",
               "attempt_count", "max_retries", "json_data", "last_error",
               "prerequisite", "private")

#: Job %(id)s's JOB_COLUMNS.
GET_JOB = "SELECT %s FROM job WHERE id = %%(id)s" % ", ".join(JOB_COLUMNS)

#: Newest first, filtered by %(status)s and %(type)s when not NULL; private
#: jobs only when %(everyone)s or requested by %(viewer)s.
LIST_JOBS = (
    "SELECT %s FROM job"
    " WHERE (%%(status)s::smallint IS NULL OR status = %%(status)s)"
    "   AND (%%(type)s::text IS NULL OR job_type = %%(type)s)"
    "   AND (%%(everyone)s OR NOT private OR requester = %%(viewer)s)"
    " ORDER BY id DESC LIMIT %%(limit)s" % ", ".join(JOB_COLUMNS))

#: Who may see and change jobs %(ids)s: their type, privacy and requester.
JOB_OWNERS = ("SELECT id, job_type, private, requester FROM job"
              " WHERE id = ANY(%(ids)s)")

#: Whether job %(id)s exists (a prerequisite named on enqueue).
JOB_EXISTS = "SELECT 1 FROM job WHERE id = %(id)s"

#: A new WAITING job; ``scheduled_start`` NULL means now (the database's
#: clock: enqueuers have no clock of their own to agree with).
ADD_JOB = """
INSERT INTO job (job_type, priority, requester, reason, scheduled_start,
                 max_retries, json_data, prerequisite, private)
VALUES (%(type)s, %(priority)s, %(requester)s, %(reason)s,
        coalesce(%(start)s, now()), %(max_retries)s, %(data)s::jsonb,
        %(prerequisite)s, %(private)s)
RETURNING id"""

#: Wake the runners of %(type)s (sent at commit).
NOTIFY_JOB_TYPE = "SELECT pg_notify('%s', %%(type)s)" % NOTIFY_CHANNEL

#: Wake the runners of job %(id)s's type.
NOTIFY_OF_JOB = ("SELECT pg_notify('%s', job_type) FROM job WHERE id = %%(id)s"
                 % NOTIFY_CHANNEL)

#: Job %(id)s's status, to say why a guarded transition changed nothing.
JOB_STATUS = "SELECT status FROM job WHERE id = %(id)s"

#: Columns a single-job transition may set besides status; anything else
#: is a bug.
TRANSITION_SETTABLE = frozenset({
    "date_started", "date_finished", "scheduled_start", "lease_expires",
    "lease_holder", "attempt_count", "last_error",
})


def transition_statement(columns) -> str:
    """Move job %(id)s to %(status)s if it is in one of %(sources)s
    (the transition table's legal sources for that status), setting
    ``columns`` (each from the parameter of its name) in the same
    statement; returns the id when it moved."""
    unknown = set(columns) - TRANSITION_SETTABLE
    if unknown:
        raise TypeError("a transition cannot set %s"
                        % ", ".join(sorted(unknown)))
    assignments = "".join(", %s = %%(%s)s" % (n, n) for n in sorted(columns))
    return ("UPDATE job SET status = %(status)s" + assignments +
            " WHERE id = %(id)s AND status = ANY(%(sources)s::smallint[])"
            " RETURNING id")


#: Record that %(actor)s did %(action)s to job %(job)s or to the builder
#: named %(builder_name)s, at %(now)s (``change_log``).
RECORD_CHANGE = """
INSERT INTO change_log (date, actor, action, job, builder, detail)
VALUES (%(now)s, %(actor)s, %(action)s, %(job)s,
        (SELECT id FROM builder WHERE name = %(builder_name)s), %(detail)s)"""
