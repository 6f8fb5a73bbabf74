"""``lp-services recipe``: request builds through a checking recipe job."""

from pathlib import Path

import click

from lp_services.cli.context import echo_json, pass_context, user_errors

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def request(ctx, path, priority, max_retries, as_json):
    """Enqueue a recipe job for FILE; print its id.

    A recipe with a bad or missing field is refused at once (exit 1,
    nothing queued). The job then checks what needs the network and the
    database (sources and their sha1s, a chroot for its processor and
    series) and only then queues the build, whose prerequisite it is.
    `lp-services show ID` follows both.
    """
    import getpass

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
    conn = ctx.connect()
    try:
        with conn, conn.cursor() as cur:
            job_id = enqueue(cur, RECIPE_JOB_TYPE, data, priority=priority,
                             max_retries=max_retries,
                             requester=getpass.getuser(),
                             reason="recipe %s from %s" % (name, path))
    finally:
        conn.close()
    if as_json:
        echo_json({"id": job_id})
    else:
        click.echo(job_id)
