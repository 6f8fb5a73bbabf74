"""The agent's HTTP site: ``/rpc`` and ``/filecache/``, behind auth.

:func:`build_site` is the one way to make it, for twistd and for tests
(listen on port 0 on loopback; see :mod:`lp_services.testing.agents`).

Authentication wraps the whole tree: every request must carry
``Authorization: Basic base64(buildd:SECRET)`` or ``Authorization: Bearer
SECRET`` (compared in constant time), or come from one of ``trusted_networks``
(Launchpad's master sends no credentials), or it gets 401 and reaches
nothing. With ``no_auth`` the wrapper is left out (and the service warns).
Request bodies larger than ``max_request_size`` get 413 before any parsing.
"""

import base64
import hmac
import ipaddress

from twisted.logger import Logger
from twisted.web import resource, server, static

from lp_services.slave.agent import Agent
from lp_services.slave.config import AgentConfig
from lp_services.protocol.names import is_sha1
from lp_services.slave.rpc import AgentXMLRPC

__all__ = ["AgentSite", "AuthWrapper", "build_site"]

BASIC_USER = b"buildd"


class _Unauthorized(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", b'Basic realm="buildd"')
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"401 Unauthorized: send the builder's secret\n"


class AuthWrapper(resource.Resource):
    """Lets a request reach ``wrapped`` only with the secret, or from a
    trusted network."""

    log = Logger()

    def __init__(self, wrapped: resource.Resource, secret: str,
                 trusted_networks=()):
        super().__init__()
        self.wrapped = wrapped
        self._secret = secret.encode("utf-8")
        self._trusted = tuple(trusted_networks)
        self._announced = set()  # (client, rule) pairs already logged

    def authorized(self, request) -> bool:
        """Whether ``request`` carries the secret or comes from a trusted
        network; which rule let a client in is logged once per client."""
        if self._has_secret(request):
            self._announce(request, "the secret")
            return True
        network = self._trusted_network(request)
        if network is not None:
            self._announce(request, "trusted network %s" % network)
            return True
        return False

    def _trusted_network(self, request):
        if not self._trusted:
            return None
        try:
            address = ipaddress.ip_address(request.getClientAddress().host)
        except (AttributeError, ValueError):
            return None
        if getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped
        for network in self._trusted:
            if address.version == network.version and address in network:
                return network
        return None

    def _announce(self, request, rule):
        host = getattr(request.getClientAddress(), "host", "?")
        if (host, rule) not in self._announced:
            self._announced.add((host, rule))
            self.log.info("requests from {host} accepted by {rule}",
                          host=host, rule=rule)

    def _has_secret(self, request) -> bool:
        """Whether ``request`` carries the secret (Basic or Bearer)."""
        header = request.getHeader(b"authorization")
        if not header:
            return False
        scheme, _, value = header.strip().partition(b" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == b"basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except ValueError:
                return False
            user, sep, password = decoded.partition(b":")
            user_ok = hmac.compare_digest(user, BASIC_USER)
            password_ok = hmac.compare_digest(password, self._secret)
            return bool(sep) and user_ok and password_ok
        if scheme == b"bearer":
            return hmac.compare_digest(value, self._secret)
        return False

    def getChildWithDefault(self, path, request):
        if not self.authorized(request):
            return _Unauthorized()
        return self.wrapped.getChildWithDefault(path, request)

    def render(self, request):
        if not self.authorized(request):
            return _Unauthorized().render(request)
        return self.wrapped.render(request)


class _Snapshot(resource.Resource):
    """Serves the first ``size`` bytes of a file that may still grow."""

    isLeaf = True

    def __init__(self, path, content_type: bytes):
        super().__init__()
        self.path = path
        self.content_type = content_type

    def render_GET(self, request):
        try:
            f = open(self.path, "rb")
        except OSError:
            return resource.NoResource("no such file").render(request)
        size = f.seek(0, 2)
        f.seek(0)
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"content-length", b"%d" % size)
        if request.method == b"HEAD" or size == 0:
            f.close()
            return b""
        producer = static.SingleRangeStaticProducer(request, f, 0, size)
        request.notifyFinish().addBoth(lambda _: f.close())
        producer.start()
        return server.NOT_DONE_YET

    render_HEAD = render_GET


class FileCacheResource(resource.Resource):
    """``/filecache/<sha1>`` and ``/filecache/buildlog``."""

    def __init__(self, agent: Agent):
        super().__init__()
        self.agent = agent

    def getChild(self, name, request):
        if name == b"buildlog":
            path = self.agent.build_log_path
            if path is None:
                return resource.NoResource("no build log")
            return _Snapshot(path, b"text/plain; charset=utf-8")
        if is_sha1(name):
            path = self.agent.cache.path_for(name.decode("ascii"))
            if path.is_file():
                return _Snapshot(path, b"application/octet-stream")
        return resource.NoResource("not in the cache")

    def render_GET(self, request):
        return resource.NoResource("name a sha1 or buildlog").render(request)


class _CappedRequest(server.Request):
    """A request whose body is dropped (and answered 413) past a cap."""

    _received = 0
    _too_large = False

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > self.channel.site.max_request_size:
            self._too_large = True
            return
        super().handleContentChunk(data)

    def process(self):
        if self._too_large:
            self.site = self.channel.site
            self.setResponseCode(413)
            self.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.write(b"413 request body larger than %d bytes\n"
                       % self.site.max_request_size)
            self.finish()
            return
        super().process()


class AgentSite(server.Site):
    """The agent's Site; ``.agent`` is the domain object behind it."""

    requestFactory = _CappedRequest

    def __init__(self, root, agent: Agent, max_request_size: int):
        super().__init__(root)
        self.agent = agent
        self.max_request_size = max_request_size


def build_site(config: AgentConfig, reactor=None, backend=None,
               registry=None, agent: Agent | None = None) -> AgentSite:
    """The agent's HTTP site for ``config`` (an :class:`AgentConfig`,
    validated). ``backend`` and ``registry`` replace the configured ones
    (tests); the Agent is ``site.agent``."""
    if reactor is None:
        from twisted.internet import reactor
    if agent is None:
        agent = Agent(config, reactor, backend=backend, registry=registry)
    root = resource.Resource()
    root.putChild(b"rpc", AgentXMLRPC(agent))
    root.putChild(b"filecache", FileCacheResource(agent))
    if not config.no_auth:
        root = AuthWrapper(root, config.secret, config.trusted_networks)
    else:
        Logger().warn("buildslave authentication is OFF (--no-auth): anyone "
                      "who can reach this port can run builds")
    return AgentSite(root, agent, config.max_request_size)
