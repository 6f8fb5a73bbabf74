"""The read model's SQL, by name: ``show`` (any job by its id) and the
reports over the ``ops_*`` views (schema/views.sql).

Nothing here writes. Statuses come out of the views already named
(``job_status_name``, ``build_status_name``), so no status number appears
in this module.
"""

__all__ = [
    "BUILD_DETAILS",
    "BUILD_FILES",
    "DATABASE_NOW",
    "DEPENDENTS",
    "RELATED",
    "WAITING_REASON",
    "RUNNING_LOGTAILS",
    "REPORTS",
    "PRIVATE_WORK_REPORTS",
    "REPORT_FILTERS",
    "WORK",
    "report_statement",
]

#: Job %(id)s's common part: its ``ops_work`` row and the job columns the
#: view leaves out.
WORK = """
SELECT w.*, j.reason, j.json_data, j.lease_holder,
       j.lease_expires
FROM ops_work w JOIN job j ON j.id = w.id
WHERE w.id = %(id)s"""

#: Job %(id)s as a link (its prerequisite).
RELATED = """
SELECT id, kind, type, status, private, requester FROM ops_work
WHERE id = %(id)s"""

#: The jobs waiting on job %(id)s, oldest first.
DEPENDENTS = """
SELECT w.id, w.kind, w.type, w.status, w.private, w.requester FROM job j
JOIN ops_work w ON w.id = j.id
WHERE j.prerequisite = %(id)s ORDER BY j.id"""

#: Who changed job %(id)s, oldest first (``change_log``).
CHANGES = """
SELECT date, actor, action, detail FROM change_log
WHERE job = %(id)s ORDER BY id"""

#: Build %(id)s's own part: while queued its score, builder (and the
#: master holding that builder's lease while it runs), arguments and
#: logtail (``build_queue``); once ended its builder and log.
BUILD_DETAILS = """
SELECT f.build_type, build_status_name(f.status) AS build_status,
       p.name AS processor, f.virtualized, f.series,
       bq.lastscore, bq.manual, b.name AS builder,
       bq.estimated_duration, f.dependencies, bq.logtail,
       bq.build_args, bq.filemap,
       l.sha1 AS log_sha1, l.filename AS log_name, l.size AS log_size,
       CASE WHEN bq.builder IS NOT NULL AND b.lease_expires > now()
            THEN b.owner END AS master
FROM build_farm_job f
JOIN processor p ON p.id = f.processor
LEFT JOIN build_queue bq ON bq.job = f.job
LEFT JOIN builder b ON b.id = coalesce(bq.builder, f.builder)
LEFT JOIN library_file l ON l.id = f.log
WHERE f.job = %(id)s"""

#: Build %(id)s's result files by name.
BUILD_FILES = """
SELECT l.sha1, bf.filename, l.size FROM build_file bf
JOIN library_file l ON l.id = bf.library_file
WHERE bf.build = %(id)s ORDER BY bf.filename"""

#: The build type and logtail of each build in %(jobs)s still queued (the
#: status page's builder cards).
RUNNING_LOGTAILS = """
SELECT bq.job, bq.build_type, bq.logtail, j.private, j.requester
FROM build_queue bq JOIN job j ON j.id = bq.job
WHERE bq.job = ANY(%(jobs)s)"""

#: Why waiting build %(id)s cannot be dispatched: whether any available
#: builder of its processor and virtualization exists, and whether one
#: offers its build type (a builder whose info() is not read yet counts
#: as offering it). No row unless the build waits for a builder.
WAITING_REASON = """
SELECT bq.build_type, p.name, bq.virtualized,
       EXISTS (SELECT 1 FROM builder b
               JOIN builder_processor bp ON bp.builder = b.id
               WHERE bp.processor = bq.processor
                 AND b.virtualized = bq.virtualized
                 AND b.active AND b.builderok AND NOT b.manual) AS any_builder,
       EXISTS (SELECT 1 FROM builder b
               JOIN builder_processor bp ON bp.builder = b.id
               WHERE bp.processor = bq.processor
                 AND b.virtualized = bq.virtualized
                 AND b.active AND b.builderok AND NOT b.manual
                 AND (b.build_types IS NULL
                      OR bq.build_type = ANY (b.build_types))) AS offered
FROM build_queue bq
JOIN job j ON j.id = bq.job
JOIN processor p ON p.id = bq.processor
WHERE bq.job = %(id)s AND bq.builder IS NULL AND j.status = 0"""

#: The database's clock, for readers that were given none.
DATABASE_NOW = "SELECT now()"

#: Report name -> (view, ORDER BY). Ordering lives here, once.
REPORTS = {
    "queue": ("ops_queue", "processor, virtualized"),
    "builders": ("ops_builders", "name"),
    "work": ("ops_work", "id DESC"),
    "failures": ("ops_failures",
                 "dimension DESC, failure_rate_week DESC NULLS LAST, name"),
    "durations": ("ops_durations", "kind, type"),
    "hourly": ("ops_hourly", "hour"),
    "masters": ("ops_masters", "master"),
}

#: The reports that list work one row per job, so private work in them
#: is hidden from whoever may not see it.
PRIVATE_WORK_REPORTS = ("work",)

#: The columns each report may be filtered on (equality).
REPORT_FILTERS = {"work": ("kind", "type", "status", "outcome"),
                  "durations": ("kind",)}


def report_statement(name: str, columns, limit: int | None = None,
                     hide_private: bool = False, before: bool = False) -> str:
    """Report ``name`` filtered on ``columns`` (each equal to the parameter
    of its name), in its order, at most ``limit`` rows.

    With ``hide_private`` (the work report only), private work shows only
    when its requester is %(viewer)s (None: nobody's).

    :raises KeyError: an unknown report.
    :raises ValueError: a column the report cannot be filtered on (the
        names are checked here because they become SQL identifiers).
    """
    view, order = REPORTS[name]
    where = []
    for column in columns:
        if column not in REPORT_FILTERS.get(name, ()):
            raise ValueError("report %s cannot filter on %s" % (name, column))
        where.append("%s = %%(%s)s" % (column, column))
    if hide_private:
        if name not in PRIVATE_WORK_REPORTS:
            raise ValueError("report %s has no private work to hide" % name)
        where.append("(NOT private OR requester = %(viewer)s)")
    if before:
        if name not in PRIVATE_WORK_REPORTS:
            raise ValueError("report %s is not paged by id" % name)
        where.append("id < %(before)s")
    sql = "SELECT * FROM %s" % view
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY " + order
    if limit is not None:
        sql += " LIMIT %d" % int(limit)
    return sql
