"""The status site on loopback over a seeded database, for the web tests."""

import json
from html.parser import HTMLParser
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from lp_services.database.transactor import Transactor
from lp_services.testing.database import DatabaseTestMixin
from lp_services.web.site import make_status_resource
from tests.database.test_views import SEED

# On top of the ops views' SEED: a log tail for the running build 12, a log
# and result files for the finished build 13, and native jobs 20 -> 21 -> 22
# (21 needs 20; 22 needs 21), 21 with data and a lease.
EXTRA_SEED = r"""
UPDATE build_queue SET logtail = 'line 1
line 2
line 3
line 4
line 5
line 6
line 7 compiling
', lastscore = 2505 WHERE job = 12;
INSERT INTO library_file (id, sha1, size, filename) VALUES
  (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1234, 'buildlog_13.txt'),
  (2, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 4096, 'hello_1.0_amd64.deb'),
  (3, 'cccccccccccccccccccccccccccccccccccccccc', 99, 'hello_1.0.changes');
UPDATE build_farm_job SET log = 1 WHERE job = 13;
INSERT INTO build_file (build, library_file, filename) VALUES
  (13, 2, 'hello_1.0_amd64.deb'), (13, 3, 'hello_1.0.changes');
INSERT INTO job (id, job_type, status, date_created, attempt_count,
                 max_retries, prerequisite, json_data, requester, reason,
                 lease_holder, lease_expires, date_started) VALUES
  (20, 'noop', 2, now(), 1, 0, NULL, '{}', NULL, NULL, NULL, NULL, now()),
  (21, 'http-notify', 1, now(), 2, 3, 20, '{"url": "http://example.com/"}',
   'alice', 'nightly', 'runner-1', now() + interval '1 minute', now()),
  (22, 'noop', 0, now(), 0, 0, 21, '{}', NULL, NULL, NULL, NULL, NULL);
-- Rows the tests add without ids come after the seeded ones.
SELECT setval('library_file_id_seq', 100), setval('job_id_seq', 100);
"""

FILES_BASE = "http://files.example"


def file_url(sha1, filename):
    """Download links as the buildmaster's file store would give them."""
    return "%s/%s/%s" % (FILES_BASE, sha1, quote(filename))


class Response:
    """A fetched page."""

    def __init__(self, code, headers, body):
        self.code = code
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8")

    def header(self, name):
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self):
        return json.loads(self.text)


class TagCollector(HTMLParser):
    """Every start tag of a page, with its attributes, and all its text."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.texts = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    def text(self):
        return "".join(self.texts)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag
                and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]


class StatusSiteMixin(DatabaseTestMixin):
    """Seeded database, a real Transactor and the status site on loopback."""

    seed = SEED + EXTRA_SEED

    def setUp(self):
        super().setUp()
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(self.seed)
        self.conn = conn
        self.transactor = Transactor(self.database_url, reactor=reactor,
                                     max_threads=2)
        self.transactor.start()
        self.addCleanup(self.transactor.stop)
        self.root = make_status_resource(self.transactor, file_url=file_url)
        self.port = self.listen(self.root)

    def listen(self, resource):
        """Serve ``resource`` on loopback; return the port."""
        site = Site(resource)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port

    def execute(self, sql, params=()):
        with self.conn, self.conn.cursor() as cur:
            cur.execute(sql, params)

    @inlineCallbacks
    def get(self, path, headers=None, port=None):
        """GET ``path`` from the site; a :class:`Response` (no redirects
        followed)."""
        port = port or self.port
        url = "http://127.0.0.1:%d%s" % (port.getHost().port, path)
        response = yield Agent(reactor).request(
            b"GET", url.encode("ascii"),
            Headers({k: [v] for k, v in (headers or {}).items()}))
        body = yield readBody(response)
        return Response(response.code, response.headers, body)
