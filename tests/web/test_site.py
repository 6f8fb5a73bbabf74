"""Every status page in-process: real PostgreSQL, a real Transactor and
twisted.web on loopback, over the ops views' seed (tests/web/helpers.py)."""

from datetime import datetime, timezone
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.static import Data

from lp_services.buildmaster.scoring import effective_score
from lp_services.database.transactor import Transactor
from lp_services.testing.database import with_database
from lp_services.web.site import make_status_resource
from tests.web.helpers import (
    FILES_BASE, Response, StatusSiteMixin, TagCollector, file_url)


class FarmPageTests(StatusSiteMixin, TestCase):
    """``/``: builders, queue, latest work."""

    @inlineCallbacks
    def test_builders_with_state_current_build_and_log_tail(self):
        """Each builder shows its state; the building one links its build,
        its time in state and the last five lines of the log."""
        page = yield self.get("/")
        self.assertEqual(page.code, 200)
        self.assertEqual(page.header("content-type"), "text/html; charset=utf-8")
        html = TagCollector(page.text)
        text = html.text()
        for name in ("a1", "a2", "a3", "v1", "m1"):
            self.assertIn(name, text)
        for state in ("building", "idle", "disabled", "failed", "manual"):
            self.assertIn(state, text)
        self.assertIn("reset failed", text)
        self.assertEqual(len(html.find("a", href="/builds/12", class_="build-link")), 1)
        tails = html.find("pre", class_="tail")
        self.assertEqual(len(tails), 1)
        self.assertIn("line 3\nline 4\nline 5\nline 6\nline 7 compiling", text)
        self.assertNotIn("line 2", text)
        # a1 has been building for 5 minutes (ops_builders.time_in_state).
        self.assertIn("5m 0", text)

    @inlineCallbacks
    def test_queue_per_processor_with_time_to_clear(self):
        """The queue shows waiting builds and the estimated time to clear;
        a queue no builder can serve says so."""
        page = yield self.get("/")
        rows = [r for r in page.text.split("<tr>") if "<strong>amd64" in r
                or "<strong>riscv64" in r]
        amd64 = [r for r in rows if "amd64" in r][0]
        self.assertIn("15m 00s", amd64)
        self.assertIn('<td class="num">2</td>', amd64)
        riscv = [r for r in rows if "riscv64" in r][0]
        self.assertIn("never: no builder can take these", riscv)

    @inlineCallbacks
    def test_queue_says_which_types_no_builder_offers(self):
        """With the amd64 builders offering only binarypackage (as
        launchpad-buildd builders do), the amd64 queue says its two script
        builds wait for a type no builder offers."""
        self.execute("UPDATE builder SET build_types = '{binarypackage}'")
        page = yield self.get("/")
        amd64 = [r for r in page.text.split("<tr>")
                 if "<strong>amd64" in r][0]
        self.assertIn("2 waiting for a type no builder offers: script",
                      amd64)

    @inlineCallbacks
    def test_latest_work_links_builds_and_jobs(self):
        """The latest-work table links builds under /builds and native jobs
        under /jobs."""
        page = yield self.get("/")
        html = TagCollector(page.text)
        self.assertTrue(html.find("a", href="/jobs/22"))
        self.assertTrue(html.find("a", href="/builds/16"))

    @inlineCallbacks
    def test_security_headers(self):
        """Pages forbid inline script and sniffing, and are not cached."""
        page = yield self.get("/")
        self.assertIn("script-src 'self'", page.header("content-security-policy"))
        self.assertEqual(page.header("x-content-type-options"), "nosniff")
        self.assertEqual(page.header("cache-control"), "no-store")

    @inlineCallbacks
    def test_empty_farm(self):
        """With no builders and no work the page says so rather than
        showing empty tables."""
        self.execute("TRUNCATE job, builder, processor, library_file CASCADE")
        page = yield self.get("/")
        self.assertEqual(page.code, 200)
        self.assertIn("No builders are registered.", page.text)
        self.assertIn("Nothing is queued.", page.text)


class BuildPageTests(StatusSiteMixin, TestCase):
    """``/builds/<id>`` and its ``log.json``."""

    @inlineCallbacks
    def test_running_build(self):
        """A running build: status, builder, effective score (not the
        stored sort key), timeline and a live log section pointing at its
        log.json."""
        page = yield self.get("/builds/12")
        self.assertEqual(page.code, 200)
        html = TagCollector(page.text)
        text = html.text()
        self.assertIn("Build 12: script", text)
        self.assertIn("RUNNING", text)
        self.assertIn("BUILDING", text)
        self.assertIn("a1", text)
        # The sort key 2505 aged to now: within a minute of the request.
        score = int(text.split("Score", 1)[1].split("Estimated", 1)[0])
        expected = effective_score(2505, datetime.now(timezone.utc))
        self.assertIn(score, (expected - 1, expected))
        self.assertIn("Started", text)
        live = html.find("section", id="live")
        self.assertEqual(live[0]["data-log-url"], "/builds/12/log.json")
        self.assertIn("line 1\nline 2", text)
        self.assertEqual(html.find("script"),
                         [{"src": "/static/status.js", "defer": "defer"}])

    @inlineCallbacks
    def test_finished_build_files_and_log(self):
        """A finished build lists its result files with download links,
        sizes and SHA-1s, and links its full log; it does not poll."""
        page = yield self.get("/builds/13")
        html = TagCollector(page.text)
        text = html.text()
        self.assertIn("FULLYBUILT", text)
        self.assertIn("succeeded", text)
        deb = html.find("a", href=FILES_BASE + "/" + "b" * 40 + "/hello_1.0_amd64.deb")
        self.assertEqual(len(deb), 1)
        self.assertIn("b" * 40, text)
        self.assertIn("c" * 40, text)
        self.assertIn("4096", text)
        self.assertTrue(html.find(
            "a", href=FILES_BASE + "/" + "a" * 40 + "/buildlog_13.txt"))
        self.assertNotIn("data-log-url", page.text)

    @inlineCallbacks
    def test_files_without_file_url(self):
        """Without a file_url the files are listed by name and hash only."""
        port = self.listen(make_status_resource(self.transactor))
        page = yield self.get("/builds/13", port=port)
        self.assertIn("hello_1.0_amd64.deb", page.text)
        self.assertNotIn(FILES_BASE, page.text)

    def store_log(self, job, content: bytes, file_store=None):
        """Store ``content`` as build ``job``'s log in ``file_store`` (a
        new one by default); return the store."""
        import io

        from lp_services.filestore.store import FileStore

        file_store = file_store or FileStore(Path(self.mktemp()))
        record = self.transactor.run_blocking(
            lambda store: file_store.add(store, "buildlog.txt",
                                         io.BytesIO(content)))
        self.execute("UPDATE build_farm_job SET log = %s WHERE job = %s",
                     (record.id, job))
        return file_store

    @inlineCallbacks
    def test_finished_build_shows_its_stored_log(self):
        """Given the file store, a finished build's page shows its stored
        log: all of a short one, the end of a long one."""
        file_store = self.store_log(14, b"configure\nmake: *** [all] Error 1\n")
        port = self.listen(make_status_resource(
            self.transactor, file_url=file_url, file_store=file_store))
        page = yield self.get("/builds/14", port=port)
        html = TagCollector(page.text)
        self.assertIn("configure\nmake: *** [all] Error 1\n", html.text())
        self.assertNotIn("The end of the stored log", html.text())
        long_log = b"".join(b"line %06d\n" % i for i in range(20000))
        self.store_log(14, long_log, file_store)
        page = yield self.get("/builds/14", port=port)
        text = TagCollector(page.text).text()
        self.assertIn("The end of the stored log", text)
        self.assertIn("line 019999\n", text)
        self.assertNotIn("line 000001", text)
        shown = text[text.index("line 0"):].split("\n")[0]
        self.assertRegex(shown, r"^line \d{6}$")

    @inlineCallbacks
    def test_log_json_follows_the_build(self):
        """log.json returns the current log tail and status; as the build
        progresses and ends, it reports that."""
        first = yield self.get("/builds/12/log.json")
        self.assertEqual(first.code, 200)
        self.assertEqual(first.header("content-type"), "application/json")
        data = first.json()
        self.assertEqual((data["status"], data["build_status"], data["live"],
                          data["builder"]), ("RUNNING", "BUILDING", True, "a1"))
        self.assertTrue(data["logtail"].endswith("line 7 compiling\n"))
        self.execute("UPDATE build_queue SET logtail = logtail || 'line 8\n'"
                     " WHERE job = 12")
        second = (yield self.get("/builds/12/log.json")).json()
        self.assertTrue(second["logtail"].endswith("line 8\n"))
        self.execute("""
            DELETE FROM build_queue WHERE job = 12;
            UPDATE build_farm_job SET status = 1, date_finished = now()
                WHERE job = 12;
            UPDATE job SET status = 2, date_finished = now() WHERE id = 12""")
        done = (yield self.get("/builds/12/log.json")).json()
        self.assertEqual((done["status"], done["build_status"], done["live"],
                          done["logtail"]), ("COMPLETED", "FULLYBUILT", False, None))

    @inlineCallbacks
    def test_log_json_unknown_and_native(self):
        """log.json of an unknown id or of a native job is a JSON 404."""
        missing = yield self.get("/builds/999/log.json")
        self.assertEqual(missing.code, 404)
        self.assertIn("999", missing.json()["error"])
        native = yield self.get("/builds/20/log.json")
        self.assertEqual(native.code, 404)

    @inlineCallbacks
    def test_waiting_build_expected_start(self):
        """A waiting build shows its expected start and polls too."""
        page = yield self.get("/builds/11")
        self.assertIn("Expected start", page.text)
        self.assertIn("/builds/11/log.json", page.text)
        self.assertNotIn('id="waiting-reason"', page.text)

    @inlineCallbacks
    def test_waiting_build_says_why(self):
        """A build no builder offers the type of says so on its page."""
        self.execute("UPDATE builder SET build_types = '{binarypackage}'")
        page = yield self.get("/builds/11")
        self.assertIn("no available builder for amd64 (non-virtualized) "
                      "offers build type script", page.text)


class JobPageTests(StatusSiteMixin, TestCase):
    """``/jobs/<id>``."""

    @inlineCallbacks
    def test_native_job(self):
        """A native job: status, attempts, lease, requester, prerequisite,
        dependents and data."""
        page = yield self.get("/jobs/21")
        self.assertEqual(page.code, 200)
        html = TagCollector(page.text)
        text = html.text()
        self.assertIn("Job 21: http-notify", text)
        self.assertIn("RUNNING", text)
        self.assertIn("2 of at most 4", text)
        self.assertIn("runner-1", text)
        self.assertIn("alice", text)
        self.assertIn("nightly", text)
        self.assertTrue(html.find("a", href="/jobs/20"))
        self.assertTrue(html.find("a", href="/jobs/22"))
        self.assertIn('"url": "http://example.com/"', text)

    @inlineCallbacks
    def test_failed_job_error(self):
        """A failed job shows its last error and attempts."""
        page = yield self.get("/jobs/3")
        text = TagCollector(page.text).text()
        self.assertIn("FAILED", text)
        self.assertIn("boom", text)
        self.assertIn("3 of at most 1", text)

    @inlineCallbacks
    def test_build_ids_redirect_to_build_pages(self):
        """/jobs/<build id> redirects to /builds/<id>, and the reverse."""
        page = yield self.get("/jobs/12")
        self.assertEqual(page.code, 302)
        self.assertEqual(page.header("location"), "/builds/12")
        page = yield self.get("/builds/3")
        self.assertEqual(page.code, 302)
        self.assertEqual(page.header("location"), "/jobs/3")

    @inlineCallbacks
    def test_collections_redirect_to_the_work_list(self):
        """/builds and /jobs without an id go to the filtered work list."""
        page = yield self.get("/builds")
        self.assertEqual((page.code, page.header("location")),
                         (302, "work?kind=build"))
        page = yield self.get("/jobs/")
        self.assertEqual((page.code, page.header("location")),
                         (302, "../work?kind=native"))

    @inlineCallbacks
    def test_unknown_ids_are_404(self):
        """Unknown ids, non-numeric ids and unknown pages are 404 pages."""
        for path in ("/jobs/999", "/builds/999", "/builds/abc", "/jobs/-1",
                     "/builds/12/nope", "/nope", "/jobs/99999999999999999999"):
            page = yield self.get(path)
            self.assertEqual(page.code, 404, path)
            self.assertIn("Not found", page.text, path)
        page = yield self.get("/jobs/999")
        self.assertIn("no job or build with id 999", page.text)


class WorkListTests(StatusSiteMixin, TestCase):
    """``/work``: builds and jobs together, filtered."""

    def ids(self, page):
        html = TagCollector(page.text)
        return [int(a["href"].rsplit("/", 1)[1]) for t, a in html.tags
                if t == "a" and a.get("href", "").startswith(("/builds/", "/jobs/"))]

    @inlineCallbacks
    def test_all_work_newest_first(self):
        """Without filters: every job and build, newest (highest id) first."""
        page = yield self.get("/work")
        self.assertEqual(page.code, 200)
        self.assertEqual(self.ids(page),
                         [22, 21, 20, 16, 15, 14, 13, 12, 11, 10, 5, 4, 3, 2, 1])

    @inlineCallbacks
    def test_filters(self):
        """kind, status, outcome and type filter; they combine."""
        page = yield self.get("/work?status=FAILED")
        self.assertEqual(self.ids(page), [15, 14, 3])
        page = yield self.get("/work?status=failed&kind=build")
        self.assertEqual(self.ids(page), [15, 14])
        page = yield self.get("/work?outcome=cancelled")
        self.assertEqual(self.ids(page), [15])
        page = yield self.get("/work?type=noop&kind=native")
        self.assertEqual(self.ids(page), [22, 20, 5, 3, 2, 1])
        page = yield self.get("/work?limit=2")
        self.assertEqual(self.ids(page), [22, 21])
        page = yield self.get("/work?type=binarypackage&status=")
        self.assertEqual(self.ids(page), [16])

    @inlineCallbacks
    def test_filter_form_keeps_choices(self):
        """The filter form shows the filters applied."""
        page = yield self.get("/work?status=WAITING&type=script")
        html = TagCollector(page.text)
        self.assertEqual(html.find("option", value="WAITING")[0].get("selected"),
                         "selected")
        self.assertEqual(html.find("input", name="type")[0]["value"], "script")

    @inlineCallbacks
    def test_bad_filters_are_400(self):
        """A bad filter value or an unknown filter is a 400 saying what is
        allowed; nothing is queried."""
        cases = {
            "/work?status=DONE": "status must be one of WAITING, RUNNING",
            "/work?kind=vm": "kind must be one of build, native",
            "/work?outcome=ok": "outcome must be one of succeeded",
            "/work?type=Bad%20Type": "type must be a job or build type name",
            "/work?limit=0": "limit must be a whole number from 1 to 1000",
            "/work?limit=abc": "limit must be a whole number",
            "/work?colour=red": "unknown filter",
            "/work?status=FAILED&status=WAITING": "give status at most once",
        }
        for path, message in cases.items():
            page = yield self.get(path)
            self.assertEqual(page.code, 400, path)
            self.assertIn(message, TagCollector(page.text).text(), path)


class SiteTests(StatusSiteMixin, TestCase):
    """Static files, /metrics, mounting, and errors."""

    @inlineCallbacks
    def test_static_files(self):
        """The stylesheet and script are served with their types; other
        names are 404."""
        css = yield self.get("/static/status.css")
        self.assertEqual((css.code, css.header("content-type")),
                         (200, "text/css; charset=utf-8"))
        js = yield self.get("/static/status.js")
        self.assertIn("textContent", js.text)
        missing = yield self.get("/static/../setup.cfg")
        self.assertEqual(missing.code, 404)
        missing = yield self.get("/static/")
        self.assertEqual(missing.code, 404)

    @inlineCallbacks
    def test_metrics(self):
        """/metrics exposes the ops gauges read from the database."""
        page = yield self.get("/metrics")
        self.assertEqual(page.code, 200)
        self.assertTrue(page.header("content-type").startswith("text/plain"))
        self.assertIn('lp_queue_waiting_builds{processor="amd64",'
                      'virtualized="false"} 2.0', page.text)
        self.assertIn('lp_builders{state="building"} 1.0', page.text)
        self.assertIn("lp_dispatch_latency_seconds_bucket", page.text)

    @inlineCallbacks
    def test_mounted_below_a_prefix(self):
        """Mounted at /status, links carry the prefix; /status redirects to
        /status/; other resources can sit beside the pages."""
        top = Resource()
        status = make_status_resource(self.transactor)
        status.putChild(b"files", Data(b"file store", "text/plain"))
        top.putChild(b"status", status)
        port = self.listen(top)
        bare = yield self.get("/status", port=port)
        self.assertEqual((bare.code, bare.header("location")), (302, "/status/"))
        page = yield self.get("/status/", port=port)
        html = TagCollector(page.text)
        self.assertTrue(html.find("a", href="/status/builds/12"))
        self.assertTrue(html.find("link", href="/status/static/status.css"))
        build = yield self.get("/status/builds/12", port=port)
        live = TagCollector(build.text).find("section", id="live")
        self.assertEqual(live[0]["data-log-url"], "/status/builds/12/log.json")
        files = yield self.get("/status/files", port=port)
        self.assertEqual(files.body, b"file store")

    @inlineCallbacks
    def test_security_headers_on_every_answer(self):
        """Every answer (pages, JSON, redirects, 404s, 405s for any method
        but GET and HEAD, /metrics,
        /static and resources mounted beside the pages) forbids inline
        script, sniffing and framing."""
        self.root.putChild(b"beside", Data(b"<b>x</b>", "text/html"))
        answers = []
        for path in ("/", "/builds/12", "/builds/12/log.json", "/jobs/21",
                     "/builds/", "/builds/nope", "/builds/99999",
                     "/work?limit=x", "/work", "/metrics", "/static/status.css",
                     "/static/nope", "/no/such/page", "/beside", "/%ff%fe"):
            answers.append((path, (yield self.get(path))))
        url = "http://127.0.0.1:%d/" % self.port.getHost().port
        for method in (b"POST", b"DELETE", b"PUT"):
            response = yield Agent(reactor).request(method, url.encode())
            yield readBody(response)
            # Read-only: 405 (not Twisted's 501 for PUT or DELETE).
            self.assertEqual(response.code, 405, method)
            answers.append((method, Response(response.code, response.headers,
                                             b"")))
        codes = set()
        for what, answer in answers:
            codes.add(answer.code)
            csp = answer.header("content-security-policy") or ""
            self.assertIn("script-src 'self'", csp, what)
            self.assertIn("frame-ancestors 'none'", csp, what)
            self.assertEqual(answer.header("x-content-type-options"),
                             "nosniff", what)
        self.assertTrue({200, 302, 400, 404, 405} <= codes, codes)

    @inlineCallbacks
    def test_file_store_beside_the_pages_keeps_its_sandbox(self):
        """Mounted under the status root, the file store's stricter CSP
        (sandbox, nothing loads) replaces the pages' one."""
        import io

        from lp_services.filestore.store import FileStore
        from lp_services.filestore.web import FileStoreResource

        store = FileStore(Path(self.mktemp()))
        sha1 = store.put_stream(io.BytesIO(b"<script>x()</script>"))[0]
        self.root.putChild(b"files", FileStoreResource(store))
        for path in ("/files/%s/x.html" % sha1, "/files/nonsense"):
            answer = yield self.get(path)
            csp = answer.header("content-security-policy")
            self.assertTrue(csp.startswith("sandbox; default-src 'none'"), path)
            self.assertEqual(answer.header("x-content-type-options"), "nosniff")

    @inlineCallbacks
    def test_database_failure_is_500(self):
        """When the database cannot be read the page is a clean 500 and the
        error is logged."""
        broken = Transactor(with_database(self.database_url, "no_such_db"),
                            reactor=reactor, max_retries=0)
        broken.start()
        self.addCleanup(broken.stop)
        port = self.listen(make_status_resource(broken))
        page = yield self.get("/", port=port)
        self.assertEqual(page.code, 500)
        self.assertIn("Internal error", page.text)
        self.assertTrue(self.flushLoggedErrors())
        data = yield self.get("/builds/1/log.json", port=port)
        self.assertEqual(data.code, 500)
        self.assertEqual(data.json(), {"error": "internal error"})
        self.flushLoggedErrors()
