"""The file store over real HTTP on loopback, attacked as in issue 19:
a build's ``x.html`` result, a log asked for under an ``.html`` name,
1,000 overlapping ranges, and the file handles each request leaves."""

import io
import os
from pathlib import Path

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web import resource, server
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from lp_services.filestore.ranges import MAX_RANGES
from lp_services.filestore.store import FileStore
from lp_services.filestore.web import FileStoreResource, content_disposition
from tests.job.support import wait_for

PAGE = b"<html><script>document.title = 'pwned'</script>hello</html>\n"


def open_files_under(root: Path) -> int:
    """How many of this process's file descriptors are open on files
    under ``root``."""
    count = 0
    prefix = str(root.resolve())
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        count += target.startswith(prefix)
    return count


class _Reader(protocol.Protocol):
    """A raw HTTP client that sends one request and hangs up after the
    first bytes of the answer."""

    def __init__(self, request: bytes):
        self.request = request
        self.got_data = Deferred()

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        if not self.got_data.called:
            self.got_data.callback(data)
            self.transport.abortConnection()


class FileStoreWebTests(TestCase):
    """GET /files/<sha1>[/<name>] as an attacker would."""

    def setUp(self):
        self.root = Path(self.mktemp())
        self.store = FileStore(self.root)
        self.page = self.store.put_stream(io.BytesIO(PAGE))[0]
        self.big = self.store.put_stream(io.BytesIO(os.urandom(3000)))[0]
        site_root = resource.Resource()
        site_root.putChild(b"files", FileStoreResource(self.store))
        self.port = reactor.listenTCP(0, server.Site(site_root),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = "http://127.0.0.1:%d/files/" % self.port.getHost().port

    async def get(self, path, method=b"GET", **headers):
        response = await Agent(reactor).request(
            method, (self.base + path).encode("utf-8"),
            Headers({k.encode(): [v.encode()] for k, v in headers.items()}))
        return response, await readBody(response)

    def header(self, response, name):
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None

    async def test_html_result_is_a_download(self):
        """A result named x.html (or a log asked for as .html, or .svg,
        .js, .xml) is served as an attachment of a type no browser
        renders, with nosniff and a sandbox CSP."""
        for name in ("x.html", "buildlog.txt.html", "a.svg", "a.js",
                     "a.xml", "a.xhtml"):
            for path in (self.page + "/" + name, self.page):
                response, body = await self.get(path)
                self.assertEqual((response.code, body), (200, PAGE), path)
                self.assertEqual(self.header(response, "content-type"),
                                 "application/octet-stream", path)
                self.assertTrue(self.header(response, "content-disposition")
                                .startswith("attachment"), path)
                self.assertEqual(self.header(response,
                                             "x-content-type-options"),
                                 "nosniff")
                csp = self.header(response, "content-security-policy")
                self.assertIn("sandbox", csp)
                self.assertIn("default-src 'none'", csp)

    async def test_unreadable_if_modified_since_is_ignored(self):
        """A malformed If-Modified-Since (the site fuzz found ``;``, which
        Twisted's date parser crashed on: a 500) is ignored: 200 with the
        content; a valid one in the future still gives 304."""
        for value in (";", "", "Mon", "garbage, 99 Foo 1 x"):
            response, body = await self.get(self.page,
                                            **{"If-Modified-Since": value})
            self.assertEqual((response.code, body), (200, PAGE), value)
        response, _ = await self.get(
            self.page, **{"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
        self.assertEqual(response.code, 304)

    async def test_head_and_errors_carry_the_headers(self):
        """HEAD answers and 404s carry nosniff and the sandbox CSP too."""
        response, body = await self.get(self.page + "/x.html", method=b"HEAD")
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(self.header(response, "content-length"), str(len(PAGE)))
        self.assertTrue(self.header(response, "content-disposition")
                        .startswith("attachment"))
        for path in ("0" * 40, "nonsense", self.page + "/a/b",
                     self.page + "/%2e%2e"):
            response, _ = await self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(self.header(response, "x-content-type-options"),
                             "nosniff")
            self.assertIn("sandbox",
                          self.header(response, "content-security-policy"))

    def test_content_disposition_names(self):
        """The name is given exactly in filename* and as a plain ASCII
        fallback that cannot break out of its quotes."""
        self.assertEqual(content_disposition(None), b"attachment")
        self.assertEqual(
            content_disposition('a"b;c\u00e9.html'),
            b'attachment; filename="a_b_c_.html"; '
            b"filename*=UTF-8''a%22b%3Bc%C3%A9.html")

    async def test_overlapping_ranges_are_refused(self):
        """The attack: 1,000 overlapping ranges of a 3 KB file. The answer
        is a short 416, not a 3 MB reply."""
        ranges = "bytes=" + ",".join(["0-"] * 1000)
        response, body = await self.get(self.big + "/x.bin", Range=ranges)
        self.assertEqual(response.code, 416)
        self.assertLess(len(body), 200)
        self.assertEqual(self.header(response, "content-range"), "bytes */3000")

    async def test_few_ranges_are_merged(self):
        """Up to MAX_RANGES ranges are served with overlaps merged: the
        answer never exceeds the file plus part headers."""
        content = self.store.open(self.big).read()
        response, body = await self.get(self.big, Range="bytes=0-99,50-149")
        self.assertEqual((response.code, body), (206, content[:150]))
        self.assertEqual(self.header(response, "content-range"),
                         "bytes 0-149/3000")
        ranges = "bytes=" + ",".join(["0-", "-3000", "100-200"] * 2)
        response, body = await self.get(self.big, Range=ranges)
        self.assertEqual((response.code, body), (206, content))
        response, body = await self.get(self.big, Range="bytes=0-9,20-29")
        self.assertEqual(response.code, 206)
        self.assertIn("multipart/byteranges",
                      self.header(response, "content-type"))
        self.assertIn(content[:10], body)
        self.assertIn(content[20:30], body)
        self.assertLess(len(body), 20 + 400)
        too_many = "bytes=" + ",".join("%d-%d" % (i * 10, i * 10)
                                       for i in range(MAX_RANGES + 1))
        response, _ = await self.get(self.big, Range=too_many)
        self.assertEqual(response.code, 416)

    async def test_unsatisfiable_ranges(self):
        """Ranges wholly past the end are a 416 (Twisted's own path for
        several of them raised and kept the file open)."""
        for ranges in ("bytes=5000-", "bytes=5000-6000,7000-8000"):
            response, _ = await self.get(self.big, Range=ranges)
            self.assertEqual(response.code, 416, ranges)

    async def test_every_file_handle_is_closed(self):
        """After full, ranged, multi-range, unsatisfiable, refused, HEAD
        and missing-name requests, no file under the store stays open."""
        before = open_files_under(self.root)
        for path, headers in [
                (self.big, {}), (self.big, {"Range": "bytes=1-2"}),
                (self.big, {"Range": "bytes=1-2,10-20"}),
                (self.big, {"Range": "bytes=9000-,9500-"}),
                (self.big, {"Range": "bytes=" + ",".join(["0-"] * 1000)}),
                (self.big, {"Range": "bytes=zz"}),
                (self.big + "/a/b", {}), (self.page + "/x.html", {})]:
            await self.get(path, **headers)
            await self.get(path, method=b"HEAD", **headers)
        self.assertEqual(open_files_under(self.root), before)

    async def test_client_hanging_up_closes_the_file(self):
        """A client that hangs up in the middle of a large download leaves
        no file open."""
        large = self.store.put_stream(io.BytesIO(b"x" * (8 << 20)))[0]
        before = open_files_under(self.root)
        reader = _Reader(b"GET /files/%s HTTP/1.1\r\nHost: x\r\n\r\n"
                         % large.encode())
        await protocol.ClientCreator(reactor, lambda: reader).connectTCP(
            "127.0.0.1", self.port.getHost().port)
        await reader.got_data
        await wait_for(lambda: open_files_under(self.root) == before,
                       timeout=10, what="the file to be closed")
