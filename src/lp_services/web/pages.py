"""The status pages as ``twisted.web.template`` tag trees.

Every function here is pure: it takes the plain values the loaders in
:mod:`lp_services.web.data` read (ops view rows, ``WorkDetails``) and a
``base`` URL (where the status site is mounted, ending in ``/``) and
returns a tag. Text reaches the page only as tag children or attribute
values, which ``flatten`` escapes: a build log, file name or job error
holding HTML or script is shown as text, structurally. Nothing here builds
markup with string formatting.
"""

import json
from urllib.parse import urlencode

from twisted.web.template import Tag, tags

from lp_services.ops.reports import attempts_text, humanize
from lp_services.web.charts import charts_section

__all__ = [
    "LIVE_STATUSES",
    "build_page",
    "error_page",
    "farm_page",
    "job_page",
    "work_page",
]

#: Job statuses during which a build's log still grows: the page polls.
LIVE_STATUSES = ("WAITING", "RUNNING")

# Outcome and status -> the badge colour class (status.css).
_TONE = {
    "succeeded": "good", "COMPLETED": "good", "FULLYBUILT": "good",
    "idle": "good",
    "failed": "bad", "FAILED": "bad", "FAILEDTOBUILD": "bad",
    "FAILEDTOUPLOAD": "bad", "CHROOTWAIT": "bad", "MANUALDEPWAIT": "bad",
    "disabled": "off", "cancelled": "off", "CANCELLED": "off",
    "SUSPENDED": "off", "SUPERSEDED": "off", "manual": "off",
    "RUNNING": "busy", "BUILDING": "busy", "building": "busy",
    "GATHERING": "busy", "UPLOADING": "busy", "CANCELLING": "busy",
    "cleaning": "busy", "dirty": "warn",
    "WAITING": "wait", "NEEDSBUILD": "wait",
}


def badge(value, **attributes) -> Tag:
    """A coloured status word."""
    text = humanize(value)
    tone = _TONE.get(value, _TONE.get(text.lower(), "plain"))
    return tags.span(text, class_="badge " + tone, **attributes)


def _time(value) -> Tag | str:
    if value is None:
        return "-"
    return tags.time(humanize(value), datetime=value.isoformat())


def _layout(base: str, title: str, *content, refresh: int | None = None) -> Tag:
    head = [tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(title, " · lp-services"),
            tags.link(rel="icon", href="data:,"),
            tags.link(rel="stylesheet", href=base + "static/status.css")]
    if refresh:
        head.append(tags.meta(**{"http-equiv": "refresh", "content": str(refresh)}))
    nav = tags.nav(
        tags.a("lp-services", href=base, class_="brand"),
        tags.a("Farm", href=base),
        tags.a("Recent work", href=base + "work"),
        tags.a("Metrics", href=base + "metrics"))
    return tags.html(
        tags.head(*head),
        tags.body(
            tags.header(nav),
            Tag("main")(tags.h1(title), *content),
            tags.script(src=base + "static/status.js", defer="defer")),
        lang="en")


def _table(headers, rows, empty: str, class_: str = "") -> Tag:
    if not rows:
        return tags.p(empty, class_="empty")
    return tags.table(
        tags.thead(tags.tr(*[tags.th(h) for h in headers])),
        tags.tbody(*rows), class_=class_)


def _fields(pairs) -> Tag:
    """A definition list of (label, value) pairs, skipping None values."""
    items = []
    for label, value in pairs:
        if value is None:
            continue
        items.extend([tags.dt(label), tags.dd(value)])
    return tags.dl(*items, class_="fields")


def work_link(base: str, kind: str, job_id: int) -> Tag:
    """A link to a job's page: builds under builds/, native jobs under jobs/."""
    path = "builds/%d" % job_id if kind == "build" else "jobs/%d" % job_id
    return tags.a("%s %d" % (kind, job_id), href=base + path)


# --- farm -----------------------------------------------------------------

def farm_page(base: str, farm) -> Tag:
    """``/``: builders, the queue per processor, and the latest work.

    :param farm: a ``lp_services.web.data.Farm``.
    """
    summary = _builder_summary(farm.builders)

    builder_rows = []
    for b in farm.builders:
        current = "-"
        if b.get("private_build"):
            current = tags.span("private build", class_="muted")
        elif b["current_build"] is not None:
            current = tags.a("build %d" % b["current_build"],
                             href=base + "builds/%d" % b["current_build"],
                             class_="build-link")
            if b.get("build_type"):
                current = tags.span(current, " ", tags.small(b["build_type"]))
        note = b["failnotes"] or ""
        builder_rows.append(tags.tr(
            tags.td(tags.strong(b["name"]),
                    tags.div(b["processors"] or "", " ",
                             "virtual" if b["virtualized"] else "", class_="muted"),
                    tags.div("master: " + b["master"], class_="muted")
                    if b.get("master") else ""),
            tags.td(badge(b["state"]),
                    tags.div(note, class_="muted") if note else ""),
            tags.td(current),
            tags.td(humanize(b["time_in_state"]), class_="num"),
            tags.td(tags.pre(b["logtail"], class_="tail") if b.get("logtail")
                    else tags.span("-", class_="muted"))))
    builders = _table(["Builder", "State", "Current build", "Time in state",
                       "Last lines of the log"], builder_rows,
                      "No builders are registered.", class_="builders")

    queue_rows = []
    for q in farm.queue:
        ttc = q["estimated_time_to_clear"]
        if ttc is None:
            ttc = tags.span("never: no builder can take these", class_="bad-text")
        else:
            ttc = humanize(ttc)
        if q.get("unoffered_builds"):
            # Some wait for a build type no builder here offers.
            ttc = tags.span(ttc, tags.br(), tags.span(
                "%d waiting for a type no builder offers: %s"
                % (q["unoffered_builds"], q["unoffered_types"]),
                class_="bad-text"))
        queue_rows.append(tags.tr(
            tags.td(tags.strong(q["processor"]),
                    " virtual" if q["virtualized"] else ""),
            tags.td(str(q["waiting_builds"]), class_="num"),
            tags.td(str(q["building"]), class_="num"),
            tags.td(humanize(q["oldest_wait"]), class_="num"),
            tags.td(str(q["builders_available"]), class_="num"),
            tags.td(ttc, class_="num")))
    queue = _table(["Processor", "Waiting", "Building", "Oldest wait",
                    "Builders", "Estimated time to clear"], queue_rows,
                   "Nothing is queued.", class_="queue")

    return _layout(
        base, "Build farm",
        summary,
        tags.section(tags.h2("Builders"), builders),
        tags.section(tags.h2("Queue"), queue),
        charts_section(farm.hourly, farm.durations),
        tags.section(tags.h2("Latest work"), _work_table(base, farm.recent),
                     tags.p(tags.a("All recent work →", href=base + "work"))),
        tags.p("As of ", _time(farm.now), " (database time); this page "
               "refreshes every 30 s.", class_="muted"),
        refresh=30)


def _builder_summary(builders) -> Tag:
    """"3 builders: 1 idle, 1 building, 1 disabled" (a count before each
    state word: "idle 1" read as a name)."""
    if not builders:
        return tags.p("No builders.", class_="summary")
    states = {}
    for b in builders:
        states[b["state"]] = states.get(b["state"], 0) + 1
    parts = ["%d builder%s: " % (len(builders), "" if len(builders) == 1
                                   else "s")]
    for index, (state, count) in enumerate(sorted(states.items())):
        if index:
            parts.append(", ")
        parts.append(tags.span(str(count), " ", badge(state), class_="count",
                               **{"data-state": state}))
    return tags.p(*parts, class_="summary", id="builder-summary")


# --- recent work ------------------------------------------------------------

def _work_table(base: str, rows) -> Tag:
    body = []
    for w in rows:
        body.append(tags.tr(
            tags.td(work_link(base, w["kind"], w["id"])),
            tags.td(w["type"]),
            tags.td(badge(w["status"]),
                    " ", tags.small(w["build_status"]) if w["build_status"] else ""),
            tags.td(badge(w["outcome"]) if w["outcome"] else "-"),
            tags.td(w["builder"] or "-"),
            tags.td(_time(w["date_created"])),
            tags.td(humanize(w["duration"]), class_="num"),
            tags.td(str(w["attempts"]), class_="num"),
            tags.td(tags.span(w["last_error"], class_="error-text")
                    if w["last_error"] else "")))
    return _table(["Job", "Type", "Status", "Outcome", "Builder", "Created",
                   "Duration", "Attempts", "Last error"], body,
                  "No work matches.", class_="work")


def work_page(base: str, rows, filters: dict, choices: dict, limit: int) -> Tag:
    """``/work``: builds and jobs together, newest first, filtered.

    :param filters: the filters applied (name -> value).
    :param choices: name -> allowed values for the select boxes.
    """
    controls = []
    for name in ("kind", "status", "outcome"):
        options = [tags.option("any", value="")]
        for value in choices[name]:
            option = tags.option(value, value=value)
            if filters.get(name) == value:
                option(selected="selected")
            options.append(option)
        controls.append(tags.label(name, " ", tags.select(*options, name=name)))
    controls.append(tags.label("type", " ", tags.input(
        name="type", value=filters.get("type") or "", size="14",
        placeholder="e.g. script")))
    controls.append(tags.label("limit", " ", tags.input(
        name="limit", value=str(limit), size="4", type="number",
        min="1", max="1000")))
    controls.append(tags.button("Filter", type="submit"))
    active = {k: v for k, v in filters.items() if v}
    caption = "Newest first, at most %d." % limit
    if active:
        caption = "%s Filtered by %s. " % (caption, ", ".join(
            "%s=%s" % item for item in sorted(active.items())))
    return _layout(
        base, "Recent work",
        tags.form(*controls, method="get", action=base + "work", class_="filters"),
        tags.p(caption, " ", tags.a("Clear filters", href=base + "work")
               if active else "", class_="muted"),
        _work_table(base, rows))


def work_query(**filters) -> str:
    """The query string of a filtered work list (for links)."""
    return urlencode({k: v for k, v in filters.items() if v})


# --- one job or build -------------------------------------------------------

def _related(base: str, related) -> Tag:
    return tags.span(work_link(base, related.kind, related.id), " ",
                     tags.small(related.type), " ", badge(related.status))


def _common(base: str, d, *extra_columns) -> list:
    timeline = _fields([
        ("Created", _time(d.date_created)),
        ("Scheduled start", _time(d.scheduled_start)),
        ("Started", _time(d.date_started) if d.date_started else None),
        ("Finished", _time(d.date_finished) if d.date_finished else None),
        ("Duration", humanize(d.duration) if d.duration else None),
    ])
    attempts = attempts_text(d.attempts, d.max_retries)
    lease = None
    if d.lease_holder:
        lease = tags.span(d.lease_holder, " until ", _time(d.lease_expires))
    facts = _fields([
        ("Status", badge(d.status, id="status")),
        ("Outcome", badge(d.outcome) if d.outcome else None),
        ("Type", d.type),
        ("Priority", str(d.priority)),
        ("Requester", d.requester),
        ("Private", "yes: shown to its requester and operators only"
         if d.private else None),
        ("Reason", d.reason),
        ("Attempts", attempts),
        ("Lease", lease),
        ("Prerequisite", _related(base, d.prerequisite) if d.prerequisite else None),
    ])
    parts = [tags.div(tags.section(tags.h2("Summary"), facts),
                      tags.section(tags.h2("Timeline"), timeline),
                      *extra_columns, class_="columns")]
    if d.last_error:
        parts.append(tags.section(tags.h2("Last error"),
                                  tags.pre(d.last_error, class_="error")))
    if d.changes:
        parts.append(tags.section(
            tags.h2("Changes"),
            tags.ul(*[tags.li(_time(c.date), " ", tags.strong(c.action),
                              " by ", c.actor,
                              (": " + c.detail) if c.detail else "",
                              class_="change") for c in d.changes])))
    if d.dependents:
        parts.append(tags.section(
            tags.h2("Dependents"),
            tags.ul(*[tags.li(_related(base, r)) for r in d.dependents])))
    return parts


def job_page(base: str, d) -> Tag:
    """``/jobs/<id>``: a native job (``d`` a ``WorkDetails``)."""
    parts = _common(base, d)
    if d.data:
        parts.append(tags.section(
            tags.h2("Data"),
            tags.pre(json.dumps(d.data, indent=2, sort_keys=True), class_="data")))
    return _layout(base, "Job %d: %s" % (d.id, d.type), *parts)


def _files(files) -> Tag:
    rows = []
    for f in files:
        name = tags.a(f.filename, href=f.url, download=f.filename) if f.url \
            else tags.span(f.filename)
        rows.append(tags.tr(tags.td(name, class_="filename"),
                            tags.td(str(f.size), class_="num"),
                            tags.td(tags.code(f.sha1), class_="sha1")))
    return _table(["File", "Size (bytes)", "SHA-1"], rows,
                  "No result files.", class_="files")


def build_page(base: str, d, stored_log=None) -> Tag:
    """``/builds/<id>``: a build, its live log and its result files.

    :param stored_log: a ``StoredLog`` (the end of a finished build's log
        file) or None.
    """
    b = d.build
    live = d.status in LIVE_STATUSES
    score = None
    if b.score is not None:
        score = "%d%s" % (b.score, " (pinned)" if b.score_pinned else "")
    build_facts = _fields([
        ("Build status", badge(b.build_status, id="build-status")),
        ("Builder", tags.span(b.builder or "-", id="builder")),
        ("Master", b.master),
        ("Processor", b.processor + (" (virtualized)" if b.virtualized else "")),
        ("Series", b.series),
        ("Score", score),
        ("Estimated duration",
         humanize(b.estimated_duration) if b.estimated_duration else None),
        ("Expected start", _time(b.expected_start) if b.expected_start else None),
        ("Waiting", tags.span(b.waiting_reason, id="waiting-reason",
                              class_="bad-text")
         if b.waiting_reason else None),
        ("Dependencies", b.dependencies),
    ])
    log_parts = []
    if live and not b.logtail:
        # No empty log box while nothing is logged: say what comes, and
        # keep a hidden box the live poll fills (and shows) once it does.
        waiting = ("Waiting for a builder: the log appears here once the "
                   "build starts." if b.builder is None else
                   "The build has started; its log appears here shortly.")
        log_parts.append(tags.p(tags.span(waiting, id="live-note"),
                                class_="muted"))
        log_parts.append(tags.pre("", id="log", class_="log", hidden=""))
    elif live:
        log_parts.append(tags.p(
            tags.span("Following the build: the log below updates while it "
                      "runs.", id="live-note"), class_="muted"))
        log_parts.append(tags.pre(b.logtail, id="log", class_="log"))
    elif b.logtail:
        log_parts.append(tags.pre(b.logtail, id="log", class_="log"))
    elif stored_log is not None:
        if stored_log.truncated:
            log_parts.append(tags.p("The end of the stored log:", class_="muted"))
        log_parts.append(tags.pre(stored_log.text, id="log", class_="log"))
    if b.log is not None:
        link = tags.a(b.log.filename, href=b.log.url) if b.log.url \
            else tags.span(b.log.filename)
        log_parts.append(tags.p("Full log: ", link, " (%d bytes, SHA-1 " % b.log.size,
                                tags.code(b.log.sha1), ")", class_="full-log"))
    if not log_parts:
        log_parts.append(tags.p(_no_log(d), class_="empty", id="no-log"))
    live_attributes = {}
    if live:
        live_attributes = {"data-log-url": base + "builds/%d/log.json" % d.id}
    return _layout(
        base, "Build %d: %s" % (d.id, b.build_type),
        *_common(base, d, tags.section(tags.h2("Build"), build_facts)),
        tags.section(tags.h2("Log"), *log_parts, id="live", **live_attributes),
        tags.section(tags.h2("Result files"), _files(b.files)))


def _no_log(d) -> str:
    """Why a build that is no longer live has no log to show."""
    if d.build.build_status == "CANCELLED":
        return "No log: the build was cancelled before it produced one."
    if d.build.build_status == "SUPERSEDED":
        return "No log: the build was superseded before it ran."
    return "No log was stored for this build."


def log_json(d) -> dict:
    """``/builds/<id>/log.json``: what the live log polls."""
    from lp_services.ops.reports import jsonable

    b = d.build
    return {
        "id": d.id,
        "status": d.status,
        "build_status": b.build_status,
        "outcome": d.outcome,
        "builder": b.builder,
        "live": d.status in LIVE_STATUSES,
        "logtail": b.logtail,
        "date_started": jsonable(d.date_started),
        "date_finished": jsonable(d.date_finished),
    }


def error_page(base: str, code: int, title: str, message: str) -> Tag:
    """A 4xx/5xx page."""
    return _layout(base, title, tags.p(message, class_="error-message"),
                   tags.p(tags.a("Back to the farm", href=base)))
