"""Talking to builder agents: the XML-RPC client and its records.

:class:`AgentClient` speaks PROTOCOL.md over HTTP with Basic auth (user
``buildd``, password the builder's secret) and a timeout on every call.
Answers are checked here, so that garbage from an agent becomes an
:class:`AgentError` and never an AttributeError deep in the scanner.
"""

import base64
import hashlib
from xmlrpc.client import Binary, Fault
from dataclasses import dataclass, field

from twisted.internet import defer, protocol
from twisted.internet.error import TimeoutError as TwistedTimeout
from twisted.web import xmlrpc
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    _HTTP11ClientFactory,
)
from twisted.web.http_headers import Headers
from zope.interface import implementer

from lp_services.buildmaster.interfaces import IAgentClient
from lp_services.protocol import states as wire

__all__ = [
    "AgentClient",
    "AgentError",
    "AgentStatus",
    "BUILDER_STATES",
    "BUILD_RESULTS",
    "AgentInfo",
    "FileFetchError",
    "parse_info",
    "parse_status",
]

#: The agent's fault for a call from an older lease epoch than it has seen
#: (lp_services.slave.errors.StaleLease).
STALE_LEASE_FAULT = 8

#: Builder states an agent may report (wire strings).
BUILDER_STATES = frozenset(s.value for s in wire.BuilderStatus)
#: Results a WAITING agent may report (wire strings).
BUILD_RESULTS = frozenset(r.value for r in wire.BuildStatus)

#: Seconds an ordinary call may take. Launchpad uses 30-40 s: long enough
#: for a loaded agent, short enough that a hung one is noticed within a
#: few scans.
DEFAULT_TIMEOUT = 35
#: ensurepresent makes the agent download a file (a chroot may be
#: hundreds of megabytes), so it gets much longer.
ENSUREPRESENT_TIMEOUT = 30 * 60
#: Fetching a result file: as long as a large download may take.
FETCH_TIMEOUT = 30 * 60
#: The largest result file or log the master accepts (4 GiB).
MAX_FETCH_SIZE = 4 << 30


class AgentError(Exception):
    """The agent could not be reached, timed out, or answered garbage."""


class FileFetchError(AgentError):
    """A file from the agent was missing, too big, or had the wrong sha1."""


@dataclass(frozen=True)
class AgentStatus:
    """An agent's ``status()`` answer, checked."""

    builder_status: str
    build_id: str | None = None
    build_status: str | None = None
    logtail: str | None = None
    filemap: dict = field(default_factory=dict)
    dependencies: str | None = None
    version: str | None = None

    @property
    def state(self) -> wire.BuilderStatus:
        """IDLE, BUILDING, WAITING or ABORTING."""
        return wire.BuilderStatus(self.builder_status)

    @property
    def result(self) -> wire.BuildStatus | None:
        """OK, PACKAGEFAIL, ... when WAITING."""
        return wire.BuildStatus(self.build_status) if self.build_status else None


@dataclass(frozen=True)
class AgentInfo:
    """An agent's ``info()`` answer, checked."""

    protocol_version: str
    arch_tag: str
    build_types: tuple[str, ...]


def parse_info(answer) -> AgentInfo:
    """Check an ``info()`` answer (``[protocol, arch tag, [build types]]``,
    as launchpad-buildd and our agent send it); raise AgentError if it is
    anything else."""
    if (not isinstance(answer, (list, tuple)) or len(answer) != 3
            or not isinstance(answer[0], str)
            or not isinstance(answer[1], str)
            or not isinstance(answer[2], (list, tuple))
            or not all(isinstance(t, str) and 0 < len(t) <= 64
                       for t in answer[2])
            or len(answer[2]) > 100 or len(answer[1]) > 64):
        raise AgentError("info() answered %.200r" % (answer,))
    return AgentInfo(answer[0], answer[1], tuple(sorted(set(answer[2]))))


def _text(value, what):
    if value is None:
        return None
    if isinstance(value, Binary):
        value = value.data
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (str, int)):
        return str(value)
    raise AgentError("agent sent a %s of type %s" % (what, type(value).__name__))


def parse_status(answer) -> AgentStatus:
    """Check a ``status()`` answer; raise AgentError if it is garbage."""
    if not isinstance(answer, dict):
        raise AgentError("status() answered %r, not a dict" % (answer,))
    state = answer.get(wire.KEY_BUILDER_STATUS)
    if state not in BUILDER_STATES:
        raise AgentError("unknown builder_status %r" % (state,))
    build_id = _text(answer.get(wire.KEY_BUILD_ID), "build_id")
    result = answer.get(wire.KEY_BUILD_STATUS)
    filemap = answer.get(wire.KEY_FILEMAP) or {}
    if state != wire.BuilderStatus.IDLE.value and not build_id:
        raise AgentError("%s without a build_id" % state)
    if state == wire.BuilderStatus.WAITING.value:
        if result not in BUILD_RESULTS:
            raise AgentError("unknown build_status %r" % (result,))
        if not isinstance(filemap, dict) or not all(
                isinstance(k, str) and isinstance(v, str)
                for k, v in filemap.items()):
            raise AgentError("filemap is not a {name: sha1} dict")
    else:
        result, filemap = None, {}
    dependencies = answer.get(wire.KEY_DEPENDENCIES)
    return AgentStatus(
        builder_status=state, build_id=build_id, build_status=result,
        logtail=_text(answer.get(wire.KEY_LOGTAIL), "logtail"),
        filemap=filemap,
        dependencies=_text(dependencies, "dependencies") or None,
        version=_text(answer.get(wire.KEY_BUILDER_VERSION),
                      "builder_version"))


class _QuietQueryFactory(xmlrpc.QueryFactory):
    """One factory per call: do not log each start and stop."""

    noisy = False


class _QuietHTTPFactory(_HTTP11ClientFactory):
    noisy = False


class _HashingReceiver(protocol.Protocol):
    """Streams a response body into a file, hashing it and counting."""

    def __init__(self, destination, finished, max_size):
        self.destination = destination
        self.finished = finished
        self.max_size = max_size
        self.sha1 = hashlib.sha1()
        self.size = 0

    def dataReceived(self, data):
        self.size += len(data)
        if self.size > self.max_size:
            self.transport.stopProducing()
            return
        self.sha1.update(data)
        self.destination.write(data)

    def connectionLost(self, reason):
        if self.size > self.max_size:
            self.finished.errback(FileFetchError(
                "file larger than %d bytes" % self.max_size))
        elif reason.check(ResponseDone):
            self.finished.callback((self.sha1.hexdigest(), self.size))
        else:
            self.finished.errback(FileFetchError(
                "download interrupted: %s" % reason.getErrorMessage()))


@implementer(IAgentClient)
class AgentClient:
    """See :class:`IAgentClient`: the real agent over XML-RPC and HTTP.

    :param url: the agent's base URL; XML-RPC is at ``<url>/rpc``.
    :param secret: the builder's secret (HTTP Basic password).
    :param reactor: the reactor (its clock times out calls).
    :param pool: an HTTP connection pool for file downloads (shared).
    """

    username = "buildd"

    def __init__(self, url: str, secret: str | None, reactor,
                 timeout: float = DEFAULT_TIMEOUT,
                 ensurepresent_timeout: float = ENSUREPRESENT_TIMEOUT,
                 pool: HTTPConnectionPool | None = None):
        self.url = url.rstrip("/")
        self.secret = secret or ""
        self._reactor = reactor
        self._timeout = timeout
        self._ensurepresent_timeout = ensurepresent_timeout
        self._lease = None
        self._proxy = self._make_proxy("")
        self._pool = pool
        self._http = None

    def _make_proxy(self, query: str):
        proxy = xmlrpc.Proxy(
            (self.url + "/rpc").encode("ascii"),
            user=self.username.encode("ascii"),
            password=self.secret.encode("utf-8"),
            allowNone=True, connectTimeout=min(self._timeout, 30),
            reactor=self._reactor)
        proxy.queryFactory = _QuietQueryFactory
        # Proxy drops a query from its URL: the path carries it.
        proxy.path += query.encode("ascii")
        return proxy

    def set_lease(self, master: str, epoch: int) -> None:
        """Send ``master``'s lease ``epoch`` with every call (as the query
        of ``/rpc``, which launchpad-buildd ignores). Our agent refuses a
        state change from an epoch older than one it has seen: a master
        that lost the builder while stalled cannot act on it after."""
        if self._lease == (master, epoch):
            return
        from urllib.parse import urlencode

        self._lease = (master, epoch)
        self._proxy = self._make_proxy(
            "?" + urlencode({"master": master, "lease": int(epoch)}))

    def _call(self, method, *args, timeout=None):
        d = self._proxy.callRemote(method, *args)
        d.addTimeout(timeout or self._timeout, self._reactor)

        def failed(failure):
            if (failure.check(Fault)
                    and failure.value.faultCode == STALE_LEASE_FAULT):
                from lp_services.buildmaster.leases import LeaseLost

                raise LeaseLost(self.url)
            if failure.check(defer.TimeoutError, TwistedTimeout):
                raise AgentError("%s() timed out after %ss"
                                 % (method, timeout or self._timeout))
            if failure.check(AgentError):
                return failure
            raise AgentError("%s() failed: %s" % (
                method, failure.getErrorMessage() or failure.type.__name__))
        return d.addErrback(failed)

    def echo(self, *args):
        return self._call("echo", *args)

    def info(self):
        return self._call("info")

    def status(self):
        return self._call("status").addCallback(parse_status)

    def ensurepresent(self, sha1, url, username, password):
        d = self._call("ensurepresent", sha1, url, username, password,
                       timeout=self._ensurepresent_timeout)

        def check(answer):
            if (not isinstance(answer, (list, tuple)) or len(answer) != 2
                    or not isinstance(answer[0], bool)):
                raise AgentError("ensurepresent answered %r" % (answer,))
            return bool(answer[0]), str(answer[1])
        return d.addCallback(check)

    def build(self, build_id, build_type, chroot_sha1, filemap, args):
        d = self._call("build", build_id, build_type, chroot_sha1, filemap,
                       args)

        def check(answer):
            if (not isinstance(answer, (list, tuple)) or len(answer) != 2
                    or not isinstance(answer[0], str)):
                raise AgentError("build answered %r" % (answer,))
            return answer[0], str(answer[1])
        return d.addCallback(check)

    def abort(self):
        return self._call("abort").addCallback(self._state_string, "abort")

    def clean(self):
        return self._call("clean").addCallback(self._state_string, "clean")

    @staticmethod
    def _state_string(answer, method):
        if answer not in BUILDER_STATES:
            raise AgentError("%s() answered %r" % (method, answer))
        return answer

    def _auth_headers(self):
        token = base64.b64encode(
            ("%s:%s" % (self.username, self.secret)).encode("utf-8"))
        return Headers({b"Authorization": [b"Basic " + token]})

    def fetch_file(self, sha1, destination, max_size: int = MAX_FETCH_SIZE):
        if self._http is None:
            pool = self._pool
            if pool is None:
                pool = HTTPConnectionPool(self._reactor, persistent=False)
                pool._factory = _QuietHTTPFactory
            self._http = Agent(self._reactor, connectTimeout=30, pool=pool)
        url = "%s/filecache/%s" % (self.url, sha1)
        d = self._http.request(b"GET", url.encode("ascii"),
                               self._auth_headers())

        def got_response(response):
            if response.code != 200:
                response.deliverBody(_Discard())
                raise FileFetchError("GET %s: HTTP %d" % (url, response.code))
            finished = defer.Deferred()
            response.deliverBody(
                _HashingReceiver(destination, finished, max_size))
            return finished

        def check(result):
            digest, size = result
            if sha1 != "buildlog" and digest != sha1:
                raise FileFetchError("sha1 mismatch for %s: got %s"
                                     % (sha1, digest))
            return size

        def failed(failure):
            if failure.check(FileFetchError):
                return failure
            if failure.check(defer.TimeoutError, defer.CancelledError):
                raise FileFetchError("GET %s timed out" % url)
            raise FileFetchError("GET %s failed: %s"
                                 % (url, failure.getErrorMessage()))
        d.addCallback(got_response)
        d.addTimeout(FETCH_TIMEOUT, self._reactor)
        return d.addCallback(check).addErrback(failed)


class _Discard(protocol.Protocol):
    def connectionLost(self, reason):
        pass
