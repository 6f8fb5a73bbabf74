"""The recipe job run by a real job runner (children, real HTTP sources).

A recipe that checks out queues its build in the transaction that completes
the recipe job; one that does not fails naming the field or the source and
queues nothing, so no builder is ever touched.
"""

import hashlib
import os
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web import server, static
from twisted.web.resource import Resource
from twisted.web.util import Redirect

from lp_services.job.enqueue import enqueue
from lp_services.job.registry import job_types
from lp_services.job.runner import JobRunner
from lp_services.job.status import JobStatus
from lp_services.recipes.recipe import RECIPE_JOB_TYPE
from lp_services.testing.database import DatabaseTestMixin
from lp_services.ops.work import describe_work, may_see
from tests.job.support import job_row, wait_for

SOURCE = b"the source of a recipe\n"


class _Counting(Resource):
    """``inner``, noting every request's path in ``seen``."""

    def __init__(self, inner, seen):
        super().__init__()
        self.inner, self.seen = inner, seen

    def getChildWithDefault(self, name, request):
        self.seen.append(request.uri)
        return self.inner.getChildWithDefault(name, request)


class RecipeJobTests(DatabaseTestMixin, TestCase):
    """Recipe jobs through a runner whose children load lp_services.recipes.recipe."""

    timeout = 120

    def setUp(self):
        super().setUp()
        self.home = Path(self.mktemp()).resolve()
        (self.home / "www").mkdir(parents=True)
        (self.home / "www" / "hello.tar.gz").write_bytes(SOURCE)
        # The children's file store is $LP_HOME/files; the sources are on
        # loopback, an internal address the farm must be told to allow.
        self.patch(os, "environ", dict(os.environ, LP_HOME=str(self.home),
                                       LP_RECIPE_SOURCES_ALLOW="127.0.0.1"))
        self.www = static.File(str(self.home / "www"))
        self.requests = []
        port = reactor.listenTCP(0, server.Site(_Counting(self.www,
                                                          self.requests)),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = "http://127.0.0.1:%d" % port.getHost().port
        self.conn = self.connect()
        with self.conn, self.conn.cursor() as cur:
            cur.execute("""
                INSERT INTO processor (name) VALUES ('amd64');
                INSERT INTO library_file (sha1, size, filename)
                VALUES (repeat('c', 40), 1, 'chroot.tar.gz');
                INSERT INTO chroot (processor, library_file)
                SELECT p.id, l.id FROM processor p, library_file l""")

    @defer.inlineCallbacks
    def run_recipe(self, data, max_retries=None, **enqueued):
        with self.conn, self.conn.cursor() as cur:
            job_id = enqueue(cur, RECIPE_JOB_TYPE, data,
                             max_retries=max_retries, **enqueued)
        runner = JobRunner(self.database_url, [job_types.get(RECIPE_JOB_TYPE)],
                           holder="recipe-test", concurrency=1,
                           modules=("lp_services.recipes.recipe",), poll_interval=0.2,
                           grace=0.0)
        runner.startService()
        try:
            yield wait_for(lambda: job_row(self.conn, job_id)["status"]
                           in (JobStatus.COMPLETED, JobStatus.FAILED),
                           timeout=60, what="recipe job %d to end" % job_id)
        finally:
            yield runner.stopService()
        return job_row(self.conn, job_id)

    def recipe(self, **changes):
        data = {"name": "hello", "processor": "amd64",
                "script": "#!/bin/sh\necho hi > /work/out/hi.txt\n",
                "results": ["*.txt"],
                "sources": [{"url": self.base + "/hello.tar.gz",
                             "sha1": hashlib.sha1(SOURCE).hexdigest()}]}
        data.update(changes)
        return data

    def builds(self):
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT j.id, j.prerequisite, bq.filemap, bq.build_args"
                        " FROM job j JOIN build_queue bq ON bq.job = j.id")
            return cur.fetchall()

    @defer.inlineCallbacks
    def test_good_recipe_queues_its_build(self):
        """The source is fetched (from 127.0.0.1, allow-listed) and stored;
        the build waits on the recipe."""
        row = yield self.run_recipe(self.recipe())
        self.assertEqual(self.requests, [b"/hello.tar.gz"])
        self.assertEqual(row["status"], JobStatus.COMPLETED, row["last_error"])
        [(build_id, prerequisite, filemap, args)] = self.builds()
        self.assertEqual(prerequisite, row["id"])
        self.assertEqual(sorted(filemap), ["build.sh", "hello.tar.gz", "recipe.sh"])
        self.assertEqual(args["recipe"], "hello")
        sha1 = hashlib.sha1(SOURCE).hexdigest()
        stored = self.home / "files" / sha1[:2] / sha1
        self.assertEqual(stored.read_bytes(), SOURCE)
        with self.conn.cursor() as cur:
            recipe = describe_work(cur, row["id"])
            build = describe_work(cur, build_id)
        self.assertEqual([d.id for d in recipe.dependents], [build_id])
        self.assertEqual(build.prerequisite.id, row["id"])
        self.assertEqual((build.kind, build.build.build_status),
                         ("build", "NEEDSBUILD"))

    @defer.inlineCallbacks
    def test_private_recipe_queues_a_private_build_of_its_requester(self):
        """A private recipe's build is private and its requester's, and
        everything it stored for the build is restricted: whoever may see
        the recipe sees the build, nobody else sees either."""
        row = yield self.run_recipe(self.recipe(), requester="alice",
                                    private=True)
        self.assertEqual(row["status"], JobStatus.COMPLETED, row["last_error"])
        [(build_id, _, filemap, _)] = self.builds()
        with self.conn.cursor() as cur:
            cur.execute("SELECT requester, private FROM job WHERE id = %s",
                        (build_id,))
            self.assertEqual(cur.fetchone(), ("alice", True))
            cur.execute("SELECT bool_and(restricted) FROM library_file "
                        "WHERE sha1 = ANY(%s)", (list(filemap.values()),))
            self.assertEqual(cur.fetchone(), (True,))
            for viewer, sees in (("alice", True), ("bob", False),
                                 (None, False)):
                found = [may_see(viewer, *r) for r in self._owners(cur)]
                self.assertEqual(found, [sees, sees], viewer)

    def _owners(self, cur):
        cur.execute("SELECT private, requester FROM job ORDER BY id")
        return cur.fetchall()

    @defer.inlineCallbacks
    def test_wrong_hash_fails_and_queues_nothing(self):
        """A source whose sha1 differs fails the job naming the source."""
        data = self.recipe(sources=[{"url": self.base + "/hello.tar.gz",
                                     "sha1": "0" * 40}])
        row = yield self.run_recipe(data)
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertIn(self.base + "/hello.tar.gz", row["last_error"])
        self.assertIn("sha1 mismatch", row["last_error"])
        # Not the sha1 of what the server sent.
        self.assertNotIn(hashlib.sha1(SOURCE).hexdigest(), row["last_error"])
        self.assertEqual(row["attempt_count"], 1)
        self.assertEqual(self.builds(), [])

    @defer.inlineCallbacks
    def test_missing_field_fails_naming_it(self):
        """A recipe without a script fails naming the field."""
        data = self.recipe()
        del data["script"]
        row = yield self.run_recipe(data)
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertIn("'script' is missing", row["last_error"])
        self.assertEqual(self.builds(), [])

    @defer.inlineCallbacks
    def test_no_chroot_fails(self):
        """A series without a chroot fails naming the series."""
        row = yield self.run_recipe(self.recipe(series="trixie"))
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertIn("no chroot is registered for amd64/trixie",
                      row["last_error"])
        self.assertEqual(self.builds(), [])

    @defer.inlineCallbacks
    def test_unreachable_source_fails_after_retries(self):
        """An unreachable source is retried, then fails naming it."""
        data = self.recipe(sources=[{"url": "http://127.0.0.1:1/gone.tar.gz",
                                     "sha1": "1" * 40}])
        row = yield self.run_recipe(data, max_retries=0)
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertIn("http://127.0.0.1:1/gone.tar.gz", row["last_error"])
        self.assertIn("unreachable", row["last_error"])
        self.assertEqual(self.builds(), [])

    @defer.inlineCallbacks
    def test_not_found_is_a_user_error(self):
        """A 404 source fails at once (no retry), naming the source."""
        data = self.recipe(sources=[{"url": self.base + "/missing.tar.gz",
                                     "sha1": "1" * 40}])
        row = yield self.run_recipe(data)
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertIn("missing.tar.gz answered 404", row["last_error"])
        self.assertEqual(row["attempt_count"], 1)

    @defer.inlineCallbacks
    def test_internal_source_refused_by_default(self):
        """Without the allow-list, a source on 127.0.0.1 (internal) fails
        the job at once, without a request, and queues nothing; the error
        tells nothing of the server."""
        self.patch(os, "environ", dict(os.environ))
        del os.environ["LP_RECIPE_SOURCES_ALLOW"]
        row = yield self.run_recipe(self.recipe())
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertEqual(row["attempt_count"], 1)
        self.assertIn("127.0.0.1 is not a public address", row["last_error"])
        self.assertNotIn(hashlib.sha1(SOURCE).hexdigest(), row["last_error"])
        self.assertEqual(self.requests, [])
        self.assertEqual(self.builds(), [])

    @defer.inlineCallbacks
    def test_redirect_to_internal_refused(self):
        """An allowed source that redirects to an internal address
        (127.0.0.2, not allow-listed) fails the job; the internal server
        sees no request and its answer appears nowhere."""
        internal = []
        inside = static.Data(b"internal answer", "text/plain")
        self.patch(inside, "render_GET", lambda request: internal.append(
            request) or b"internal answer")
        port = reactor.listenTCP(0, server.Site(inside), interface="127.0.0.2")
        self.addCleanup(port.stopListening)
        target = "http://127.0.0.2:%d/secret" % port.getHost().port
        self.www.putChild(b"moved.tar.gz", Redirect(target.encode()))
        data = self.recipe(sources=[{"url": self.base + "/moved.tar.gz",
                                     "sha1": hashlib.sha1(SOURCE).hexdigest()}])
        row = yield self.run_recipe(data)
        self.assertEqual(row["status"], JobStatus.FAILED)
        self.assertIn("moved.tar.gz (redirected)", row["last_error"])
        self.assertNotIn("127.0.0.2", row["last_error"])
        self.assertNotIn("internal answer", row["last_error"])
        self.assertEqual(internal, [])
        self.assertEqual(self.builds(), [])
