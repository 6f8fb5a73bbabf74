"""``lp-services logs ID [--follow]``: a build's log, whole or as it grows,
from the database and the local file store (direct mode) or through the
API (``--server``)."""

import time

import click

from lp_services.cli.context import echo_json, pass_context, user_errors

__all__ = ["logs", "read_log"]

#: Seconds a follow waits for news per call (the server's long poll, or
#: between looks in direct mode).
FOLLOW_WAIT = 10


def read_log(ctx, job_id: int, offset: int = 0, wait: int = 0) -> dict:
    """A piece of build ``job_id``'s log (the API's ``Log`` answer)."""
    remote = ctx.remote()
    if remote is not None:
        from lp_services.api.client import ApiClientError

        try:
            return remote.get("/work/%d/log" % job_id, offset=offset,
                              wait=wait or None)
        except ApiClientError as error:
            if error.status == 404:
                raise click.ClickException(str(error).split(" (HTTP")[0]) \
                    from None
            raise
    from lp_services.api import actions
    from lp_services.api.errors import ApiError
    from lp_services.filestore.store import default_file_store

    store = default_file_store(ctx.home)
    answer = ctx.run_with_cursor(actions.build_log, actions.local_admin(),
                                 job_id, store, offset, errors=(ApiError,))
    if wait and not answer["finished"] and not answer["text"]:
        time.sleep(min(wait, 2))
    return answer


def _new_lines(old: str, new: str) -> str:
    """What ``new`` (a live tail) adds to ``old`` (the previous tail): the
    tail is a window, so find where the old one's end lies in it."""
    if not old:
        return new
    if new.startswith(old):
        return new[len(old):]
    for size in range(min(len(old), len(new)), 0, -1):
        if new.startswith(old[-size:]):
            return new[size:]
    return new


@click.command()
@click.argument("job_id", metavar="ID", type=int)
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing as the build runs, until it ends.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the first piece as JSON (offsets and status).")
@pass_context
@user_errors
def logs(ctx, job_id, follow, as_json):
    """Print build ID's log: the stored log once it ended, the live tail
    while it runs (with --follow, everything as it comes)."""
    answer = read_log(ctx, job_id)
    if as_json:
        echo_json(answer)
        return
    shown_tail = ""
    while True:
        if answer["live"]:
            click.echo(_new_lines(shown_tail, answer["text"]), nl=False)
            shown_tail = answer["text"]
            offset = 0
        else:
            click.echo(answer["text"], nl=False)
            offset = answer["next_offset"] or 0
            if answer["size"] is not None and offset < answer["size"]:
                answer = read_log(ctx, job_id, offset)
                continue
        if answer["finished"] or not follow:
            if answer["finished"] and answer["size"] is None and not \
                    answer["text"]:
                click.echo("(build %d ended %s with no log)"
                           % (job_id, answer["build_status"]), err=True)
            return
        answer = read_log(ctx, job_id, offset, wait=FOLLOW_WAIT)
        if answer["live"] is False and answer["size"] is not None \
                and shown_tail:
            # The build ended: its stored log replaces the tail; print
            # what the tail had not shown yet.
            full = answer["text"]
            while answer["next_offset"] < answer["size"]:
                answer = read_log(ctx, job_id, answer["next_offset"])
                full += answer["text"]
            end = full.rfind(shown_tail)
            click.echo(full[end + len(shown_tail):] if end >= 0 else full,
                       nl=False)
            return
