"""The status site in headless Chromium while a real build runs.

A real buildmaster (builder manager, LISTEN/NOTIFY, file store over HTTP)
dispatches a script build to the real agent on loopback (sandbox backend,
busybox chroot). The status site is mounted as the master's site root with
the file store beside it, as the buildmaster serves it. Chromium, driven
by Selenium through chromedriver, loads the farm page while the build
runs, follows the build's link, watches the live log grow, sees the final
status appear after the build ends, and saves screenshots under the
test's temporary directory. A build's ``.html`` result opened from the
file store is downloaded and runs no script (issue 19).
"""

import io
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from lp_services.clock import utcnow
from lp_services.database.transactor import Transactor
from lp_services.testing.database import DatabaseTestMixin
from lp_services.testing.tiers import slow
from lp_services.web.site import make_status_resource
from tests.web.helpers import StatusSiteMixin

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags for a root, offline, throwaway browser.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000")

# Prints a numbered line every 0.4 s for about 10 s (long enough for the
# browser to see the log grow), with markup that must stay text, then
# leaves a result file.
SCRIPT = b"""set -e
i=1
while [ $i -le 25 ]; do
  echo "step $i of 25 <b>not bold</b>"
  sleep 0.4
  i=$((i + 1))
done
printf 'built\\n' > out/result.txt
"""


def browser_unavailable():
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return "%s is missing (apt-get install chromium chromium-driver)" % path
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def sandbox_unavailable():
    from tests.buildmaster.test_agent_contract import sandbox_unavailable

    return sandbox_unavailable()


def start_browser(profile: Path, downloads: Path | None = None):
    """A headless Chromium through chromedriver (no Selenium Manager: the
    driver's path is given, so nothing is downloaded); ``downloads`` is
    where it saves downloads, without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=%s" % profile)
    if downloads is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


async def wait_until(predicate, timeout=30.0, step=0.1):
    from twisted.internet import task

    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await task.deferLater(reactor, step, lambda: None)


@slow
class LiveBuildBrowserTests(DatabaseTestMixin, TestCase):
    """Farm page -> build page -> live log -> final status, in Chromium."""

    skip = browser_unavailable() or sandbox_unavailable()
    timeout = 180

    async def start_farm(self):
        """Agent, file store, builder manager, NOTIFY listener and the
        status site: the buildmaster's services, in-process."""
        from lp_services.buildmaster import builders as B
        from lp_services.buildmaster.farm import Farm, FarmConfig
        from lp_services.buildmaster.service import BuilderManager
        from lp_services.buildmaster.notify import NotifyListener
        from lp_services.filestore.store import FileStore
        from lp_services.filestore.web import FileStoreResource
        from lp_services.slave.busybox_chroot import busybox_chroot
        from lp_services.testing.agents import TEST_SECRET, start_agent

        agent_dir = Path(tempfile.mkdtemp(prefix="web-browser-agent-"))
        self.addCleanup(shutil.rmtree, agent_dir, ignore_errors=True)
        running = await start_agent(agent_dir)
        self.addCleanup(running.stop)

        self.file_store = FileStore(Path(self.mktemp()))
        self.transactor = Transactor(self.database_url, reactor=reactor)
        self.transactor.start()
        self.addCleanup(self.transactor.stop)
        farm = Farm(self.transactor, reactor, self.file_store,
                    FarmConfig(identity="browser-test", files_url="http://unset",
                               interval=1.0, logtail_interval=0.2),
                    reactor=reactor)
        manager = BuilderManager(farm)

        def file_url(sha1, filename):
            return "%s/files/%s/%s" % (farm.config.files_url, sha1,
                                       quote(filename))

        root = make_status_resource(self.transactor, file_url=file_url,
                                    file_store=self.file_store)
        root.putChild(b"files", FileStoreResource(self.file_store))
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = farm.config.files_url = (
            "http://127.0.0.1:%d" % port.getHost().port)

        file_store = self.file_store

        def setup(store):
            B.add_builder(store, name="bob", url=running.base_url,
                          processors=["amd64"], secret=TEST_SECRET)
            record = file_store.add_path(store, busybox_chroot(fmt="gz"))
            B.register_chroot(store, "amd64", "default", record.id)
        await self.transactor.run(setup)
        manager.startService()
        self.addCleanup(manager.stopService)
        listener = NotifyListener(self.database_url, manager, reactor)
        listener.startService()
        self.addCleanup(listener.stopService)
        await listener.connected
        await wait_until(lambda: _now(bool(manager.scanners)))

    async def request_build(self):
        from lp_services.buildmaster import queue as Q

        file_store = self.file_store

        def queue(store):
            record = file_store.add(store, "build.sh", io.BytesIO(SCRIPT))
            return Q.request_build(
                store, build_type="script", processor="amd64",
                now=utcnow(reactor), build_args={"script": "build.sh"},
                filemap={"build.sh": record.sha1})
        return await self.transactor.run(queue)

    async def logtail(self, job):
        from lp_services.web.data import load_work

        details = await self.transactor.run(load_work, job)
        return details.build.logtail

    async def test_live_build_in_chromium(self):
        """The farm page links the running build; its page's log grows
        while it runs; FULLYBUILT and the result file appear at the end;
        the stored log then shows in full; the log's markup stays text.
        Screenshots are saved."""
        await self.start_farm()
        job = await self.request_build()
        await wait_until(lambda: self.logtail(job), timeout=60)
        shots = Path(self.mktemp())
        shots.mkdir()
        seen = await threads.deferToThread(self.drive_browser, job, shots)
        self.assertGreater(seen["grown"], seen["first"])
        self.assertEqual(seen["final"], ("COMPLETED", "FULLYBUILT"))
        self.assertIn("result.txt", seen["files"])
        self.assertEqual((seen["bold"], seen["literal"]), (0, True))
        for name in ("farm.png", "build-live.png", "build-final.png"):
            self.assertGreater((shots / name).stat().st_size, 1000, name)
        print("\nscreenshots in %s" % shots.resolve())

    def drive_browser(self, job, shots: Path):
        """In a thread (Selenium blocks): the browser's side of the test."""
        from selenium.common.exceptions import (
            NoSuchElementException, StaleElementReferenceException,
            WebDriverException)
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        profile = Path(tempfile.mkdtemp(prefix="web-browser-profile-"))
        driver = start_browser(profile)
        try:
            # The build page reloads itself when the build ends; an element
            # read during the reload is stale, which Chromium sometimes
            # reports as a plain WebDriverException ("Node with given id
            # does not belong to the document"). A crashed browser still
            # fails the wait, by its timeout.
            wait = WebDriverWait(driver, 60, poll_frequency=0.2,
                                 ignored_exceptions=(
                                     NoSuchElementException,
                                     StaleElementReferenceException,
                                     WebDriverException))
            driver.get(self.base + "/")
            link = wait.until(lambda d: d.find_element(
                By.CSS_SELECTOR, "a.build-link[href='/builds/%d']" % job))
            driver.save_screenshot(str(shots / "farm.png"))
            link.click()
            wait.until(lambda d: d.current_url.endswith("/builds/%d" % job))

            def log_lines(d):
                return d.find_element(By.ID, "log").text.count("step ")
            first = wait.until(log_lines)
            grown = wait.until(lambda d: log_lines(d) > first and log_lines(d))
            literal = "<b>not bold</b>" in driver.find_element(By.ID, "log").text
            bold = len(driver.find_elements(By.TAG_NAME, "b"))
            driver.save_screenshot(str(shots / "build-live.png"))

            def final(d):
                status = d.find_element(By.ID, "status").text
                build = d.find_element(By.ID, "build-status").text
                return (status, build) if status == "COMPLETED" else None
            done = wait.until(final)
            files = wait.until(lambda d: [a.text for a in d.find_elements(
                By.CSS_SELECTOR, "table.files a")])
            # The finished page shows the stored log, markup as text.
            stored = driver.find_element(By.ID, "log").text
            literal = literal and "step 25 of 25 <b>not bold</b>" in stored
            bold += len(driver.find_elements(By.TAG_NAME, "b"))
            driver.save_screenshot(str(shots / "build-final.png"))
            return {"first": first, "grown": grown, "final": done,
                    "files": files, "bold": bold, "literal": literal}
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


# A build's result, as the attacker wrote it: an HTML page that calls
# home (a script from the site's own origin, which the status site's CSP
# would allow, and an image).
HOSTILE_PAGE = (b'<html><head><title>result</title>'
                b'<script src="/beacon.js"></script></head>'
                b'<body><img src="/beacon?from=img">hello</body></html>\n')
BEACON_JS = (b"fetch('/beacon?from=' + encodeURIComponent(location.pathname));"
             b"document.title = 'pwned';\n")


@slow
class HostileResultBrowserTests(DatabaseTestMixin, TestCase):
    """A build's ``x.html`` result (and a log asked for under an ``.html``
    name) opened in Chromium from the buildmaster's origin: downloaded,
    never rendered; no script of it runs. A control page with the same
    markup, served as a page, shows the browser would have run it."""

    skip = browser_unavailable()
    timeout = 120

    def setUp(self):
        from twisted.web.resource import Resource
        from twisted.web.static import Data

        from lp_services.filestore.store import FileStore
        from lp_services.filestore.web import FileStoreResource

        super().setUp()
        self.transactor = Transactor(self.database_url, reactor=reactor)
        self.transactor.start()
        self.addCleanup(self.transactor.stop)
        store = FileStore(Path(self.mktemp()))
        self.page = store.put_stream(io.BytesIO(HOSTILE_PAGE))[0]
        root = make_status_resource(self.transactor)
        root.putChild(b"files", FileStoreResource(store))
        root.putChild(b"beacon.js", Data(BEACON_JS, "text/javascript"))
        root.putChild(b"control.html", Data(HOSTILE_PAGE, "text/html"))
        self.calls = []
        calls = self.calls

        class Beacon(Resource):
            isLeaf = True

            def render_GET(self, request):
                calls.append(request.args.get(b"from", [b""])[0].decode())
                return b""
        root.putChild(b"beacon", Beacon())
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = "http://127.0.0.1:%d" % port.getHost().port

    async def test_html_result_runs_no_script(self):
        """x.html and buildlog.html from the file store are downloaded
        (they land in the download folder) and call nothing home; the
        same markup as a page does, so the browser would have shown it."""
        downloads = Path(self.mktemp()).resolve()
        downloads.mkdir()
        seen = await threads.deferToThread(self.drive_browser, downloads)
        # Rendered, the tab would be titled "result" (its <title>), or
        # "pwned" (its script); it stays Chromium's empty tab.
        for title in seen["titles"]:
            self.assertNotIn(title, ("result", "pwned"))
        self.assertEqual(sorted(self.calls), ["/control.html", "img"])
        self.assertEqual(seen["control_title"], "pwned")
        self.assertEqual(sorted(p.name for p in downloads.iterdir()),
                         ["buildlog.html", "x.html"])
        self.assertEqual((downloads / "x.html").read_bytes(), HOSTILE_PAGE)

    def drive_browser(self, downloads: Path):
        """In a thread (Selenium blocks): open both results, then the
        control page."""
        from selenium.webdriver.support.ui import WebDriverWait

        profile = Path(tempfile.mkdtemp(prefix="web-browser-profile-"))
        driver = start_browser(profile, downloads)
        try:
            wait = WebDriverWait(driver, 30, poll_frequency=0.1)
            titles = []
            for name in ("x.html", "buildlog.html"):
                driver.get("%s/files/%s/%s" % (self.base, self.page, name))
                wait.until(lambda d: (downloads / name).exists())
                titles.append(driver.title)
            driver.get(self.base + "/control.html")
            wait.until(lambda d: {"/control.html", "img"} <= set(self.calls))
            return {"titles": titles, "control_title": driver.title}
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


def _now(value):
    from twisted.internet.defer import succeed

    return succeed(value)


@slow
class FarmChartsBrowserTests(StatusSiteMixin, TestCase):
    """The farm page's charts and the fixed web states, in Chromium, over
    the status site on the ops views' seed (no build needs to run)."""

    skip = browser_unavailable()
    timeout = 120

    def setUp(self):
        super().setUp()
        self.base = "http://127.0.0.1:%d" % self.port.getHost().port

    async def test_charts_and_states_in_chromium(self):
        """The three charts render at a readable size with their bars and
        legend; the builder summary reads in words; a cancelled build says
        why it has no log; a waiting build shows no log box. Screenshots
        are saved."""
        shots = Path(self.mktemp())
        shots.mkdir()
        seen = await threads.deferToThread(self.drive_browser, shots)
        self.assertEqual(sorted(seen["charts"]),
                         ["chart-durations", "chart-finished", "chart-queue"])
        for chart, (width, height) in seen["charts"].items():
            self.assertGreater(width, 400, chart)
            self.assertGreater(height, 60, chart)
        self.assertEqual(seen["queue_bars"], 24)
        self.assertEqual(seen["outcome_segments"], 3)
        self.assertIn("failed (hatched)", seen["legend"])
        self.assertTrue(seen["summary"].startswith("5 builders: 1 building"),
                        seen["summary"])
        self.assertEqual(seen["cancelled"], "No log: the build was cancelled "
                         "before it produced one.")
        self.assertEqual(seen["waiting"], (False, "Waiting for a builder: "
                         "the log appears here once the build starts."))
        for name in ("farm-charts.png", "build-cancelled.png",
                     "build-waiting.png"):
            self.assertGreater((shots / name).stat().st_size, 1000, name)
        print("\nscreenshots in %s" % shots.resolve())

    def drive_browser(self, shots: Path):
        """In a thread (Selenium blocks): load the pages, read them."""
        from selenium.webdriver.common.by import By

        profile = Path(tempfile.mkdtemp(prefix="web-browser-profile-"))
        driver = start_browser(profile)
        try:
            driver.get(self.base + "/")
            charts = {}
            for svg in driver.find_elements(By.CSS_SELECTOR, "svg.chart"):
                size = svg.size
                charts[svg.get_attribute("id")] = (size["width"],
                                                   size["height"])
            queue_bars = len(driver.find_elements(
                By.CSS_SELECTOR, "#chart-queue rect[data-queue-depth]"))
            segments = len(driver.find_elements(
                By.CSS_SELECTOR, "#chart-finished rect[data-outcome]"))
            legend = driver.find_element(
                By.CSS_SELECTOR, "#chart-finished g.legend").text
            summary = driver.find_element(By.ID, "builder-summary").text
            driver.find_element(By.ID, "charts").location_once_scrolled_into_view
            driver.save_screenshot(str(shots / "farm-charts.png"))
            driver.get(self.base + "/builds/15")
            cancelled = driver.find_element(By.ID, "no-log").text
            driver.save_screenshot(str(shots / "build-cancelled.png"))
            driver.get(self.base + "/builds/10")
            waiting = (driver.find_element(By.ID, "log").is_displayed(),
                       driver.find_element(By.ID, "live-note").text)
            driver.save_screenshot(str(shots / "build-waiting.png"))
            return {"charts": charts, "queue_bars": queue_bars,
                    "outcome_segments": segments, "legend": legend,
                    "summary": summary, "cancelled": cancelled,
                    "waiting": waiting}
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)
