"""Fake builder agents for tests and benchmarks.

One state machine (:class:`AgentModel`) plays the agent protocol of
PROTOCOL.md; it is reached either in-process through :class:`FakeAgent`
(an :class:`IAgentClient`, for unit tests with ``task.Clock``) or over
real XML-RPC on loopback through :class:`FakeAgentRPC` (for the client's
tests and the 1,000-agent benchmark). The fakes are named for the state
they play, as Launchpad's are; ``tests/buildmaster/test_agent_contract.py``
runs one suite against every fake and the real agent.
"""

import hashlib
from xmlrpc.client import Binary

from twisted.internet import defer
from twisted.web import resource, server, xmlrpc
from zope.interface import implementer

from lp_services.buildmaster.agentclient import AgentError, FileFetchError
from lp_services.buildmaster.interfaces import IAgentClient
from lp_services.protocol.states import (
    KEY_BUILD_ID,
    KEY_BUILD_STATUS,
    KEY_BUILDER_STATUS,
    KEY_BUILDER_VERSION,
    KEY_DEPENDENCIES,
    KEY_FILEMAP,
    KEY_LOGTAIL,
    UNKNOWNBUILDER,
    UNKNOWNSUM,
    BuilderStatus,
    BuildStatus,
)

__all__ = [
    "AbortingAgent",
    "AgentFault",
    "AgentModel",
    "BrokenAgent",
    "BuildingAgent",
    "FakeAgent",
    "FakeAgentRPC",
    "IdleAgent",
    "OkAgent",
    "SyncTransactor",
    "WaitingAgent",
    "fake_agents_site",
]


class AgentFault(Exception):
    """What the real agent answers with an XML-RPC Fault."""


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class AgentModel:
    """The agent's protocol state (IDLE, BUILDING, WAITING, ABORTING).

    ``ensurepresent`` does not download: it believes the master (a test
    may set ``refuse_downloads``). Tests drive a build to its end with
    :meth:`finish` and make an abort complete with :meth:`aborted`.
    """

    def __init__(self, arch_tag="amd64", build_types=("script",)):
        self.state = BuilderStatus.IDLE
        self.arch_tag = arch_tag
        self.build_types = list(build_types)
        #: What status() reports as builder_version.
        self.version = "fake-1"
        self.build_id = None
        self.result = None
        self.logtail = ""
        self.log = b""
        self.files = {}          # sha1 -> bytes (the file cache)
        self.filemap = {}        # result name -> sha1
        self.dependencies = None
        self.cache = set()       # sha1s present
        self.calls = []          # (method, args) in order
        self.refuse_downloads = False
        self.build_args = None

    def _record(self, method, *args):
        self.calls.append((method, args))

    def echo(self, *args):
        self._record("echo", *args)
        return list(args)

    def info(self):
        self._record("info")
        return ["1.0", self.arch_tag, list(self.build_types)]

    def status(self):
        self._record("status")
        answer = {KEY_BUILDER_STATUS: self.state.value,
                  KEY_BUILDER_VERSION: self.version}
        if self.state == BuilderStatus.BUILDING:
            answer[KEY_BUILD_ID] = self.build_id
            answer[KEY_LOGTAIL] = Binary(
                self.logtail.encode("utf-8"))
        elif self.state == BuilderStatus.WAITING:
            answer[KEY_BUILD_ID] = self.build_id
            answer[KEY_BUILD_STATUS] = BuildStatus[self.result].value
            if self.result in ("OK", "PACKAGEFAIL", "DEPFAIL"):
                answer[KEY_FILEMAP] = dict(self.filemap)
            if self.result == "DEPFAIL":
                answer[KEY_DEPENDENCIES] = self.dependencies or ""
        elif self.state == BuilderStatus.ABORTING:
            answer[KEY_BUILD_ID] = self.build_id
        return answer

    def ensurepresent(self, sha1, url, username, password):
        self._record("ensurepresent", sha1, url, username, password)
        if sha1 in self.cache:
            return [True, "Cache"]
        if not url:
            return [False, "No URL"]
        if self.refuse_downloads:
            return [False, "Error accessing %s" % url]
        self.cache.add(sha1)
        return [True, "Download"]

    def build(self, build_id, build_type, chroot_sha1, filemap, args):
        self._record("build", build_id, build_type, chroot_sha1, filemap,
                     args)
        if not build_id:
            raise AgentFault("a build needs a build_id")
        if self.state != BuilderStatus.IDLE:
            raise AgentFault("the agent is %s, not IDLE" % self.state.short)
        if build_type not in self.build_types:
            return [UNKNOWNBUILDER,
                    "unknown build type %s" % build_type]
        for sha1 in [chroot_sha1] + list(filemap.values()):
            if sha1 not in self.cache:
                return [UNKNOWNSUM, sha1]
        self.state, self.build_id = BuilderStatus.BUILDING, build_id
        self.build_args = dict(args)
        self.logtail = "building %s\n" % build_id
        return [BuilderStatus.BUILDING.value, build_id]

    def abort(self):
        self._record("abort")
        if self.state == BuilderStatus.ABORTING:
            return BuilderStatus.ABORTING.value
        if self.state != BuilderStatus.BUILDING:
            raise AgentFault("nothing to abort: the agent is %s"
                             % self.state.short)
        self.state = BuilderStatus.ABORTING
        return BuilderStatus.ABORTING.value

    def clean(self):
        self._record("clean")
        if self.state != BuilderStatus.WAITING:
            raise AgentFault("nothing to clean: the agent is %s"
                             % self.state.short)
        self.state, self.build_id, self.result = BuilderStatus.IDLE, None, None
        self.filemap, self.log, self.logtail = {}, b"", ""
        return BuilderStatus.IDLE.value

    # -- driving the fake ---------------------------------------------------
    def finish(self, result="OK", files=None, log=b"a build log\n",
               dependencies=None):
        """End the current build with ``result``; ``files`` maps result
        names to contents (or to (sha1, contents) to lie about a hash)."""
        assert self.state in (BuilderStatus.BUILDING,
                              BuilderStatus.ABORTING), self.state
        self.state, self.result, self.log = BuilderStatus.WAITING, result, log
        self.dependencies = dependencies
        self.filemap = {}
        for name, content in (files or {}).items():
            if isinstance(content, tuple):
                sha1, content = content
            else:
                sha1 = sha1_of(content)
            self.files[sha1] = content
            self.filemap[name] = sha1

    def aborted(self):
        """The build died after ``abort``: WAITING with ABORTED."""
        self.finish("ABORTED")

    def file_content(self, sha1):
        if sha1 == "buildlog":
            return self.log
        return self.files.get(sha1)


@implementer(IAgentClient)
class FakeAgent:
    """An in-process :class:`IAgentClient` over an :class:`AgentModel`;
    answers synchronously (fired Deferreds), so task.Clock tests need no
    reactor."""

    def __init__(self, model: AgentModel | None = None,
                 url="http://fake-agent:8221"):
        self.model = model or AgentModel()
        self.url = url

    def _call(self, method, *args):
        try:
            return defer.succeed(getattr(self.model, method)(*args))
        except AgentFault as fault:
            return defer.fail(AgentError("%s() failed: %s" % (method, fault)))

    def echo(self, *args):
        return self._call("echo", *args)

    def info(self):
        return self._call("info")

    def status(self):
        from lp_services.buildmaster.agentclient import parse_status

        return self._call("status").addCallback(parse_status)

    def ensurepresent(self, sha1, url, username, password):
        return self._call("ensurepresent", sha1, url, username,
                          password).addCallback(lambda a: (a[0], a[1]))

    def build(self, build_id, build_type, chroot_sha1, filemap, args):
        return self._call("build", build_id, build_type, chroot_sha1,
                          filemap, args).addCallback(lambda a: (a[0], a[1]))

    def abort(self):
        return self._call("abort")

    def clean(self):
        return self._call("clean")

    def fetch_file(self, sha1, destination):
        content = self.model.file_content(sha1)
        if content is None:
            return defer.fail(FileFetchError("GET %s: HTTP 404" % sha1))
        if sha1 != "buildlog" and sha1_of(content) != sha1:
            return defer.fail(FileFetchError("sha1 mismatch for %s" % sha1))
        destination.write(content)
        return defer.succeed(len(content))


def IdleAgent(**kwargs) -> FakeAgent:
    """An agent with nothing to do (Launchpad's OkWorker)."""
    return FakeAgent(AgentModel(**kwargs))


OkAgent = IdleAgent


def BuildingAgent(build_id="fake-cookie", logtail="still building\n",
                  **kwargs) -> FakeAgent:
    """An agent in the middle of build ``build_id``."""
    model = AgentModel(**kwargs)
    model.state, model.build_id = BuilderStatus.BUILDING, build_id
    model.logtail = logtail
    return FakeAgent(model)


def WaitingAgent(result="OK", build_id="fake-cookie", files=None,
                 log=b"a build log\n", dependencies=None,
                 **kwargs) -> FakeAgent:
    """An agent whose build ``build_id`` ended with ``result``."""
    model = AgentModel(**kwargs)
    model.state, model.build_id = BuilderStatus.BUILDING, build_id
    model.finish(result, files, log, dependencies)
    return FakeAgent(model)


def AbortingAgent(build_id="fake-cookie", **kwargs) -> FakeAgent:
    """An agent told to abort build ``build_id`` that has not yet died."""
    model = AgentModel(**kwargs)
    model.state, model.build_id = BuilderStatus.ABORTING, build_id
    return FakeAgent(model)


@implementer(IAgentClient)
class BrokenAgent:
    """An agent that cannot be reached: every call fails."""

    url = "http://broken-agent:8221"

    def __init__(self, message="connection refused"):
        self.message = message
        self.calls = 0

    def _fail(self, *args):
        self.calls += 1
        return defer.fail(AgentError(self.message))

    echo = info = status = ensurepresent = build = abort = clean = _fail
    fetch_file = _fail


class FakeAgentRPC(xmlrpc.XMLRPC):
    """The agent protocol over real XML-RPC for an :class:`AgentModel`,
    checking HTTP Basic auth (user ``buildd``) when ``secret`` is set."""

    def __init__(self, model: AgentModel, secret: str | None = None):
        super().__init__(allowNone=True)
        self.model = model
        self.secret = secret

    def render(self, request):
        if not _authorised(request, self.secret):
            return _unauthorised(request)
        return super().render(request)

    def _call(self, method, *args):
        try:
            return getattr(self.model, method)(*args)
        except AgentFault as fault:
            raise xmlrpc.Fault(1, str(fault))

    def xmlrpc_echo(self, *args):
        return self._call("echo", *args)

    def xmlrpc_info(self):
        return self._call("info")

    def xmlrpc_status(self):
        return self._call("status")

    def xmlrpc_ensurepresent(self, sha1, url, username, password):
        return self._call("ensurepresent", sha1, url, username, password)

    def xmlrpc_build(self, build_id, build_type, chroot_sha1, filemap, args):
        return self._call("build", build_id, build_type, chroot_sha1,
                          filemap, args)

    def xmlrpc_abort(self):
        return self._call("abort")

    def xmlrpc_clean(self):
        return self._call("clean")


def _authorised(request, secret):
    if secret is None:
        return True
    return (request.getUser() == b"buildd"
            and request.getPassword() == secret.encode("utf-8"))


def _unauthorised(request):
    request.setResponseCode(401)
    request.setHeader(b"WWW-Authenticate", b'Basic realm="agent"')
    return b"unauthorised\n"


class _FileCache(resource.Resource):
    def __init__(self, model, secret):
        super().__init__()
        self.model = model
        self.secret = secret

    def getChild(self, name, request):
        return _CachedFile(self.model, name.decode("ascii", "replace"),
                           self.secret)


class _CachedFile(resource.Resource):
    isLeaf = True

    def __init__(self, model, sha1, secret):
        super().__init__()
        self.model, self.sha1, self.secret = model, sha1, secret

    def render_GET(self, request):
        if not _authorised(request, self.secret):
            return _unauthorised(request)
        content = self.model.file_content(self.sha1)
        if content is None:
            request.setResponseCode(404)
            return b"not in the cache\n"
        request.setHeader(b"Content-Type", b"application/octet-stream")
        return content


def agent_resource(model: AgentModel, secret: str | None = None):
    """The root resource of one fake agent: /rpc and /filecache/."""
    root = resource.Resource()
    root.putChild(b"rpc", FakeAgentRPC(model, secret))
    root.putChild(b"filecache", _FileCache(model, secret))
    return root


class GrowingLogModel(AgentModel):
    """A building agent whose log grows: every ``status()`` shows a new
    logtail, so every scan has something to write (the benchmarks' worst
    case)."""

    lines = 0

    def status(self):
        if self.state == BuilderStatus.BUILDING:
            self.lines += 1
            self.logtail = "".join("line %d of the build log\n" % j for j in
                                   range(self.lines, self.lines + 60))
        return super().status()


def growing_models(n: int, building: int) -> dict[str, GrowingLogModel]:
    """``a0`` ... ``a<n-1>``, the first ``building`` of them building
    ``cookie-<i>``."""
    models = {}
    for i in range(n):
        model = GrowingLogModel()
        if i < building:
            model.state = BuilderStatus.BUILDING
            model.build_id = "cookie-%d" % i
            model.logtail = "step %d of a long build\n" % i * 20
        models["a%d" % i] = model
    return models


def fake_agents_site(models: dict[str, AgentModel],
                     secrets: dict[str, str] | None = None) -> server.Site:
    """One site serving many fake agents, agent NAME at ``/NAME/``."""
    root = resource.Resource()
    for name, model in models.items():
        root.putChild(name.encode("ascii"),
                      agent_resource(model, (secrets or {}).get(name)))
    site = server.Site(root)
    site.displayTracebacks = False
    site.log = lambda request: None
    return site


class SyncTransactor:
    """A transactor whose ``run`` runs in the calling thread and returns a
    fired Deferred: scanner tests then step with task.Clock alone, still
    against real PostgreSQL."""

    def __init__(self, transactor):
        self._transactor = transactor
        self.calls = 0

    def run(self, function, *args, **kwargs):
        self.calls += 1
        return defer.maybeDeferred(self._transactor.run_blocking, function,
                                   *args, **kwargs)

    def run_blocking(self, function, *args, **kwargs):
        return self._transactor.run_blocking(function, *args, **kwargs)
