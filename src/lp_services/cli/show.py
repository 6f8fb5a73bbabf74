"""``lp-services show ID``: any job, build or native, by its id.

``build show`` and ``job show`` are this command under other names: one
layout, one JSON shape, for both kinds of work.
"""

import click

from lp_services.cli.context import echo_json, pass_context, user_errors

__all__ = ["LOG_TAIL_LINES", "format_work", "show", "show_work"]

#: Lines of a finished build's stored log that ``show`` prints: where a
#: build fails, short enough to read without paging.
LOG_TAIL_LINES = 15


@click.command()
@click.argument("job_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def show(ctx, job_id, as_json):
    """Show a job or build: status, timeline, attempts, links, results."""
    show_work(ctx, job_id, as_json)


def show_work(ctx, job_id: int, as_json: bool, builds_only: bool = False) -> None:
    """What ``show``, ``build show`` and ``job show`` print.

    :param builds_only: ``build show``: an id that is no build is an
        error ("no build with id N").
    """
    from lp_services.ops.reports import humanize
    from lp_services.ops.work import UnknownWork, work_to_json

    try:
        details = load_details(ctx, job_id)
        if builds_only and details.kind != "build":
            raise UnknownWork(job_id)
    except UnknownWork as error:
        raise click.ClickException(
            "no build with id %d" % job_id if builds_only
            else str(error)) from None
    log_tail = _stored_log_tail(ctx, details)
    if as_json:
        tree = work_to_json(details)
        if tree.get("build") is not None:
            tree["build"]["stored_log_tail"] = log_tail
        echo_json(tree)
        return
    for line in format_work(details, humanize):
        click.echo(line)
    b = details.build
    if b is None:
        return
    if (b.log is not None or b.files) and ctx.files_base() is None \
            and not ctx.server:
        click.echo("  (download links: set LP_FILES_URL to the buildmaster's "
                   "--files-url)")
    tail = b.logtail or log_tail
    if tail:
        click.echo("log tail:")
        for line in tail.rstrip("\n").split("\n")[-LOG_TAIL_LINES:]:
            click.echo("  | " + line)


def load_details(ctx, job_id: int):
    """``describe_work`` of ``job_id``, from the database or (remote mode)
    the API. :raises UnknownWork:"""
    from lp_services.ops.work import UnknownWork, describe_work, work_from_json

    remote = ctx.remote()
    if remote is not None:
        from lp_services.api.client import ApiClientError

        try:
            return work_from_json(remote.get("/work/%d" % job_id))
        except ApiClientError as error:
            if error.status == 404:
                raise UnknownWork(job_id) from None
            raise
    conn = ctx.connect()
    try:
        with conn.cursor() as cur:
            return describe_work(cur, job_id, file_url=ctx.file_url)
    finally:
        conn.close()


def _stored_log_tail(ctx, details) -> str | None:
    """The last lines of a finished build's log from the local file store
    or the API (None when there is no log, or the store is on another
    machine)."""
    from lp_services.filestore.store import default_file_store
    from lp_services.web.data import last_lines, read_tail

    b = details.build
    if b is None or b.log is None or b.logtail:
        return None
    if ctx.server:
        from lp_services.cli.logs import read_log

        size = b.log.size
        answer = read_log(ctx, details.id, max(0, size - 16384))
        text = answer["text"]
        if size > 16384 and "\n" in text:
            text = text[text.index("\n") + 1:]
        return last_lines(text, LOG_TAIL_LINES)
    stored = read_tail(default_file_store(ctx.home).path_for(b.log.sha1))
    return last_lines(stored.text, LOG_TAIL_LINES) if stored else None


def format_work(d, humanize) -> list[str]:
    """The lines ``show`` prints for a WorkDetails."""
    from lp_services.ops.reports import attempts_text

    lines = ["%s %d: %s %s" % (d.kind, d.id, d.type, d.status)]

    def add(label, value):
        if value is not None and value != "":
            lines.append("  %-18s %s" % (label + ":", value))

    add("outcome", d.outcome)
    add("priority", d.priority)
    add("requester", d.requester)
    add("private", "yes" if d.private else None)
    add("reason", d.reason)
    add("created", humanize(d.date_created))
    add("scheduled start", humanize(d.scheduled_start))
    add("started", humanize(d.date_started) if d.date_started else None)
    add("finished", humanize(d.date_finished) if d.date_finished else None)
    add("duration", humanize(d.duration) if d.duration else None)
    add("attempts", attempts_text(d.attempts, d.max_retries))
    if d.lease_holder:
        add("lease", "%s until %s" % (d.lease_holder, humanize(d.lease_expires)))
    add("last error", d.last_error)
    if d.prerequisite:
        p = d.prerequisite
        add("prerequisite", "%s %d (%s, %s)" % (p.kind, p.id, p.type, p.status))
    for dep in d.dependents:
        add("dependent", "%s %d (%s, %s)" % (dep.kind, dep.id, dep.type, dep.status))
    for c in d.changes:
        add("change", "%s %s by %s%s" % (humanize(c.date), c.action, c.actor,
                                         ": " + c.detail if c.detail else ""))
    b = d.build
    if b is not None:
        add("build status", b.build_status)
        add("processor", "%s%s" % (b.processor, " (virtualized)" if b.virtualized else ""))
        add("series", b.series)
        if b.score is not None:
            add("score", "%d%s" % (b.score, " (pinned)" if b.score_pinned else ""))
        add("builder", b.builder)
        if b.estimated_duration is not None:
            add("estimated duration", humanize(b.estimated_duration))
        if b.expected_start is not None:
            add("expected start", humanize(b.expected_start))
        if b.waiting_reason is not None:
            add("waiting", b.waiting_reason)
        if b.master is not None:
            add("master", b.master)
        add("dependencies", b.dependencies)
        if b.log is not None:
            add("log", _file_line(b.log))
        for f in b.files:
            add("file", _file_line(f))
    return lines


def _file_line(f) -> str:
    line = "%s  sha1 %s  %d bytes" % (f.filename, f.sha1, f.size)
    return line + ("  " + f.url if f.url else "")
