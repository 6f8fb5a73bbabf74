"""Property-based fuzzing of the RPC arguments (hypothesis), over real
XML-RPC on loopback with auth: whatever is sent, in whatever state, the
agent answers (a result or a Fault, never an HTTP error), a Fault changes
nothing, and the state is always one of the four."""

import xmlrpc.client

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, threads
from twisted.internet.threads import blockingCallFromThread

from lp_services.slave.manager import BuildOutcome, ManagerRegistry
from lp_services.protocol.states import BuilderStatus, BuildStatus
from lp_services.protocol.wire import wire_text

from tests.slave.helpers import AgentTestCase
from tests.slave.hold import HoldBuildManager

METHODS = ["echo", "info", "status", "ensurepresent", "build", "abort",
           "clean", "nosuchmethod", "system.listMethods"]

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
                max_size=40)
_special = st.sampled_from(
    ["", ".", "..", "../etc/passwd", "a/b", "/abs", "x" * 300, "0" * 40,
     "A" * 40, "hold", "script", "BuilderStatus.IDLE", "build.sh",
     "\u00e9\u00e8", "out", "a\tb"])
_strings = _text | _special
_scalars = (st.none() | st.booleans() | st.integers(-2**31, 2**31 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | _strings)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(_strings, inner, max_size=4),
    max_leaves=8)
_huge = st.sampled_from(["x" * 100_000, ["y"] * 2000])
_args = st.lists(_values | _huge, max_size=6)


def _build_args(chroot):
    filemaps = st.dictionaries(_strings, _strings | st.just(chroot),
                               max_size=3) | _values
    return st.tuples(_strings | st.none(), st.sampled_from(["hold", "script"])
                     | _strings, st.just(chroot) | _strings | st.none(),
                     filemaps, st.dictionaries(_strings, _values, max_size=3)
                     | _values).map(list)


class FuzzTestCase(AgentTestCase):
    """An agent with only the ``hold`` build type, driven through every
    state between fuzzed calls."""

    def agent_kwargs(self):
        registry = ManagerRegistry()
        registry.register(HoldBuildManager)
        HoldBuildManager.instances = []
        return {"registry": registry}

    def setUp(self):
        d = super().setUp()
        return d.addCallback(lambda _: self._after())

    def _after(self):
        self.chroot = self.seed(b"fuzz chroot")

    @defer.inlineCallbacks
    def drive(self, target: BuilderStatus):
        """Move the agent (domain object, reactor thread) to ``target``."""
        agent = self.agent
        if agent.state is target:
            return
        if agent.state is BuilderStatus.BUILDING:
            agent.abort()
        if agent.state is BuilderStatus.ABORTING:
            HoldBuildManager.instances[-1].finish.callback(
                BuildOutcome(BuildStatus.OK))
            yield agent.wait_for(BuilderStatus.WAITING)
        if agent.state is BuilderStatus.WAITING and target is not \
                BuilderStatus.WAITING:
            yield agent.clean()
        if target is BuilderStatus.IDLE or agent.state is target:
            return
        agent.build("fuzz-build", "hold", self.chroot, {}, {})
        if target is BuilderStatus.ABORTING:
            agent.abort()
        elif target is BuilderStatus.WAITING:
            HoldBuildManager.instances[-1].finish.callback(
                BuildOutcome(BuildStatus.PACKAGEFAIL, {"log": "1" * 40}))
            yield agent.wait_for(BuilderStatus.WAITING)

    def fuzz(self, examples: int):
        """Run the property in a thread (blocking client) while the
        reactor serves."""
        proxy = self.blocking_proxy()
        bad_secret = self.blocking_proxy(secret="wrong")
        states = list(BuilderStatus)

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(state=st.sampled_from(states),
               method=st.sampled_from(METHODS),
               args=_args | _build_args(self.chroot),
               authenticated=st.booleans() | st.just(True))
        def prop(state, method, args, authenticated):
            blockingCallFromThread(reactor, self.drive, state)
            before = self.agent.state
            try:
                getattr(proxy if authenticated else bad_secret,
                        method)(*args)
                fault = None
            except xmlrpc.client.Fault as f:
                fault = f
            except xmlrpc.client.ProtocolError as e:
                assert not authenticated and e.errcode == 401, e
                fault = e
            after = blockingCallFromThread(
                reactor, lambda: defer.succeed(self.agent.state))
            assert after in states
            if fault is not None:
                assert after is before, (method, args, fault, before, after)
            assert proxy.echo("alive") == ["alive"]

        def run():
            try:
                prop()
            finally:
                proxy("close")()
                bad_secret("close")()

        return threads.deferToThread(run)


class FastFuzzTests(FuzzTestCase):
    """A modest run in the fast tier."""

    def test_fuzzed_calls_never_break_the_agent(self):
        """150 fuzzed calls in random states: answers, no state leaks."""
        return self.fuzz(150)


# Any str Python can hold: lone surrogates are what a non-UTF-8 file name
# becomes; control characters are what a build can put in any text.
# (Hypothesis leaves surrogates out of characters(): add them by hand.)
_hostile = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF)
                   | st.sampled_from(["\udcff", "\ud800", "\x00", "\x1b",
                                      "\r", "\x9b", "\ufffe"]),
                   max_size=20)


class HostileOutcomeFuzzTests(FuzzTestCase):
    """Whatever names and texts a build manager reports, status() stays an
    answer the master can parse (issue 19)."""

    def finish(self, filemap, dependencies):
        """Run one hold build to WAITING with this outcome (reactor)."""
        @defer.inlineCallbacks
        def run():
            yield self.drive(BuilderStatus.IDLE)
            self.agent.build("fuzz-out", "hold", self.chroot, {}, {})
            HoldBuildManager.instances[-1].finish.callback(
                BuildOutcome(BuildStatus.DEPFAIL, filemap, dependencies))
            yield self.agent.wait_for(BuilderStatus.WAITING)
        return run()

    def test_status_always_encodable(self):
        """60 outcomes with hostile result names (non-UTF-8, control
        characters) and dependency texts: status() over real XML-RPC
        always parses."""
        proxy = self.blocking_proxy()

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(filemap=st.dictionaries(_hostile, st.just("1" * 40),
                                       max_size=3),
               dependencies=_hostile)
        def prop(filemap, dependencies):
            blockingCallFromThread(reactor, self.finish, filemap,
                                   dependencies)
            status = proxy.status()
            assert status["builder_status"] == "BuilderStatus.WAITING"
            assert set(status["filemap"]) <= {wire_text(n) for n in filemap}
            assert isinstance(status["dependencies"], str)

        def run():
            try:
                prop()
            finally:
                proxy("close")()

        return threads.deferToThread(run)
