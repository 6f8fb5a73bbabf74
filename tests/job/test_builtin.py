"""The built-in job types: http-notify against a real HTTP server on
loopback, and noop/sleep through a runner."""

import json

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from lp_services.job.status import JobStatus
from lp_services.job.worker import _ConnectionHolder, run_one
from lp_services.testing.database import DatabaseTestMixin

from tests.job.support import insert_job, job_row, make_runner, real_now_clock


class Hook(resource.Resource):
    """Answers POST /<code> with that status and records what it got."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.received = []

    def render_POST(self, request):
        code = int(request.postpath[0] or 200)
        self.received.append((code, request.getHeader("content-type"),
                              json.loads(request.content.read())))
        request.setResponseCode(code)
        return b"{}"


class HTTPNotifyTests(DatabaseTestMixin, TestCase):
    """http-notify POSTs JSON; 5xx and connection errors retry, 4xx do not."""

    timeout = 30

    def setUp(self):
        super().setUp()
        self.hook = Hook()
        port = reactor.listenTCP(0, server.Site(self.hook),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = "http://127.0.0.1:%d/" % port.getHost().port

    def notify(self, url, payload=None):
        request = {"job": 1, "type": "http-notify", "attempt": 1,
                   "holder": "h", "now": 1.7e9,
                   "data": {"url": url, "payload": payload or {"a": 1},
                            "timeout": 5}}
        return threads.deferToThread(run_one, request, _ConnectionHolder(None))

    @defer.inlineCallbacks
    def test_success_posts_json(self):
        """2xx: completed, and the server got the JSON payload."""
        reply = yield self.notify(self.base + "200", {"build": 42})
        self.assertEqual(reply["outcome"], "completed")
        self.assertEqual(self.hook.received,
                         [(200, "application/json", {"build": 42})])

    @defer.inlineCallbacks
    def test_server_error_is_retryable(self):
        """5xx: retryable."""
        reply = yield self.notify(self.base + "503")
        self.assertEqual(reply["outcome"], "retryable")
        self.assertIn("503", reply["message"])

    @defer.inlineCallbacks
    def test_client_error_is_a_user_error(self):
        """4xx: user error, no retry."""
        reply = yield self.notify(self.base + "404")
        self.assertEqual(reply["outcome"], "user_error")
        self.assertIn("404", reply["message"])

    @defer.inlineCallbacks
    def test_connection_refused_is_retryable(self):
        """Nobody listening: retryable."""
        port = reactor.listenTCP(0, server.Site(self.hook),
                                 interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        reply = yield self.notify("http://127.0.0.1:%d/" % number)
        self.assertEqual(reply["outcome"], "retryable")
        self.assertIn("cannot reach", reply["message"])

    @defer.inlineCallbacks
    def test_through_a_runner(self):
        """A runner's child POSTs; a 500 is retried later, a 200 completes."""
        from tests.job.support import wait_for

        clock = real_now_clock()
        runner = yield make_runner(self, ["http-notify"], clock)
        conn = self.connect()
        from lp_services.clock import utcnow
        ok = insert_job(conn, "http-notify", {"url": self.base + "200",
                                              "payload": {"n": 1}},
                        scheduled_start=utcnow(clock))
        bad = insert_job(conn, "http-notify", {"url": self.base + "500",
                                               "payload": {"n": 2}},
                         scheduled_start=utcnow(clock), max_retries=5)
        runner.wake()
        yield wait_for(lambda: job_row(conn, ok)["status"]
                       == JobStatus.COMPLETED, what="the 200")
        row = yield wait_for(lambda: (lambda r: r["attempt_count"] == 1 and
                                      r["status"] == JobStatus.WAITING and r)(
            job_row(conn, bad)), what="the 500 to be rescheduled")
        self.assertGreater(row["scheduled_start"], utcnow(clock))
        self.assertIn("500", row["last_error"])
