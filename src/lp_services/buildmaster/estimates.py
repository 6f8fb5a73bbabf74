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

from lp_services.buildmaster import queries as BQ

__all__ = ["DEFAULT_DURATION", "HISTORY", "estimate_duration", "expected_start"]

#: Used until a type has a successful build to learn from.
DEFAULT_DURATION = timedelta(minutes=5)
#: How many recent successful builds the median is taken over.
HISTORY = 20


def estimate_duration(cursor, build_type: str,
                      recipe: str | None = None) -> timedelta:
    """The estimated duration of a new build of ``build_type`` (and recipe)."""
    attempts = []
    if recipe is not None:
        attempts.append((True, {"type": build_type, "recipe": recipe}))
    attempts.append((False, {"type": build_type}))
    for by_recipe, params in attempts:
        cursor.execute(BQ.median_duration_statement(HISTORY, by_recipe),
                       params)
        median = cursor.fetchone()[0]
        if median is not None:
            return median
    return DEFAULT_DURATION


def expected_start(cursor, job_id: int, now=None):
    """When the waiting build ``job_id`` should start, or None.

    None when the build is not waiting to be dispatched, or when no builder
    can take it. ``now`` defaults to the database's now().
    """
    cursor.execute(BQ.EXPECTED_START, {"id": job_id, "now": now})
    row = cursor.fetchone()
    if row is None:
        return None
    scheduled_start, builders, work, current = row
    if builders == 0:
        return None
    return max(current + work / builders, scheduled_start)
