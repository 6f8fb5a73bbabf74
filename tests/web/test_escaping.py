"""Escaping everywhere: logs, file names, errors and notes that hold HTML or
script are shown as text on every page."""

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.web.helpers import EXTRA_SEED, StatusSiteMixin, TagCollector
from tests.database.test_views import SEED

LOG = '<script>alert("log")</script>\n<img src=x onerror=alert(2)>\n'
FILENAME = '<img src=x onerror=alert(3)>.deb'
ERROR = '<b>boom</b><script>alert("error")</script> & "quotes"'
NOTES = '<iframe src="http://evil.example/"></iframe>'

HOSTILE_SEED = SEED + EXTRA_SEED + """
UPDATE build_queue SET logtail = %(log)s WHERE job = 12;
INSERT INTO library_file (id, sha1, size, filename) VALUES
  (4, 'dddddddddddddddddddddddddddddddddddddddd', 1, %(filename)s);
INSERT INTO build_file (build, library_file, filename) VALUES
  (13, 4, %(filename)s);
UPDATE job SET last_error = %(error)s, requester = %(error)s,
               reason = %(error)s, json_data = jsonb_build_object('x', %(error)s)
    WHERE id IN (3, 14);
UPDATE builder SET failnotes = %(notes)s WHERE name = 'v1';
"""


class EscapingTests(StatusSiteMixin, TestCase):
    """Hostile text in the database reaches pages only as text."""

    def setUp(self):
        # The mixin runs ``seed`` as plain SQL; this seed has parameters.
        self.seed = "SELECT 1"
        super().setUp()
        self.execute(HOSTILE_SEED, {"log": LOG, "filename": FILENAME,
                                    "error": ERROR, "notes": NOTES})

    def assertInert(self, page, *texts):
        """The page's only script is ours, it has no img or iframe, and
        each of ``texts`` is in its text verbatim."""
        html = TagCollector(page.text)
        self.assertEqual([t for t, _ in html.tags if t in ("img", "iframe", "b")], [])
        scripts = [a for t, a in html.tags if t == "script"]
        self.assertEqual(len(scripts), 1)
        self.assertTrue(scripts[0]["src"].endswith("/static/status.js"))
        for text in texts:
            self.assertIn(text, html.text())
        self.assertNotIn("<script>alert", page.text)
        self.assertNotIn("<img src=x", page.text)

    @inlineCallbacks
    def test_build_page_log_and_file_name(self):
        """A log containing <script> and a file name containing <img> are
        shown as text on the build pages."""
        page = yield self.get("/builds/12")
        self.assertIn("&lt;script&gt;alert(\"log\")&lt;/script&gt;", page.text)
        self.assertInert(page, LOG)
        page = yield self.get("/builds/13")
        self.assertInert(page, FILENAME)
        # The download link's URL is quoted by file_url.
        self.assertIn("%3Cimg%20src%3Dx", page.text)

    @inlineCallbacks
    def test_farm_page_log_tail_and_notes(self):
        """The farm page's log tails and builder notes are text."""
        page = yield self.get("/")
        self.assertInert(page, '<script>alert("log")</script>', NOTES)

    @inlineCallbacks
    def test_job_and_work_pages_errors(self):
        """Job errors, requester, reason and data are text on the job page,
        and errors are text in the work list."""
        page = yield self.get("/jobs/3")
        self.assertInert(page, ERROR)
        page = yield self.get("/builds/14")
        self.assertInert(page, ERROR)
        page = yield self.get("/work")
        self.assertInert(page, ERROR)

    @inlineCallbacks
    def test_error_pages_echo_input_as_text(self):
        """404 and 400 pages that repeat the request's input escape it."""
        page = yield self.get("/builds/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        self.assertEqual(page.code, 404)
        self.assertInert(page, "<script>alert(1)</script>")
        page = yield self.get("/work?type=%3Cscript%3E")
        self.assertEqual(page.code, 400)
        self.assertInert(page, "'<script>'")

    @inlineCallbacks
    def test_stored_log_of_a_finished_build(self):
        """A finished build's stored log holding <script> is text."""
        import io
        from pathlib import Path

        from lp_services.filestore.store import FileStore
        from lp_services.web.site import make_status_resource

        file_store = FileStore(Path(self.mktemp()))
        record = self.transactor.run_blocking(
            lambda store: file_store.add(store, "log.txt",
                                         io.BytesIO(LOG.encode())))
        self.execute("UPDATE build_farm_job SET log = %s WHERE job = 14",
                     (record.id,))
        port = self.listen(make_status_resource(self.transactor,
                                                file_store=file_store))
        page = yield self.get("/builds/14", port=port)
        self.assertInert(page, LOG)

    @inlineCallbacks
    def test_log_json_carries_raw_text(self):
        """log.json carries the log as a JSON string (the page's script
        puts it in with textContent, never as markup)."""
        data = (yield self.get("/builds/12/log.json")).json()
        self.assertEqual(data["logtail"], LOG)
