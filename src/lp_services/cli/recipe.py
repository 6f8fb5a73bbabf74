"""``lp-services recipe``: request builds through a checking recipe job."""

from pathlib import Path

import click

from lp_services.cli.context import (
    echo_json, pass_context, user_errors, utc_now)

__all__ = ["recipe"]


@click.group()
def recipe():
    """Request recipe builds (see docs/recipes.md)."""


@recipe.command()
@click.argument("path", metavar="FILE",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--priority", type=int, default=0, show_default=True,
              help="Priority of the recipe job.")
@click.option("--max-retries", type=click.IntRange(0), default=None,
              help="Retries of the recipe job when a source is unreachable "
                   "(default: the recipe type's).")
@click.option("--private", is_flag=True,
              help="Private work: the recipe job, its build, log and files "
              "are shown only to you and to operators.")
@click.option("--wait", is_flag=True,
              help="Follow the recipe job and its build to the end; exit 0 "
              "if the build succeeded, 1 if anything failed, 3 if "
              "cancelled.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def request(ctx, path, priority, max_retries, private, wait, as_json):
    """Enqueue a recipe job for FILE; print its id.

    A recipe with a bad or missing field is refused at once (exit 1,
    nothing queued). The job then checks what needs the network and the
    database (sources and their sha1s, a chroot for its processor and
    series) and only then queues the build, whose prerequisite it is.
    `lp-services show ID` follows both.
    """
    from lp_services.job.enqueue import enqueue
    from lp_services.recipes.recipe import (
        RECIPE_JOB_TYPE, RecipeError, load_recipe_file, parse_recipe)

    try:
        data = load_recipe_file(path)
    except RecipeError as error:
        raise click.ClickException(str(error)) from None
    try:
        # The static checks (fields, names, sha1 shapes) refuse a bad
        # recipe now, with nothing queued; the job still checks what
        # needs the network or the database (sources, processor, chroot).
        parse_recipe(data)
    except RecipeError as error:
        raise click.ClickException("%s: %s" % (path, error)) from None
    name = data.get("name") if isinstance(data.get("name"), str) else path.name
    remote = ctx.remote()
    if remote is not None:
        job_id = remote.post("/recipes", {
            "recipe": data, "priority": priority, "max_retries": max_retries,
            "private": private})["id"]
    else:
        from lp_services.job.changes import local_actor, record_change

        actor = local_actor()
        conn = ctx.connect()
        try:
            with conn, conn.cursor() as cur:
                job_id = enqueue(cur, RECIPE_JOB_TYPE, data,
                                 priority=priority, max_retries=max_retries,
                                 requester=actor, private=private,
                                 reason="recipe %s from %s" % (name, path))
                record_change(cur, actor, "request", utc_now(), job=job_id,
                              detail="recipe %s" % name)
        finally:
            conn.close()
    if as_json:
        echo_json({"id": job_id})
    else:
        click.echo(job_id)
    if wait:
        from lp_services.cli.wait import exit_with, wait_for_work

        exit_with(wait_for_work(ctx, job_id, then_dependents=True))
