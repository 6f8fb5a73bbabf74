"""Our agent driven as Launchpad's master drives a builder: the calls
BuilderWorker (lib/lp/buildmaster/interactor.py in Launchpad's source)
makes, method by method, with its argument shapes: an XML-RPC proxy with
``allowNone`` and no credentials, files fetched by a plain GET of
``<builder>/filecache/<sha1>``; the agent trusting the master's network.

Launchpad's own code needs all of Launchpad to import, so the worker
here is ours, written from that file; tests/slow/buildmaster/
test_launchpad_buildd.py checks our reading of the protocol against the
real launchpad-buildd from the other side."""

import base64
import xmlrpc.client
from io import BytesIO

from twisted.internet import defer, reactor, task
from twisted.web import resource, server
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from tests.slave.helpers import AgentTestCase, sha1_of
from tests.slave.test_binarypackage import _dsc_text

MASTER_ADDRESS = "127.0.0.2"
TOKEN = b"restricted-token"
CHROOT = b"a chroot the build never unpacks"
TARBALL = b"the source tarball"


class LaunchpadStyleWorker:
    """BuilderWorker's calls, from MASTER_ADDRESS, without credentials."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.http = Agent(reactor, bindAddress=(MASTER_ADDRESS, 0))

    @defer.inlineCallbacks
    def call(self, method, *args):
        body = xmlrpc.client.dumps(args, method, allow_none=True).encode()
        response = yield self.http.request(
            b"POST", (self.url + "/rpc").encode(),
            Headers({b"Content-Type": [b"text/xml"]}),
            FileBodyProducer(BytesIO(body)))
        content = yield readBody(response)
        if response.code != 200:
            raise AssertionError("%s: HTTP %d %r" % (method, response.code,
                                                     content[:200]))
        (answer,), _ = xmlrpc.client.loads(content, use_builtin_types=True)
        return answer

    @defer.inlineCallbacks
    def getFile(self, sha1):
        response = yield self.http.request(
            b"GET", ("%s/filecache/%s" % (self.url, sha1)).encode())
        content = yield readBody(response)
        return response.code, content


class RestrictedFiles(resource.Resource):
    """Files that need HTTP Basic with an empty username and TOKEN as the
    password (how Launchpad's master lets a builder fetch a private
    archive's files), and one public file."""

    isLeaf = True

    def __init__(self, files):
        super().__init__()
        self.files = files

    def render_GET(self, request):
        name = request.path.decode().lstrip("/")
        if name.startswith("private/"):
            expected = b"Basic " + base64.b64encode(b":" + TOKEN)
            if request.getHeader(b"authorization") != expected:
                request.setResponseCode(401)
                return b"credentials needed"
            name = name[len("private/"):]
        if name not in self.files:
            request.setResponseCode(404)
            return b"no such file"
        return self.files[name]


class LaunchpadSequenceTests(AgentTestCase):
    """One binarypackage build, start to clean, as Launchpad does it."""

    config_overrides = {"trusted_networks": MASTER_ADDRESS + "/32"}

    def serve(self, files):
        port = reactor.listenTCP(0, server.Site(RestrictedFiles(files)),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return "http://127.0.0.1:%d" % port.getHost().port

    @defer.inlineCallbacks
    def test_a_build_the_way_launchpad_runs_it(self):
        """echo, info, status; ensurepresent of a restricted file (empty
        username, token password) and a public one; build() with the
        arguments Launchpad sends for a private archive; status until
        WAITING with the keys launchpad-buildd sends; the log fetched from
        the file cache with the archive's credentials scrubbed; clean()
        back to IDLE. All without credentials, from the trusted network."""
        dsc = _dsc_text({"hello_1.0.tar.xz": b"another tarball"}).encode()
        files = {"chroot.tar.gz": CHROOT, "hello_1.0.dsc": dsc,
                 "hello_1.0.tar.xz": TARBALL}
        base = self.serve(files)
        worker = LaunchpadStyleWorker(self.running.base_url)

        self.assertEqual(["ping"], (yield worker.call("echo", "ping")))
        protocol, arch, types = yield worker.call("info")
        self.assertEqual(("1.0", "amd64"), (protocol, arch))
        self.assertIn("binarypackage", types)
        self.assertEqual({"builder_status": "BuilderStatus.IDLE"},
                         {k: v for k, v in (yield worker.call("status"))
                          .items() if k != "builder_version"})

        # BuilderWorker.sendFileToWorker: restricted files with an empty
        # username and a token; public ones with no credentials.
        present = yield worker.call(
            "ensurepresent", sha1_of(CHROOT), base + "/private/chroot.tar.gz",
            "", TOKEN.decode())
        self.assertEqual(True, present[0], present)
        for name in ("hello_1.0.dsc", "hello_1.0.tar.xz"):
            present = yield worker.call("ensurepresent", sha1_of(files[name]),
                                        base + "/" + name, "", "")
            self.assertEqual(True, present[0], present)
        refused = yield worker.call(
            "ensurepresent", sha1_of(b"x"), base + "/private/nothing", "", "")
        self.assertEqual(False, refused[0])

        secret_url = "https://buildd:s3cr3t@private-ppa.launchpad.test/+build/7"
        args = {
            "arch_tag": "amd64", "archive_private": True,
            "build_url": secret_url, "builder_constraints": [],
            "fast_cleanup": False, "series": "bookworm",
            "launchpad_instance": "production",
            "launchpad_server_url": "launchpad.test", "image_type": "chroot",
            "arch_indep": True, "suite": "bookworm", "archive_purpose": "PPA",
            "ogrecomponent": "main", "build_debug_symbols": False,
            "archives": ["deb https://buildd:s3cr3t@private-ppa.launchpad.test"
                         "/ubuntu bookworm main"],
            "trusted_keys": [base64.b64encode(b"-----BEGIN PGP PUBLIC KEY "
                                              b"BLOCK-----\n").decode()],
            "distribution": "debian"}
        filemap = {n: sha1_of(files[n])
                   for n in ("hello_1.0.dsc", "hello_1.0.tar.xz")}
        answer = yield worker.call("build", "7-1", "binarypackage",
                                   sha1_of(CHROOT), filemap, args)
        self.assertEqual(["BuilderStatus.BUILDING", "7-1"], answer)

        status = None
        for _ in range(600):
            status = yield worker.call("status")
            if status["builder_status"] == "BuilderStatus.WAITING":
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual("BuildStatus.PACKAGEFAIL", status["build_status"])
        self.assertEqual("7-1", status["build_id"])
        self.assertIn("dependencies", status)
        self.assertIsInstance(status["filemap"], dict)

        code, log = yield worker.getFile("buildlog")
        self.assertEqual(200, code)
        self.assertIn(b"private-ppa.launchpad.test/+build/7", log)
        self.assertNotIn(b"s3cr3t", log)
        self.assertIn(b"source package refused", log)
        self.assertEqual("BuilderStatus.IDLE", (yield worker.call("clean")))
