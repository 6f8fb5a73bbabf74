"""End to end: ensurepresent a busybox chroot over HTTP, build a script
that writes two files, fetch them through /filecache and check them."""

import hashlib

from twisted.internet import defer

from lp_services.protocol.states import BuilderStatus

from tests.slave.helpers import (
    AgentTestCase, busybox_tarball, sandbox_unavailable, serve_directory,
    sha1_of)

SCRIPT = b"""\
set -e
printf 'first result\\n' > out/one.txt
i=0; while [ $i -lt 1000 ]; do echo "line $i"; i=$((i+1)); done > out/two.log
echo built
"""


class EndToEndTests(AgentTestCase):
    """The whole path over real XML-RPC, HTTP and the real sandbox."""

    skip = sandbox_unavailable()

    @defer.inlineCallbacks
    def test_script_build_results_fetched_by_sha1(self):
        """A chroot downloaded by ensurepresent and a script's two output
        files come back through /filecache with the hashes in filemap."""
        tarball = busybox_tarball("gz")
        base = serve_directory(self, tarball.parent)
        chroot_sha1 = hashlib.sha1(tarball.read_bytes()).hexdigest()
        result = yield self.call("ensurepresent", chroot_sha1,
                                 base + "/" + tarball.name, None, None)
        self.assertEqual(result, [True, "Download"])
        script_sha1 = sha1_of(SCRIPT)
        path = self.agent.cache.path_for(script_sha1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SCRIPT)
        started = yield self.call("build", "e2e-1", "script", chroot_sha1,
                                  {"build.sh": script_sha1},
                                  {"script": "build.sh", "series": "x"})
        self.assertEqual(started, ["BuilderStatus.BUILDING", "e2e-1"])
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.OK", status)
        filemap = status["filemap"]
        self.assertEqual(sorted(filemap), ["one.txt", "two.log"])
        for name, sha1 in filemap.items():
            code, body = yield self.fetch("/filecache/" + sha1)
            self.assertEqual(code, 200)
            self.assertEqual(hashlib.sha1(body).hexdigest(), sha1)
        code, body = yield self.fetch("/filecache/" + filemap["one.txt"])
        self.assertEqual(body, b"first result\n")
        code, log = yield self.fetch("/filecache/buildlog")
        self.assertIn(b"built", log)
        for step in (b"=== unpack", b"=== build", b"=== collect"):
            self.assertIn(step, log)
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        for sha1 in filemap.values():
            self.assertFalse(self.agent.cache.has(sha1))
        self.assertTrue(self.agent.cache.has(chroot_sha1))
        code, _ = yield self.fetch("/filecache/buildlog")
        self.assertEqual(code, 404)
