"""The farm page's charts: SVG drawn on the server from the ops views.

Three charts, each a pure function from view rows to a ``twisted.web``
tag (so ``flatten`` escapes every label, as on the rest of the pages, and
no front-end build step or script is involved):

- :func:`queue_chart`: builds waiting at the end of each of the last 24
  hours (``ops_hourly.queue_depth``);
- :func:`finished_chart`: builds finished per hour, stacked by outcome
  (``ops_hourly.succeeded / failed / cancelled``);
- :func:`durations_chart`: median and p90 duration per build type
  (``ops_durations``, builds only).

Readable without colour: outcomes differ by fill pattern (solid, hatched,
hollow) as well as colour, the legend names each pattern, every bar has a
``<title>`` with its exact figures (a tooltip, and what a screen reader
reads), and the duration bars are labelled with their values. Colours come
from status.css classes, never inline styles (the site's CSP forbids them).

Every bar carries its figures as ``data-*`` attributes, so tests compare
the drawing with the view it was drawn from.
"""

from twisted.web.template import Tag, tags

from lp_services.ops.reports import humanize

__all__ = ["OUTCOMES", "charts_section", "durations_chart", "finished_chart",
           "queue_chart"]

#: Outcome columns of ops_hourly, bottom of the stack first, with their
#: pattern: (column, legend word, css class, fill).
OUTCOMES = (
    ("succeeded", "succeeded (solid)", "good", None),
    ("failed", "failed (hatched)", "bad", "hatch"),
    ("cancelled", "cancelled (hollow)", "off", "hollow"),
)

# The drawing area of the hourly charts, in SVG user units (the SVG
# scales to the page's width): room on the left for the axis figures and
# below for the hour labels.
# 480 wide: at the page's two charts a row the 11-unit text shows at about
# 13 px, readable without zooming.
_WIDTH, _HEIGHT = 480, 170
_LEFT, _RIGHT, _TOP, _BOTTOM = 34, 6, 12, 26
#: Label every third hour: eight labels fit under 24 bars at any width.
_HOUR_LABEL_EVERY = 3


def _svg(chart_id: str, title: str, description: str, width: int,
         height: int, *children) -> Tag:
    return Tag("svg")(
        Tag("title")(title), Tag("desc")(description), *children,
        xmlns="http://www.w3.org/2000/svg", role="img",
        viewBox="0 0 %d %d" % (width, height), id=chart_id,
        class_="chart", **{"aria-labelledby": chart_id + "-title"})


def _patterns(prefix: str) -> Tag:
    """The hatch pattern the failed bars fill with (ids are per chart:
    a page holds several SVGs)."""
    return Tag("defs")(Tag("pattern")(
        Tag("rect")(width="6", height="6", class_="hatch-ground"),
        Tag("path")(d="M0,6 L6,0", class_="hatch-line bad"),
        id=prefix + "-hatch", width="6", height="6",
        patternUnits="userSpaceOnUse"))


def _fill(prefix: str, kind: str | None) -> dict:
    if kind == "hatch":
        return {"fill": "url(#%s-hatch)" % prefix}
    return {}


def _scale_max(values) -> int:
    """The y axis's top: the largest value, at least 1 (an empty chart
    still has an axis)."""
    return max([1, *values])


def _axes(top: int, hours, x_of) -> list:
    """The y axis (0 and ``top``) and the hour labels."""
    bottom_y = _HEIGHT - _BOTTOM
    parts = [
        Tag("line")(x1=str(_LEFT), y1=str(_TOP), x2=str(_LEFT),
                    y2=str(bottom_y), class_="axis"),
        Tag("line")(x1=str(_LEFT), y1=str(bottom_y), x2=str(_WIDTH - _RIGHT),
                    y2=str(bottom_y), class_="axis"),
        Tag("line")(x1=str(_LEFT), y1=str(_TOP), x2=str(_WIDTH - _RIGHT),
                    y2=str(_TOP), class_="grid"),
        Tag("text")(str(top), x=str(_LEFT - 4), y=str(_TOP + 4),
                    class_="tick", **{"text-anchor": "end"}),
        Tag("text")("0", x=str(_LEFT - 4), y=str(bottom_y + 4),
                    class_="tick", **{"text-anchor": "end"}),
    ]
    for index, hour in enumerate(hours):
        if index % _HOUR_LABEL_EVERY == 0:
            parts.append(Tag("text")(
                hour.strftime("%H:%M"), x="%.1f" % x_of(index),
                y=str(_HEIGHT - 8), class_="tick"))
    return parts


def _bar_geometry(count: int):
    slot = (_WIDTH - _LEFT - _RIGHT) / max(count, 1)
    width = max(slot - 3, 1)
    return slot, width


def _hour_span(hour) -> str:
    return "%s–%s" % (hour.strftime("%H:%M"),
                      (hour.replace(minute=59)).strftime("%H:%M"))


def queue_chart(rows) -> Tag:
    """Queue depth at the end of each hour (``ops_hourly`` rows)."""
    hours = [r["hour"] for r in rows]
    top = _scale_max(r["queue_depth"] for r in rows)
    slot, width = _bar_geometry(len(rows))
    plot = _HEIGHT - _TOP - _BOTTOM
    bars = []
    for index, r in enumerate(rows):
        height = plot * r["queue_depth"] / top
        bars.append(Tag("rect")(
            Tag("title")("%s: %d waiting at the end of the hour"
                         % (_hour_span(r["hour"]), r["queue_depth"])),
            x="%.1f" % (_LEFT + index * slot + 1.5),
            y="%.1f" % (_HEIGHT - _BOTTOM - height),
            width="%.1f" % width, height="%.1f" % height,
            class_="bar wait", **{"data-hour": r["hour"].isoformat(),
                                  "data-queue-depth": str(r["queue_depth"])}))
    now = rows[-1]["queue_depth"] if rows else 0
    return _svg(
        "chart-queue", "Queue depth, last 24 hours",
        "Builds waiting at the end of each hour; %d waiting now, at most "
        "%d." % (now, max([0, *(r["queue_depth"] for r in rows)])),
        _WIDTH, _HEIGHT,
        *_axes(top, hours, lambda i: _LEFT + i * slot + 1.5),
        Tag("g")(*bars, class_="bars"))


def finished_chart(rows) -> Tag:
    """Builds finished per hour, stacked by outcome (``ops_hourly`` rows)."""
    hours = [r["hour"] for r in rows]
    totals = [sum(r[c] for c, *_ in OUTCOMES) for r in rows]
    top = _scale_max(totals)
    slot, width = _bar_geometry(len(rows))
    plot = _HEIGHT - _TOP - _BOTTOM
    groups = []
    for index, r in enumerate(rows):
        base = _HEIGHT - _BOTTOM
        x = _LEFT + index * slot + 1.5
        parts = [Tag("title")("%s: %s" % (_hour_span(r["hour"]), ", ".join(
            "%d %s" % (r[c], c) for c, *_ in OUTCOMES)))]
        for column, _, tone, kind in OUTCOMES:
            if not r[column]:
                continue
            height = plot * r[column] / top
            base -= height
            parts.append(Tag("rect")(
                x="%.1f" % x, y="%.1f" % base, width="%.1f" % width,
                height="%.1f" % height,
                class_="bar %s %s" % (tone, kind or "solid"),
                **_fill("chart-finished", kind),
                **{"data-outcome": column, "data-count": str(r[column])}))
        attributes = {"data-hour": r["hour"].isoformat()}
        for column, *_ in OUTCOMES:
            attributes["data-" + column] = str(r[column])
        groups.append(Tag("g")(*parts, class_="hour", **attributes))
    summary = ", ".join("%d %s" % (sum(r[c] for r in rows), c)
                        for c, *_ in OUTCOMES)
    return _svg(
        "chart-finished", "Builds finished per hour, last 24 hours",
        "Stacked by outcome; in all %s." % summary, _WIDTH, _HEIGHT + 20,
        _patterns("chart-finished"),
        *_axes(top, hours, lambda i: _LEFT + i * slot + 1.5),
        Tag("g")(*groups, class_="bars"),
        _legend("chart-finished", _HEIGHT + 14))


def _legend(prefix: str, y: int) -> Tag:
    items = []
    x = _LEFT
    for column, word, tone, kind in OUTCOMES:
        items.append(Tag("rect")(x=str(x), y=str(y - 9), width="10",
                                 height="10",
                                 class_="bar %s %s" % (tone, kind or "solid"),
                                 **_fill(prefix, kind)))
        items.append(Tag("text")(word, x=str(x + 14), y=str(y),
                                 class_="legend"))
        # About 6.5 units per character of 11-unit text, then a gap.
        x += 14 + round(6.5 * len(word)) + 14
    return Tag("g")(*items, class_="legend")


def durations_chart(rows) -> Tag:
    """Median and p90 duration per build type (``ops_durations`` rows;
    native rows are left out)."""
    builds = [r for r in rows if r["kind"] == "build"]
    # A type per row: its name left of the bars, its figures in words
    # under them (long enough for any duration at any page width).
    row_height, label_width = 40, 100
    height = _TOP + row_height * max(len(builds), 1) + 4
    longest = max([1.0, *(r["p90"].total_seconds() for r in builds)])
    span = _WIDTH - label_width - _RIGHT
    parts = []
    if not builds:
        parts.append(Tag("text")("No successful builds in the last 30 days.",
                                 x=str(_LEFT), y=str(_TOP + 14),
                                 class_="legend"))
    for index, r in enumerate(builds):
        y = _TOP + index * row_height
        p50, p90 = r["p50"].total_seconds(), r["p90"].total_seconds()
        label = "median %s, p90 %s (%d build%s)" % (
            humanize(r["p50"]), humanize(r["p90"]), r["samples"],
            "" if r["samples"] == 1 else "s")
        parts.append(Tag("g")(
            Tag("title")("%s: %s" % (r["type"], label)),
            Tag("text")(r["type"], x=str(label_width - 6), y=str(y + 12),
                        class_="tick", **{"text-anchor": "end"}),
            # p90 behind, hatched; the median in front, solid.
            Tag("rect")(x=str(label_width), y=str(y),
                        width="%.1f" % max(span * p90 / longest, 1),
                        height="16", class_="bar busy hatch",
                        fill="url(#chart-durations-hatch)"),
            Tag("rect")(x=str(label_width), y=str(y),
                        width="%.1f" % max(span * p50 / longest, 1),
                        height="16", class_="bar busy solid"),
            Tag("text")(label, x=str(label_width), y=str(y + 30),
                        class_="legend"),
            class_="type", **{"data-type": r["type"],
                              "data-p50-seconds": "%g" % p50,
                              "data-p90-seconds": "%g" % p90,
                              "data-samples": str(r["samples"])}))
    return _svg(
        "chart-durations", "Build durations per type, last 30 days",
        "Solid bar: the median; hatched bar behind it: the 90th "
        "percentile; successful builds only.", _WIDTH, height,
        Tag("defs")(Tag("pattern")(
            Tag("rect")(width="6", height="6", class_="hatch-ground"),
            Tag("path")(d="M0,6 L6,0", class_="hatch-line busy"),
            id="chart-durations-hatch", width="6", height="6",
            patternUnits="userSpaceOnUse")),
        *parts)


def charts_section(hourly, durations) -> Tag:
    """The farm page's "Last 24 hours" section: the three charts."""
    return tags.section(
        tags.h2("Last 24 hours"),
        tags.div(
            tags.figure(queue_chart(hourly),
                        tags.figcaption("Queue depth: builds waiting at the "
                                        "end of each hour.")),
            tags.figure(finished_chart(hourly),
                        tags.figcaption("Builds finished per hour, by "
                                        "outcome.")),
            tags.figure(durations_chart(durations),
                        tags.figcaption("Build durations per type: median "
                                        "(solid) and p90 (hatched), "
                                        "successful builds, 30 days.")),
            class_="charts"),
        id="charts")
