"""``lp-services db``: the database's server and schema."""

import click

from lp_services.cli.context import echo_json, pass_context, user_errors

__all__ = ["db"]


@click.group()
def db():
    """Start, stop and upgrade the database."""


def _server(ctx):
    from lp_services.config import lp_home
    from lp_services.database.embedded import EmbeddedServer

    return EmbeddedServer(lp_home(ctx.home))


def _require_embedded(ctx, action):
    from lp_services.config import DATABASE_URL_ENV
    import os

    if ctx.database or os.environ.get(DATABASE_URL_ENV):
        raise click.ClickException(
            "`db %s` manages the embedded server; a database URL is set, "
            "so there is nothing to %s" % (action, action))


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def start(ctx, as_json):
    """Start the embedded PostgreSQL server (or reuse the running one)."""
    _require_embedded(ctx, "start")
    url = _server(ctx).start()
    if as_json:
        echo_json({"running": True, "url": url})
    else:
        click.echo("embedded PostgreSQL running: %s" % url)


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def stop(ctx, as_json):
    """Stop the embedded PostgreSQL server."""
    _require_embedded(ctx, "stop")
    stopped = _server(ctx).stop()
    if as_json:
        echo_json({"stopped": stopped})
    elif stopped:
        click.echo("embedded PostgreSQL stopped")
    else:
        click.echo("embedded PostgreSQL was not running")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def status(ctx, as_json):
    """Say where the database is, whether it runs, and its schema revision."""
    from lp_services.config import redact_url
    from lp_services.database.connection import (
        DatabaseUnreachable, connect, resolve_database_url)
    from lp_services.database.schema import applied_revision, known_patches

    info = {"embedded": False, "running": False, "url": None,
            "revision": None, "latest_revision": 0}
    patches = known_patches()
    info["latest_revision"] = patches[-1].number if patches else 0
    try:
        url = resolve_database_url(ctx.database, ctx.home, start_embedded=False)
    except DatabaseUnreachable:
        url = None
    if not (ctx.database or _env_url()):
        state = _server(ctx).state()
        info.update(embedded=True, pgdata=str(state.pgdata), pid=state.pid)
    if url is not None:
        info["url"] = redact_url(url)
        try:
            conn = connect(url, connect_timeout=5)
        except DatabaseUnreachable as error:
            info["error"] = str(error)
        else:
            try:
                info["running"] = True
                info["revision"] = applied_revision(conn)
            finally:
                conn.close()
    if as_json:
        echo_json(info)
        return
    where = "embedded (%s)" % info.get("pgdata") if info["embedded"] else "external"
    click.echo("database:  %s" % where)
    click.echo("running:   %s" % ("yes" if info["running"] else "no"))
    if info["url"]:
        click.echo("url:       %s" % info["url"])
    if info.get("error"):
        click.echo("error:     %s" % info["error"])
    if info["running"]:
        revision = info["revision"]
        click.echo("schema:    %s (this code knows up to %d)" % (
            "not created (run `lp-services db upgrade`)" if revision is None
            else "revision %d" % revision, info["latest_revision"]))


def _env_url():
    import os

    from lp_services.config import DATABASE_URL_ENV

    return os.environ.get(DATABASE_URL_ENV)


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def url(ctx, as_json):
    """Print the database URL (starting the embedded server if needed)."""
    url = ctx.database_url(start_embedded=True)
    if as_json:
        echo_json({"url": url})
    else:
        click.echo(url)


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def upgrade(ctx, as_json):
    """Create the schema, or apply the patches it lacks, in order."""
    from lp_services.database.schema import upgrade as do_upgrade

    conn = ctx.connect(require_schema=False, start_embedded=True)
    try:
        result = do_upgrade(conn)
    finally:
        conn.close()
    if as_json:
        echo_json({"created": result.created, "revision": result.revision,
                   "applied": [p.name for p in result.applied],
                   "views_changed": result.views_changed})
        return
    if result.created:
        click.echo("created the schema at revision %d" % result.revision)
    for patch in result.applied:
        click.echo("applied patch %s" % patch.name)
    if result.views_changed and not result.created:
        click.echo("re-created the reporting views")
    if not result.changed:
        click.echo("schema is up to date (revision %d)" % result.revision)
