"""Tables the commands print: whole words at any width, full rows in pipes.

At a terminal, a table wider than the window would have rich fold its
cells inside words ("COMP / LETE / D"). Instead every cell stays on one
line, and the columns a report marks as optional are left out, last
first, until the table fits; a caption names what was left out. Whatever
still does not fit is cut with an ellipsis, never wrapped. Piped to a file
or another program nothing is left out or cut: scripts get every column at
full width (or use ``--json``).
"""

import sys

__all__ = ["PIPE_WIDTH", "output_console", "render_table", "table_width"]

#: The console width when stdout is not a terminal: wide enough that no
#: row of any report is cut (rich only pads tables that ask to expand).
PIPE_WIDTH = 100_000


def output_console(file=None):
    """A rich Console for a command's output: the terminal's width at a
    terminal, :data:`PIPE_WIDTH` otherwise."""
    from rich.console import Console

    stream = file or sys.stdout
    tty = getattr(stream, "isatty", lambda: False)()
    return Console(file=stream, width=None if tty else PIPE_WIDTH,
                   soft_wrap=not tty)


def table_width(headers, rows) -> int:
    """The width a one-line-per-row table of these cells needs (rich's
    default box: a border and one space of padding either side of each
    cell)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return sum(widths) + 3 * len(widths) + 1


def render_table(title: str, headers, rows, width: int,
                 optional=()):
    """A rich renderable of ``rows`` (lists of strings) under ``headers``.

    :param width: the console width to fit.
    :param optional: headers that may be left out when the table is wider
        than ``width``, the first named is the first left out.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    headers = list(headers)
    rows = [list(r) for r in rows]
    dropped = []
    for name in optional:
        if table_width(headers, rows) <= width:
            break
        if name not in headers:
            continue
        index = headers.index(name)
        del headers[index]
        for row in rows:
            del row[index]
        dropped.append(name)
    caption = None
    if dropped:
        caption = "%d column%s left out to fit %d columns: %s (use --json " \
                  "or a wider terminal for all)" % (
                      len(dropped), "" if len(dropped) == 1 else "s", width,
                      ", ".join(dropped))
    table = Table(title=title, title_justify="left", caption=caption,
                  caption_justify="left")
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="ellipsis")
    for row in rows:
        # Text, not str: a job's error may contain [markup] rich would eat.
        table.add_row(*(Text(cell) for cell in row))
    if not rows:
        return Group(table, Text("(no rows)"))
    return table
