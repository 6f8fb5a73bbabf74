"""``lp-services build``: requesting, showing, cancelling and rescoring
builds."""

from pathlib import Path

import click

from lp_services.buildmaster.scoring import COMPONENT, POCKET
from lp_services.cli.context import (
    echo_json, pass_context, recorded, user_errors, utc_now)

__all__ = ["build"]


def _build_errors():
    from lp_services.buildmaster.queue import BuildNotFound, BuildRequestError

    return (BuildRequestError, BuildNotFound)


def _run(ctx, function):
    """``function(store)`` in one transaction (storing files needs the
    Store); the build errors become one line."""
    ctx.connect().close()  # an unreachable database: one clear line
    transactor = ctx.transactor()
    try:
        return transactor.run_blocking(function)
    except _build_errors() as error:
        raise click.ClickException(str(error)) from None
    finally:
        transactor.stop()


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
@click.option("--dsc", type=click.Path(exists=True, dir_okay=False,
                                       path_type=Path),
              help="binarypackage: the source package's .dsc; every file "
              "it lists is taken from the same directory.")
@click.option("--archive", "archives", multiple=True, metavar="LINE",
              help="binarypackage: a sources.list line the build's "
              "dependencies come from (repeatable; default: the chroot's).")
@click.option("--trusted-key", "trusted_keys", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="binarypackage: an OpenPGP public key file apt trusts "
              "for the archives (repeatable).")
@click.option("--suite", help="binarypackage: the suite (default: the "
              "series, or SERIES-POCKET).")
@click.option("--archive-purpose", type=click.Choice(
    ["PRIMARY", "PPA", "PARTNER", "COPY"]),
    help="binarypackage: as Launchpad says it (default PRIMARY).")
@click.option("--arch-indep/--no-arch-indep", default=True, show_default=True,
              help="binarypackage: also build Architecture: all packages.")
@click.option("--distribution", help="binarypackage: the distribution "
              "(default debian).")
@click.option("--wait", "wait", is_flag=True,
              help="Follow the build to its end; exit 0 if it succeeded, "
              "1 if it failed, 3 if it was cancelled.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def request(ctx, build_type, processor, script, files, virtualized, urgency,
            prerequisite, series, resources, max_retries, private, pocket,
            component, dsc, archives, trusted_keys, suite, archive_purpose,
            arch_indep, distribution, wait, as_json):
    """Queue a build; print its id.

    A binarypackage build takes its source package with --dsc (the .dsc
    and the files it lists, from the same directory) and gets what
    launchpad-buildd needs (suite, ogrecomponent, archive_purpose,
    arch_indep, distribution) from the options or their defaults."""
    from lp_services.protocol.names import InvalidFileName, check_filename

    if build_type == "script" and script is None:
        raise click.ClickException("a script build needs --script FILE")
    package_options = (dsc, archives, trusted_keys, suite, archive_purpose,
                       distribution)
    if build_type != "binarypackage" and any(package_options):
        raise click.ClickException(
            "--dsc, --archive, --trusted-key, --suite, --archive-purpose "
            "and --distribution are for binarypackage builds")
    if build_type == "binarypackage" and dsc is None and not any(
            f.name.endswith(".dsc") for f in files):
        raise click.ClickException("a binarypackage build needs --dsc FILE")
    paths = ([script] if script else []) + list(files)
    if dsc is not None:
        paths += source_package_files(dsc)
    names = {}
    for path in paths:
        try:
            check_filename(path.name)
        except InvalidFileName as error:
            raise click.ClickException(str(error)) from None
        if path.name in names and names[path.name] != path.resolve():
            raise click.ClickException("two files named %r" % path.name)
        names[path.name] = path.resolve()
    args = {}
    if build_type == "binarypackage":
        args.update(package_args(dsc, archives, trusted_keys, suite,
                                 archive_purpose, arch_indep, distribution))
    remote = ctx.remote()
    if remote is not None:
        filemap = {name: remote.upload(path, name)
                   for name, path in names.items()}
        job_id = remote.post("/builds", {
            "build_type": build_type, "processor": processor,
            "files": filemap, "script": script.name if script else None,
            "args": args, "series": series, "virtualized": virtualized,
            "urgency": urgency, "after": prerequisite,
            "resources": list(resources), "max_retries": max_retries,
            "private": private, "pocket": pocket,
            "component": component})["id"]
    else:
        job_id = _request_direct(ctx, names, build_type, processor, script,
                                 args, virtualized, series, urgency,
                                 prerequisite, resources, max_retries,
                                 private, pocket, component)
    if as_json:
        echo_json({"id": job_id})
    else:
        click.echo(job_id)
    if wait:
        from lp_services.cli.wait import exit_with, wait_for_work

        exit_with(wait_for_work(ctx, job_id))


def _request_direct(ctx, names, build_type, processor, script, args,
                    virtualized, series, urgency, prerequisite, resources,
                    max_retries, private, pocket, component):
    """Store the files and queue the build in the database (direct mode),
    recording the local user as its requester."""
    from lp_services.buildmaster.queue import check_request, request_build
    from lp_services.filestore.store import default_file_store
    from lp_services.job.changes import local_actor, record_change

    file_store = default_file_store(ctx.home)
    if script:
        args = dict(args, script=script.name)
    actor = local_actor()

    def queue(store):
        from lp_services.database.sql import raw_cursor

        check_request(store, build_type=build_type, processor=processor,
                      urgency=urgency, prerequisite=prerequisite)
        # A private build's files are restricted: served only to whoever
        # may see the build (lp_services.filestore.access).
        filemap = {name: file_store.add_path(store, path, name,
                                             restricted=private).sha1
                   for name, path in names.items()}
        now = utc_now()
        job_id = request_build(
            store, build_type=build_type, processor=processor, now=now,
            virtualized=virtualized, series=series, build_args=args,
            filemap=filemap, urgency=urgency, prerequisite=prerequisite,
            required_resources=list(resources), max_retries=max_retries,
            private=private, pocket=pocket, component=component,
            requester=actor)
        record_change(raw_cursor(store), actor, "request", now, job=job_id,
                      detail="%s build%s" % (build_type, " (private)"
                                             if private else ""))
        return job_id

    return _run(ctx, queue)


def source_package_files(dsc: Path) -> list[Path]:
    """The .dsc and every file it lists, from its directory."""
    from lp_services.slave.binarypackage import DscError, parse_dsc

    try:
        package = parse_dsc(dsc.read_text(errors="replace"))
    except DscError as error:
        raise click.ClickException("%s: %s" % (dsc, error)) from None
    found = [dsc]
    for name in sorted(package.files):
        path = dsc.parent / name
        if not path.is_file():
            raise click.ClickException("%s lists %s, which is not in %s"
                                       % (dsc.name, name, dsc.parent))
        found.append(path)
    return found


def package_args(dsc, archives, trusted_keys, suite, archive_purpose,
                 arch_indep, distribution) -> dict:
    """The binarypackage build args the options give (the rest gets
    launchpad-buildd's defaults from request_build)."""
    import base64

    args = {"arch_indep": arch_indep}
    if dsc is not None:
        args["dsc"] = dsc.name
    if archives:
        args["archives"] = list(archives)
    if trusted_keys:
        args["trusted_keys"] = [base64.b64encode(k.read_bytes()).decode()
                                for k in trusted_keys]
    for key, value in (("suite", suite), ("archive_purpose", archive_purpose),
                       ("distribution", distribution)):
        if value is not None:
            args[key] = value
    return args


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

    remote = ctx.remote()
    if remote is not None:
        _remote_build(ctx, build_id)
        status = remote.post("/work/%d/cancel" % build_id)["status"]
    else:
        status = ctx.run_with_cursor(
            recorded(lambda cursor: cancel_build(cursor, build_id,
                                                 utc_now()).name,
                     build_id, "cancel"), errors=_build_errors())
    if as_json:
        echo_json({"id": build_id, "build_status": status})
    else:
        click.echo("build %d: %s" % (build_id, status))


def _remote_build(ctx, build_id):
    """Refuse an id that is not a build (remote mode), as direct mode does."""
    from lp_services.cli.show import load_details
    from lp_services.ops.work import UnknownWork

    try:
        kind = load_details(ctx, build_id).kind
    except UnknownWork:
        kind = None
    if kind != "build":
        raise click.ClickException("no build with id %d" % build_id)


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

    remote = ctx.remote()
    if remote is not None:
        _remote_build(ctx, build_id)
        remote.post("/work/%d/rescore" % build_id, {"score": score})
    else:
        ctx.run_with_cursor(
            recorded(lambda cursor: rescore_build(cursor, build_id, score,
                                                  utc_now()),
                     build_id, "rescore", str(score)), errors=_build_errors())
    if as_json:
        echo_json({"id": build_id, "score": score, "score_pinned": True})
    else:
        click.echo("build %d: score %d (pinned)" % (build_id, score))
