"""The buildmaster's SQL, by name (as :mod:`lp_services.job.queries` is the
runner's).

Statuses come from the enums (:class:`JobStatus`, :class:`BuildStatus`,
written into the text once, at import); every job status change here is
an edge of the transition table, checked at import, so an edge removed
from the table breaks this module loudly. Build queue changes are guarded
by the build cookie: a scanner acting on stale knowledge changes nothing
instead of the wrong thing. Times are parameters from the caller's clock.
Every statement takes psycopg2 named parameters and runs on a cursor from
:func:`lp_services.database.sql.raw_cursor` inside the caller's
transaction.
"""

from lp_services.buildmaster.enums import BuildStatus
from lp_services.job.queries import FAIL_ORPHANS
from lp_services.job.status import JobStatus, check_transition

W, R, C, F = (int(JobStatus.WAITING), int(JobStatus.RUNNING),
              int(JobStatus.COMPLETED), int(JobStatus.FAILED))
for _source, _target in ((W, R), (R, W), (R, C), (R, F), (W, F)):
    check_transition(_source, _target)

NEEDSBUILD = int(BuildStatus.NEEDSBUILD)
BUILDING = int(BuildStatus.BUILDING)
GATHERING = int(BuildStatus.GATHERING)
CANCELLING = int(BuildStatus.CANCELLING)
FAILEDTOBUILD = int(BuildStatus.FAILEDTOBUILD)
FULLYBUILT = int(BuildStatus.FULLYBUILT)

# -- requests -------------------------------------------------------------

#: The processor's id and whether the prerequisite job exists.
CHECK_REQUEST = """
SELECT (SELECT id FROM processor WHERE name = %(processor)s),
       (SELECT count(*) FROM job WHERE id = %(prerequisite)s)
"""

#: As CHECK_REQUEST, plus how many of %(sha1s)s the file store holds.
REQUEST_LOOKUPS = """
SELECT (SELECT id FROM processor WHERE name = %(processor)s),
       (SELECT count(*) FROM job WHERE id = %(prerequisite)s),
       (SELECT count(DISTINCT sha1) FROM library_file
         WHERE sha1 = ANY(%(sha1s)s))
"""

#: A new build: job WAITING, farm job NEEDSBUILD, queue row; the
#: buildmasters are told (delivered at commit).
REQUEST_BUILD = f"""
WITH new_job AS (
    INSERT INTO job (job_type, status, requester, reason,
                     date_created, scheduled_start, max_retries,
                     json_data, prerequisite, private)
    VALUES (%(job_type)s, {W}, %(requester)s, %(reason)s, %(now)s,
            %(scheduled_start)s, %(max_retries)s, %(json_data)s,
            %(prerequisite)s, %(private)s)
    RETURNING id),
farm AS (
    INSERT INTO build_farm_job (job, build_type, processor,
                                virtualized, series, status)
    SELECT id, %(build_type)s, %(processor)s, %(virtualized)s,
           %(series)s, {NEEDSBUILD} FROM new_job
    RETURNING job),
queued AS (
    INSERT INTO build_queue (job, build_farm_job, build_type,
        processor, virtualized, lastscore, estimated_duration,
        build_args, filemap, required_resources)
    SELECT job, job, %(build_type)s, %(processor)s, %(virtualized)s,
           %(lastscore)s, %(estimated_duration)s, %(build_args)s,
           %(filemap)s, %(resources)s FROM farm
    RETURNING job)
SELECT job, pg_notify(%(channel)s,
                      'queued ' || %(processor)s || ' '
                      || %(virtualized)s::int)
FROM queued
"""

# -- the claim ---------------------------------------------------------------

# The candidate query and claim, in one statement (see docs/buildmaster.md).
# Per processor of the builder, a LATERAL index scan of
# build_queue__candidate__idx in (lastscore DESC, job) order takes the first
# row that is eligible and not locked by another claimer; the best of those
# (at most one per processor) is claimed: job RUNNING under this master's
# lease, builder and a fresh cookie on the queue row, BUILDING on the farm
# job. The unique index on build_queue.builder rejects a second build for
# one builder even if two masters raced.
CLAIM = f"""
WITH candidate AS (
    SELECT c.job
    FROM unnest(%(processors)s::int[]) AS p(id)
    CROSS JOIN LATERAL (
        SELECT bq.job, bq.lastscore
        FROM build_queue bq
        JOIN job j ON j.id = bq.job
        WHERE bq.builder IS NULL
          AND bq.processor = p.id
          AND bq.virtualized = %(virtualized)s
          AND j.status = {W}
          AND j.scheduled_start <= %(now)s
          AND bq.required_resources <@ %(resources)s::text[]
          AND bq.build_type = ANY(%(build_types)s::text[])
          AND (j.prerequisite IS NULL OR EXISTS (
                SELECT 1 FROM job pj
                WHERE pj.id = j.prerequisite AND pj.status = {C}))
        ORDER BY bq.lastscore DESC, bq.job
        LIMIT 1
        FOR NO KEY UPDATE OF bq, j SKIP LOCKED
    ) c
    ORDER BY c.lastscore DESC, c.job
    LIMIT 1
),
claimed_job AS (
    UPDATE job
    SET status = {R}, date_started = %(now)s, lease_holder = %(holder)s,
        lease_expires = %(lease_expires)s,
        attempt_count = job.attempt_count + 1
    FROM candidate
    WHERE job.id = candidate.job AND job.status = {W}
    RETURNING job.id, greatest(job.date_created, job.scheduled_start)
                      AS queued_at
),
claimed AS (
    UPDATE build_queue
    SET builder = %(builder)s, build_cookie = %(cookie)s,
        date_dispatched = %(now)s, logtail = NULL
    FROM claimed_job
    WHERE build_queue.job = claimed_job.id
    RETURNING build_queue.job, build_queue.build_type,
              build_queue.processor, build_queue.virtualized,
              build_queue.build_args, build_queue.filemap
),
farm AS (
    UPDATE build_farm_job
    SET status = {BUILDING}, builder = %(builder)s, date_started = %(now)s,
        date_first_dispatched =
            COALESCE(build_farm_job.date_first_dispatched, %(now)s)
    FROM claimed
    WHERE build_farm_job.job = claimed.job
    RETURNING build_farm_job.job, build_farm_job.series
)
SELECT claimed.job, claimed.build_type, pr.name, farm.series,
       claimed.build_args, claimed.filemap, lf.sha1, claimed.virtualized,
       claimed_job.queued_at
FROM claimed
JOIN claimed_job ON claimed_job.id = claimed.job
JOIN farm ON farm.job = claimed.job
JOIN processor pr ON pr.id = claimed.processor
LEFT JOIN chroot ch ON ch.processor = claimed.processor
                   AND ch.series = farm.series
LEFT JOIN library_file lf ON lf.id = ch.library_file
"""

# -- resets and ends -----------------------------------------------------------

#: Detach a build from its builder if the cookie still matches.
RELEASE_QUEUE_ROW = """
UPDATE build_queue
SET builder = NULL, build_cookie = NULL, date_dispatched = NULL,
    logtail = NULL, cancel_deadline = NULL
WHERE job = %(job)s AND build_cookie = %(cookie)s
RETURNING processor, virtualized
"""

#: A job's attempts so far and its retry budget.
JOB_ATTEMPTS = "SELECT attempt_count, max_retries FROM job WHERE id = %(job)s"

#: Job %(job)s (just released from its builder) waits again, due at
#: %(now)s, its last attempt not counted: the builder refused the build's
#: type, which is nobody's failure.
GIVE_BACK_JOB = f"""
UPDATE job SET status = {W}, scheduled_start = %(now)s, lease_holder = NULL,
       lease_expires = NULL, last_error = %(reason)s,
       attempt_count = greatest(attempt_count - 1, 0)
WHERE id = %(job)s AND status = {R}
"""

#: A reset build's farm job waits again; its queue is told.
REQUEUE_FARM_JOB = f"""
UPDATE build_farm_job SET status = {NEEDSBUILD}, builder = NULL
WHERE job = %(job)s;
SELECT pg_notify(%(channel)s, 'queued ' || %(processor)s || ' '
                 || %(virtualized)s::int)
"""

#: BUILDING -> GATHERING while the results are fetched (cookie-guarded).
MARK_GATHERING = f"""
UPDATE build_farm_job SET status = {GATHERING}
WHERE job = %(job)s AND status = {BUILDING} AND EXISTS (
    SELECT 1 FROM build_queue
    WHERE job = %(job)s AND build_cookie = %(cookie)s)
RETURNING job
"""

#: The farm job's final status, log and dependencies; the queue row goes.
FINISH_FARM_JOB = """
UPDATE build_farm_job
SET status = %(status)s, date_finished = %(now)s,
    log = COALESCE(%(log)s, log),
    dependencies = COALESCE(%(dependencies)s, dependencies)
WHERE job = %(job)s;
DELETE FROM build_queue WHERE job = %(job)s;
"""

#: A finished build's result files.
ADD_BUILD_FILES = """
INSERT INTO build_file (build, library_file, filename)
SELECT %(job)s, f.id, f.name
FROM unnest(%(ids)s::bigint[], %(names)s::text[]) AS f(id, name)
"""

#: The builder of a build that still holds %(cookie)s, locked.
LOCK_DISPATCHED = """
SELECT builder FROM build_queue
WHERE job = %(job)s AND build_cookie = %(cookie)s FOR UPDATE
"""

#: A builder is free again.
NOTIFY_FREED = "SELECT pg_notify(%(channel)s, 'freed ' || %(builder)s)"

#: A build's job and farm job statuses, the job locked.
LOCK_BUILD = """
SELECT j.status, f.status FROM job j
JOIN build_farm_job f ON f.job = j.id
WHERE j.id = %(job)s FOR UPDATE OF j
"""

#: A build's queue row (its builder), locked; none once it has finished.
LOCK_QUEUE_ROW = "SELECT builder FROM build_queue WHERE job = %(job)s FOR UPDATE"

#: A dispatched build is to be cancelled; its master is told.
MARK_CANCELLING = f"""
UPDATE build_farm_job SET status = {CANCELLING} WHERE job = %(job)s;
SELECT pg_notify(%(channel)s, 'cancel ' || %(job)s)
"""

#: The deadline by which the builder running build %(job)s (cookie
#: %(cookie)s) must have aborted it, set once: the first scan that asks
#: for the abort sets it, later ones (a restarted master's too) keep it.
#: Returns the deadline in force.
SET_CANCEL_DEADLINE = """
UPDATE build_queue
SET cancel_deadline = coalesce(cancel_deadline, %(deadline)s)
WHERE job = %(job)s AND build_cookie = %(cookie)s
RETURNING cancel_deadline
"""

#: WAITING builds whose prerequisite FAILED fail too (the runner's
#: FAIL_ORPHANS for %(types)s = the build type), and so do their farm jobs;
#: their queue rows go.
FAIL_ORPHANED_BUILDS = f"""
WITH orphans AS ({FAIL_ORPHANS}),
farm AS (
    UPDATE build_farm_job SET status = {FAILEDTOBUILD},
                              date_finished = %(now)s
    FROM orphans WHERE build_farm_job.job = orphans.id
    RETURNING build_farm_job.job)
DELETE FROM build_queue USING farm
WHERE build_queue.job = farm.job
"""

#: Pin a waiting build's score.
RESCORE = """
UPDATE build_queue SET lastscore = %(key)s, manual = true
WHERE job = %(job)s AND builder IS NULL RETURNING job
"""

#: Everything about one build.
SHOW_BUILD = """
SELECT j.id, j.status, j.requester, j.reason, j.date_created,
       j.scheduled_start, j.date_started, j.date_finished,
       j.attempt_count, j.max_retries, j.last_error, j.prerequisite,
       j.lease_holder, j.lease_expires, j.json_data,
       f.build_type, p.name, f.virtualized, f.series, f.status,
       b.name, f.date_first_dispatched, f.date_finished,
       lf.sha1, lf.filename, f.dependencies, f.failure_count,
       q.lastscore, q.manual, q.build_cookie, q.logtail,
       q.build_args, q.filemap, q.required_resources, qb.name
FROM job j
JOIN build_farm_job f ON f.job = j.id
JOIN processor p ON p.id = f.processor
LEFT JOIN builder b ON b.id = f.builder
LEFT JOIN library_file lf ON lf.id = f.log
LEFT JOIN build_queue q ON q.job = j.id
LEFT JOIN builder qb ON qb.id = q.builder
WHERE j.id = %(job)s
"""

#: One build's result files.
SHOW_BUILD_FILES = """
SELECT bf.filename, lf.sha1, lf.size FROM build_file bf
JOIN library_file lf ON lf.id = bf.library_file
WHERE bf.build = %(job)s ORDER BY bf.filename
"""

# -- logtails ------------------------------------------------------------------

#: BUILDING builds' logtails (cookie-guarded) and their leases, renewed
#: for the RUNNING jobs among them: one statement per flush for all.
WRITE_LOGTAILS = f"""
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
      -- Fenced: only builds on builders this master still holds.
      AND EXISTS (SELECT 1 FROM builder b
                  WHERE b.id = build_queue.builder
                    AND b.owner = %(holder)s AND b.lease_expires > %(now)s)
    RETURNING build_queue.job)
UPDATE job SET lease_expires = %(lease)s,
               lease_holder = %(holder)s
FROM q WHERE job.id = q.job AND job.status = {R}
"""

# -- builders ------------------------------------------------------------------

#: Every active builder (or the one %(name)s) with its current build.
VITALS = """
SELECT b.id, b.name, b.url, b.virtualized, b.manual, b.builderok,
       b.failure_count, b.clean_status, b.reset_command, b.secret,
       b.resources, b.failnotes,
       ARRAY(SELECT bp.processor FROM builder_processor bp
             WHERE bp.builder = b.id ORDER BY bp.processor),
       ARRAY(SELECT p.name FROM builder_processor bp
             JOIN processor p ON p.id = bp.processor
             WHERE bp.builder = b.id ORDER BY bp.processor),
       q.job, q.build_cookie, q.build_type, f.status, j.status,
       f.failure_count, b.version, q.cancel_deadline, b.build_types,
       b.date_info_read, b.lease_epoch, b.owner
FROM builder b
LEFT JOIN build_queue q ON q.builder = b.id
LEFT JOIN build_farm_job f ON f.job = q.job
LEFT JOIN job j ON j.id = q.job
WHERE b.active AND (%(name)s::text IS NULL OR b.name = %(name)s)
ORDER BY b.name
"""

#: The (processor, virtualized) pairs some active builder serves that have
#: builds not on a builder: one probe of the candidate index per pair. (A
#: LATERAL ... in the index's order LIMIT 1, not EXISTS: the planner turns
#: EXISTS into a hashed semi-join, or a LIMIT 1 into a filtered scan, that
#: reads the whole queue every refresh when a pair has nothing waiting.)
PENDING_WORK = """
SELECT k.processor, k.virtualized
FROM (SELECT DISTINCT bp.processor, b.virtualized
      FROM builder b JOIN builder_processor bp ON bp.builder = b.id
      WHERE b.active) AS k
CROSS JOIN LATERAL (
    SELECT 1 FROM build_queue q
    WHERE q.builder IS NULL AND q.processor = k.processor
      AND q.virtualized = k.virtualized
    ORDER BY q.lastscore DESC, q.job
    LIMIT 1) AS waiting
"""

#: A builder's clean status (only from %(expected)s when not NULL).
SET_CLEAN_STATUS = """
UPDATE builder SET clean_status = %(status)s,
       date_clean_status_changed = %(now)s
WHERE id = %(id)s
  AND (%(expected)s::smallint IS NULL
       OR clean_status = %(expected)s::smallint)
RETURNING id
"""

#: One more failure of a builder and of its build.
COUNT_FAILURE = """
WITH b AS (UPDATE builder SET failure_count = failure_count + 1
           WHERE id = %(builder)s RETURNING failure_count),
     f AS (UPDATE build_farm_job SET failure_count = failure_count + 1
           WHERE job = %(job)s RETURNING failure_count)
SELECT (SELECT failure_count FROM b),
       COALESCE((SELECT failure_count FROM f), 0)
"""

RECORD_VERSION = """
UPDATE builder SET version = %(v)s, date_info_read = NULL WHERE id = %(id)s
"""

#: Read builder %(id)s's info() again at the next scan.
FORGET_INFO = "UPDATE builder SET date_info_read = NULL WHERE id = %(id)s"

#: What builder %(id)s's agent offers (its info() answer), read at %(now)s.
RECORD_INFO = """
UPDATE builder SET arch_tag = %(arch)s, build_types = %(types)s,
       date_info_read = %(now)s
WHERE id = %(id)s
"""

RESET_FAILURE_COUNT = """
UPDATE builder SET failure_count = 0
WHERE id = %(id)s AND failure_count <> 0
"""

#: A builder that failed too often is no longer ok.
BUILDER_FAILED = """
UPDATE builder SET builderok = false, failnotes = %(n)s,
       disabled_by_operator = false, date_state_changed = now()
WHERE id = %(id)s
"""

BUILDER_EXISTS = "SELECT 1 FROM builder WHERE name = %(n)s"

#: A new builder (and its processors if new).
ADD_BUILDER = """
INSERT INTO processor (name) SELECT unnest(%(procs)s::text[])
ON CONFLICT (name) DO NOTHING;
INSERT INTO builder (name, url, virtualized, manual, reset_command,
                     secret, resources)
VALUES (%(name)s, %(url)s, %(virt)s, %(manual)s, %(reset)s,
        %(secret)s, %(resources)s)
RETURNING id
"""

#: A new builder's processors; the buildmasters are told.
LINK_PROCESSORS = """
INSERT INTO builder_processor (builder, processor)
SELECT %(id)s, id FROM processor WHERE name = ANY(%(procs)s);
SELECT pg_notify(%(channel)s, 'builders')
"""

#: An operator's change of a builder's mode, by mode.
SET_BUILDER_MODE = {
    mode: "UPDATE builder SET " + assignments
    + ", date_state_changed = now() WHERE name = %(name)s RETURNING id"
    for mode, assignments in {
        "enable": "builderok = true, manual = false, failure_count = 0,"
                  " failnotes = NULL, disabled_by_operator = false",
        "disable": "builderok = false, failnotes = %(reason)s,"
                   " disabled_by_operator = true",
        "manual": "manual = true,"
                  " failnotes = COALESCE(%(reason)s, failnotes)",
    }.items()}

NOTIFY_BUILDERS = "SELECT pg_notify(%(channel)s, 'builders')"

#: Every builder with its state, current build and the master holding its
#: lease at %(now)s.
LIST_BUILDERS = """
SELECT b.name, b.url, b.virtualized, b.manual, b.active, b.builderok,
       b.failnotes, b.failure_count, b.clean_status, b.resources,
       b.version, b.disabled_by_operator,
       ARRAY(SELECT p.name FROM builder_processor bp
             JOIN processor p ON p.id = bp.processor
             WHERE bp.builder = b.id ORDER BY p.name),
       q.job, f.status,
       CASE WHEN b.lease_expires > %(now)s THEN b.owner END
FROM builder b
LEFT JOIN build_queue q ON q.builder = b.id
LEFT JOIN build_farm_job f ON f.job = q.job
ORDER BY b.name
"""


# -- processors and chroots ---------------------------------------------------

#: The id of processor %(processor)s and of its chroot for %(series)s
#: (either NULL when missing).
PROCESSOR_AND_CHROOT = """
SELECT (SELECT id FROM processor WHERE name = %(processor)s),
       (SELECT c.id FROM chroot c JOIN processor p ON p.id = c.processor
         WHERE p.name = %(processor)s AND c.series = %(series)s)
"""

#: Library file %(file)s as the chroot of processor %(processor)s (an id)
#: for %(series)s, replacing the previous one.
REGISTER_CHROOT = """
INSERT INTO chroot (processor, series, library_file)
VALUES (%(processor)s, %(series)s, %(file)s)
ON CONFLICT (processor, series)
DO UPDATE SET library_file = EXCLUDED.library_file, date_created = now()
"""

#: Builder %(name)s's agent is now at %(url)s with %(secret)s: trusted
#: again, failures forgotten, dispatched to automatically; the buildmasters
#: are told (delivered at commit).
REPOINT_BUILDER = """
UPDATE builder SET url = %(url)s, secret = %(secret)s, builderok = true,
       failure_count = 0, failnotes = NULL, active = true, manual = false
WHERE name = %(name)s
RETURNING id;
SELECT pg_notify(%(channel)s, 'builders')
"""

# -- estimates ---------------------------------------------------------------


def median_duration_statement(history: int, by_recipe: bool) -> str:
    """The median duration of the last ``history`` FULLYBUILT builds of
    type %(type)s (and, ``by_recipe``, of recipe %(recipe)s)."""
    recipe = "AND j.json_data->>'recipe' = %(recipe)s" if by_recipe else ""
    return f"""
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d)
FROM (SELECT f.date_finished - f.date_started AS d
      FROM build_farm_job f JOIN job j ON j.id = f.job
      WHERE f.build_type = %(type)s AND f.status = {FULLYBUILT}
        AND f.date_started IS NOT NULL AND f.date_finished IS NOT NULL
        {recipe}
      ORDER BY f.date_finished DESC LIMIT {int(history)}) recent
"""


#: When waiting build %(id)s should start: its scheduled start, how many
#: builders could take it, and the work ahead of it on them (waiting
#: builds ranked above it plus what remains of the running ones), at
#: %(now)s (NULL: the database's now()). No row unless it waits.
EXPECTED_START = f"""
WITH me AS (
    SELECT bq.job, bq.processor, bq.virtualized, bq.lastscore,
           j.scheduled_start
    FROM build_queue bq JOIN job j ON j.id = bq.job
    WHERE bq.job = %(id)s AND bq.builder IS NULL AND j.status = {W}
), eligible AS (
    SELECT b.id FROM builder b
    JOIN builder_processor bp ON bp.builder = b.id
    JOIN me ON bp.processor = me.processor
           AND b.virtualized = me.virtualized
    WHERE b.active AND b.builderok AND NOT b.manual
), ahead AS (
    SELECT coalesce(sum(bq.estimated_duration), interval '0') AS work
    FROM build_queue bq JOIN job j ON j.id = bq.job, me
    WHERE bq.builder IS NULL AND j.status = {W}
      AND bq.processor = me.processor
      AND bq.virtualized = me.virtualized
      AND (bq.lastscore > me.lastscore
           OR (bq.lastscore = me.lastscore AND bq.job < me.job))
), running AS (
    SELECT coalesce(sum(greatest(
               bq.estimated_duration
               - (coalesce(%(now)s, now()) - bq.date_dispatched),
               interval '0')), interval '0') AS work
    FROM build_queue bq
    WHERE bq.builder IN (SELECT id FROM eligible)
)
SELECT me.scheduled_start,
       (SELECT count(*) FROM eligible) AS builders,
       ahead.work + running.work AS work,
       coalesce(%(now)s, now()) AS now
FROM me, ahead, running
"""


# -- several masters: registration and builder leases ----------------------

#: Master %(name)s (host %(host)s, pid %(pid)s) is running, as of %(now)s.
REGISTER_MASTER = """
INSERT INTO buildmaster (name, host, pid, date_started, heartbeat)
VALUES (%(name)s, %(host)s, %(pid)s, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE
SET host = EXCLUDED.host, pid = EXCLUDED.pid,
    date_started = EXCLUDED.date_started, heartbeat = EXCLUDED.heartbeat
"""

#: Master %(name)s is alive at %(now)s; no row if it was removed (then it
#: registers again).
HEARTBEAT = """
UPDATE buildmaster SET heartbeat = %(now)s WHERE name = %(name)s
RETURNING name
"""

#: The masters whose heartbeat is newer than %(since)s, by name.
LIVE_MASTERS = """
SELECT name FROM buildmaster WHERE heartbeat > %(since)s ORDER BY name
"""

#: Master %(name)s stops: its builders are free at once.
DEREGISTER_MASTER = """
UPDATE builder SET owner = NULL, lease_expires = NULL
WHERE owner = %(name)s;
DELETE FROM buildmaster WHERE name = %(name)s
"""

#: Every active builder by name, with its lease.
BUILDER_LEASES = """
SELECT id, name, owner, lease_expires FROM builder
WHERE active ORDER BY name
"""

#: Renew master %(name)s's still valid leases on %(ids)s until %(until)s;
#: returns the ids renewed (a lease already lost is not renewed).
RENEW_LEASES = """
UPDATE builder SET lease_expires = %(until)s
WHERE id = ANY(%(ids)s::int[]) AND owner = %(name)s
  AND lease_expires > %(now)s
RETURNING id
"""

#: Take %(ids)s for master %(name)s until %(until)s where free or expired,
#: each with a new lease epoch (the agent fences on it).
#: A builder another master is writing about (its row locked FOR SHARE by
#: HOLD_BUILDER) is skipped, not waited for: a stalled master must not
#: stall the others. Returns the ids taken.
TAKE_BUILDERS = """
WITH free AS (
    SELECT id FROM builder
    WHERE id = ANY(%(ids)s::int[])
      AND (owner IS NULL OR owner = %(name)s OR lease_expires IS NULL
           OR lease_expires <= %(now)s)
    FOR UPDATE SKIP LOCKED)
UPDATE builder SET owner = %(name)s, lease_expires = %(until)s,
       lease_epoch = builder.lease_epoch + 1
FROM free WHERE builder.id = free.id
RETURNING builder.id
"""

#: Master %(name)s lets %(ids)s go (another master is to have them).
RELEASE_BUILDERS = """
UPDATE builder SET owner = NULL, lease_expires = NULL
WHERE id = ANY(%(ids)s::int[]) AND owner = %(name)s
"""

#: The fence: builder %(id)s is master %(name)s's at %(now)s, and stays so
#: until this transaction ends (the row is locked FOR SHARE, so no other
#: master can take it meanwhile). No row: the lease is lost.
HOLD_BUILDER = """
SELECT 1 FROM builder
WHERE id = %(id)s AND owner = %(name)s AND lease_expires > %(now)s
FOR SHARE
"""
