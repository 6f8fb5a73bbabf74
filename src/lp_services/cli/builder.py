"""``lp-services builder``: adding, listing and switching builders."""

import click

from lp_services.cli.context import echo_json, pass_context, user_errors

__all__ = ["builder"]


def _run(ctx, function, *args, **kwargs):
    from lp_services.buildmaster.builders import BuilderError
    from lp_services.database.sql import raw_cursor

    ctx.connect().close()  # an unreachable database: one clear line
    transactor = ctx.transactor()
    try:
        return transactor.run_blocking(
            lambda store: function(raw_cursor(store), *args, **kwargs))
    except BuilderError as error:
        raise click.ClickException(str(error)) from None
    finally:
        transactor.stop()


@click.group()
def builder():
    """Builders: the machines running agents."""


@builder.command()
@click.argument("name")
@click.option("--url", required=True, help="The agent's URL (http://HOST:8221).")
@click.option("--processor", "processors", multiple=True, required=True,
              help="A processor it builds for (repeatable; created if new).")
@click.option("--virtualized", is_flag=True,
              help="A virtual builder: reset before every build.")
@click.option("--reset-command", help="Shell command that resets it "
              "(required with --virtualized).")
@click.option("--secret", help="The agent's secret (HTTP Basic password).")
@click.option("--resource", "resources", multiple=True,
              help="A resource tag it offers (repeatable).")
@pass_context
@user_errors
def add(ctx, name, url, processors, virtualized, reset_command, secret,
        resources):
    """Add builder NAME."""
    from lp_services.buildmaster.builders import add_builder

    _run(ctx, add_builder, name=name, url=url, processors=list(processors),
         virtualized=virtualized, reset_command=reset_command, secret=secret,
         resources=list(resources))
    click.echo("added builder %s" % name)


@builder.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def list_(ctx, as_json):
    """List builders and what they are doing."""
    from lp_services.buildmaster.builders import list_builders

    rows = _run(ctx, list_builders)
    if as_json:
        echo_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="builders")
    for column in ("name", "processors", "virt", "state", "clean",
                   "failures", "build", "url"):
        table.add_column(column)
    for row in rows:
        if not row["builderok"]:
            state = "disabled: %s" % (row["failnotes"] or "")
        elif row["manual"]:
            state = "manual"
        else:
            state = "ok"
        build = ""
        if row["current_build"]:
            build = "%s %s" % (row["current_build"],
                               row["current_build_status"])
        table.add_row(row["name"], ",".join(row["processors"]),
                      "yes" if row["virtualized"] else "no", state,
                      row["clean_status"], str(row["failure_count"]), build,
                      row["url"])
    Console().print(table)


def _mode(mode, help_text):
    @click.argument("name")
    @click.option("--reason", help="Why (shown as the builder's notes).")
    @pass_context
    @user_errors
    def command(ctx, name, reason):
        from lp_services.buildmaster.builders import set_builder_mode

        _run(ctx, set_builder_mode, name, mode, reason)
        click.echo("builder %s: %s" % (name, {"enable": "enabled",
                                              "disable": "disabled",
                                              "manual": "manual"}[mode]))
    command.__doc__ = help_text
    return builder.command(mode)(command)


_mode("enable", "Enable builder NAME (automatic, failures forgotten).")
_mode("disable", "Disable builder NAME: no more builds.")
_mode("manual", "Make builder NAME manual: never dispatched to "
      "automatically.")
