"""``lp-services recipe``: request builds through a checking recipe job."""

from pathlib import Path

import click

from lp_services.cli.context import pass_context, user_errors

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
@pass_context
@user_errors
def request(ctx, path, priority, max_retries):
    """Enqueue a recipe job for FILE; print its id.

    The job checks the recipe (fields, sources and their sha1s, a chroot
    for its processor and series) and only then queues the build, whose
    prerequisite it is. `lp-services show ID` follows both.
    """
    import getpass

    from lp_services.job.enqueue import enqueue
    from lp_services.recipe import RECIPE_JOB_TYPE, RecipeError, load_recipe_file

    try:
        data = load_recipe_file(path)
    except RecipeError as error:
        raise click.ClickException(str(error)) from None
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
    click.echo(job_id)
