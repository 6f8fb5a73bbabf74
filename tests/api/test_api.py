"""The API's operations and its refusals over real HTTP: uploads (by sha1,
idempotent, checked, bounded), requests, the log (offsets and the long
poll, on task.Clock), paging, tokens (expiry, revocation, hashing, the
admin's token endpoints) and the description itself."""

import hashlib
import http.client
import json

from twisted.internet import defer, reactor, task, threads
from twisted.trial.unittest import TestCase

from lp_services.api.openapi import description
from lp_services.auth.tokens import create_token, revoke_token
from lp_services.buildmaster.farm import Farm, FarmConfig
from lp_services.buildmaster.web import build_site
from tests.api.support import SiteMixin, files_in, snapshot
from tests.buildmaster.test_integration import wait_until


class UploadTests(SiteMixin, TestCase):

    upload_limit = 64 * 1024

    async def test_upload_is_idempotent(self):
        """The first upload of content creates it (201); the same token
        sending it again changes nothing (200)."""
        code, answer, sha1 = await self.upload(b"same\n")
        self.assertEqual((code, answer["created"], answer["size"]),
                         (201, True, 5))
        before = snapshot(self)
        code, answer, _ = await self.upload(b"same\n")
        self.assertEqual((code, answer["created"]), (200, False))
        self.assertEqual(snapshot(self), before)
        self.assertEqual(self.file_store.open(sha1).read(), b"same\n")
        self.assertEqual(self.query(
            "SELECT uploader, restricted FROM library_file WHERE sha1 = %s",
            (sha1,)), [("alice", True)])

    async def test_wrong_sha1_and_bad_names(self):
        """Content that does not hash to the path's sha1, a path that is no
        sha1, a file name with a slash: 400, nothing stored."""
        before = snapshot(self), files_in(self.file_store.root)
        for path, field in (("/files/%s" % ("0" * 40), "path.sha1"),
                            ("/files/xyz", "path.sha1"),
                            ("/files/%s?name=a%%2Fb" % hashlib.sha1(
                                b"x").hexdigest(), "query.name")):
            code, answer = await self.api("PUT", path, "alice", raw=b"x",
                                          template="/files/{sha1}")
            self.assertEqual((code, answer["field"]), (400, field), path)
        self.assertEqual((snapshot(self), files_in(self.file_store.root)),
                         before)

    def put_raw(self, content: bytes, chunked: bool):
        """PUT with http.client (blocking; run in a thread): Content-Length
        or chunked; (status, JSON)."""
        sha1 = hashlib.sha1(content).hexdigest()
        conn = http.client.HTTPConnection("127.0.0.1",
                                          self.port.getHost().port)
        headers = {"Authorization": "Bearer " + self.tokens["alice"]}
        try:
            if chunked:
                def pieces():
                    for start in range(0, len(content), 8192):
                        yield content[start:start + 8192]
                conn.request("PUT", "/api/v1/files/" + sha1, body=pieces(),
                             headers=headers, encode_chunked=True)
            else:
                conn.request("PUT", "/api/v1/files/" + sha1, body=content,
                             headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    async def test_over_the_limit(self):
        """An upload over the limit is 413 whether its length is announced
        or it comes chunked; nothing is stored, and a body that fits
        still goes through."""
        before = snapshot(self), files_in(self.file_store.root)
        big = b"x" * (self.upload_limit + 1)
        for chunked in (False, True):
            code, answer = await threads.deferToThread(self.put_raw, big,
                                                       chunked)
            self.assertEqual(code, 413, chunked)
            self.assertIn("over", answer["error"])
        self.assertEqual((snapshot(self), files_in(self.file_store.root)),
                         before)
        code, _ = await threads.deferToThread(
            self.put_raw, b"y" * self.upload_limit, True)
        self.assertEqual(code, 201)

    async def test_json_body_over_the_limit(self):
        """A JSON body over 1 MiB: 413."""
        code, answer = await self.api(
            "POST", "/builds", "alice",
            raw=b'{"x": "' + b"a" * (1 << 20) + b'"}')
        self.assertEqual(code, 413)


class RequestTests(SiteMixin, TestCase):

    def setUp(self):
        super().setUp()
        self.add_chroot()

    async def test_bad_bodies_name_the_field(self):
        """Bad JSON, a wrong type, an unknown field, an unknown processor,
        build type or prerequisite: 400 naming what is wrong; nothing
        queued."""
        _, _, sha1 = await self.upload(b"echo\n", name="build.sh")
        good = {"build_type": "script", "processor": "amd64",
                "files": {"build.sh": sha1}, "script": "build.sh"}
        before = snapshot(self)
        for body, field in (
                (b"{not json", "body"),
                (b"[1, 2]", "body"),
                (dict(good, processor=7), "body.processor"),
                (dict(good, colour="red"), "body.colour"),
                (dict(good, urgency="now"), "body.urgency"),
                (dict(good, build_type="Bad Type"), "body.build_type"),
                (dict(good, script="other.sh"), "body.script"),
                (dict(good, files={"../x": sha1}), "body.files"),
                (dict(good, files={"a": "b" * 40}), "body.files"),
                (dict(good, after=999999), "body.after"),
                (dict(good, processor="sparc"), None),
                (dict(good, build_type="nosuchtype", script=None), None)):
            raw = body if isinstance(body, bytes) else None
            code, answer = await self.api(
                "POST", "/builds", "alice", raw=raw,
                body=None if raw else body)
            self.assertEqual(code, 400, body)
            self.assertEqual(answer.get("field"), field, (body, answer))
        self.assertEqual(snapshot(self), before)

    async def test_request_and_show(self):
        """A build requested through the API is the token's, shown as
        `show` shows it, and listed."""
        _, _, sha1 = await self.upload(b"echo\n", token="bob",
                                       name="build.sh")
        code, answer = await self.api("POST", "/builds", "bob", body={
            "build_type": "script", "processor": "amd64", "urgency": "high",
            "files": {"build.sh": sha1}, "script": "build.sh"})
        self.assertEqual(code, 201, answer)
        code, work = await self.api("GET", "/" + answer["url"], "bob",
                                    template="/work/{job_id}")
        self.assertEqual((work["requester"], work["build"]["build_status"],
                          work["build"]["filemap"]),
                         ("bob", "NEEDSBUILD", {"build.sh": sha1}))
        code, answer = await self.api("POST", "/recipes", "bob", body={
            "recipe": {"name": "r", "processor": "amd64", "script": "true"},
            "private": True})
        self.assertEqual(code, 201, answer)
        code, answer = await self.api("POST", "/recipes", "bob", body={
            "recipe": {"name": "r", "processor": "amd64"}})
        self.assertEqual((code, answer["field"]), (400, "body.recipe"))
        code, answer = await self.api("POST", "/jobs", "bob",
                                      body={"type": "library-gc"})
        self.assertEqual(code, 403)
        code, answer = await self.api("POST", "/jobs", "olga",
                                      body={"type": "library-gc"})
        self.assertEqual(code, 201)
        code, answer = await self.api("POST", "/jobs", "olga",
                                      body={"type": "build"})
        self.assertEqual((code, answer["field"]), (400, "body.type"))

    async def test_unknown_ids_and_states(self):
        """Unknown ids are 404; a finished build cannot be cancelled, a
        build not retried, a native job not rescored (409)."""
        for method, path, body in (
                ("GET", "/work/424242", None),
                ("GET", "/work/424242/log", None),
                ("POST", "/work/424242/cancel", None),
                ("POST", "/work/424242/rescore", {"score": 1}),
                ("POST", "/builders/nosuch/mode", {"mode": "enable"}),
                ("DELETE", "/tokens/nosuch", None)):
            code, _ = await self.api(method, path, "adam", body=body,
                                     template="-")
            self.assertEqual(code, 404, path)
        job_id = self.queue_build(requester="alice")
        self.finish_build(job_id)
        for path, body in (("/work/%d/cancel" % job_id, None),
                           ("/work/%d/retry" % job_id, None),
                           ("/work/%d/rescore" % job_id, {"score": 1})):
            code, answer = await self.api("POST", path, "olga", body=body,
                                          template="-")
            self.assertEqual(code, 409, (path, answer))

    async def test_log_pieces_join_cleanly(self):
        """Read in pieces smaller than a line, cut inside multi-byte
        characters: the pieces join into the log, each one valid text."""
        from lp_services.api import actions

        self.patch(actions, "LOG_CHUNK", 7)
        job_id = self.queue_build()
        log = "\u00e9t\u00e9 \u2603 na\u00efve\n" * 5
        self.finish_build(job_id, log=log.encode())
        text, offset = "", 0
        while True:
            code, piece = await self.api(
                "GET", "/work/%d/log?offset=%d" % (job_id, offset),
                template="/work/{job_id}/log")
            self.assertNotIn("\ufffd", piece["text"])
            text += piece["text"]
            if piece["next_offset"] == piece["size"]:
                break
            self.assertGreater(piece["next_offset"], offset)
            offset = piece["next_offset"]
        self.assertEqual(text, log)

    async def test_paging(self):
        """``limit`` and ``before`` page through the work newest first; the
        ``next`` link gives the following page; bad values are 400."""
        ids = [self.queue_build(content=b"%d\n" % n) for n in range(5)]
        seen, path = [], "/work?limit=2"
        while path:
            code, page = await self.api("GET", path, None, template="/work")
            self.assertEqual(code, 200)
            seen += [row["id"] for row in page["items"]]
            path = "/" + page["next"] if page["next"] else None
        self.assertEqual(seen, sorted(ids, reverse=True))
        for query in ("limit=0", "limit=x", "before=-1", "kind=bogus",
                      "colour=red", "status=NOPE"):
            code, answer = await self.api("GET", "/work?" + query, None,
                                          template="/work")
            self.assertEqual(code, 400, query)

    async def test_log_from_offsets(self):
        """A finished build's log, read from offsets; past the end, empty."""
        job_id = self.queue_build()
        log = "".join("line %d \u00e9\n" % n for n in range(1000))
        self.finish_build(job_id, log=log.encode())
        code, answer = await self.api("GET", "/work/%d/log" % job_id,
                                      template="/work/{job_id}/log")
        self.assertEqual((answer["text"], answer["finished"]), (log, True))
        size = answer["size"]
        code, answer = await self.api("GET", "/work/%d/log?offset=%d"
                                      % (job_id, size - 12),
                                      template="/work/{job_id}/log")
        self.assertEqual(answer["text"], "line 999 \u00e9\n")
        code, answer = await self.api("GET", "/work/%d/log?offset=%d"
                                      % (job_id, size + 5),
                                      template="/work/{job_id}/log")
        self.assertEqual((answer["text"], answer["next_offset"]), ("", size))


class LongPollTests(SiteMixin, TestCase):
    """``?wait=`` on a running build's log, on a task.Clock."""

    def setUp(self):
        super().setUp()
        self.add_chroot()
        self.clock = task.Clock()
        farm = Farm(self.transactor, self.clock, self.file_store,
                    FarmConfig(identity="poll", files_url="http://unset"))
        port = reactor.listenTCP(0, build_site(farm, None),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = "http://127.0.0.1:%d" % port.getHost().port
        self.job = self.queue_build()
        self.query("UPDATE build_queue SET builder = (SELECT id FROM "
                   "builder), build_cookie = 'k', logtail = 'one\n' "
                   "WHERE job = %s RETURNING job", (self.job,))

    async def test_answers_when_the_tail_changes(self):
        d = defer.ensureDeferred(self.api(
            "GET", "/work/%d/log?wait=30" % self.job,
            template="/work/{job_id}/log"))
        await wait_until(lambda: self.clock.getDelayedCalls())
        self.assertFalse(d.called)
        self.query("UPDATE build_queue SET logtail = 'one\ntwo\n' "
                   "WHERE job = %s RETURNING job", (self.job,))
        self.clock.advance(1)
        code, answer = await d
        self.assertEqual((code, answer["live"], answer["text"]),
                         (200, True, "one\ntwo\n"))

    async def test_answers_when_the_wait_is_over(self):
        d = defer.ensureDeferred(self.api(
            "GET", "/work/%d/log?wait=3" % self.job,
            template="/work/{job_id}/log"))
        for _ in range(3):
            await wait_until(lambda: self.clock.getDelayedCalls())
            self.assertFalse(d.called)
            self.clock.advance(1)
        code, answer = await d
        self.assertEqual((code, answer["text"]), (200, "one\n"))
        code, answer = await self.api(
            "GET", "/work/%d/log?wait=31" % self.job,
            template="/work/{job_id}/log")
        self.assertEqual((code, answer["field"]), (400, "query.wait"))


class TokenTests(SiteMixin, TestCase):

    async def test_no_bad_expired_revoked(self):
        """No token where one is needed: 401; a malformed, unknown,
        revoked or expired token: 401 everywhere, reads included."""
        from datetime import timedelta

        code, answer = await self.api("POST", "/jobs", None,
                                      body={"type": "noop"})
        self.assertEqual(code, 401)
        expiring = self.sql(create_token, "brief", "admin", self.now(),
                            self.now() + timedelta(seconds=1))
        self.sql(lambda cur: cur.execute(
            "UPDATE api_token SET expires = now() - interval '1 second' "
            "WHERE name = 'brief'"))
        self.sql(revoke_token, "bob", self.now())
        for token, reason in ((expiring, "expired"),
                              (self.tokens["bob"], "revoked"),
                              ("lp_" + "x" * 43, "unknown"),
                              ("nonsense", "unknown")):
            code, answer = await self.api("GET", "/work", token)
            self.assertEqual(code, 401, reason)
            self.assertIn(reason, answer["error"])
            self.assertNotIn(token, answer["error"])
        code, _, _ = await self.http("GET", "/api/v1/work", headers={
            b"authorization": [b"Basic YWxpY2U6eA=="]})
        self.assertEqual(code, 401)

    async def test_admin_manages_tokens_over_the_api(self):
        """An admin creates a token (shown once), it works, it is listed
        without its secret, and once revoked it is refused."""
        code, created = await self.api("POST", "/tokens", "adam", body={
            "name": "ci", "role": "operator"})
        self.assertEqual(code, 201)
        token = created["token"]
        code, me = await self.api("GET", "/", token)
        self.assertEqual((me["principal"], me["role"]), ("ci", "operator"))
        code, listed = await self.api("GET", "/tokens", "adam")
        self.assertIn("ci", [t["name"] for t in listed["items"]])
        self.assertNotIn(token, json.dumps(listed))
        code, _ = await self.api("DELETE", "/tokens/ci", "adam",
                                 template="/tokens/{name}")
        self.assertEqual(code, 204)
        code, _ = await self.api("GET", "/", token)
        self.assertEqual(code, 401)
        code, answer = await self.api("POST", "/tokens", "adam", body={
            "name": "ci", "role": "operator"})
        self.assertEqual((code, answer["field"]), (400, "body.name"))

    async def test_the_database_never_holds_a_token(self):
        """No row of any table holds a token's text, only its SHA-256."""
        tables = [r[0] for r in self.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for name, token in self.tokens.items():
            for table in tables:
                self.assertEqual(self.query(
                    "SELECT count(*) FROM %s t WHERE t::text LIKE %%s"
                    % table, ("%" + token[3:] + "%",)), [(0,)], table)
            self.assertEqual(self.query(
                "SELECT count(*) FROM api_token WHERE token_sha256 = %s",
                (hashlib.sha256(token.encode()).hexdigest(),)), [(1,)])


class DescriptionTests(SiteMixin, TestCase):

    async def test_served_and_complete(self):
        """/api/v1/openapi.json is the description; every schema it names
        exists, and it is valid JSON Schema (2020-12) throughout."""
        import jsonschema

        code, served = await self.api("GET", "/openapi.json")
        self.assertEqual((code, served), (200, json.loads(json.dumps(
            description()))))
        text = json.dumps(served)
        for name in served["components"]["schemas"]:
            jsonschema.Draft202012Validator.check_schema(
                served["components"]["schemas"][name])
        import re

        for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
            self.assertIn(ref, served["components"]["schemas"])


class BinaryPackageRequestTests(SiteMixin, TestCase):

    async def test_binarypackage_through_the_api(self):
        """A source package uploaded file by file and requested as a
        binarypackage build gets launchpad-buildd's arguments; a request
        without a .dsc is refused naming why."""
        self.add_chroot()
        files = {}
        for name, content in (("hello_1.0.dsc", b"Source: hello\n"),
                              ("hello_1.0.tar.gz", b"tarball")):
            code, _, files[name] = await self.upload(content, name=name)
            self.assertEqual(code, 201)
        code, answer = await self.api("POST", "/builds", "alice", body={
            "build_type": "binarypackage", "processor": "amd64",
            "series": "bookworm", "files": files,
            "args": {"archives": ["deb http://deb.debian.org/debian "
                                  "bookworm main"]}})
        self.assertEqual(code, 201, answer)
        code, work = await self.api("GET", "/" + answer["url"], "alice",
                                    template="/work/{job_id}")
        args = work["build"]["build_args"]
        self.assertEqual((args["suite"], args["ogrecomponent"],
                          args["distribution"]),
                         ("bookworm", "main", "debian"))
        del files["hello_1.0.dsc"]
        code, answer = await self.api("POST", "/builds", "alice", body={
            "build_type": "binarypackage", "processor": "amd64",
            "files": files})
        self.assertEqual(code, 400)
        self.assertIn(".dsc", answer["error"])


class DatabaseGoneTests(SiteMixin, TestCase):

    async def test_unreachable_database_is_503(self):
        """With the database gone, a request that needs it is answered
        503 with Retry-After (nothing was done), never a 500."""
        from lp_services.database.transactor import Transactor

        gone = Transactor("postgresql://127.0.0.1:1/nowhere", max_retries=0)
        gone.start()
        self.addCleanup(gone.stop)
        farm = Farm(gone, reactor, self.file_store,
                    FarmConfig(identity="gone", files_url="http://unset"))
        port = reactor.listenTCP(0, build_site(farm, None),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = "http://127.0.0.1:%d" % port.getHost().port
        for method, path, who in (("GET", "/work", None),
                                  ("GET", "/work/1", "alice"),
                                  ("POST", "/jobs", "olga")):
            code, headers, body = await self.http(
                method, "/api/v1" + path, who,
                body={"type": "noop"} if method == "POST" else None)
            self.assertEqual(code, 503, (path, body))
            self.assertEqual(headers.getRawHeaders(b"retry-after"), [b"10"])


class PageChangesTests(SiteMixin, TestCase):

    async def test_build_page_names_who_changed_it(self):
        """The build page lists its changes with their tokens."""
        self.add_chroot()
        job_id = self.queue_build(requester="alice")
        await self.api("POST", "/work/%d/rescore" % job_id, "olga",
                       body={"score": 99}, template="/work/{job_id}/rescore")
        code, _, page = await self.http("GET", "/builds/%d" % job_id)
        self.assertEqual(code, 200)
        self.assertIn(b"<strong>rescore</strong> by olga: 99", page)


class RoutesTests(TestCase):

    def test_every_route_is_described(self):
        """The Klein routes and the description's operations are the same
        set: no route escapes the rights matrix and the fuzz."""
        import re

        from lp_services.api.app import ApiApp
        from lp_services.api.openapi import OPERATIONS

        routes = set()
        for rule in ApiApp.app.url_map.iter_rules():
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes.add((method.lower(), path))
        self.assertEqual(routes, {(m, p) for m, p, *_ in OPERATIONS})


class JobModelTests(TestCase):

    def test_job_answer_follows_the_job_record(self):
        """The API's Job answer has exactly JobRecord's fields (what `job
        list` prints); it is a model of its own only because the answer
        names the status where the record holds the enum."""
        import dataclasses

        from lp_services.api.models import Job
        from lp_services.job.admin import JobRecord

        self.assertEqual(set(Job.model_fields),
                         {f.name for f in dataclasses.fields(JobRecord)})
