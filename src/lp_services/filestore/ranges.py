"""HTTP ``Range`` requests, bounded (RFC 9110 section 14).

A ``Range`` header may name any number of byte ranges, overlapping or
not; served as asked, one small request can make a reply many times the
file's size (1,000 overlapping ranges of a 1 MB file: 1 GB). The file
store therefore reads the header with :func:`plan_ranges`, which

- refuses more than :data:`MAX_RANGES` ranges, or a header longer than
  :data:`MAX_HEADER` bytes (:class:`RangeNotSatisfiable`: a 416);
- resolves each range against the file's size, drops those that lie
  beyond it (all beyond it: a 416), and merges ranges that overlap or
  touch, so the parts of the reply never repeat a byte: a reply is at
  most the file's size plus a few part headers.

A header that is not a byte-range header at all is ignored (the whole
file is served), as RFC 9110 says a server may.
"""

__all__ = ["MAX_HEADER", "MAX_RANGES", "RangeNotSatisfiable", "plan_ranges",
           "range_header"]

#: Ranges one request may name. Download managers and PDF readers ask for
#: one, sometimes two or three; more is no real client's need.
MAX_RANGES = 8
#: Bytes of a Range header (eight ranges of 20-digit numbers fit).
MAX_HEADER = 400


class RangeNotSatisfiable(ValueError):
    """The request's ranges are refused (HTTP 416); the message says why."""


def plan_ranges(header: bytes | None, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges to serve for a ``Range`` header, as sorted,
    disjoint, non-adjacent ``(first, last)`` pairs (inclusive), all
    within ``size`` bytes; None to serve the whole file.

    :raises RangeNotSatisfiable: too many ranges, too long a header, or
        no range within the file.
    """
    if header is None:
        return None
    if len(header) > MAX_HEADER:
        raise RangeNotSatisfiable("Range header longer than %d bytes"
                                  % MAX_HEADER)
    unit, equals, spec = header.partition(b"=")
    if unit.strip().lower() != b"bytes" or not equals:
        return None
    specs = [s.strip() for s in spec.split(b",") if s.strip()]
    if not specs:
        return None
    if len(specs) > MAX_RANGES:
        raise RangeNotSatisfiable("more than %d ranges" % MAX_RANGES)
    wanted = []
    for item in specs:
        parsed = _parse(item)
        if parsed is None:
            return None
        resolved = _resolve(parsed, size)
        if resolved is not None:
            wanted.append(resolved)
    if not wanted:
        raise RangeNotSatisfiable("no range within the file's %d bytes" % size)
    return _merge(wanted)


def range_header(ranges: list[tuple[int, int]]) -> bytes:
    """A ``Range`` header naming exactly ``ranges``."""
    return b"bytes=" + b",".join(b"%d-%d" % r for r in ranges)


def _parse(item: bytes) -> tuple[int | None, int | None] | None:
    """``first-last``, ``first-`` or ``-suffix`` as numbers; None when
    malformed."""
    first, dash, last = item.partition(b"-")
    first, last = first.strip(), last.strip()
    if not dash or not (first or last):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    start = int(first) if first else None
    end = int(last) if last else None
    if start is not None and end is not None and end < start:
        return None
    return start, end


def _resolve(parsed, size: int) -> tuple[int, int] | None:
    """An inclusive ``(first, last)`` within the file, or None when the
    range lies wholly outside it."""
    start, end = parsed
    if start is None:
        if end == 0 or size == 0:
            return None
        return max(size - end, 0), size - 1
    if start >= size:
        return None
    return start, size - 1 if end is None else min(end, size - 1)


def _merge(ranges):
    merged = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
