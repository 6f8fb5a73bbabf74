"""``lp-services demo``: a whole local build farm doing real work."""

import time

import click

from lp_services.cli.context import pass_context

__all__ = ["demo"]

_TERMINAL_BUILD = {"FULLYBUILT", "FAILEDTOBUILD", "MANUALDEPWAIT",
                   "CHROOTWAIT", "CANCELLED", "FAILEDTOUPLOAD", "SUPERSEDED"}


@click.command()
@click.option("--keep-running", is_flag=True,
              help="Leave the farm up afterwards (stop it with "
                   "`lp-services demo --stop`).")
@click.option("--stop", "stop_only", is_flag=True,
              help="Stop a farm an earlier --keep-running demo left up.")
@pass_context
def demo(ctx, keep_running, stop_only):
    """Run a local build farm on the embedded database and build a recipe.

    Starts a builder agent (bubblewrap sandbox), a buildmaster and a job
    runner as twistd processes; requests a recipe; follows the recipe job
    and its build; checks the results; prints `show` and `report` output.
    """
    from rich.console import Console

    from lp_services.config import lp_home
    from lp_services.cli.demo_farm import (
        DemoError, DemoFarm, running_recorded, stop_recorded,
        stop_started_database)

    import sys

    # Piped output has no terminal width; do not fold tables into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    home = lp_home(ctx.home)
    if stop_only:
        stopped = stop_recorded(home)
        if stop_started_database(home):
            stopped.append("embedded PostgreSQL")
        console.print("stopped: %s" % (", ".join(stopped) or "nothing was running"))
        return
    if ctx.database:
        raise click.ClickException(
            "the demo runs on the embedded database; unset LP_DATABASE_URL")
    running = running_recorded(home)
    if running:
        # Never stop a farm someone left up on purpose without a word.
        raise click.ClickException(
            "a demo farm is already running from %s (%s); stop it with "
            "`lp-services demo --stop` first" % (home, ", ".join(running)))
    farm = DemoFarm(home, console)
    try:
        _run(farm, console, keep_running)
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted: stopping the farm[/yellow]")
        farm.stop()
        raise SystemExit(130)
    except DemoError as error:
        farm.stop()
        raise click.ClickException(str(error)) from None
    except BaseException:
        farm.stop()
        raise
    if keep_running:
        console.print("\nThe farm keeps running: the status page above is "
                      "live (logs in %s). Stop it with [bold]lp-services "
                      "--home %s demo --stop[/bold]."
                      % (farm.state_dir / "logs", home))
        return
    with console.status("stopping the farm"):
        farm.stop()
    console.print("stopped the buildmaster, agent, job runner and source "
                  "server%s" % (", and the embedded PostgreSQL the demo started"
                                if farm.started_database else ""))


def _run(farm, console, keep_running):
    import secrets

    from rich.rule import Rule

    console.print(Rule("lp-services demo"))
    with console.status("starting the embedded PostgreSQL and upgrading the schema"):
        farm.start_database()
    console.print("database:    %s" % farm.database_url)
    secret = secrets.token_hex(16)
    with console.status("starting the builder agent (bubblewrap sandbox)"):
        agent_port = farm.start_agent(secret)
    console.print("agent:       http://127.0.0.1:%d  (twistd buildslave)" % agent_port)
    with console.status("registering the builder and a busybox chroot"):
        farm.register_builder(agent_port, secret)
        console.print("chroot:      %s" % farm.add_chroot())
    with console.status("starting the buildmaster"):
        base = farm.start_buildmaster()
    console.print("buildmaster: %s  (twistd buildmaster)" % base)
    with console.status("starting the job runner"):
        farm.start_runner()
    console.print("job runner:  started (twistd jobrunner)")
    source_url, source_sha1 = farm.serve_source()
    recipe_path = farm.write_recipe(source_url, source_sha1)
    recipe_id = int(farm.lp("recipe", "request", str(recipe_path)))
    console.print("recipe:      %s -> recipe job %d" % (recipe_path, recipe_id))
    build_id = _follow(farm, console, recipe_id)
    _results(farm, console, base, recipe_id, build_id, keep_running)


def _describe(farm, job_id):
    from lp_services.database.connection import connect
    from lp_services.ops.work import describe_work

    conn = connect(farm.database_url)
    try:
        with conn.cursor() as cur:
            return describe_work(cur, job_id)
    finally:
        conn.close()


def _follow(farm, console, recipe_id):
    """Show the recipe job and its build moving; return the build's id."""
    from rich.live import Live
    from rich.table import Table

    from lp_services.cli.demo_farm import BUILD_TIMEOUT, DemoError

    seen = []

    def table(recipe, build):
        t = Table(title="progress", title_justify="left")
        # No log column: the buildmaster collects a build's log tail
        # between scans, so at the demo's pace it was always empty; the
        # build log is printed whole once the build is done.
        for column in ("job", "kind", "type", "status", "build status",
                       "builder"):
            t.add_column(column)
        for d in (recipe, build):
            if d is None:
                continue
            b = d.build
            t.add_row(str(d.id), d.kind, d.type, d.status,
                      b.build_status if b else "-",
                      (b.builder or "-") if b else "-")
        from rich.console import Group
        from rich.text import Text

        return Group(t, Text("\n".join(seen[-10:])))

    def note(d):
        state = (d.id, d.status, d.build.build_status if d.build else None)
        if state not in [s for s, _ in seen_states]:
            seen_states.append((state, time.monotonic()))
            seen.append("%6.1fs  %s %d %s%s" % (
                time.monotonic() - started, d.kind, d.id, d.status,
                " / " + d.build.build_status if d.build else ""))

    seen_states = []
    started = time.monotonic()
    build_id = None
    with Live(table(_describe(farm, recipe_id), None), console=console,
              refresh_per_second=8) as live:
        while True:
            if time.monotonic() - started > BUILD_TIMEOUT:
                raise DemoError("the build did not finish within %ds; see the "
                                "logs in %s" % (BUILD_TIMEOUT, farm.state_dir / "logs"))
            for daemon in farm.daemons:
                if daemon.exited():
                    raise DemoError("%s stopped unexpectedly; see %s"
                                    % (daemon.name, daemon.log_path))
            recipe = _describe(farm, recipe_id)
            note(recipe)
            if recipe.status == "FAILED":
                live.update(table(recipe, None))
                raise DemoError("the recipe job failed: %s" % recipe.last_error)
            build = None
            if recipe.dependents:
                build_id = recipe.dependents[0].id
                build = _describe(farm, build_id)
                note(build)
            live.update(table(recipe, build))
            if (build is not None and build.status in ("COMPLETED", "FAILED")
                    and build.build.build_status in _TERMINAL_BUILD):
                break
            time.sleep(0.2)
    console.print()
    if build.build.build_status != "FULLYBUILT":
        raise DemoError("build %d ended %s; its log: %s" % (
            build_id, build.build.build_status,
            build.build.log.filename if build.build.log else "none"))
    return build_id


def _results(farm, console, base, recipe_id, build_id, keep_running):
    import hashlib

    from rich.rule import Rule
    from rich.table import Table

    from lp_services.cli.show import format_work
    from lp_services.cli.demo_farm import DemoError, download
    from lp_services.ops.reports import humanize

    build = _describe(farm, build_id)
    table = Table(title="results of build %d" % build_id, title_justify="left")
    for column in ("file", "bytes", "sha1", "check"):
        table.add_column(column)
    files = list(build.build.files)
    if build.build.log is not None:
        files.append(build.build.log)
    for f in files:
        url = "%s/files/%s/%s" % (base, f.sha1, f.filename)
        data = download(url)
        actual = hashlib.sha1(data).hexdigest()
        if actual != f.sha1:
            raise DemoError("%s: downloaded sha1 %s, expected %s"
                            % (f.filename, actual, f.sha1))
        table.add_row(f.filename, str(len(data)), f.sha1, "[green]sha1 ok[/green]")
    console.print(table)
    greeting = next((f for f in build.build.files if f.filename == "greeting.txt"), None)
    if greeting is not None:
        text = download("%s/files/%s/greeting.txt" % (base, greeting.sha1))
        console.print("greeting.txt says: %s" % text.decode().strip())
    if build.build.log is not None:
        log = download("%s/files/%s/%s" % (base, build.build.log.sha1,
                                           build.build.log.filename))
        console.print(Rule("build log (%s)" % build.build.log.filename))
        console.print(log.decode("utf-8", "replace").rstrip(), markup=False,
                      highlight=False)
    console.print(Rule("lp-services show %d" % recipe_id))
    for line in format_work(_describe(farm, recipe_id), humanize):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(Rule("lp-services show %d" % build_id))
    for line in format_work(build, humanize):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    _reports(farm, console)
    console.print(Rule())
    console.print("status page: [bold]%s/[/bold]   metrics: %s/metrics and "
                  "http://127.0.0.1:%d/metrics (job runner)"
                  % (base, base, farm.metrics_port))
    if not keep_running:
        # The farm stops next: say so rather than hand out a dead link.
        console.print("(these addresses work until the farm stops, in a "
                      "moment; run the demo with --keep-running to browse "
                      "them)")


def _reports(farm, console):
    """Print the work, builders and queue reports, as `report` does."""
    from lp_services.cli.report import render_report
    from lp_services.database.connection import connect
    from lp_services.ops.reports import fetch_report

    conn = connect(farm.database_url)
    try:
        with conn.cursor() as cur:
            for name, limit in (("work", 10), ("builders", None),
                                ("queue", None)):
                columns, rows = fetch_report(cur, name, limit=limit)
                console.print(render_report(name, columns, rows,
                                            console.width))
    finally:
        conn.close()
