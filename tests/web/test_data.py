"""Unit tests of lp_services.web.data's pure parts: the work list's filter
validation, log tails, and the pages rendered without a database."""

from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.template import flattenString

from lp_services.web import data, pages


def args(**values):
    return {k.encode(): [v.encode() for v in (vs if isinstance(vs, list) else [vs])]
            for k, vs in values.items()}


class ParseWorkFiltersTests(SynchronousTestCase):
    """parse_work_filters: what /work accepts."""

    def test_defaults(self):
        """No arguments: no filters, the default limit."""
        self.assertEqual(data.parse_work_filters({}), ({}, data.WORK_LIMIT))

    def test_all_filters(self):
        """Every filter at once; status is case-insensitive; empty values
        mean any."""
        filters, limit = data.parse_work_filters(args(
            kind="build", status="failed", outcome="failed", type="script",
            limit="7"))
        self.assertEqual(filters, {"kind": "build", "status": "FAILED",
                                   "outcome": "failed", "type": "script"})
        self.assertEqual(limit, 7)
        self.assertEqual(data.parse_work_filters(args(kind="", type=" ")),
                         ({}, data.WORK_LIMIT))

    def test_rejections(self):
        """Values that cannot match are refused with what is allowed."""
        for given, message in [
                (args(kind="vm"), "kind must be one of build, native"),
                (args(limit="1001"), "from 1 to 1000"),
                (args(limit="\u00b2"), "whole number"),
                (args(limit="-1"), "whole number"),
                (args(type="a" * 65), "type must be"),
                (args(type="x;drop"), "type must be"),
                ({b"status": [b"\xff"]}, "status is not UTF-8"),
                (args(colour="red"), "unknown filter 'colour'")]:
            error = self.assertRaises(data.BadFilter, data.parse_work_filters,
                                      given)
            self.assertIn(message, str(error))


class TailTests(SynchronousTestCase):
    """last_lines and read_tail."""

    def test_last_lines(self):
        """The last n lines, without the trailing newline; None for none."""
        self.assertEqual(data.last_lines("a\nb\nc\n", 2), "b\nc")
        self.assertEqual(data.last_lines("a", 5), "a")
        self.assertIsNone(data.last_lines("", 5))
        self.assertIsNone(data.last_lines(None, 5))

    def test_read_tail(self):
        """A short file whole; a long one's end from a line start; a
        missing file None; bad UTF-8 replaced."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"one\ntwo\n\xff\n")
        self.assertEqual(data.read_tail(path, 100),
                         data.StoredLog("one\ntwo\n\ufffd\n", False))
        self.assertEqual(data.read_tail(path, 6),
                         data.StoredLog("\ufffd\n", True))
        self.assertIsNone(data.read_tail(self.mktemp()))


class PageRenderingTests(SynchronousTestCase):
    """Pages render from plain values, without a database."""

    def render(self, tag):
        return self.successResultOf(flattenString(None, tag)).decode()

    def test_error_page(self):
        """An error page carries its message as text and links home."""
        html = self.render(pages.error_page("/x/", 404, "Not found", "<no>"))
        self.assertIn("&lt;no&gt;", html)
        self.assertIn('href="/x/"', html)

    def test_farm_page_without_anything(self):
        """An empty farm renders with its empty-table messages."""
        farm = data.Farm(builders=[], queue=[], recent=[],
                         now=datetime(2026, 1, 1, tzinfo=timezone.utc))
        html = self.render(pages.farm_page("/", farm))
        self.assertIn("No builders are registered.", html)
        self.assertIn("No work matches.", html)
        self.assertIn('content="30"', html)

    def test_badges(self):
        """Statuses get a colour class by meaning; unknown ones are plain."""
        self.assertIn('class="badge good"', self.render(pages.badge("FULLYBUILT")))
        self.assertIn('class="badge bad"', self.render(pages.badge("failed")))
        self.assertIn('class="badge plain"', self.render(pages.badge("ODD")))
        self.assertIn(">-<", self.render(pages.badge(None)))
        self.assertIn("5m 00s", self.render(pages.badge(timedelta(minutes=5))))


class ChartRowsTests(SynchronousTestCase):
    """ChartRows: the farm charts' rows are read at most once a minute."""

    def test_reuse_then_refresh(self):
        """A second page within CHARTS_REFRESH reuses the rows read; after
        it, the rows are read again."""
        from twisted.internet.task import Clock

        reads = []

        def read(cursor):
            reads.append(cursor)
            return (["hourly %d" % len(reads)], [])
        self.patch(data, "read_chart_rows", read)
        clock = Clock()
        charts = data.ChartRows(clock)
        self.assertEqual(charts.rows("c1"), (["hourly 1"], []))
        clock.advance(data.CHARTS_REFRESH - 1)
        self.assertEqual(charts.rows("c2"), (["hourly 1"], []))
        clock.advance(1)
        self.assertEqual(charts.rows("c3"), (["hourly 2"], []))
        self.assertEqual(reads, ["c1", "c3"])
