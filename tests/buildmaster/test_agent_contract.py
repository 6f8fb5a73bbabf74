"""One suite, run against every fake agent and the real agent, through
the master's IAgentClient: the fakes are only as good as this proves.

- in-process fakes (FakeAgent over AgentModel), as the scanner tests use;
- the XML-RPC fake on loopback through the real AgentClient (the
  benchmark's fake), which also tests AgentClient itself;
- the real agent (lp_services.slave) on loopback with the sandbox backend
  and a busybox chroot, through the real AgentClient.
"""

import hashlib
import io
import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web import server
from zope.interface.verify import verifyObject

from lp_services.buildmaster.agentclient import AgentClient, AgentError
from lp_services.buildmaster.interfaces import IAgentClient
from lp_services.testing.fakeagents import (
    AbortingAgent,
    AgentModel,
    BrokenAgent,
    BuildingAgent,
    IdleAgent,
    WaitingAgent,
    fake_agents_site,
)
from lp_services.filestore.store import FileStore
from lp_services.filestore.web import FileStoreResource

SCRIPT = b"sleep 1\nprintf 'hi\\n' > out/hi\necho done\n"
RESULT = b"hi\n"


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def sandbox_unavailable():
    try:
        from tests.slave.helpers import sandbox_unavailable as why
    except ImportError:
        return "the builder agent is not available"
    return why()


class _Served:
    """A file store served over HTTP on loopback (what ensurepresent
    fetches from), holding the chroot and the script."""

    def __init__(self, test):
        root = Path(tempfile.mkdtemp(prefix="bm-contract-"))
        test.addCleanup(shutil.rmtree, root, ignore_errors=True)
        self.store = FileStore(root)
        from twisted.web import resource

        top = resource.Resource()
        top.putChild(b"files", FileStoreResource(self.store))
        self.port = reactor.listenTCP(0, server.Site(top),
                                      interface="127.0.0.1")
        test.addCleanup(self.port.stopListening)
        self.base = "http://127.0.0.1:%d/files" % self.port.getHost().port

    def put(self, data):
        digest, _, _ = self.store.put_stream(io.BytesIO(data))
        return digest, "%s/%s" % (self.base, digest)


class AgentContract:
    """The shared suite. Subclasses provide :meth:`make_idle`,
    :meth:`chroot` and :meth:`drive_to_waiting`."""

    def served(self):
        if not hasattr(self, "_served"):
            self._served = _Served(self)
        return self._served

    def chroot(self) -> bytes:
        return b"fake chroot"

    async def start_build(self, agent):
        served = self.served()
        chroot_sha1, chroot_url = served.put(self.chroot())
        script_sha1, script_url = served.put(SCRIPT)
        for digest, url in ((chroot_sha1, chroot_url),
                            (script_sha1, script_url)):
            present, info = await agent.ensurepresent(digest, url, "buildd",
                                                      "ignored")
            self.assertTrue(present, info)
        answer = await agent.build("cookie-1", "script", chroot_sha1,
                                   {"build.sh": script_sha1},
                                   {"script": "build.sh"})
        return answer

    def test_provides_interface(self):
        """The client provides IAgentClient."""
        self.assertTrue(verifyObject(IAgentClient, self.make_idle()))

    async def test_echo_and_info(self):
        """echo echoes; info names the protocol, arch and build types."""
        agent = self.make_idle()
        self.assertEqual(await agent.echo("a", 1), ["a", 1])
        version, arch, types = await agent.info()
        self.assertIsInstance(version, str)
        self.assertEqual(arch, "amd64")
        self.assertIn("script", types)

    async def test_idle_status(self):
        """An idle agent says IDLE and no build."""
        status = await self.make_idle().status()
        self.assertEqual((status.state.short, status.build_id), ("IDLE", None))

    async def test_unknown_sum(self):
        """build() with a chroot not in the cache answers UNKNOWNSUM."""
        answer, info = await self.make_idle().build(
            "cookie-1", "script", "1" * 40, {"x": "2" * 40}, {"script": "x"})
        self.assertEqual(answer, "BuilderStatus.UNKNOWNSUM")

    async def test_unknown_build_type(self):
        """build() of an unknown type answers UNKNOWNBUILDER."""
        agent = self.make_idle()
        digest, url = self.served().put(self.chroot())
        await agent.ensurepresent(digest, url, "buildd", "x")
        answer, info = await agent.build("cookie-1", "nonsense", digest, {},
                                         {})
        self.assertEqual(answer, "BuilderStatus.UNKNOWNBUILDER")

    async def test_clean_and_abort_need_a_build(self):
        """clean() and abort() of an idle agent fail (AgentError)."""
        agent = self.make_idle()
        with self.assertRaises(AgentError):
            await agent.clean()
        with self.assertRaises(AgentError):
            await agent.abort()

    async def test_build_cycle(self):
        """ensurepresent, build -> BUILDING with our cookie; WAITING OK
        with a filemap whose files fetch and verify; clean -> IDLE."""
        agent = self.make_idle()
        answer, info = await self.start_build(agent)
        self.assertEqual(answer, "BuilderStatus.BUILDING")
        status = await agent.status()
        self.assertEqual((status.state.short, status.build_id),
                         ("BUILDING", "cookie-1"))
        with self.assertRaises(AgentError):
            await agent.build("cookie-2", "script", "1" * 40, {}, {})
        await self.drive_to_waiting(agent)
        status = await agent.status()
        self.assertEqual((status.state.short, status.result.short, status.build_id),
                         ("WAITING", "OK", "cookie-1"))
        self.assertEqual(status.filemap, {"hi": sha1(RESULT)})
        out = io.BytesIO()
        await agent.fetch_file(sha1(RESULT), out)
        self.assertEqual(out.getvalue(), RESULT)
        log = io.BytesIO()
        await agent.fetch_file("buildlog", log)
        self.assertTrue(log.getvalue())
        self.assertEqual(await agent.clean(), "BuilderStatus.IDLE")
        self.assertEqual((await agent.status()).state.short, "IDLE")

    async def test_abort(self):
        """abort() while BUILDING answers ABORTING; the build ends
        WAITING ABORTED."""
        agent = self.make_idle()
        await self.start_build(agent)
        self.assertEqual(await agent.abort(), "BuilderStatus.ABORTING")
        await self.drive_aborted(agent)
        status = await agent.status()
        self.assertEqual((status.state.short, status.result.short), ("WAITING", "ABORTED"))


class InProcessFakeTests(AgentContract, TestCase):
    """The suite against the in-process fakes."""

    def make_idle(self):
        self.fake = IdleAgent()
        return self.fake

    async def drive_to_waiting(self, agent):
        agent.model.finish("OK", files={"hi": RESULT})

    async def drive_aborted(self, agent):
        agent.model.aborted()

    def test_named_fakes_play_their_state(self):
        """Each named fake reports the state it is named for, and all
        provide IAgentClient."""
        states = {
            "IDLE": IdleAgent(), "BUILDING": BuildingAgent(),
            "WAITING": WaitingAgent("PACKAGEFAIL"),
            "ABORTING": AbortingAgent()}
        for state, fake in states.items():
            self.assertTrue(verifyObject(IAgentClient, fake))
            self.assertEqual(self.successResultOf(fake.status()).state.short,
                             state)
        broken = BrokenAgent()
        self.assertTrue(verifyObject(IAgentClient, broken))
        self.failureResultOf(broken.status(), AgentError)


class XMLRPCFakeTests(AgentContract, TestCase):
    """The suite against the XML-RPC fake on loopback, through the real
    AgentClient (with Basic auth)."""

    def make_idle(self):
        self.model = AgentModel()
        site = fake_agents_site({"a1": self.model}, {"a1": "s3cret"})
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return AgentClient("http://127.0.0.1:%d/a1" % port.getHost().port,
                           "s3cret", reactor)

    async def drive_to_waiting(self, agent):
        self.model.finish("OK", files={"hi": RESULT})

    async def drive_aborted(self, agent):
        self.model.aborted()

    async def test_wrong_secret(self):
        """A wrong secret is refused (401) and becomes an AgentError."""
        client = self.make_idle()
        wrong = AgentClient(client.url, "wrong", reactor)
        with self.assertRaises(AgentError):
            await wrong.status()

    async def test_bad_hash_refused(self):
        """fetch_file refuses content whose sha1 differs."""
        client = self.make_idle()
        self.model.files["0" * 40] = b"evil"
        with self.assertRaises(AgentError):
            await client.fetch_file("0" * 40, io.BytesIO())

    async def test_timeout(self):
        """A call the agent never answers times out as an AgentError."""
        from twisted.internet.protocol import Factory, Protocol

        factory = Factory.forProtocol(Protocol)  # accepts, never answers
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = AgentClient("http://127.0.0.1:%d" % port.getHost().port,
                             "x", reactor, timeout=0.3)
        with self.assertRaises(AgentError) as caught:
            await client.status()
        self.assertIn("timed out", str(caught.exception))


class RealAgentTests(AgentContract, TestCase):
    """The suite against the real agent (sandbox backend, busybox chroot)."""

    skip = sandbox_unavailable()

    async def asyncSetUp(self):
        from lp_services.testing.agents import TEST_SECRET, start_agent

        tmp = Path(tempfile.mkdtemp(prefix="bm-real-agent-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.running = await start_agent(tmp)
        self.addCleanup(self.running.stop)
        self.client = AgentClient(self.running.base_url, TEST_SECRET, reactor)

    def setUp(self):
        super().setUp()
        return defer.Deferred.fromCoroutine(self.asyncSetUp())

    def make_idle(self):
        return self.client

    def chroot(self):
        from lp_services.slave.busybox_chroot import busybox_chroot

        return busybox_chroot(fmt="gz").read_bytes()

    async def drive_to_waiting(self, agent):
        from lp_services.protocol.states import BuilderStatus

        await self.running.agent.wait_for(BuilderStatus.WAITING)

    drive_aborted = drive_to_waiting
