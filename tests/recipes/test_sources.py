"""Fetching recipe sources (lp_services.recipes.sources): the address policy, the
redirect and DNS checks, the deadline and minimum rate, and errors that do
not repeat what a server said. Servers are real, on loopback (127.0.0.1
is internal, so refused unless allow-listed); the fetcher blocks, so it
runs in a thread while the reactor serves."""

import functools
import hashlib
import http.server
import ipaddress
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

from twisted.internet import reactor, task, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server

from lp_services.filestore.store import FileStore
from lp_services.recipes.sources import (
    FetchLimits, SourceFetcher, SourceRefused, SourceTooSlow,
    SourceUnreachable, TransferGuard, address_allowed, parse_allow_list)

LOOPBACK = parse_allow_list("127.0.0.1/32")
SECRET = b"internal secret answer\n"


class PolicyTests(SynchronousTestCase):
    """Which addresses sources may come from."""

    def test_internal_addresses_refused(self):
        """Loopback, private, link-local (cloud metadata), shared, mapped,
        unspecified and multicast addresses are refused by default."""
        for address in ("127.0.0.1", "127.0.0.2", "10.1.2.3", "172.16.0.1",
                        "192.168.1.1", "169.254.169.254", "100.64.0.1",
                        "0.0.0.0", "224.0.0.1", "::1", "::", "fe80::1",
                        "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"):
            self.assertFalse(address_allowed(address), address)

    def test_public_addresses_allowed(self):
        """Globally routable unicast addresses are allowed."""
        for address in ("93.184.216.34", "8.8.8.8", "2001:4860:4860::8888"):
            self.assertTrue(address_allowed(address), address)

    def test_allow_list(self):
        """Listed networks are allowed, and only they."""
        allowed = parse_allow_list("127.0.0.1, 10.0.0.0/8 fd00::/8")
        self.assertEqual(allowed[1], ipaddress.ip_network("10.0.0.0/8"))
        for address in ("127.0.0.1", "10.9.9.9", "fd00::5", "::ffff:10.0.0.1"):
            self.assertTrue(address_allowed(address, allowed), address)
        for address in ("127.0.0.2", "192.168.0.1", "::1"):
            self.assertFalse(address_allowed(address, allowed), address)
        self.assertEqual(parse_allow_list(None), ())
        self.assertEqual(parse_allow_list("  "), ())

    def test_bad_settings_are_named(self):
        """A wrong allow-list entry, deadline or rate names its setting."""
        error = self.assertRaises(ValueError, parse_allow_list, "10.0.0.0/8,mirror")
        self.assertIn("LP_RECIPE_SOURCES_ALLOW: 'mirror'", str(error))
        for name in ("LP_RECIPE_SOURCES_DEADLINE", "LP_RECIPE_SOURCES_MIN_RATE"):
            for value in ("x", "0", "-3", "inf", "nan"):
                error = self.assertRaises(ValueError, FetchLimits.from_environ,
                                          {name: value})
                self.assertIn(name, str(error))
        limits = FetchLimits.from_environ({"LP_RECIPE_SOURCES_DEADLINE": "60",
                                           "LP_RECIPE_SOURCES_MIN_RATE": "1e3"})
        self.assertEqual((limits.deadline, limits.min_rate), (60.0, 1000.0))
        self.assertEqual(FetchLimits.from_environ({}), FetchLimits())


class TransferGuardTests(SynchronousTestCase):
    """The deadline and minimum rate, on task.Clock."""

    def setUp(self):
        self.clock = task.Clock()
        self.guard = TransferGuard(FetchLimits(deadline=100, min_rate=10,
                                               window=5), self.clock.seconds)
        self.guard.start()

    def test_steady_transfer_passes(self):
        """A source at the minimum rate runs until the deadline."""
        for _ in range(90):
            self.clock.advance(1)
            self.guard.received(10)

    def test_trickle_is_ended_within_a_window(self):
        """1 byte a second against a 10 bytes/s minimum ends after one
        5 s window, not at the deadline."""
        for _ in range(4):
            self.clock.advance(1)
            self.guard.received(1)
        self.clock.advance(1)
        error = self.assertRaises(SourceTooSlow, self.guard.received, 1)
        self.assertIn("minimum 10 bytes/s", str(error))

    def test_fast_then_stalled_is_ended(self):
        """A burst does not buy a later trickle: each window counts."""
        self.clock.advance(1)
        self.guard.received(10_000)
        self.clock.advance(5)
        self.guard.received(1)
        self.clock.advance(5)
        self.assertRaises(SourceTooSlow, self.guard.received, 1)

    def test_deadline_covers_all_sources(self):
        """The deadline runs from the guard's creation, across sources."""
        self.clock.advance(99)
        self.guard.start()
        self.guard.received(10)
        self.assertEqual(self.guard.read_timeout(), 1)
        self.clock.advance(2)
        error = self.assertRaises(SourceTooSlow, self.guard.start)
        self.assertIn("100 s deadline", str(error))


class _Recorder(resource.Resource):
    """Answers ``body`` to every path, counting requests."""

    isLeaf = True

    def __init__(self, body=SECRET, code=200, location=None,
                 reason=b"OK"):
        super().__init__()
        self.body, self.code, self.location, self.reason = (
            body, code, location, reason)
        self.requests = []

    def render_GET(self, request):
        self.requests.append(request.uri)
        request.setResponseCode(self.code, self.reason)
        if self.location:
            request.setHeader(b"location", self.location.encode())
        return self.body


class _Trickle(resource.Resource):
    """Claims a large body and sends ``chunk`` every ``interval`` s, for
    ever (or nothing at all when ``chunk`` is empty)."""

    isLeaf = True

    def __init__(self, chunk, interval=0.05):
        super().__init__()
        self.chunk, self.interval = chunk, interval
        self.loops = []

    def render_GET(self, request):
        request.setHeader(b"content-length", b"%d" % (1 << 30))
        request.write(b"")
        if self.chunk:
            loop = task.LoopingCall(request.write, self.chunk)
            loop.start(self.interval)
            self.loops.append(loop)
            request.notifyFinish().addBoth(lambda _: loop.stop())
        return server.NOT_DONE_YET


class FetchTests(TestCase):
    """SourceFetcher against real HTTP servers on loopback."""

    timeout = 30

    def setUp(self):
        self.files = FileStore(self.mktemp())

    def serve(self, res, interface="127.0.0.1"):
        port = reactor.listenTCP(0, server.Site(res), interface=interface)
        self.addCleanup(port.stopListening)
        return "http://%s:%d" % (interface, port.getHost().port)

    def fetch(self, fetcher, url, expected_sha1=None):
        """Fetch in a thread; a Deferred of (sha1, sha256, size)."""
        def store(stream):
            return self.files.put_stream(stream, expected_sha1=expected_sha1)
        return threads.deferToThread(fetcher.fetch, url, store)

    async def test_internal_source_refused_by_default(self):
        """A source on 127.0.0.1 is refused before any connection, and the
        message does not say what is there."""
        internal = _Recorder()
        url = self.serve(internal) + "/admin"
        error = await self.assertFailure(self.fetch(SourceFetcher(), url),
                                         SourceRefused)
        self.assertIn("not a public address", str(error))
        self.assertIn("LP_RECIPE_SOURCES_ALLOW", str(error))
        self.assertEqual(internal.requests, [])
        self.assertNotIn("internal secret", str(error))

    async def test_internal_name_refused(self):
        """A host name that resolves to loopback (localhost) is refused."""
        internal = _Recorder()
        url = self.serve(internal).replace("127.0.0.1", "localhost")
        await self.assertFailure(self.fetch(SourceFetcher(), url),
                                 SourceRefused)
        self.assertEqual(internal.requests, [])

    async def test_allow_listed_source_is_fetched(self):
        """With 127.0.0.1 allow-listed the same source is fetched."""
        url = self.serve(_Recorder()) + "/hello.tar.gz"
        sha1, _, size = await self.fetch(
            SourceFetcher(LOOPBACK), url, hashlib.sha1(SECRET).hexdigest())
        self.assertEqual(size, len(SECRET))
        with self.files.open(sha1) as stored:
            self.assertEqual(stored.read(), SECRET)

    async def test_redirect_to_internal_refused(self):
        """An allowed source redirecting to an internal address is refused
        at the redirect; the internal server sees nothing."""
        internal = _Recorder()
        target = self.serve(internal, interface="127.0.0.2") + "/secret"
        mirror = _Recorder(b"moved", code=302, location=target,
                           reason=b"Found")
        url = self.serve(mirror) + "/hello.tar.gz"
        error = await self.assertFailure(
            self.fetch(SourceFetcher(LOOPBACK), url), SourceRefused)
        self.assertIn("(redirected)", str(error))
        self.assertNotIn("127.0.0.2", str(error))
        self.assertEqual(len(mirror.requests), 1)
        self.assertEqual(internal.requests, [])

    async def test_redirect_to_allowed_is_followed(self):
        """Redirects to allowed addresses are followed, a few times."""
        final = self.serve(_Recorder()) + "/final"
        hop = self.serve(_Recorder(b"", code=301, location=final))
        sha1, _, _ = await self.fetch(SourceFetcher(LOOPBACK), hop + "/a")
        self.assertEqual(sha1, hashlib.sha1(SECRET).hexdigest())
        loop = _Recorder(b"", code=302, location="/again")
        url = self.serve(loop) + "/again"
        error = await self.assertFailure(
            self.fetch(SourceFetcher(LOOPBACK), url), SourceRefused)
        self.assertIn("more than 5", str(error))
        self.assertEqual(len(loop.requests), 6)

    async def test_dns_rebinding_cannot_reach_a_refused_address(self):
        """The address checked is the address connected to: a resolver
        whose later answers point inside is asked once per hop, and a
        mixed answer (one allowed, one not) is refused."""
        allowed = _Recorder(b"from the checked address\n")
        internal = _Recorder()
        good = self.serve(allowed)
        port = int(good.rsplit(":", 1)[1])
        self.serve(internal, interface="127.0.0.2")
        answers = [["127.0.0.1"], ["127.0.0.2"], ["127.0.0.2"]]
        asked = []

        def rebinding(host, port):
            asked.append(host)
            return answers[len(asked) - 1]
        fetcher = SourceFetcher(LOOPBACK, resolve=rebinding)
        url = "http://mirror.example:%d/x" % port
        await self.fetch(fetcher, url)
        self.assertEqual(asked, ["mirror.example"])
        self.assertEqual(len(allowed.requests), 1)
        self.assertEqual(internal.requests, [])
        mixed = SourceFetcher(LOOPBACK, resolve=lambda h, p: [
            "127.0.0.1", "127.0.0.2"])
        await self.assertFailure(self.fetch(mixed, url), SourceRefused)

    async def test_errors_do_not_echo_the_server(self):
        """A 4xx is named by its number only (no reason phrase, no body);
        a 5xx is retryable; other schemes are refused."""
        url = self.serve(_Recorder(b"secret body", code=403,
                                   reason=b"SECRET-REASON"))
        error = await self.assertFailure(
            self.fetch(SourceFetcher(LOOPBACK), url + "/x"), SourceRefused)
        self.assertIn("answered 403", str(error))
        self.assertNotIn("SECRET", str(error))
        self.assertNotIn("secret", str(error))
        url = self.serve(_Recorder(b"", code=503))
        await self.assertFailure(
            self.fetch(SourceFetcher(LOOPBACK), url + "/x"), SourceUnreachable)
        for bad in ("file:///etc/passwd", "ftp://example.org/x", "http://"):
            await self.assertFailure(self.fetch(SourceFetcher(), bad),
                                     SourceRefused)

    async def test_trickling_source_is_ended_by_the_minimum_rate(self):
        """1 byte every 50 ms against 1,000 bytes/s over 0.5 s windows:
        ended after about a window, and nothing is kept."""
        url = self.serve(_Trickle(b"x")) + "/slow"
        fetcher = SourceFetcher(LOOPBACK, FetchLimits(
            deadline=20, min_rate=1000, window=0.5))
        started = reactor.seconds()
        error = await self.assertFailure(self.fetch(fetcher, url),
                                         SourceTooSlow)
        self.assertIn("minimum 1000 bytes/s", str(error))
        self.assertIn(url, str(error))
        self.assertLess(reactor.seconds() - started, 5)
        self.assertEqual([p.name for p in self.files.root.iterdir()], [])

    async def test_endless_source_is_ended_by_the_deadline(self):
        """A source fast enough for the rate but endless is ended by the
        deadline (1 s here)."""
        url = self.serve(_Trickle(b"x" * 4096)) + "/endless"
        fetcher = SourceFetcher(LOOPBACK, FetchLimits(
            deadline=1, min_rate=1000, window=0.5))
        started = reactor.seconds()
        error = await self.assertFailure(self.fetch(fetcher, url),
                                         SourceTooSlow)
        self.assertIn("deadline", str(error))
        self.assertLess(reactor.seconds() - started, 5)

    async def test_silent_source_times_out(self):
        """A source that sends headers and then nothing is ended after one
        window without data."""
        url = self.serve(_Trickle(b"")) + "/silent"
        fetcher = SourceFetcher(LOOPBACK, FetchLimits(
            deadline=20, min_rate=1000, window=0.5))
        error = await self.assertFailure(self.fetch(fetcher, url),
                                         SourceTooSlow)
        self.assertIn("sent nothing", str(error))


def _make_certificate(directory: Path, name: str) -> Path:
    """A self-signed certificate (and key, in one PEM file) for ``name``,
    made with the openssl command."""
    pem = directory / (name + ".pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(pem), "-out", str(directory / (name + ".crt")),
         "-days", "1", "-subj", "/CN=" + name,
         "-addext", "subjectAltName=DNS:" + name],
        check=True, capture_output=True)
    pem.write_bytes(pem.read_bytes()
                    + (directory / (name + ".crt")).read_bytes())
    return pem


class HTTPSTests(TestCase):
    """HTTPS at the pinned address: the certificate is still checked
    against the URL's host name. The server is Python's own (ssl +
    http.server) in a thread; Twisted's TLS needs pyOpenSSL."""

    skip = None if shutil.which("openssl") else "openssl is not installed"
    timeout = 30

    def setUp(self):
        directory = Path(self.mktemp())
        directory.mkdir()
        self.pem = _make_certificate(directory, "mirror.test")
        served = directory / "www"
        served.mkdir()
        (served / "src.tar.gz").write_bytes(SECRET)
        handler = functools.partial(QuietHandler, directory=str(served))
        self.server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.pem)
        self.server.socket = tls.wrap_socket(self.server.socket,
                                             server_side=True)
        thread = threading.Thread(target=self.server.serve_forever,
                                  daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.port = self.server.server_address[1]
        self.files = FileStore(self.mktemp())

    def fetcher(self):
        trusting = ssl.create_default_context(cafile=str(self.pem))
        return SourceFetcher(LOOPBACK, resolve=lambda host, port: ["127.0.0.1"],
                             tls=trusting)

    def fetch(self, url):
        return threads.deferToThread(self.fetcher().fetch, url,
                                     self.files.put_stream)

    async def test_name_checked_at_the_pinned_address(self):
        """https://mirror.test/ is fetched from the checked 127.0.0.1 with
        mirror.test's certificate."""
        sha1, _, _ = await self.fetch(
            "https://mirror.test:%d/src.tar.gz" % self.port)
        self.assertEqual(sha1, hashlib.sha1(SECRET).hexdigest())

    async def test_wrong_name_refused(self):
        """The same server under another name fails the certificate check
        (a retryable error naming no server text)."""
        error = await self.assertFailure(
            self.fetch("https://other.test:%d/src.tar.gz" % self.port),
            SourceUnreachable)
        self.assertIn("unreachable", str(error))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr."""

    def log_message(self, *args):
        pass
