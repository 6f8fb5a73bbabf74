"""Shared helpers of the agent's tests."""

import base64
import hashlib
import os
import shutil
import tempfile
import xmlrpc.client
from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase
from twisted.web import server, static
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from lp_services.slave.busybox_chroot import busybox_chroot
from lp_services.protocol.states import BuilderStatus
from lp_services.testing.agents import TEST_SECRET, make_test_config, start_agent
from lp_services.slave.tree import remove_tree
from lp_services.slave.volume import detach_mounts


def remove_test_dir(path: Path) -> None:
    """Remove a test's directory even if a failed test left a build's
    work volume mounted or a tree too deep for shutil.rmtree in it."""
    detach_mounts(path)
    remove_tree(path)


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def sandbox_unavailable() -> str | None:
    """Why real sandbox tests cannot run here, or None."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


def busybox_tarball(fmt: str = "gz") -> Path:
    """The cached busybox chroot tarball."""
    return busybox_chroot(fmt=fmt)


class AgentTestCase(TestCase):
    """Starts a real agent on loopback (auth on) for each test."""

    config_overrides: dict = {}

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix="lp-agent-test-"))
        self.addCleanup(remove_test_dir, self.tmp)
        self.config = make_test_config(self.tmp, **self.config_overrides)
        self.running = yield start_agent(config=self.config,
                                         **self.agent_kwargs())
        self.addCleanup(self.running.stop)
        self.agent = self.running.agent
        self.proxy = self.running.proxy()

    def agent_kwargs(self) -> dict:
        return {}

    def call(self, method, *args):
        """callRemote over real XML-RPC with the secret."""
        return self.proxy.callRemote(method, *args)

    def blocking_proxy(self, secret=TEST_SECRET):
        """An xmlrpc.client proxy (use it from a thread)."""
        url = self.running.rpc_url.replace("http://",
                                           "http://buildd:%s@" % secret)
        return xmlrpc.client.ServerProxy(url, allow_none=True)

    def seed(self, data: bytes) -> str:
        """Put ``data`` straight into the agent's cache; return its sha1."""
        sha1 = sha1_of(data)
        path = self.agent.cache.path_for(sha1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return sha1

    def seed_chroot(self, fmt: str = "gz") -> str:
        return self.seed(busybox_tarball(fmt).read_bytes())

    def wait_for(self, state: BuilderStatus, timeout: float = 60.0):
        d = self.agent.wait_for(state)
        d.addTimeout(timeout, reactor)
        return d

    @defer.inlineCallbacks
    def fetch(self, path, authorization: bytes | None = b""):
        """GET ``path`` from the agent; ``authorization`` "" = the right
        Basic header, None = none, else that header. Fires (code, body)."""
        if authorization == b"":
            authorization = b"Basic " + base64.b64encode(
                b"buildd:" + self.config.secret.encode())
        headers = Headers()
        if authorization is not None:
            headers.addRawHeader(b"Authorization", authorization)
        response = yield Agent(reactor).request(
            b"GET", (self.running.base_url + path).encode(), headers)
        body = yield readBody(response)
        return response.code, body

    def in_thread(self, f, *args):
        return threads.deferToThread(f, *args)


def serve_directory(test: TestCase, directory: Path):
    """Serve ``directory`` over HTTP on loopback for the test's life;
    return the base URL."""
    site = server.Site(static.File(str(directory)))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    return "http://127.0.0.1:%d" % port.getHost().port


def processes_matching(marker: str) -> list[int]:
    """Pids on the host whose command line contains ``marker``."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


class ScriptBuildTestCase(AgentTestCase):
    """Runs ``script`` builds in the real sandbox with the busybox chroot."""

    skip = sandbox_unavailable()
    chroot_format = "gz"

    def setUp(self):
        d = super().setUp()
        return d.addCallback(lambda _: self._seed_chroot())

    def _seed_chroot(self):
        self.chroot = self.seed_chroot(self.chroot_format)

    @defer.inlineCallbacks
    def start_script(self, script: str, build_id: str = "s-1",
                     extra: dict | None = None, chroot: str | None = None,
                     args: dict | None = None):
        """Start a script build over XML-RPC (``args`` added to its
        arguments); fire with the build dir."""
        files = {"build.sh": self.seed(script.encode())}
        for name, data in (extra or {}).items():
            files[name] = self.seed(data)
        result = yield self.call("build", build_id, "script",
                                 chroot or self.chroot, files,
                                 {"script": "build.sh", **(args or {})})
        self.assertEqual(result, ["BuilderStatus.BUILDING", build_id])
        return self.config.work_dir / build_id

    @defer.inlineCallbacks
    def run_script(self, script: str, build_id: str = "s-1", **kw):
        """Run a script to WAITING; fire with (status, log, results) where
        results maps each filemap name to its bytes. Does not clean."""
        build_dir = yield self.start_script(script, build_id, **kw)
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        log = (build_dir / "buildlog").read_bytes()
        results = {name: self.agent.cache.path_for(sha1).read_bytes()
                   for name, sha1 in status.get("filemap", {}).items()}
        return status, log, results
