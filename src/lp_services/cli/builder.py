"""``lp-services builder``: adding, listing and switching builders."""

from urllib.parse import quote

import click

from lp_services.cli.context import (
    echo_json, pass_context, user_errors, utc_now)

__all__ = ["builder", "builder_state"]


def _run(ctx, function, *args, **kwargs):
    from lp_services.buildmaster.builders import BuilderError

    return ctx.run_with_cursor(function, *args, errors=(BuilderError,), **kwargs)


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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def add(ctx, name, url, processors, virtualized, reset_command, secret,
        resources, as_json):
    """Add builder NAME."""
    from lp_services.buildmaster.builders import add_builder

    _run(ctx, add_builder, name=name, url=url, processors=list(processors),
         virtualized=virtualized, reset_command=reset_command, secret=secret,
         resources=list(resources))
    if as_json:
        echo_json({"name": name, "added": True})
    else:
        click.echo("added builder %s" % name)


@builder.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
@user_errors
def list_(ctx, as_json):
    """List builders and what they are doing."""
    from lp_services.api import actions

    remote = ctx.remote()
    rows = (remote.get("/builders")["items"] if remote is not None
            else _run(ctx, actions.list_builders, actions.local_admin(),
                      utc_now()))
    if as_json:
        echo_json(rows)
        return
    from lp_services.cli.tables import output_console, render_table

    cells = []
    for row in rows:
        cells.append([
            row["name"], ",".join(row["processors"]),
            "yes" if row["virtualized"] else "no", builder_state(row),
            row["clean_status"], str(row["failure_count"]),
            "%s %s" % (row["current_build"], row["current_build_status"])
            if row["current_build"] else "",
            row["master"] or "", row["url"]])
    console = output_console()
    console.print(render_table(
        "builders", ["name", "processors", "virt", "state", "clean",
                     "failures", "build", "master", "url"], cells,
        console.width,
        optional=["url", "master", "clean", "failures", "processors",
                  "virt"]))


def builder_state(row) -> str:
    """A builder's state as ``builder list`` says it: an operator's
    "disabled" is not the buildmaster's "failed" (ops_builders agrees)."""
    notes = " ".join((row["failnotes"] or "").split())
    if not row["active"]:
        return "disabled"
    if not row["builderok"]:
        word = "disabled" if row["disabled_by_operator"] else "failed"
        return "%s: %s" % (word, notes) if notes else word
    if row["manual"]:
        return "manual"
    return "ok"


def _mode(mode, help_text):
    @click.argument("name")
    @click.option("--reason", help="Why (shown as the builder's notes).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_context
    @user_errors
    def command(ctx, name, reason, as_json):
        from lp_services.api import actions
        from lp_services.api.errors import ApiError

        remote = ctx.remote()
        if remote is not None:
            remote.post("/builders/%s/mode" % quote(name, safe=""),
                        {"mode": mode, "reason": reason})
        else:
            ctx.run_with_cursor(actions.set_builder_mode,
                                actions.local_admin(), name, mode, reason,
                                utc_now(), errors=(ApiError,))
        state = {"enable": "enabled", "disable": "disabled",
                 "manual": "manual"}[mode]
        if as_json:
            echo_json({"name": name, "state": state})
        else:
            click.echo("builder %s: %s" % (name, state))
    command.__doc__ = help_text
    return builder.command(mode)(command)


_mode("enable", "Enable builder NAME (automatic, failures forgotten).")
_mode("disable", "Disable builder NAME: no more builds.")
_mode("manual", "Make builder NAME manual: never dispatched to "
      "automatically.")
