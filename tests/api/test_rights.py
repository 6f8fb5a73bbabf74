"""Every endpoint of /api/v1/ with every role (anonymous, a submitter on
its own work, another submitter, an operator, an admin): the answer each
gets, and that a refused request writes nothing (database and file store
unchanged)."""

from twisted.trial.unittest import TestCase

from lp_services.api.openapi import OPERATIONS
from lp_services.auth.tokens import create_token
from lp_services.job.admin import cancel_job
from lp_services.job.enqueue import enqueue
from tests.api.support import RECIPE, SiteMixin, files_in, snapshot

#: Who asks: None is anonymous; alice owns the work; bob is another
#: submitter.
WHO = (None, "alice", "bob", "olga", "adam")


def expect(anonymous, owner, other, operator, admin):
    return dict(zip(WHO, (anonymous, owner, other, operator, admin)))


READ = expect(200, 200, 200, 200, 200)
OWN = expect(401, 200, 403, 200, 200)
OPERATOR = expect(401, 403, 403, 200, 200)
SUBMIT = expect(401, 201, 201, 201, 201)
ADMIN = expect(401, 403, 403, 403, 403)


class RightsTests(SiteMixin, TestCase):

    def setUp(self):
        super().setUp()
        self.add_chroot()

    # Fixtures, made afresh for each call: (path, body, raw).

    def public_build(self, who):
        return "/work/%d" % self.queue_build(requester="alice")

    def failed_job(self, who):
        job_id = self.sql(enqueue, "noop", {}, requester="alice")
        self.sql(cancel_job, job_id, self.now())
        return job_id

    async def build_body(self, who):
        code, _, sha1 = await self.upload(b"#!/bin/sh\necho %s\n" % (
            (who or "x").encode()), token=who or "alice", name="build.sh")
        return {"build_type": "script", "processor": "amd64",
                "files": {"build.sh": sha1}, "script": "build.sh"}

    async def case(self, method, template, who):
        """(path, body, raw) of one call of ``method template`` by ``who``."""
        if template in ("/", "/openapi.json", "/work", "/jobs", "/builders",
                        "/tokens") and method in ("get",):
            return template, None, None
        if template == "/work/{job_id}":
            return self.public_build(who), None, None
        if template == "/work/{job_id}/log":
            return self.public_build(who) + "/log", None, None
        if template == "/work/{job_id}/cancel":
            return self.public_build(who) + "/cancel", None, None
        if template == "/work/{job_id}/rescore":
            return self.public_build(who) + "/rescore", {"score": 7}, None
        if template == "/work/{job_id}/retry":
            return "/work/%d/retry" % self.failed_job(who), None, None
        if template == "/builds":
            return template, await self.build_body(who), None
        if template == "/recipes":
            return template, {"recipe": RECIPE}, None
        if template == "/jobs":
            return template, {"type": "noop"}, None
        if template == "/builders/{name}/mode":
            return "/builders/b1/mode", {"mode": "disable",
                                         "reason": "test"}, None
        if template == "/files/{sha1}":
            import hashlib

            content = b"an upload by %s\n" % (who or "nobody").encode()
            return ("/files/%s?name=u.txt" % hashlib.sha1(
                content).hexdigest(), None, content)
        if template == "/tokens":
            return template, {"name": "new-%s" % (who or "x"),
                              "role": "submitter"}, None
        if template == "/tokens/{name}":
            name = "victim-%s" % (who or "x")
            self.sql(create_token, name, "submitter", self.now())
            return "/tokens/" + name, None, None
        raise AssertionError("no fixture for %s %s" % (method, template))

    EXPECTED = {
        ("get", "/"): READ,
        ("get", "/openapi.json"): READ,
        ("get", "/work"): READ,
        ("get", "/work/{job_id}"): READ,
        ("get", "/work/{job_id}/log"): READ,
        ("post", "/work/{job_id}/cancel"): OWN,
        ("post", "/work/{job_id}/retry"): OWN,
        ("post", "/work/{job_id}/rescore"): OPERATOR,
        ("post", "/builds"): SUBMIT,
        ("post", "/recipes"): SUBMIT,
        ("post", "/jobs"): SUBMIT,
        ("get", "/jobs"): READ,
        ("get", "/builders"): READ,
        ("post", "/builders/{name}/mode"): OPERATOR,
        ("put", "/files/{sha1}"): SUBMIT,
        ("get", "/tokens"): dict(ADMIN, adam=200),
        ("post", "/tokens"): dict(ADMIN, adam=201),
        ("delete", "/tokens/{name}"): dict(ADMIN, adam=204),
    }

    def test_every_operation_is_in_the_matrix(self):
        """A new endpoint cannot be added without its row here."""
        described = {(m, p) for m, p, *_ in OPERATIONS}
        self.assertEqual(described, set(self.EXPECTED))

    async def test_every_endpoint_with_every_role(self):
        """Each role gets exactly its answer from each endpoint, every
        answer has its described shape, and a refused call changes
        neither the database nor the file store."""
        got, want = {}, {}
        for (method, template), expected in sorted(self.EXPECTED.items()):
            for who in WHO:
                path, body, raw = await self.case(method, template, who)
                before = snapshot(self), files_in(self.file_store.root)
                code, _ = await self.api(method.upper(), path, who, body=body,
                                         raw=raw, template=template)
                key = (method, template, who)
                got[key], want[key] = code, expected[who]
                if code >= 400:
                    self.assertEqual(
                        (snapshot(self), files_in(self.file_store.root)),
                        before, "%s changed something" % (key,))
        self.assertEqual(
            {k: v for k, v in got.items() if v != want[k]}, {},
            "answers that differ from the matrix (expected: %s)"
            % {k: want[k] for k in got if got[k] != want[k]})

    async def test_changes_name_their_token(self):
        """Each change is recorded with the token that made it, and
        shown by the work's answer."""
        job_id = self.queue_build(requester="alice")
        code, _ = await self.api("POST", "/work/%d/rescore" % job_id, "olga",
                                 body={"score": 12},
                                 template="/work/{job_id}/rescore")
        self.assertEqual(code, 200)
        code, _ = await self.api("POST", "/work/%d/cancel" % job_id, "alice",
                                 template="/work/{job_id}/cancel")
        self.assertEqual(code, 200)
        code, work = await self.api("GET", "/work/%d" % job_id, "alice",
                                    template="/work/{job_id}")
        self.assertEqual([(c["actor"], c["action"], c["detail"])
                          for c in work["changes"]],
                         [("olga", "rescore", "12"), ("alice", "cancel", None)])
        await self.api("POST", "/builders/b1/mode", "olga",
                       body={"mode": "manual"},
                       template="/builders/{name}/mode")
        self.assertEqual(self.query(
            "SELECT c.actor, c.action FROM change_log c "
            "JOIN builder b ON b.id = c.builder"), [("olga", "manual")])
