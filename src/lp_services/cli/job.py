"""``lp-services job``: enqueue, inspect, cancel and retry native jobs."""

import json
from datetime import datetime, timezone

import click

from lp_services.cli.context import (
    echo_json, pass_context, recorded, user_errors, utc_now)

__all__ = ["job"]


@click.group()
def job():
    """Native jobs: enqueue, show, list, cancel, retry."""


def _in_transaction(ctx, action):
    """Run ``action(cursor)`` in one transaction; map domain errors to one
    clear line (nothing written)."""
    from lp_services.job.admin import NotANativeJob
    from lp_services.job.registry import InvalidJobData, UnknownJobType
    from lp_services.job.status import InvalidTransition
    from lp_services.job.transition import UnknownJob

    conn = ctx.connect()
    try:
        with conn:
            with conn.cursor() as cur:
                return action(cur)
    except (UnknownJobType, InvalidJobData, UnknownJob, InvalidTransition,
            NotANativeJob) as error:
        raise click.ClickException(
            error.args[0] if isinstance(error, LookupError) and error.args
            else str(error)) from None
    finally:
        conn.close()


def _parse_time(value):
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("not an ISO 8601 time: %r" % value,
                                 param_hint="--at") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


@job.command()
@click.argument("job_type")
@click.option("--data", default="{}", metavar="JSON",
              help="The job's data, a JSON object.")
@click.option("--at", metavar="ISO8601",
              help="Not before this time (UTC unless it says otherwise).")
@click.option("--max-retries", type=click.IntRange(min=0),
              help="Default: the type's.")
@click.option("--after", type=int, metavar="JOB_ID",
              help="Run only once this job has COMPLETED.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--module", multiple=True,
              help="Import this module to register more job types.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def enqueue(ctx, job_type, data, at, max_retries, after, priority, module,
            as_json):
    """Queue a job of JOB_TYPE; print its id."""
    from lp_services.job.enqueue import enqueue as do_enqueue
    from lp_services.job.registry import job_types, load_modules

    try:
        parsed = json.loads(data)
    except ValueError as error:
        raise click.BadParameter("not valid JSON: %s" % error,
                                 param_hint="--data") from None
    remote = ctx.remote()
    if remote is not None:
        if at or module:
            raise click.ClickException("--at and --module need the "
                                       "database (direct mode)")
        job_id = remote.post("/jobs", {
            "type": job_type, "data": parsed, "priority": priority,
            "max_retries": max_retries, "after": after})["id"]
        echo_json({"id": job_id}) if as_json else click.echo(job_id)
        return
    when = _parse_time(at)
    try:
        load_modules(module)
    except ImportError as error:
        raise click.ClickException("cannot import %s" % error) from None
    from lp_services.job.changes import local_actor, record_change

    def queue(cur):
        actor = local_actor()
        job_id = do_enqueue(
            cur, job_type, parsed, priority=priority, scheduled_start=when,
            max_retries=max_retries, prerequisite=after,
            requester=actor, registry=job_types)
        record_change(cur, actor, "request", utc_now(), job=job_id,
                      detail=job_type)
        return job_id
    job_id = _in_transaction(ctx, queue)
    if as_json:
        echo_json({"id": job_id})
    else:
        click.echo(job_id)


@job.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def show(ctx, job_id, as_json):
    """Show job JOB_ID (the same as `lp-services show JOB_ID`)."""
    from lp_services.cli.show import show_work

    show_work(ctx, job_id, as_json)


@job.command(name="list")
@click.option("--status", type=click.Choice(
    ["waiting", "running", "completed", "failed", "suspended"],
    case_sensitive=False))
@click.option("--type", "job_type", metavar="T")
@click.option("--limit", type=click.IntRange(min=1), default=50,
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def list_(ctx, status, job_type, limit, as_json):
    """List jobs, newest first."""
    from lp_services.job.admin import list_jobs
    from lp_services.job.status import JobStatus
    from lp_services.ops.reports import attempts_text

    wanted = None if status is None else JobStatus[status.upper()]
    remote = ctx.remote()
    if remote is not None:
        records = [_record_from_json(item) for item in remote.get(
            "/jobs", status=status, type=job_type, limit=limit)["items"]]
    else:
        records = _in_transaction(ctx, lambda cur: list_jobs(
            cur, wanted, job_type, limit))
    if as_json:
        echo_json([r.as_json() for r in records])
        return
    from lp_services.cli.tables import output_console, render_table

    cells = []
    for r in records:
        note = r.lease_holder or (r.last_error or "").strip().splitlines()[-1:]
        if isinstance(note, list):
            note = note[0] if note else ""
        cells.append([str(r.id), r.job_type, r.status.name, str(r.priority),
                      attempts_text(r.attempt_count, r.max_retries),
                      _short(r.scheduled_start), _short(r.date_finished),
                      note])
    console = output_console()
    console.print(render_table(
        "jobs (%d shown)" % len(records),
        ["id", "type", "status", "prio", "attempts", "scheduled", "finished",
         "holder / last error"], cells, console.width,
        optional=["scheduled", "prio", "finished"]))


def _record_from_json(value: dict):
    """A ``JobRecord`` from the API's ``Job`` answer (``as_json``)."""
    from lp_services.job.admin import JobRecord
    from lp_services.job.status import JobStatus

    value = dict(value, status=JobStatus[value["status"]])
    for key in ("date_created", "scheduled_start", "date_started",
                "date_finished", "lease_expires"):
        if value.get(key) is not None:
            value[key] = datetime.fromisoformat(value[key])
    return JobRecord(**value)


def _short(when):
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M:%S")


@job.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def cancel(ctx, job_id, as_json):
    """Fail a waiting, suspended or running job (a running one is stopped
    by its runner at its next lease renewal)."""
    from lp_services.job.admin import cancel_job

    remote = ctx.remote()
    if remote is not None:
        # The API answers {id, kind, status}: printed as it comes.
        _remote_native(ctx, job_id)
        answer = remote.post("/work/%d/cancel" % job_id)
        if as_json:
            echo_json(answer)
        else:
            click.echo("job %d cancelled (%s)" % (job_id, answer["status"]))
        return
    record = _in_transaction(ctx, recorded(lambda cur: cancel_job(
        cur, job_id, utc_now()), job_id, "cancel"))
    if as_json:
        echo_json(record.as_json())
    else:
        click.echo("job %d cancelled (%s)" % (record.id, record.status.name))


@job.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def retry(ctx, job_id, as_json):
    """Queue a FAILED job again, with its full retry allowance."""
    from lp_services.job.admin import retry_job

    remote = ctx.remote()
    if remote is not None:
        _remote_native(ctx, job_id)
        record = _record_from_json(remote.post("/work/%d/retry" % job_id))
    else:
        record = _in_transaction(ctx, recorded(lambda cur: retry_job(
            cur, job_id, utc_now()), job_id, "retry"))
    if as_json:
        echo_json(record.as_json())
    else:
        click.echo("job %d queued again (%s)" % (record.id, record.status.name))


def _remote_native(ctx, job_id):
    """Refuse a build's id (remote mode), as direct mode does."""
    from lp_services.cli.show import load_details
    from lp_services.ops.work import UnknownWork

    try:
        kind = load_details(ctx, job_id).kind
    except UnknownWork:
        raise click.ClickException("no job with id %d" % job_id) from None
    if kind == "build":
        raise click.ClickException("job %d is a build; use the build "
                                   "commands" % job_id)
