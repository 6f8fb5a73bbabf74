"""Private work, seen from the outside: for its requester, another
submitter, an operator and anonymous, over real HTTP: the API (work,
lists, log, jobs, builders), the status pages (build page, live log,
work list, farm page), the file store (log, results, sources) and
/metrics. Who may not see private work is told it does not exist (404),
and no listing names it."""

import base64

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from lp_services.job.enqueue import enqueue
from tests.api.support import SiteMixin

#: viewer -> may see alice's private work
SEES = {"alice": True, "bob": False, "olga": True, None: False}

SECRET_ARG = "s3cret-build-arg-value"


class PrivateWorkTests(SiteMixin, TestCase):

    def setUp(self):
        super().setUp()
        return defer.Deferred.fromCoroutine(self.asyncSetUp())

    async def asyncSetUp(self):
        self.add_chroot()
        code, _, self.source = await self.upload(
            b"#!/bin/sh\necho private\n", "alice", "build.sh")
        self.assertEqual(code, 201)
        code, answer = await self.api("POST", "/builds", "alice", body={
            "build_type": "script", "processor": "amd64",
            "files": {"build.sh": self.source}, "script": "build.sh",
            "args": {"note": SECRET_ARG}, "private": True})
        self.assertEqual(code, 201)
        self.build = answer["id"]
        self.native = self.sql(enqueue, "noop", {}, requester="alice",
                               private=True)

    async def finish(self):
        """The master collected the build: restricted log and result."""
        self.log_sha1 = self.finish_build(
            self.build, log=b"log of a private build\n",
            files={"out.txt": b"private result\n"}, private=True)
        self.result_sha1 = self.query(
            "SELECT lf.sha1 FROM build_file bf JOIN library_file lf "
            "ON lf.id = bf.library_file WHERE bf.build = %s",
            (self.build,))[0][0]

    async def test_api(self):
        """The work (its build args too), its log, the lists: only alice
        and operators."""
        for who, sees in SEES.items():
            code, work = await self.api("GET", "/work/%d" % self.build, who,
                                        template="/work/{job_id}")
            self.assertEqual(code, 200 if sees else 404, who)
            if sees:
                self.assertEqual(work["build"]["build_args"]["note"],
                                 SECRET_ARG)
        await self.finish()
        for who, sees in SEES.items():
            code, work = await self.api("GET", "/work/%d" % self.build, who,
                                        template="/work/{job_id}")
            self.assertEqual(code, 200 if sees else 404, who)
            if sees:
                self.assertTrue(work["private"])
                self.assertEqual(work["requester"], "alice")

            else:
                self.assertNotIn(SECRET_ARG, str(work))
            code, log = await self.api("GET", "/work/%d/log" % self.build,
                                       who, template="/work/{job_id}/log")
            self.assertEqual(code, 200 if sees else 404, who)
            if sees:
                self.assertEqual(log["text"], "log of a private build\n")
            _, listed = await self.api("GET", "/work?limit=500", who,
                                       template="/work")
            ids = {row["id"] for row in listed["items"]}
            self.assertEqual({self.build, self.native} <= ids, sees, who)
            self.assertEqual(bool({self.build, self.native} & ids), sees, who)
            _, jobs = await self.api("GET", "/jobs?limit=500", who,
                                     template="/jobs")
            self.assertEqual(self.native in {j["id"] for j in jobs["items"]},
                             sees, who)
            # Changing it: another submitter is told it does not exist.
            code, _ = await self.api("POST", "/work/%d/retry" % self.native,
                                     who, template="/work/{job_id}/retry")
            self.assertEqual(code, {"alice": 409, "olga": 409, "bob": 404,
                                    None: 401}[who], who)

    async def test_pages(self):
        """The build page and its live log, the work list and the farm
        page, with a token (Authorization: Bearer) and without."""
        for who, sees in SEES.items():
            code, _, body = await self.http("GET", "/builds/%d" % self.build,
                                            who)
            self.assertEqual(code, 200 if sees else 404, who)
            if not sees:
                self.assertNotIn(SECRET_ARG.encode(), body)
            code, _, _ = await self.http(
                "GET", "/builds/%d/log.json" % self.build, who)
            self.assertEqual(code, 200 if sees else 404, who)
            code, _, body = await self.http("GET", "/jobs/%d" % self.native,
                                            who)
            self.assertEqual(code, 200 if sees else 404, who)
            for page in ("/work", "/"):
                code, _, body = await self.http("GET", page, who)
                self.assertEqual(code, 200, (who, page))
                self.assertEqual(b"builds/%d" % self.build in body, sees,
                                 (who, page))
        code, _, _ = await self.http("GET", "/builds/%d" % self.build,
                                     "lp_not-a-token")
        self.assertEqual(code, 401)

    async def test_running_private_build_on_a_builder(self):
        """A builder running a private build: others see that it builds
        something private, not which build, nor its log."""
        self.query("UPDATE build_queue SET builder = (SELECT id FROM builder),"
                   " build_cookie = 'k', logtail = 'PRIVATE TAIL' "
                   "WHERE job = %s RETURNING job", (self.build,))
        for who, sees in SEES.items():
            _, builders = await self.api("GET", "/builders", who)
            (b1,) = builders["items"]
            self.assertTrue(b1["current_build_private"])
            self.assertEqual(b1["current_build"], self.build if sees
                             else None, who)
            _, _, farm = await self.http("GET", "/", who)
            self.assertEqual(b"PRIVATE TAIL" in farm, sees, who)
            self.assertEqual(b"private build" in farm, not sees, who)

    async def test_files(self):
        """The log, the result and the uploaded source: 404 to whoever may
        not see the build, whatever name is asked for."""
        await self.finish()
        for sha1 in (self.log_sha1, self.result_sha1, self.source):
            for who, sees in SEES.items():
                code, _, body = await self.http(
                    "GET", "/files/%s/x" % sha1, who)
                self.assertEqual(code, 200 if sees else 404, (sha1, who))
                if not sees:
                    self.assertEqual(body, b"no such file\n")
        # A missing file answers the same as a hidden one.
        code, _, body = await self.http("GET", "/files/" + "0" * 40, "bob")
        self.assertEqual((code, body), (404, b"no such file\n"))

    async def test_the_agent_running_the_build_reads_its_files(self):
        """The agent holding the build's cookie reads its source; the
        cookie of another build, or none, does not."""
        self.query("UPDATE build_queue SET builder = (SELECT id FROM builder),"
                   " build_cookie = 'the-cookie' WHERE job = %s RETURNING job",
                   (self.build,))
        other = self.queue_build(requester="bob")
        self.query("UPDATE build_queue SET build_cookie = 'other' "
                   "WHERE job = %s RETURNING job", (other,))

        def basic(user, password):
            return {b"authorization": [b"Basic " + base64.b64encode(
                ("%s:%s" % (user, password)).encode())]}
        for (user, password), allowed in (
                (("build-%d" % self.build, "the-cookie"), True),
                (("build-%d" % self.build, "wrong"), False),
                (("build-%d" % other, "other"), False),
                (("buildd", "the-cookie"), False)):
            code, _, _ = await self.http("GET", "/files/" + self.source,
                                         headers=basic(user, password))
            self.assertEqual(code, 200 if allowed else 404, user)

    async def test_public_use_makes_content_public(self):
        """Content a public build uses is public, whoever uploaded it."""
        code, _, sha1 = await self.upload(b"shared\n", "alice", "s.txt")
        code, _, _ = await self.http("GET", "/files/" + sha1)
        self.assertEqual(code, 404)
        code, _ = await self.api("POST", "/builds", "alice", body={
            "build_type": "script", "processor": "amd64",
            "files": {"build.sh": sha1}, "script": "build.sh"})
        self.assertEqual(code, 201)
        code, _, _ = await self.http("GET", "/files/" + sha1)
        self.assertEqual(code, 200)

    async def test_metrics_name_no_private_work(self):
        """/metrics carries counts by processor, state and master: no
        label names a requester or a build."""
        await self.finish()
        _, _, text = await self.http("GET", "/metrics")
        self.assertNotIn(b"alice", text)
        self.assertNotIn(b'build="%d"' % self.build, text)
        self.assertNotIn(b"requester", text)

    async def test_another_submitters_files_cannot_be_borrowed(self):
        """bob cannot name alice's private upload in his build (it would
        give him the content): the file is unknown to him."""
        code, answer = await self.api("POST", "/builds", "bob", body={
            "build_type": "script", "processor": "amd64",
            "files": {"build.sh": self.source}, "script": "build.sh"})
        self.assertEqual((code, answer["field"]), (400, "body.files"))
