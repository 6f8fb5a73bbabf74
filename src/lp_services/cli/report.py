"""``lp-services report``: the ops views as tables (or JSON)."""

import click

from lp_services.cli.context import echo_json, pass_context, user_errors

__all__ = ["durations_chart", "render_report", "report"]

# The columns a person sees (JSON carries every column). Wide views keep
# the ones that answer the report's question.
_SHOWN = {
    "work": ["id", "kind", "type", "status", "build_status", "outcome",
             "builder", "date_created", "duration", "attempts", "last_error"],
    "builders": ["name", "state", "current_build", "time_in_state",
                 "failure_count", "clean_status", "processors", "failnotes"],
}


# What may be left out at a narrow terminal, first named first (the
# columns that answer the report's question stay).
_OPTIONAL = {
    "work": ["date_created", "build_status", "attempts", "builder", "kind",
             "last_error"],
    "builders": ["processors", "clean_status", "failure_count", "failnotes",
                 "time_in_state"],
    "queue": ["estimated_work", "oldest_wait", "building"],
    "failures": ["failed_week", "finished_week", "failed_day",
                 "finished_day"],
    "durations": ["max", "p99", "samples"],
}


@click.command()
@click.argument("name", type=click.Choice(
    ["queue", "builders", "work", "failures", "durations", "masters"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--chart", is_flag=True,
              help="durations: bars of the median and p90 per type.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True,
              help="At most this many rows (work report).")
@click.option("--kind", type=click.Choice(["build", "native"]),
              help="work: only builds or only native jobs.")
@click.option("--type", "type_", metavar="TYPE", help="work: only this type.")
@click.option("--status", type=click.Choice(
    ["WAITING", "RUNNING", "COMPLETED", "FAILED", "SUSPENDED"],
    case_sensitive=False), help="work: only this job status.")
@pass_context
@user_errors
def report(ctx, name, as_json, chart, limit, kind, type_, status):
    """Print an ops report: queue, builders, work, failures or durations."""
    from lp_services.ops.reports import fetch_report, humanize, jsonable

    filters = {}
    if name == "work":
        filters = {"kind": kind, "type": type_,
                   "status": status.upper() if status else None}
    elif kind or type_ or status:
        raise click.UsageError("--kind, --type and --status go with `report work`")
    if chart and (name != "durations" or as_json):
        raise click.UsageError("--chart goes with `report durations`, "
                               "without --json")
    conn = ctx.connect()
    try:
        with conn.cursor() as cur:
            columns, rows = fetch_report(
                cur, name, limit=limit if name == "work" else None, **filters)
    finally:
        conn.close()
    if as_json:
        echo_json([{k: jsonable(v) for k, v in row.items()} for row in rows])
        return
    from lp_services.cli.tables import output_console

    console = output_console()
    if chart:
        width = console.width if console.is_terminal else 100
        for line in durations_chart(rows, width):
            click.echo(line)
        return
    console.print(render_report(name, columns, rows, console.width))


#: The bar characters of ``report durations --chart``: the median solid,
#: the rest up to p90 shaded, so the two read apart without colour.
MEDIAN_BAR, P90_BAR = "█", "░"


def durations_chart(rows, width: int) -> list[str]:
    """``report durations --chart``: one line per kind and type, a bar to
    the median (█) continued to the p90 (░), both figures after it; the
    longest p90 spans the width left by the labels."""
    from lp_services.ops.reports import humanize

    if not rows:
        return ["(no successful work in the last 30 days)"]
    labels = ["%s:%s" % (r["kind"], r["type"]) for r in rows]
    figures = ["p50 %s  p90 %s  (%d)" % (humanize(r["p50"]),
                                         humanize(r["p90"]), r["samples"])
               for r in rows]
    label_width = max(len(label) for label in labels)
    span = max(width - label_width - max(len(f) for f in figures) - 4, 10)
    longest = max(r["p90"].total_seconds() for r in rows) or 1.0
    lines = ["durations of successful work, 30 days: %s median, %s to p90"
             % (MEDIAN_BAR, P90_BAR)]
    for label, figure, r in zip(labels, figures, rows):
        p50 = round(span * r["p50"].total_seconds() / longest)
        p90 = max(round(span * r["p90"].total_seconds() / longest), p50, 1)
        bar = MEDIAN_BAR * p50 + P90_BAR * (p90 - p50)
        lines.append("%-*s  %-*s  %s" % (label_width, label, span, bar,
                                         figure))
    return lines


def render_report(name, columns, rows, width: int):
    """A rich renderable of one report's rows (the columns people read),
    fitted to ``width`` (see :mod:`lp_services.cli.tables`)."""
    from lp_services.cli.tables import render_table
    from lp_services.ops.reports import humanize

    shown = _SHOWN.get(name, columns)
    cells = [[" ".join(humanize(row[c]).split()) for c in shown]
             for row in rows]
    return render_table("ops_%s" % name, [c.replace("_", " ") for c in shown],
                        cells, width,
                        optional=[c.replace("_", " ")
                                  for c in _OPTIONAL.get(name, ())])
