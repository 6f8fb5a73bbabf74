"""Protocol conformance over real XML-RPC on loopback, auth on: every
method in every state and every error return (PROTOCOL.md)."""

import base64
import os
from io import BytesIO
from xmlrpc.client import Binary, Fault

from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from lp_services.slave.manager import BuildOutcome
from lp_services.protocol.states import BuilderStatus, BuildStatus

from tests.slave.helpers import AgentTestCase
from tests.slave.hold import HoldBuildManager, hold_registry

GOOD_SHA1 = "0" * 40


class ProtocolTestCase(AgentTestCase):
    """An agent with the ``hold`` build type and a chroot in the cache."""

    def agent_kwargs(self):
        return {"registry": hold_registry()}

    def setUp(self):
        d = super().setUp()
        return d.addCallback(lambda _: self._seed())

    def _seed(self):
        self.chroot = self.seed(b"pretend chroot")
        self.file = self.seed(b"a source file")

    @defer.inlineCallbacks
    def assertFault(self, code, method, *args, fragment=""):
        """The call fails with Fault(code) whose message has fragment."""
        fault = yield self.assertFailure(self.call(method, *args), Fault)
        self.assertEqual(fault.faultCode, code, fault.faultString)
        self.assertIn(fragment, fault.faultString)
        return fault

    @defer.inlineCallbacks
    def start_hold(self, build_id="b-1", log="held\n", **args):
        args.setdefault("log", log)
        result = yield self.call("build", build_id, "hold", self.chroot,
                                 {"src.tar": self.file}, args)
        self.assertEqual(result, ["BuilderStatus.BUILDING", build_id])
        return HoldBuildManager.instances[-1]

    @defer.inlineCallbacks
    def to_waiting(self, outcome, **kw):
        manager = yield self.start_hold(**kw)
        manager.finish.callback(outcome)
        yield self.wait_for(BuilderStatus.WAITING)
        return manager


class IdleTests(ProtocolTestCase):
    """IDLE: every method, and every way build() refuses."""

    @defer.inlineCallbacks
    def test_echo(self):
        """echo returns its arguments, any number, any type."""
        self.assertEqual((yield self.call("echo")), [])
        self.assertEqual((yield self.call("echo", 1, "two", [3], {"f": 4.0},
                                          None, True)),
                         [1, "two", [3], {"f": 4.0}, None, True])

    @defer.inlineCallbacks
    def test_info(self):
        """info gives the protocol version, arch tag and build types."""
        self.assertEqual((yield self.call("info")),
                         ["1.0", "amd64", ["binarypackage", "hold", "script"]])

    @defer.inlineCallbacks
    def test_status(self):
        """IDLE status has exactly builder_status and builder_version."""
        status = yield self.call("status")
        self.assertEqual(sorted(status), ["builder_status", "builder_version"])
        self.assertEqual(status["builder_status"], "BuilderStatus.IDLE")

    @defer.inlineCallbacks
    def test_abort_and_clean_refused(self):
        """abort and clean are Faults (code 2) in IDLE; still IDLE."""
        yield self.assertFault(2, "abort", fragment="IDLE")
        yield self.assertFault(2, "clean", fragment="IDLE")
        self.assertIs(self.agent.state, BuilderStatus.IDLE)

    @defer.inlineCallbacks
    def test_ensurepresent_answers(self):
        """Cache hit, No URL, and refusals of bad arguments."""
        self.assertEqual((yield self.call("ensurepresent", self.chroot,
                                          None, None, None)), [True, "Cache"])
        self.assertEqual((yield self.call("ensurepresent", GOOD_SHA1, "",
                                          None, None)), [False, "No URL"])
        self.assertEqual((yield self.call("ensurepresent", GOOD_SHA1, None)),
                         [False, "No URL"])
        yield self.assertFault(5, "ensurepresent", "ABC", None, None, None,
                               fragment="sha1")
        yield self.assertFault(5, "ensurepresent", "A" * 40, None, None, None)
        yield self.assertFault(5, "ensurepresent", 42, None, None, None)
        yield self.assertFault(1, "ensurepresent", GOOD_SHA1, 7, None, None,
                               fragment="url")
        yield self.assertFault(1, "ensurepresent", GOOD_SHA1, "x" * 9000,
                               None, None, fragment="longer")
        yield self.assertFault(1, "ensurepresent", GOOD_SHA1, None, [], None)
        yield self.assertFault(1, "ensurepresent", fragment="takes 2 to 4")
        yield self.assertFault(1, "ensurepresent", 1, 2, 3, 4, 5)

    @defer.inlineCallbacks
    def test_unknown_method(self):
        """An unknown method is Twisted's Fault 8001."""
        yield self.assertFault(8001, "reboot")
        yield self.assertFault(8001, "_private")

    @defer.inlineCallbacks
    def test_wrong_argument_counts(self):
        """Every fixed-arity method refuses a wrong count (Fault 1)."""
        for method, args in [("info", (1,)), ("status", (1,)),
                             ("abort", (1,)), ("clean", (1, 2)),
                             ("build", ("x",)), ("build", (1,) * 6)]:
            yield self.assertFault(1, method, *args, fragment="arguments")
        self.assertIs(self.agent.state, BuilderStatus.IDLE)

    @defer.inlineCallbacks
    def test_build_refusals_leave_idle_and_nothing_on_disk(self):
        """Each invalid build() is a Fault with its code and a clear
        message; the agent stays IDLE and no build directory appears."""
        c, f = self.chroot, {"src.tar": self.file}
        cases = [
            (3, ("", "hold", c, f, {}), "non-empty"),
            (3, (None, "hold", c, f, {}), "non-empty"),
            (3, ("../x", "hold", c, f, {}), "unsafe"),
            (3, ("a/b", "hold", c, f, {}), "unsafe"),
            (3, ("x" * 300, "hold", c, f, {}), "unsafe"),
            (3, (".hidden", "hold", c, f, {}), "unsafe"),
            (1, ("b", 5, c, f, {}), "build type"),
            (5, ("b", "hold", "nothex", f, {}), "chroot sha1"),
            (5, ("b", "hold", None, f, {}), "chroot sha1"),
            (1, ("b", "hold", c, [], {}), "filemap"),
            (4, ("b", "hold", c, {"../etc/passwd": self.file}, {}), "unsafe"),
            (4, ("b", "hold", c, {"a/b": self.file}, {}), "unsafe"),
            (4, ("b", "hold", c, {"..": self.file}, {}), "unsafe"),
            (4, ("b", "hold", c, {"": self.file}, {}), "unsafe"),
            (4, ("b", "hold", c, {"x" * 256: self.file}, {}), "longer"),
            (4, ("b", "hold", c, {"a\nb": self.file}, {}), "unsafe"),
            (4, ("b", "hold", c, {"out": self.file}, {}), "output"),
            (5, ("b", "hold", c, {"x": "nope"}, {}), "sha1 of x"),
            (1, ("b", "hold", c, f, []), "args must be"),
            (1, ("b", "hold", c, f, {"archives": "deb x"}), "archives"),
            (1, ("b", "hold", c, f, {"archives": [1]}), "list of strings"),
            (1, ("b", "hold", c, f, {"fast_cleanup": "yes"}), "fast_cleanup"),
            (1, ("b", "hold", c, f, {"bad": 1}), "refused"),
            (1, ("b", "hold", c, f, {"needs": ["missing"]}), "not in the filemap"),
            (1, ("b", "script", c, f, {}), "script"),
            (1, ("b", "script", c, f, {"script": "../x"}), "script"),
            (1, ("b", "script", c, f, {"script": "other"}), "not in the filemap"),
        ]
        for code, args, fragment in cases:
            yield self.assertFault(code, "build", *args, fragment=fragment)
            self.assertIs(self.agent.state, BuilderStatus.IDLE)
        self.assertEqual(os.listdir(self.config.work_dir), [])

    @defer.inlineCallbacks
    def test_unknown_builder_and_unknown_sum(self):
        """An unknown build type answers UNKNOWNBUILDER; a chroot or file
        missing from the cache answers UNKNOWNSUM naming it; still IDLE."""
        result = yield self.call("build", "b", "livefs", self.chroot,
                                 {}, {})
        self.assertEqual(result[0], "BuilderStatus.UNKNOWNBUILDER")
        self.assertIn("livefs", result[1])
        result = yield self.call("build", "b", "hold", "1" * 40, {}, {})
        self.assertEqual(result, ["BuilderStatus.UNKNOWNSUM",
                                  "chroot %s is not in the cache" % ("1" * 40)])
        result = yield self.call("build", "b", "hold", self.chroot,
                                 {"x.dsc": "2" * 40}, {})
        self.assertEqual(result[0], "BuilderStatus.UNKNOWNSUM")
        self.assertIn("x.dsc", result[1])
        self.assertIs(self.agent.state, BuilderStatus.IDLE)
        self.assertEqual(os.listdir(self.config.work_dir), [])


class BuildingTests(ProtocolTestCase):
    """BUILDING and ABORTING."""

    @defer.inlineCallbacks
    def test_building_status_and_logtail(self):
        """BUILDING status has build_id and logtail: Binary, exactly the
        last 2048 bytes of the log."""
        body = "".join("log line %05d\n" % i for i in range(500))
        yield self.start_hold("b-7", log=body)
        status = yield self.call("status")
        self.assertEqual(status["builder_status"], "BuilderStatus.BUILDING")
        self.assertEqual(status["build_id"], "b-7")
        self.assertIsInstance(status["logtail"], Binary)
        self.assertEqual(status["logtail"].data, body.encode()[-2048:])
        self.assertEqual(sorted(status), ["build_id", "builder_status",
                                          "builder_version", "logtail"])

    @defer.inlineCallbacks
    def test_building_refuses_build_and_clean(self):
        """build and clean are Faults (code 2) while BUILDING; echo, info
        and ensurepresent still answer."""
        yield self.start_hold()
        yield self.assertFault(2, "build", "b-2", "hold", self.chroot, {}, {},
                               fragment="BUILDING")
        yield self.assertFault(2, "clean", fragment="BUILDING")
        self.assertEqual((yield self.call("echo", "x")), ["x"])
        self.assertEqual((yield self.call("info"))[0], "1.0")
        self.assertEqual((yield self.call("ensurepresent", self.chroot, None,
                                          None, None)), [True, "Cache"])
        self.assertIs(self.agent.state, BuilderStatus.BUILDING)

    @defer.inlineCallbacks
    def test_abort_path(self):
        """abort -> ABORTING (status has only build_id), a second abort is a
        no-op, build/clean refused; when the build stops -> WAITING with
        ABORTED and no filemap; clean -> IDLE."""
        manager = yield self.start_hold("b-9")
        self.assertEqual((yield self.call("abort")), "BuilderStatus.ABORTING")
        self.assertTrue(manager.aborted)
        status = yield self.call("status")
        self.assertEqual(status, {"builder_status": "BuilderStatus.ABORTING",
                                  "builder_version": status["builder_version"],
                                  "build_id": "b-9"})
        self.assertEqual((yield self.call("abort")), "BuilderStatus.ABORTING")
        yield self.assertFault(2, "build", "b", "hold", self.chroot, {}, {})
        yield self.assertFault(2, "clean", fragment="ABORTING")
        manager.finish.callback(BuildOutcome(BuildStatus.OK, {"x": "3" * 40}))
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.ABORTED")
        self.assertNotIn("filemap", status)
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        self.assertTrue(manager.destroyed)

    @defer.inlineCallbacks
    def test_buildlog_served_while_building(self):
        """/filecache/buildlog serves the whole log as it grows."""
        manager = yield self.start_hold(log="first\n")
        code, body = yield self.fetch("/filecache/buildlog")
        self.assertEqual(code, 200)
        self.assertIn(b"first\n", body)
        manager.ctx.log.write(b"second\n" * 1000)
        code, body2 = yield self.fetch("/filecache/buildlog")
        self.assertTrue(body2.startswith(body))
        self.assertTrue(body2.endswith(b"second\n" * 1000))


class WaitingTests(ProtocolTestCase):
    """WAITING: status per result, refusals, clean."""

    @defer.inlineCallbacks
    def test_status_per_result(self):
        """OK, PACKAGEFAIL and DEPFAIL carry filemap and dependencies
        (empty unless DEPFAIL, as launchpad-buildd sends them);
        CHROOTFAIL, BUILDERFAIL, GIVENBACK neither."""
        cases = [
            (BuildOutcome(BuildStatus.OK, {"a.deb": "4" * 40}),
             {"filemap": {"a.deb": "4" * 40}, "dependencies": ""}),
            (BuildOutcome(BuildStatus.PACKAGEFAIL, {}),
             {"filemap": {}, "dependencies": ""}),
            (BuildOutcome(BuildStatus.DEPFAIL, {}, "libfoo (>= 1)"),
             {"filemap": {}, "dependencies": "libfoo (>= 1)"}),
            (BuildOutcome(BuildStatus.CHROOTFAIL), {}),
            (BuildOutcome(BuildStatus.BUILDERFAIL), {}),
            (BuildOutcome(BuildStatus.GIVENBACK), {}),
        ]
        for i, (outcome, extra) in enumerate(cases):
            yield self.to_waiting(outcome, build_id="w-%d" % i)
            status = yield self.call("status")
            expected = {"builder_status": "BuilderStatus.WAITING",
                        "builder_version": status["builder_version"],
                        "build_id": "w-%d" % i,
                        "build_status": outcome.status.value}
            expected.update(extra)
            self.assertEqual(status, expected)
            self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")

    @defer.inlineCallbacks
    def test_manager_failure_is_builderfail(self):
        """A build manager that errbacks ends in WAITING/BUILDERFAIL."""
        manager = yield self.start_hold()
        manager.finish.errback(RuntimeError("manager bug"))
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.BUILDERFAIL")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_waiting_refusals(self):
        """build and abort are Faults (code 2) while WAITING."""
        yield self.to_waiting(BuildOutcome(BuildStatus.OK))
        yield self.assertFault(2, "build", "b", "hold", self.chroot, {}, {},
                               fragment="WAITING")
        yield self.assertFault(2, "abort", fragment="WAITING")
        self.assertIs(self.agent.state, BuilderStatus.WAITING)

    @defer.inlineCallbacks
    def test_clean_removes_build_results_and_log(self):
        """clean removes the build directory, the log and the cache entries
        the build added (not the chroot or inputs), and returns IDLE; a
        second clean is a Fault; a new build can start."""
        result = self.seed(b"a result")
        yield self.to_waiting(BuildOutcome(BuildStatus.OK, {"r": result},
                                           added=frozenset({result})),
                              build_id="c-1")
        build_dir = self.config.work_dir / "c-1"
        self.assertTrue((build_dir / "buildlog").exists())
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        self.assertFalse(build_dir.exists())
        self.assertEqual(os.listdir(self.config.work_dir), [])
        self.assertFalse(self.agent.cache.has(result))
        self.assertTrue(self.agent.cache.has(self.chroot))
        self.assertTrue(self.agent.cache.has(self.file))
        code, _ = yield self.fetch("/filecache/buildlog")
        self.assertEqual(code, 404)
        yield self.assertFault(2, "clean", fragment="IDLE")
        yield self.start_hold("c-2")


class AuthTests(ProtocolTestCase):
    """Every request needs the secret; 401 changes nothing."""

    @defer.inlineCallbacks
    def raw(self, path, authorization=None, body=None, method=b"POST"):
        headers = Headers({b"Content-Type": [b"text/xml"]})
        if authorization is not None:
            headers.addRawHeader(b"Authorization", authorization)
        producer = FileBodyProducer(BytesIO(body)) if body is not None else None
        response = yield Agent(reactor).request(
            method, (self.running.base_url + path).encode(), headers, producer)
        content = yield readBody(response)
        return response.code, content, response.headers

    def build_body(self):
        import xmlrpc.client
        return xmlrpc.client.dumps(
            ("sneaky", "hold", self.chroot, {}, {}), "build").encode()

    @defer.inlineCallbacks
    def test_missing_or_wrong_credentials_get_401(self):
        """No header, a wrong password, a wrong user, a bad encoding, a
        wrong bearer or another scheme: 401 with a Basic challenge, on /rpc
        and /filecache, and no build starts."""
        wrong = [None, b"Basic " + base64.b64encode(b"buildd:wrong"),
                 b"Basic " + base64.b64encode(b"root:test-secret"),
                 b"Basic " + base64.b64encode(b"test-secret"),
                 b"Basic !!!notbase64", b"Bearer wrong", b"Bearer",
                 b"Digest test-secret", b"test-secret"]
        for header in wrong:
            code, _, headers = yield self.raw("/rpc", header, self.build_body())
            self.assertEqual(code, 401, header)
            self.assertEqual(headers.getRawHeaders(b"www-authenticate"),
                             [b'Basic realm="buildd"'])
            code, _, _ = yield self.raw("/filecache/" + self.chroot, header,
                                        method=b"GET")
            self.assertEqual(code, 401)
            code, _, _ = yield self.raw("/", header, method=b"GET")
            self.assertEqual(code, 401)
        self.assertIs(self.agent.state, BuilderStatus.IDLE)
        self.assertEqual(os.listdir(self.config.work_dir), [])

    @defer.inlineCallbacks
    def test_bearer_and_basic_accepted(self):
        """Bearer SECRET and Basic buildd:SECRET both reach the agent."""
        for header in (b"Bearer test-secret", b"bearer  test-secret",
                       b"Basic " + base64.b64encode(b"buildd:test-secret")):
            code, body, _ = yield self.raw("/rpc", header, self.build_body())
            self.assertEqual(code, 200)
            self.assertIn(b"BuilderStatus.BUILDING", body)
            HoldBuildManager.instances[-1].finish.callback(
                BuildOutcome(BuildStatus.OK))
            yield self.call("clean")

    @defer.inlineCallbacks
    def test_proxy_with_wrong_secret(self):
        """A twisted Proxy with the wrong secret fails with HTTP 401."""
        error = yield self.assertFailure(
            self.running.proxy(secret="nope").callRemote("status"), ValueError)
        self.assertEqual(error.args[0], b"401")

    @defer.inlineCallbacks
    def test_filecache(self):
        """/filecache/<sha1> serves cached content; unknown, malformed and
        traversal names are 404."""
        code, body = yield self.fetch("/filecache/" + self.chroot)
        self.assertEqual((code, body), (200, b"pretend chroot"))
        for path in ("/filecache/" + "9" * 40, "/filecache/" + self.chroot.upper(),
                     "/filecache/..%2F..%2Fetc%2Fpasswd", "/filecache/",
                     "/filecache/buildlog", "/nothing"):
            code, _ = yield self.fetch(path)
            self.assertEqual(code, 404, path)

    @defer.inlineCallbacks
    def test_oversized_request_is_413(self):
        """A body larger than max_request_size is refused with 413 before
        parsing; the agent stays IDLE."""
        body = b"<?xml version='1.0'?>" + b" " * (self.config.max_request_size + 10)
        code, _, _ = yield self.raw("/rpc", b"Bearer test-secret", body)
        self.assertEqual(code, 413)
        self.assertIs(self.agent.state, BuilderStatus.IDLE)
        self.assertEqual((yield self.call("echo", 1)), [1])

    @defer.inlineCallbacks
    def test_garbage_xml(self):
        """An unparseable body is Fault 8002; the agent stays up."""
        code, body, _ = yield self.raw("/rpc", b"Bearer test-secret",
                                       b"<methodCall><oops")
        self.assertEqual(code, 200)
        self.assertIn(b"8002", body)
        self.assertEqual((yield self.call("echo", 1)), [1])


class NoAuthTests(AgentTestCase):
    """--no-auth: Launchpad's unauthenticated behaviour, with a warning."""

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.config_overrides = {"no_auth": True, "secret": None}
        return super().setUp()

    @defer.inlineCallbacks
    def test_no_auth_accepts_anonymous_and_warns(self):
        """Requests without credentials are served, and starting warned."""
        code, body = yield self.fetch("/filecache/" + "0" * 40,
                                      authorization=None)
        self.assertEqual(code, 404)
        from twisted.web.xmlrpc import Proxy
        proxy = Proxy(self.running.rpc_url.encode(), allowNone=True)
        self.assertEqual((yield proxy.callRemote("echo", 1)), [1])
        warnings = [e for e in self.events
                    if "authentication is OFF" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)


class TrustedNetworkTests(ProtocolTestCase):
    """Requests from a trusted network need no credentials (Launchpad's
    master sends none); every other address still needs the secret."""

    def setUp(self):
        self.config_overrides = {"trusted_networks": "127.0.0.2/32"}
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        return super().setUp()

    @defer.inlineCallbacks
    def request_from(self, source):
        import xmlrpc.client
        body = xmlrpc.client.dumps((1,), "echo").encode()
        response = yield Agent(reactor, bindAddress=(source, 0)).request(
            b"POST", self.running.rpc_url.encode(),
            Headers({b"Content-Type": [b"text/xml"]}),
            FileBodyProducer(BytesIO(body)))
        content = yield readBody(response)
        return response.code, content

    @defer.inlineCallbacks
    def test_trusted_address_needs_no_credentials(self):
        """echo from 127.0.0.2 without credentials is answered, and the
        log says the trusted network let it in."""
        code, content = yield self.request_from("127.0.0.2")
        self.assertEqual(code, 200, content)
        self.assertIn(b"<int>1</int>", content)
        said = [e for e in self.events
                if "accepted by" in e.get("log_format", "")]
        self.assertEqual([(e["host"], e["rule"]) for e in said],
                         [("127.0.0.2", "trusted network 127.0.0.2/32")])

    @defer.inlineCallbacks
    def test_other_address_still_needs_the_secret(self):
        """The same request from 127.0.0.1 gets 401; with the secret it is
        answered."""
        code, _ = yield self.request_from("127.0.0.1")
        self.assertEqual(code, 401)
        self.assertEqual((yield self.call("echo", 1)), [1])

    def test_bad_network_is_a_config_error(self):
        """A network that is not CIDR is refused at load, naming the key."""
        from lp_services.config import ConfigError
        from lp_services.slave.config import load_config
        error = self.assertRaises(
            ConfigError, load_config, None,
            {"trusted_networks": ["10.0.0.0/33"], "secret": "s"})
        self.assertIn("trusted_networks", str(error))


class LeaseFenceTests(ProtocolTestCase):
    """The agent's half of the buildmasters' fence: state changes from a
    master whose lease epoch is older than one seen are refused (the
    master's client turns the fault into LeaseLost); callers without a
    lease (Launchpad's master) are not fenced."""

    def client(self, master, epoch):
        from lp_services.buildmaster.agentclient import AgentClient
        from lp_services.testing.agents import TEST_SECRET

        client = AgentClient(self.running.base_url, TEST_SECRET, reactor)
        client.set_lease(master, epoch)
        return client

    @defer.inlineCallbacks
    def test_older_lease_refused(self):
        """m2 (lease 7) aborts a build; m1 (lease 5, which lost the
        builder while paused) cannot clean it, and nothing changes; m2
        can; a caller without a lease still can build."""
        from lp_services.buildmaster.leases import LeaseLost

        manager = yield self.start_hold("b-1")
        m1, m2 = self.client("m1", 5), self.client("m2", 7)
        self.assertEqual((yield m2.abort()), "BuilderStatus.ABORTING")
        manager.finish.callback(BuildOutcome(BuildStatus.OK))
        yield self.wait_for(BuilderStatus.WAITING)
        yield self.assertFailure(m1.clean(), LeaseLost)
        self.assertEqual((yield self.call("status"))["builder_status"],
                         "BuilderStatus.WAITING")
        self.assertEqual((yield m2.clean()), "BuilderStatus.IDLE")
        yield self.start_hold("b-2")  # no lease: not fenced

    @defer.inlineCallbacks
    def test_refusal_names_both_masters(self):
        """The fault says which master holds the newer lease."""
        yield self.start_hold("b-1")
        yield self.client("m2", 3).abort()
        import xmlrpc.client

        proxy = self.running.proxy()
        proxy.path = proxy.path + b"?master=m1&lease=2"
        fault = yield self.assertFailure(proxy.callRemote("clean"),
                                         xmlrpc.client.Fault)
        self.assertEqual(fault.faultCode, 8)
        self.assertIn("m2 holds lease 3", fault.faultString)

    @defer.inlineCallbacks
    def test_same_epoch_from_another_master_refused(self):
        """Each take of a lease is a new epoch: m1 with the epoch m2 used
        is stale too."""
        from lp_services.buildmaster.leases import LeaseLost

        yield self.start_hold("b-1")
        yield self.client("m2", 4).abort()
        yield self.assertFailure(self.client("m1", 4).abort(), LeaseLost)

    @defer.inlineCallbacks
    def test_malformed_lease_refused(self):
        """A lease that is not an integer is bad arguments, not "no
        lease"."""
        import xmlrpc.client

        yield self.start_hold("b-1")
        proxy = self.running.proxy()
        proxy.path = proxy.path + b"?master=m1&lease=x"
        fault = yield self.assertFailure(proxy.callRemote("abort"),
                                         xmlrpc.client.Fault)
        self.assertEqual(fault.faultCode, 1)
        self.assertEqual((yield self.call("status"))["builder_status"],
                         "BuilderStatus.BUILDING")
