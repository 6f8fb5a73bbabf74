"""ensurepresent and the file cache (lp_services.slave.cache), against a
real HTTP server on loopback."""

import base64
import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from lp_services.slave.cache import FileCache

from tests.slave.helpers import sha1_of

DATA = b"chroot bytes " * 1000


class _Files(resource.Resource):
    """/ok, /nolength (chunked), /hang, /missing, /auth (needs u:p),
    /token (needs an empty username and password tok)."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []
        self.hanging = []
        self.gate = None  # a Deferred that delays /ok

    def render_GET(self, request):
        path = request.path.decode()
        self.requests.append(path)
        if path == "/ok":
            if self.gate is not None:
                def later(_):
                    request.write(DATA)
                    request.finish()
                self.gate.addCallback(later)
                return server.NOT_DONE_YET
            return DATA
        if path == "/nolength":
            request.write(DATA)
            request.write(DATA)
            request.finish()
            return server.NOT_DONE_YET
        if path == "/hang":
            self.hanging.append(request)
            return server.NOT_DONE_YET
        if path in ("/auth", "/token"):
            userpass = b"u:p" if path == "/auth" else b":tok"
            expected = b"Basic " + base64.b64encode(userpass)
            if request.getHeader(b"authorization") != expected:
                request.setResponseCode(401)
                return b"no"
            return DATA
        request.setResponseCode(404)
        return b"not found"


class EnsurePresentTests(TestCase):
    """The protocol's answers and the cache's guarantees."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-cache-test-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.files = _Files()
        port = reactor.listenTCP(0, server.Site(self.files),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = "http://127.0.0.1:%d" % port.getHost().port
        self.cache = self.make_cache()

    def tearDown(self):
        for request in self.files.hanging:
            if not request.finished:
                request.channel.transport.loseConnection()
        return self.cache.stop()

    def make_cache(self, max_size=1 << 20, timeout=30.0):
        return FileCache(self.dir / "cache", reactor, max_size, timeout)

    def leftovers(self):
        return [p for p in (self.dir / "cache").iterdir()
                if p.name.startswith(".")]

    @defer.inlineCallbacks
    def test_download_then_cache(self):
        """First call downloads ([True, "Download"]), the file is in place
        with its sha1; the second answers [True, "Cache"] without a
        request."""
        sha1 = sha1_of(DATA)
        self.assertEqual((yield self.cache.ensure_present(
            sha1, self.base + "/ok")), [True, "Download"])
        self.assertEqual(self.cache.path_for(sha1).read_bytes(), DATA)
        self.assertEqual((yield self.cache.ensure_present(
            sha1, self.base + "/ok")), [True, "Cache"])
        self.assertEqual(self.files.requests, ["/ok"])
        self.assertEqual(self.leftovers(), [])

    @defer.inlineCallbacks
    def test_no_url(self):
        """A missing file and no URL (None or "") answers [False, "No URL"]."""
        for url in (None, ""):
            self.assertEqual((yield self.cache.ensure_present("a" * 40, url)),
                             [False, "No URL"])

    @defer.inlineCallbacks
    def test_sha1_mismatch_keeps_nothing(self):
        """Content with another sha1 is refused and nothing is kept."""
        present, info = yield self.cache.ensure_present("b" * 40,
                                                        self.base + "/ok")
        self.assertFalse(present)
        self.assertIn("sha1 mismatch", info)
        self.assertIn(sha1_of(DATA), info)
        self.assertFalse(self.cache.has("b" * 40))
        self.assertFalse(self.cache.has(sha1_of(DATA)))
        self.assertEqual(self.leftovers(), [])

    @defer.inlineCallbacks
    def test_http_error(self):
        """A 404 answers [False, "... HTTP 404 ..."]."""
        present, info = yield self.cache.ensure_present("c" * 40,
                                                        self.base + "/nope")
        self.assertEqual((present, "HTTP 404" in info), (False, True), info)
        self.assertEqual(self.leftovers(), [])

    @defer.inlineCallbacks
    def test_credentials_are_sent(self):
        """username/password go out as Basic auth."""
        sha1 = sha1_of(DATA)
        result = yield self.cache.ensure_present(sha1, self.base + "/auth",
                                                 "u", "p")
        self.assertEqual(result, [True, "Download"])

    @defer.inlineCallbacks
    def test_empty_username_token_password_is_sent(self):
        """An empty username with a token password (how Launchpad fetches
        restricted files) still goes out as Basic auth."""
        sha1 = sha1_of(DATA)
        result = yield self.cache.ensure_present(sha1, self.base + "/token",
                                                 "", "tok")
        self.assertEqual(result, [True, "Download"])

    @defer.inlineCallbacks
    def test_size_cap_with_and_without_length(self):
        """A file over the cap is refused whether the server announces its
        length or streams it chunked."""
        cache = self.make_cache(max_size=len(DATA) - 1)
        self.addCleanup(cache.stop)
        for path in ("/ok", "/nolength"):
            present, info = yield cache.ensure_present("d" * 40,
                                                       self.base + path)
            self.assertFalse(present)
            self.assertIn("larger than", info)
        self.assertEqual(self.leftovers(), [])

    @defer.inlineCallbacks
    def test_chunked_download(self):
        """A body without Content-Length is fine when the sha1 matches."""
        result = yield self.cache.ensure_present(sha1_of(DATA * 2),
                                                 self.base + "/nolength")
        self.assertEqual(result, [True, "Download"])

    @defer.inlineCallbacks
    def test_concurrent_calls_download_once(self):
        """Three calls for one sha1 at once make one request and all answer
        [True, "Download"]."""
        self.files.gate = defer.Deferred()
        sha1 = sha1_of(DATA)
        ds = [self.cache.ensure_present(sha1, self.base + "/ok")
              for _ in range(3)]
        reactor.callLater(0.05, self.files.gate.callback, None)
        results = yield defer.gatherResults(ds)
        self.assertEqual(results, [[True, "Download"]] * 3)
        self.assertEqual(self.files.requests, ["/ok"])

    @defer.inlineCallbacks
    def test_timeout(self):
        """A server that never answers is given up after the download
        timeout with a clear message; nothing is kept."""
        cache = self.make_cache(timeout=0.3)
        self.addCleanup(cache.stop)
        present, info = yield cache.ensure_present("e" * 40,
                                                   self.base + "/hang")
        self.assertFalse(present)
        self.assertIn("within 0.3 s", info)
        self.assertEqual(self.leftovers(), [])

    @defer.inlineCallbacks
    def test_bad_urls(self):
        """Unsupported schemes and unreachable hosts answer [False, text]."""
        for url in ("ftp://x/y", "file:///etc/passwd", "http://127.0.0.1:1/x",
                    "not a url"):
            present, info = yield self.cache.ensure_present("f" * 40, url)
            self.assertFalse(present)
            self.assertTrue(info.startswith("Download failed"), info)
        self.assertFalse(os.path.exists("/etc/passwd") and
                         self.cache.has(sha1_of(open("/etc/passwd", "rb").read())))

    def test_add_fd_and_remove(self):
        """add_fd copies an open file in under its sha1 and says whether it
        was new; remove forgets it."""
        path = self.dir / "result"
        path.write_bytes(b"result")
        with open(path, "rb") as f:
            sha1, size, new = self.cache.add_fd(f.fileno())
        self.assertEqual((sha1, size, new), (sha1_of(b"result"), 6, True))
        with open(path, "rb") as f:
            self.assertFalse(self.cache.add_fd(f.fileno())[2])
        self.cache.remove(sha1)
        self.assertFalse(self.cache.has(sha1))
        self.cache.remove(sha1)
