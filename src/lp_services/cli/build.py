"""``lp-services build``: requesting, showing, cancelling and rescoring
builds."""

from pathlib import Path

import click

from lp_services.buildmaster.scoring import COMPONENT, POCKET
from lp_services.cli.context import echo_json, pass_context, user_errors

__all__ = ["build"]


def _run(ctx, function):
    from lp_services.buildmaster.queue import BuildNotFound, BuildRequestError

    ctx.connect().close()  # an unreachable database: one clear line
    transactor = ctx.transactor()
    try:
        return transactor.run_blocking(function)
    except (BuildRequestError, BuildNotFound) as error:
        raise click.ClickException(str(error)) from None
    finally:
        transactor.stop()


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


@click.group()
def build():
    """Builds: request, show, cancel, rescore."""


@build.command()
@click.option("--type", "build_type", required=True,
              help="Build type (e.g. script).")
@click.option("--processor", required=True, help="Processor name.")
@click.option("--script", type=click.Path(exists=True, dir_okay=False,
                                          path_type=Path),
              help="The script a `script` build runs.")
@click.option("--file", "files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file the build gets (repeatable).")
@click.option("--virtualized", is_flag=True, help="Needs a virtual builder.")
@click.option("--urgency", type=click.Choice(["low", "medium", "high",
                                              "emergency"]),
              default="medium", show_default=True)
@click.option("--after", "prerequisite", type=int, metavar="JOB_ID",
              help="Only start once job JOB_ID has completed.")
@click.option("--series", default="default", show_default=True)
@click.option("--resource", "resources", multiple=True,
              help="A resource the builder must offer (repeatable).")
@click.option("--max-retries", type=click.IntRange(0), default=5,
              show_default=True)
@click.option("--private", is_flag=True,
              help="A private build (scores higher; see docs/scoring.md).")
@click.option("--pocket", type=click.Choice(sorted(POCKET)),
              help="Archive pocket, a scoring input.")
@click.option("--component", type=click.Choice(sorted(COMPONENT)),
              help="Archive component, a scoring input.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def request(ctx, build_type, processor, script, files, virtualized, urgency,
            prerequisite, series, resources, max_retries, private, pocket,
            component, as_json):
    """Queue a build; print its id."""
    from lp_services.buildmaster.queue import check_request, request_build
    from lp_services.protocol.names import InvalidFileName, check_filename
    from lp_services.filestore.store import default_file_store

    if build_type == "script" and script is None:
        raise click.ClickException("a script build needs --script FILE")
    paths = ([script] if script else []) + list(files)
    names = {}
    for path in paths:
        try:
            check_filename(path.name)
        except InvalidFileName as error:
            raise click.ClickException(str(error)) from None
        if path.name in names and names[path.name] != path.resolve():
            raise click.ClickException("two files named %r" % path.name)
        names[path.name] = path.resolve()
    file_store = default_file_store(ctx.home)
    args = {"script": script.name} if script else {}

    def queue(store):
        check_request(store, build_type=build_type, processor=processor,
                      urgency=urgency, prerequisite=prerequisite)
        filemap = {name: file_store.add_path(store, path, name).sha1
                   for name, path in names.items()}
        return request_build(
            store, build_type=build_type, processor=processor, now=_now(),
            virtualized=virtualized, series=series, build_args=args,
            filemap=filemap, urgency=urgency, prerequisite=prerequisite,
            required_resources=list(resources), max_retries=max_retries,
            private=private, pocket=pocket, component=component,
            requester="cli")

    job_id = _run(ctx, queue)
    if as_json:
        echo_json({"id": job_id})
    else:
        click.echo(job_id)


@build.command()
@click.argument("build_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def show(ctx, build_id, as_json):
    """Show build BUILD_ID (the same as `lp-services show BUILD_ID`)."""
    from lp_services.cli.show import show_work

    show_work(ctx, build_id, as_json, builds_only=True)


@build.command()
@click.argument("build_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def cancel(ctx, build_id, as_json):
    """Cancel build BUILD_ID."""
    from lp_services.buildmaster.queue import cancel_build

    status = _run(ctx, lambda store: cancel_build(store, build_id, _now()))
    if as_json:
        echo_json({"id": build_id, "build_status": status.name})
    else:
        click.echo("build %d: %s" % (build_id, status.name))


# ignore_unknown_options: a negative SCORE ("-5") is a number, not an
# option click does not know (only `rescore ID -- -5` worked before).
@build.command(context_settings={"ignore_unknown_options": True})
@click.argument("build_id", type=int)
@click.argument("score", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def rescore(ctx, build_id, score, as_json):
    """Pin waiting build BUILD_ID's score to SCORE (it still ages).

    SCORE may be negative: `build rescore 12 -5`.
    """
    from lp_services.buildmaster.queue import rescore_build

    _run(ctx, lambda store: rescore_build(store, build_id, score, _now()))
    if as_json:
        echo_json({"id": build_id, "score": score, "score_pinned": True})
    else:
        click.echo("build %d: score %d (pinned)" % (build_id, score))
