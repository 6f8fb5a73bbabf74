"""Property-based fuzzing of the buildmaster's site (hypothesis), as
tests/slave/test_fuzz.py fuzzes the agent: the status pages over a seeded
database and the file store beside them, over real HTTP on loopback.
Whatever the method, path, query and headers (Range above all): never a
5xx, never an answer larger than its bound, always nosniff and a CSP, and
no file of the store left open."""

import http.client
import io
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from lp_services.testing.fuzz import run_property

from lp_services.filestore.store import FileStore
from lp_services.filestore.web import FileStoreResource
from tests.filestore.test_web import open_files_under
from tests.web.helpers import StatusSiteMixin

#: The largest status page of the seeded farm is a few KB; anything near
#: this bound is an answer growing with the request.
PAGE_BOUND = 256 * 1024
#: Part headers of a multi-range answer: at most MAX_RANGES of them.
PARTS_BOUND = 8 * 200

FILES = {"page": b"<script>alert(1)</script>\n", "blob": bytes(range(256)) * 12,
         "empty": b""}

_segments = st.sampled_from(
    ["", "builds", "jobs", "work", "metrics", "static", "files", "log.json",
     "status.css", "status.js", "12", "13", "21", "99999999999999999999",
     "-1", "0", "x.html", "..", ".", "%", "\x00", "\xff", "a/b", "\u00e9",
     "0" * 40, "api", "x" * 300, "?", "#"])
_text = st.text(max_size=20)
_path_parts = st.lists(_segments | _text, max_size=5)
_query = st.lists(st.tuples(
    st.sampled_from(["kind", "status", "outcome", "type", "limit", "x"])
    | _text, st.sampled_from(["", "build", "native", "FAILED", "COMPLETED",
                              "10", "-5", "1e9", "10000000", "\x00"]) | _text),
    max_size=4)
_number = st.integers(0, 5000).map(str) | st.sampled_from(
    ["", "-1", "99999999999999999999999", "0x10", " 1"])
_range = st.lists(st.tuples(_number, _number).map("-".join), max_size=12).map(
    lambda specs: "bytes=" + ",".join(specs)) | st.sampled_from(
    ["bytes=" + ",".join(["0-"] * 1000), "bytes=", "items=0-1", "bytes=-0",
     "bytes=0-0,0-0,0-0"]) | _text
_methods = st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT",
                            "DELETE", "OPTIONS", "TRACE", "PATCH"])


def _quote(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


class SiteFuzzTestCase(StatusSiteMixin, TestCase):
    """The status site with the file store mounted at ``files``, as the
    buildmaster serves them."""

    timeout = 600

    def setUp(self):
        super().setUp()
        self.store_root = Path(self.mktemp())
        store = FileStore(self.store_root)
        self.sha1s = {name: store.put_stream(io.BytesIO(body))[0]
                      for name, body in FILES.items()}
        self.sizes = {self.sha1s[name]: len(body)
                      for name, body in FILES.items()}
        self.root.putChild(b"files", FileStoreResource(store))

    def fuzz(self, examples: int):
        """Run the property in a thread (blocking client) while the
        reactor serves; then check no stored file is left open."""
        port = self.port.getHost().port
        sha1s = st.sampled_from(sorted(self.sizes))
        file_paths = st.tuples(sha1s, st.lists(_segments | _text, max_size=2))
        before = open_files_under(self.store_root)

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(method=_methods,
               target=st.tuples(st.just("status"), _path_parts)
               | st.tuples(st.just("files"), file_paths),
               query=_query,
               headers=st.dictionaries(
                   st.sampled_from(["Range", "If-Modified-Since", "Accept",
                                    "If-Range", "Accept-Encoding"]),
                   _range, max_size=3))
        def prop(method, target, query, headers):
            kind, parts = target
            sha1 = None
            if kind == "files":
                sha1, rest = parts
                parts = ["files", sha1] + rest
            path = "/" + "/".join(_quote(p) for p in parts)
            if query:
                path += "?" + "&".join(_quote(k) + "=" + _quote(v)
                                       for k, v in query)
            headers = {k: v.encode("utf-8", "surrogatepass").decode("latin-1")
                       .replace("\r", "").replace("\n", "")
                       for k, v in headers.items()}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request(method, path, headers=headers)
                response = conn.getresponse()
                bound = PAGE_BOUND
                if sha1 is not None:
                    bound = self.sizes[sha1] + PARTS_BOUND
                body = response.read(bound + 1)
            finally:
                conn.close()
            what = (method, path, headers, response.status)
            assert response.status < 500, what
            assert len(body) <= bound, what
            if response.status == 400 and not body \
                    and response.getheader("content-type") is None:
                # Refused by the HTTP parser (a NUL in a header) before
                # any resource saw it: an empty answer, nothing to render.
                return
            assert response.getheader("x-content-type-options") == "nosniff", what
            assert response.getheader("content-security-policy"), what

        def check_closed(_):
            # Closing happens in the reactor thread; it is done by the
            # time the client has read each answer.
            self.assertEqual(open_files_under(self.store_root), before)
        return run_property(prop).addCallback(check_closed)


class FastSiteFuzzTests(SiteFuzzTestCase):
    """A modest run in the fast tier."""

    def test_fuzzed_requests_never_break_the_site(self):
        """200 fuzzed requests: no 5xx, bounded answers, security headers,
        no open files."""
        return self.fuzz(200)
