"""The farm page's charts (lp_services.web.charts) over the ops views'
seed: the SVG's figures are the views' figures, and they read without
colour."""

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from lp_services.ops.reports import fetch_report
from tests.web.helpers import StatusSiteMixin, TagCollector


class FarmChartsTests(StatusSiteMixin, TestCase):
    """GET / draws ops_hourly and ops_durations as inline SVG."""

    def view(self, name):
        with self.conn.cursor() as cur:
            return fetch_report(cur, name)[1]

    @inlineCallbacks
    def farm(self):
        """The farm page, with ops_hourly read just before and after it
        (an hour may turn in between: the page matches one of the two)."""
        before = self.view("hourly")
        page = yield self.get("/")
        self.assertEqual(page.code, 200)
        return TagCollector(page.text), page.text, (before,
                                                    self.view("hourly"))

    @inlineCallbacks
    def test_queue_depth_matches_the_view(self):
        """One bar per hour of ops_hourly, carrying its hour and depth."""
        html, _, views = yield self.farm()
        drawn = [(a["data-hour"], int(a["data-queue-depth"]))
                 for t, a in html.tags if t == "rect"
                 and "data-queue-depth" in a]
        self.assertIn(drawn, [[(r["hour"].isoformat(), r["queue_depth"])
                               for r in rows] for rows in views])
        self.assertEqual(len(drawn), 24)
        # SEED: builds 10, 11 and 16 wait now.
        self.assertEqual(drawn[-1][1], 3)

    @inlineCallbacks
    def test_finished_matches_the_view(self):
        """One group per hour with the view's three outcome counts; a
        segment per non-zero outcome, its count on it."""
        html, _, views = yield self.farm()
        groups = [(a["data-hour"], int(a["data-succeeded"]),
                   int(a["data-failed"]), int(a["data-cancelled"]))
                  for t, a in html.tags if t == "g" and "data-succeeded" in a]
        self.assertIn(groups, [[(r["hour"].isoformat(), r["succeeded"],
                                 r["failed"], r["cancelled"]) for r in rows]
                               for rows in views])
        # SEED: 13 FULLYBUILT, 14 FAILEDTOBUILD, 15 CANCELLED, 5 h ago.
        self.assertEqual([sum(g[i] for g in groups) for i in (1, 2, 3)],
                         [1, 1, 1])
        segments = sorted((a["data-outcome"], a["data-count"])
                          for t, a in html.tags
                          if t == "rect" and "data-outcome" in a)
        self.assertEqual(segments, [("cancelled", "1"), ("failed", "1"),
                                    ("succeeded", "1")])

    @inlineCallbacks
    def test_durations_match_the_view(self):
        """One bar pair per build type of ops_durations, with its median,
        p90 and sample count; native types are not drawn."""
        html, text, _ = yield self.farm()
        drawn = [(a["data-type"], float(a["data-p50-seconds"]),
                  float(a["data-p90-seconds"]), int(a["data-samples"]))
                 for t, a in html.tags if t == "g" and "data-type" in a]
        self.assertEqual(drawn, [
            (r["type"], r["p50"].total_seconds(), r["p90"].total_seconds(),
             r["samples"]) for r in self.view("durations")
            if r["kind"] == "build"])
        self.assertEqual(drawn, [("script", 240.0, 240.0, 1)])
        self.assertIn("script: median 4m 00s, p90 4m 00s (1 build)", text)

    @inlineCallbacks
    def test_readable_without_colour(self):
        """Outcomes differ by pattern (failed hatched, cancelled hollow),
        the legend names the patterns, every bar has a title, each chart
        has a title and description, and no inline style is used (CSP)."""
        html, text, _ = yield self.farm()
        for word in ("succeeded (solid)", "failed (hatched)",
                     "cancelled (hollow)"):
            self.assertIn(word, text)
        by_outcome = {a["data-outcome"]: a for t, a in html.tags
                      if t == "rect" and "data-outcome" in a}
        self.assertEqual(by_outcome["failed"]["fill"],
                         "url(#chart-finished-hatch)")
        self.assertIn("hollow", by_outcome["cancelled"]["class"])
        self.assertIn("solid", by_outcome["succeeded"]["class"])
        svgs = html.find("svg")
        self.assertEqual(sorted(a["id"] for a in svgs),
                         ["chart-durations", "chart-finished", "chart-queue"])
        self.assertEqual([a["role"] for a in svgs], ["img"] * 3)
        self.assertEqual(text.count("Queue depth, last 24 hours"), 1)
        self.assertNotIn("style=", text)
        # Every third hour is labelled under each hourly chart.
        labels = [a for t, a in html.tags
                  if t == "text" and a.get("class") == "tick"]
        self.assertGreaterEqual(len(labels), 2 * 8)

    @inlineCallbacks
    def test_empty_farm(self):
        """No builds at all: the charts draw empty axes and say so."""
        self.execute("TRUNCATE job CASCADE")
        html, text, _ = yield self.farm()
        depths = [a["data-queue-depth"] for t, a in html.tags
                  if "data-queue-depth" in a]
        self.assertEqual(depths, ["0"] * 24)
        self.assertIn("No successful builds in the last 30 days.", text)


class FixedWebStatesTests(StatusSiteMixin, TestCase):
    """The issue's web findings: farm header, cancelled and waiting builds."""

    @inlineCallbacks
    def test_farm_header(self):
        """The header counts builders in words: "5 builders: 1 building, 1
        disabled, ..." (not "idle 1")."""
        page = yield self.get("/")
        html = TagCollector(page.text)
        summary = page.text.split('id="builder-summary"', 1)[1].split(
            "</p>", 1)[0]
        words = " ".join(TagCollector("<p " + summary).text().split())
        self.assertEqual(words, '5 builders: 1 building, 1 disabled, 1 '
                         'failed, 1 idle, 1 manual')
        self.assertEqual(len(html.find("span", **{"data-state": "idle"})), 1)

    @inlineCallbacks
    def test_cancelled_build_says_why_no_log(self):
        """A cancelled build without a log says it was cancelled, not
        "No log yet"."""
        page = yield self.get("/builds/15")
        text = TagCollector(page.text).text()
        self.assertIn("No log: the build was cancelled before it produced "
                      "one.", text)
        self.assertNotIn("No log yet", text)

    @inlineCallbacks
    def test_waiting_build_has_no_empty_box(self):
        """A waiting build says it waits for a builder; its log box is
        hidden until the live poll brings lines."""
        page = yield self.get("/builds/10")
        html = TagCollector(page.text)
        self.assertIn("Waiting for a builder: the log appears here once the "
                      "build starts.", html.text())
        logs = html.find("pre", id="log")
        self.assertEqual(len(logs), 1)
        self.assertIn("hidden", logs[0])
        self.assertEqual(html.find("section", id="live")[0]["data-log-url"],
                         "/builds/10/log.json")


class OpsHourlyTests(StatusSiteMixin, TestCase):
    """ops_hourly against the same figures counted in Python from ops_work
    rows, on the seed plus builds across the window's edges."""

    EDGES = """
    INSERT INTO job (id, job_type, status, date_created, date_started,
                     date_finished, attempt_count) VALUES
      -- waited from 30 h ago until 10 h ago, built for an hour
      (40, 'build', 2, now() - interval '30 hours', now() - interval '10 hours',
           now() - interval '9 hours', 1),
      -- cancelled while waiting, 3 h ago, after waiting 5 h
      (41, 'build', 3, now() - interval '8 hours', NULL,
           now() - interval '3 hours', 0),
      -- finished 26 h ago: outside the window altogether
      (42, 'build', 2, now() - interval '27 hours', now() - interval '27 hours',
           now() - interval '26 hours', 1),
      -- waiting since two days ago
      (43, 'build', 0, now() - interval '2 days', NULL, NULL, 0);
    INSERT INTO build_farm_job (job, build_type, processor, virtualized,
                                status, date_started, date_finished) VALUES
      (40, 'script', 1, false, 1, now() - interval '10 hours',
           now() - interval '9 hours'),
      (41, 'script', 1, false, 10, NULL, now() - interval '3 hours'),
      (42, 'script', 1, false, 1, now() - interval '27 hours',
           now() - interval '26 hours'),
      (43, 'script', 1, false, 0, NULL, NULL);
    """

    def test_matches_a_count_in_python(self):
        """Queue depth at each hour's end (now for the current hour) and
        finished builds per hour by outcome, as counted from ops_work."""
        from datetime import timedelta

        self.execute(self.EDGES)
        with self.conn, self.conn.cursor() as cur:
            # One transaction: now() is the same for every statement.
            cur.execute("SELECT now()")
            now = cur.fetchone()[0]
            hourly = fetch_report(cur, "hourly")[1]
            work = [r for r in fetch_report(cur, "work", kind="build")[1]]
        self.assertEqual(len(hourly), 24)
        infinity = now + timedelta(days=3650)
        for row in hourly:
            until = min(row["hour"] + timedelta(hours=1), now)
            depth = sum(
                1 for w in work if w["date_created"] < until
                and (w["date_started"] or w["date_finished"] or infinity)
                >= until)
            finished = {o: sum(1 for w in work if w["outcome"] == o
                               and w["date_finished"] is not None
                               and row["hour"] <= w["date_finished"] < until)
                        for o in ("succeeded", "failed", "cancelled")}
            self.assertEqual(
                (row["queue_depth"], row["succeeded"], row["failed"],
                 row["cancelled"]),
                (depth, finished["succeeded"], finished["failed"],
                 finished["cancelled"]), row["hour"])
        # The edges: 40 waited until 10 h ago, 41 until 3 h ago, 43 still
        # waits; 42 is not counted anywhere.
        self.assertEqual(hourly[-1]["queue_depth"], 4)  # 10, 11, 16, 43
        self.assertEqual(sum(r["succeeded"] for r in hourly), 2)  # 13, 40
        self.assertEqual(sum(r["cancelled"] for r in hourly), 2)  # 15, 41


class DisabledBuilderPageTests(StatusSiteMixin, TestCase):
    """An operator's disable is grey "disabled" on the farm page, not red
    "failed"."""

    @inlineCallbacks
    def test_operator_disabled_builder(self):
        """v1 (builderok false) disabled by an operator: its badge reads
        disabled in the "off" tone; failed by the buildmaster, "bad"."""
        self.execute("UPDATE builder SET disabled_by_operator = true"
                     " WHERE name = 'v1'")
        page = yield self.get("/")
        row = page.text.split("<strong>v1</strong>", 1)[1].split("</tr>")[0]
        self.assertIn('<span class="badge off">disabled</span>', row)
        self.execute("UPDATE builder SET disabled_by_operator = false"
                     " WHERE name = 'v1'")
        page = yield self.get("/")
        row = page.text.split("<strong>v1</strong>", 1)[1].split("</tr>")[0]
        self.assertIn('<span class="badge bad">failed</span>', row)
