-- lp-services: reporting views (ops_*), documented in docs/ops-views.md.
--
-- Views carry no data, so they are not patched: `db upgrade` runs this file,
-- in one transaction, whenever its text changed. It must therefore be
-- idempotent: it drops every view first (dependents before what they use)
-- and then creates them.
--
-- The views answer the questions operators ask of a build farm: how deep is
-- the queue and when will it clear (ops_queue), what is every builder doing
-- (ops_builders), what work exists, builds and native jobs together
-- (ops_work), what is failing (ops_failures), and how long things take
-- (ops_durations), how the last day went hour by hour (ops_hourly), and
-- which buildmasters run and what each holds (ops_masters).
-- They read only; `lp-services report` prints them.

DROP VIEW IF EXISTS ops_masters;
DROP VIEW IF EXISTS ops_hourly;
DROP VIEW IF EXISTS ops_durations;
DROP VIEW IF EXISTS ops_failures;
DROP VIEW IF EXISTS ops_work;
DROP VIEW IF EXISTS ops_builders;
DROP VIEW IF EXISTS ops_queue;

-- Names of the smallint statuses (the Python IntEnums hold the same).
CREATE OR REPLACE FUNCTION job_status_name(smallint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (ARRAY['WAITING', 'RUNNING', 'COMPLETED', 'FAILED',
                  'SUSPENDED'])[$1 + 1]
$$;

CREATE OR REPLACE FUNCTION build_status_name(smallint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (ARRAY['NEEDSBUILD', 'FULLYBUILT', 'FAILEDTOBUILD',
                  'MANUALDEPWAIT', 'CHROOTWAIT', 'SUPERSEDED', 'BUILDING',
                  'FAILEDTOUPLOAD', 'UPLOADING', 'CANCELLING', 'CANCELLED',
                  'GATHERING'])[$1 + 1]
$$;

CREATE OR REPLACE FUNCTION builder_clean_status_name(smallint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (ARRAY['CLEAN', 'DIRTY', 'CLEANING'])[$1 + 1]
$$;


-- The queue per processor and virtualization.
--   waiting_builds           builds not yet dispatched (job WAITING)
--   building                 builds on a builder now
--   oldest_wait              how long the oldest waiting build has waited
--   estimated_work           sum of the waiting builds' estimated durations
--   builders_available       builders that may take these builds: active,
--                            ok, not manual, with the processor and the
--                            same virtualization
--   estimated_time_to_clear  estimated_work / builders_available (NULL when
--                            no builder can take the builds: they will wait
--                            for ever)
CREATE VIEW ops_queue AS
WITH waiting AS (
    SELECT bq.processor, bq.virtualized,
           count(*) FILTER (WHERE bq.builder IS NULL
                            AND j.status = 0) AS waiting_builds,
           count(*) FILTER (WHERE bq.builder IS NOT NULL) AS building,
           min(j.date_created) FILTER (WHERE bq.builder IS NULL
                                       AND j.status = 0) AS oldest_created,
           coalesce(sum(bq.estimated_duration)
                    FILTER (WHERE bq.builder IS NULL AND j.status = 0),
                    interval '0') AS estimated_work
    FROM build_queue bq
    JOIN job j ON j.id = bq.job
    GROUP BY bq.processor, bq.virtualized
), capacity AS (
    SELECT bp.processor, b.virtualized, count(*) AS builders_available
    FROM builder b
    JOIN builder_processor bp ON bp.builder = b.id
    WHERE b.active AND b.builderok AND NOT b.manual
    GROUP BY bp.processor, b.virtualized
), unoffered AS (
    -- Waiting builds of a type no available builder of their processor
    -- and virtualization offers (a builder whose info() is not read yet
    -- is given the benefit of the doubt).
    SELECT t.processor, t.virtualized, sum(t.n) AS builds,
           array_agg(t.build_type ORDER BY t.build_type) AS types
    FROM (SELECT bq.processor, bq.virtualized, bq.build_type,
                 count(*) AS n
          FROM build_queue bq JOIN job j ON j.id = bq.job
          WHERE bq.builder IS NULL AND j.status = 0
          GROUP BY bq.processor, bq.virtualized, bq.build_type) t
    WHERE NOT EXISTS (
        SELECT 1 FROM builder b
        JOIN builder_processor bp ON bp.builder = b.id
        WHERE bp.processor = t.processor AND b.virtualized = t.virtualized
          AND b.active AND b.builderok AND NOT b.manual
          AND (b.build_types IS NULL OR t.build_type = ANY (b.build_types)))
    GROUP BY t.processor, t.virtualized
)
SELECT p.name AS processor,
       coalesce(w.virtualized, c.virtualized) AS virtualized,
       coalesce(w.waiting_builds, 0) AS waiting_builds,
       coalesce(w.building, 0) AS building,
       now() - w.oldest_created AS oldest_wait,
       coalesce(w.estimated_work, interval '0') AS estimated_work,
       coalesce(c.builders_available, 0) AS builders_available,
       CASE WHEN coalesce(c.builders_available, 0) = 0 THEN
                CASE WHEN coalesce(w.waiting_builds, 0) = 0
                     THEN interval '0' END
            ELSE coalesce(w.estimated_work, interval '0')
                 / c.builders_available
       END AS estimated_time_to_clear,
       coalesce(u.builds, 0) AS unoffered_builds,
       array_to_string(u.types, ' ') AS unoffered_types
FROM waiting w
FULL JOIN capacity c
    ON c.processor = w.processor AND c.virtualized = w.virtualized
LEFT JOIN unoffered u
    ON u.processor = w.processor AND u.virtualized = w.virtualized
JOIN processor p ON p.id = coalesce(w.processor, c.processor);
COMMENT ON VIEW ops_queue IS
    'Queue depth, oldest wait and estimated time to clear per processor and virtualization.';


-- Every builder and what it is doing.
--   state          disabled (not active, or disabled by an operator),
--                  failed (not builderok after errors, see failnotes),
--                  building, manual, cleaning, dirty, idle
--   current_build  the job id of the build it holds, if any
--   time_in_state  since dispatch while building; since it was disabled,
--                  failed or made manual for those states; since the clean
--                  status last changed otherwise
CREATE VIEW ops_builders AS
SELECT b.id,
       b.name,
       b.url,
       b.virtualized,
       b.manual,
       CASE WHEN NOT b.active THEN 'disabled'
            WHEN NOT b.builderok AND b.disabled_by_operator THEN 'disabled'
            WHEN NOT b.builderok THEN 'failed'
            WHEN bq.job IS NOT NULL THEN 'building'
            WHEN b.manual THEN 'manual'
            WHEN b.clean_status = 2 THEN 'cleaning'
            WHEN b.clean_status = 1 THEN 'dirty'
            ELSE 'idle'
       END AS state,
       bq.job AS current_build,
       CASE WHEN NOT b.active OR NOT b.builderok THEN
                now() - b.date_state_changed
            WHEN bq.job IS NOT NULL THEN now() - bq.date_dispatched
            WHEN b.manual THEN now() - b.date_state_changed
            ELSE now() - b.date_clean_status_changed
       END AS time_in_state,
       b.failure_count,
       b.failnotes,
       builder_clean_status_name(b.clean_status) AS clean_status,
       (SELECT string_agg(p.name, ' ' ORDER BY p.name)
        FROM builder_processor bp JOIN processor p ON p.id = bp.processor
        WHERE bp.builder = b.id) AS processors,
       b.version,
       array_to_string(b.build_types, ' ') AS build_types,
       CASE WHEN b.lease_expires > now() THEN b.owner END AS master
FROM builder b
LEFT JOIN build_queue bq ON bq.builder = b.id;
COMMENT ON VIEW ops_builders IS
    'Each builder: state, current build, time in state, failures, clean status.';


-- Builds and native jobs together, one row per job.
--   kind       'build' or 'native'
--   type       the build type for builds, the job type for native jobs
--   status     the job's status; build_status the build's, for builds
--   outcome    succeeded, failed or cancelled once finished; NULL before
--   duration   date_finished - date_started (NULL until both exist)
CREATE VIEW ops_work AS
SELECT j.id,
       CASE WHEN f.job IS NULL THEN 'native' ELSE 'build' END AS kind,
       coalesce(f.build_type, j.job_type) AS type,
       job_status_name(j.status) AS status,
       build_status_name(f.status) AS build_status,
       CASE
           WHEN f.job IS NOT NULL THEN
               CASE WHEN f.status = 1 THEN 'succeeded'
                    WHEN f.status IN (2, 3, 4, 7) THEN 'failed'
                    WHEN f.status = 10 THEN 'cancelled'
                    WHEN j.status = 3 THEN 'failed'
               END
           WHEN j.status = 2 THEN 'succeeded'
           WHEN j.status = 3 THEN 'failed'
       END AS outcome,
       j.priority,
       p.name AS processor,
       b.name AS builder,
       j.date_created,
       j.scheduled_start,
       coalesce(f.date_started, j.date_started) AS date_started,
       coalesce(f.date_finished, j.date_finished) AS date_finished,
       coalesce(f.date_finished, j.date_finished)
           - coalesce(f.date_started, j.date_started) AS duration,
       j.attempt_count AS attempts,
       j.max_retries,
       j.prerequisite,
       j.last_error,
       j.private,
       j.requester
FROM job j
LEFT JOIN build_farm_job f ON f.job = j.id
LEFT JOIN processor p ON p.id = f.processor
LEFT JOIN builder b ON b.id = f.builder;
COMMENT ON VIEW ops_work IS
    'Builds and native jobs in one list: kind, type, status, timeline, attempts.';


-- Failure rates over the last day and the last week, per work type and per
-- builder (builds only). failure_rate = failed / finished; cancelled work
-- counts as finished but not failed.
CREATE VIEW ops_failures AS
WITH finished AS (
    SELECT 'type' AS dimension, kind || ':' || type AS name, outcome,
           date_finished
    FROM ops_work
    WHERE outcome IS NOT NULL
      AND date_finished > now() - interval '7 days'
    UNION ALL
    SELECT 'builder', builder, outcome, date_finished
    FROM ops_work
    WHERE kind = 'build' AND builder IS NOT NULL AND outcome IS NOT NULL
      AND date_finished > now() - interval '7 days'
)
SELECT dimension,
       name,
       count(*) FILTER (WHERE date_finished > now() - interval '1 day')
           AS finished_day,
       count(*) FILTER (WHERE date_finished > now() - interval '1 day'
                        AND outcome = 'failed') AS failed_day,
       round(count(*) FILTER (WHERE date_finished > now() - interval '1 day'
                              AND outcome = 'failed')::numeric
             / nullif(count(*) FILTER (
                   WHERE date_finished > now() - interval '1 day'), 0), 3)
           AS failure_rate_day,
       count(*) AS finished_week,
       count(*) FILTER (WHERE outcome = 'failed') AS failed_week,
       round(count(*) FILTER (WHERE outcome = 'failed')::numeric
             / count(*), 3) AS failure_rate_week
FROM finished
GROUP BY dimension, name;
COMMENT ON VIEW ops_failures IS
    'Failure rate per type and per builder over the last day and week.';


-- Duration percentiles of work that succeeded in the last 30 days, per kind
-- and type.
CREATE VIEW ops_durations AS
SELECT kind,
       type,
       count(*) AS samples,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY duration) AS p90,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration) AS p99,
       max(duration) AS max
FROM ops_work
WHERE outcome = 'succeeded' AND duration IS NOT NULL
  AND date_finished > now() - interval '30 days'
GROUP BY kind, type;
COMMENT ON VIEW ops_durations IS
    'Median, p90, p99 and max duration of successful work per kind and type (30 days).';


-- The last 24 hours of builds, hour by hour (the farm page's charts): one
-- row per hour, the current hour included, oldest first.
--   hour          the hour's start
--   queue_depth   builds waiting at the hour's end (now, for the current
--                 hour): created by then, not yet started (nor finished
--                 unstarted, as a cancelled waiting build is). A build that
--                 was retried counts as waiting only before its latest start.
--   succeeded, failed, cancelled
--                 builds that finished in the hour, by ops_work's outcome
-- One pass over the window's builds (no hour x build join): each build
-- adds +1 to the queue in the hour it was created and -1 in the hour it
-- left the queue; the depth at an hour's end is the sum of every change
-- up to that hour (changes before the window are summed into one bucket).
CREATE VIEW ops_hourly AS
WITH bounds AS (
    SELECT date_trunc('hour', now()) - interval '23 hours' AS since
), hours AS (
    SELECT hour
    FROM bounds, generate_series(since, date_trunc('hour', now()),
                                 interval '1 hour') AS hour
), builds AS (
    -- Builds that were waiting or finished at some point of the window.
    -- "recent" is a superset found by build_farm_job__finished__idx (a
    -- build's own date_finished wins in ops_work), so the farm page reads
    -- the window's builds, not every build ever.
    SELECT w.date_created,
           coalesce(w.date_started, w.date_finished) AS left_queue,
           w.date_finished,
           w.outcome
    FROM bounds,
         -- The bound written out, not bounds.since: the planner then
         -- estimates how few rows match, and probes the index.
         (SELECT f.job FROM build_farm_job f
          WHERE f.date_finished IS NULL
             OR f.date_finished >= date_trunc('hour', now())
                                   - interval '23 hours') AS recent
    JOIN ops_work w ON w.id = recent.job
    WHERE w.kind = 'build' AND coalesce(w.date_finished, 'infinity') >= since
), changes AS MATERIALIZED (
    SELECT greatest(date_trunc('hour', at), since - interval '1 hour')
               AS bucket,
           sum(delta) AS delta
    FROM (SELECT date_created AS at, 1 AS delta FROM builds
          UNION ALL
          SELECT left_queue, -1 FROM builds WHERE left_queue IS NOT NULL
         ) AS change, bounds
    GROUP BY 1
), finished AS (
    SELECT date_trunc('hour', date_finished) AS hour,
           count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE outcome = 'failed') AS failed,
           count(*) FILTER (WHERE outcome = 'cancelled') AS cancelled
    FROM builds, bounds
    WHERE date_finished >= since
    GROUP BY 1
)
SELECT h.hour,
       (SELECT coalesce(sum(c.delta), 0) FROM changes c
        WHERE c.bucket <= h.hour)::bigint AS queue_depth,
       coalesce(f.succeeded, 0) AS succeeded,
       coalesce(f.failed, 0) AS failed,
       coalesce(f.cancelled, 0) AS cancelled
FROM hours h
LEFT JOIN finished f ON f.hour = h.hour;
COMMENT ON VIEW ops_hourly IS
    'Builds over the last 24 hours, hourly: queue depth and finished by outcome.';


-- Every registered buildmaster: its heartbeat and what it holds.
--   heartbeat_age    since its last heartbeat; past one builder lease
--                    (30 s by default) it is presumed dead and its
--                    builders go to the others
--   builders_owned   builders whose lease it holds now
--   builds_running   builds on those builders
CREATE VIEW ops_masters AS
SELECT m.name AS master, m.host, m.pid, m.date_started AS started,
       m.heartbeat AS last_heartbeat, now() - m.heartbeat AS heartbeat_age,
       (SELECT count(*) FROM builder b
        WHERE b.owner = m.name AND b.lease_expires > now()) AS builders_owned,
       (SELECT count(*) FROM builder b
        JOIN build_queue bq ON bq.builder = b.id
        WHERE b.owner = m.name AND b.lease_expires > now()) AS builds_running
FROM buildmaster m;
COMMENT ON VIEW ops_masters IS
    'Each registered buildmaster: heartbeat, builders owned, builds running.';
