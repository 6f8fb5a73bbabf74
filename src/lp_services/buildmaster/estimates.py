"""Duration and start-time estimates for builds.

- A build's ``estimated_duration`` is the median duration of the last
  :data:`HISTORY` successful (FULLYBUILT) builds of the same recipe, else of
  the same build type, else :data:`DEFAULT_DURATION`. The recipe of a build
  is ``job.json_data->>'recipe'``.
- A waiting build's expected start: the work ahead of it in its queue
  (waiting builds of the same processor and virtualization with a higher
  score, or the same score and a lower id) plus what remains of the builds
  running on the builders that could take it, shared across those builders;
  never before its ``scheduled_start``. None when no builder can take it.

This is the model ``ops_queue`` uses too (work / builders); it assumes the
builders are interchangeable and the estimates are right, and says so.
"""

from datetime import timedelta

__all__ = ["DEFAULT_DURATION", "HISTORY", "estimate_duration", "expected_start"]

#: Used until a type has a successful build to learn from.
DEFAULT_DURATION = timedelta(minutes=5)
#: How many recent successful builds the median is taken over.
HISTORY = 20


def estimate_duration(cursor, build_type: str,
                      recipe: str | None = None) -> timedelta:
    """The estimated duration of a new build of ``build_type`` (and recipe)."""
    queries = []
    if recipe is not None:
        queries.append(("AND j.json_data->>'recipe' = %s", (build_type, recipe)))
    queries.append(("", (build_type,)))
    for extra, params in queries:
        cursor.execute("""
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d)
            FROM (SELECT f.date_finished - f.date_started AS d
                  FROM build_farm_job f JOIN job j ON j.id = f.job
                  WHERE f.build_type = %s AND f.status = 1
                    AND f.date_started IS NOT NULL
                    AND f.date_finished IS NOT NULL """ + extra + """
                  ORDER BY f.date_finished DESC LIMIT """ + str(HISTORY) + """
                 ) recent""", params)
        median = cursor.fetchone()[0]
        if median is not None:
            return median
    return DEFAULT_DURATION


def expected_start(cursor, job_id: int, now=None):
    """When the waiting build ``job_id`` should start, or None.

    None when the build is not waiting to be dispatched, or when no builder
    can take it. ``now`` defaults to the database's now().
    """
    cursor.execute("""
        WITH me AS (
            SELECT bq.job, bq.processor, bq.virtualized, bq.lastscore,
                   j.scheduled_start
            FROM build_queue bq JOIN job j ON j.id = bq.job
            WHERE bq.job = %(id)s AND bq.builder IS NULL AND j.status = 0
        ), eligible AS (
            SELECT b.id FROM builder b
            JOIN builder_processor bp ON bp.builder = b.id
            JOIN me ON bp.processor = me.processor
                   AND b.virtualized = me.virtualized
            WHERE b.active AND b.builderok AND NOT b.manual
        ), ahead AS (
            SELECT coalesce(sum(bq.estimated_duration), interval '0') AS work
            FROM build_queue bq JOIN job j ON j.id = bq.job, me
            WHERE bq.builder IS NULL AND j.status = 0
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
        FROM me, ahead, running""", {"id": job_id, "now": now})
    row = cursor.fetchone()
    if row is None:
        return None
    scheduled_start, builders, work, current = row
    if builders == 0:
        return None
    return max(current + work / builders, scheduled_start)
