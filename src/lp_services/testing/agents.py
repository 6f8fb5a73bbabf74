"""Run a real agent in-process, for tests (this project's and the
buildmaster's).

    running = yield start_agent(tmpdir)          # listens on 127.0.0.1:0
    proxy = running.proxy()                      # auth on
    status = yield proxy.callRemote("status")
    ...
    yield running.stop()

Everything is real: the XML-RPC over loopback, the auth, the cache, the
sandbox backend (pass ``backend=`` to replace it).
"""

from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer
from twisted.web.xmlrpc import Proxy

from lp_services.slave.config import AgentConfig
from lp_services.slave.web import AgentSite, build_site

__all__ = ["RunningAgent", "TEST_SECRET", "start_agent", "make_test_config"]

TEST_SECRET = "test-secret"


def make_test_config(tmpdir, **overrides) -> AgentConfig:
    """A validated config with its cache and work dirs under ``tmpdir``,
    secret :data:`TEST_SECRET`, small limits and timeouts."""
    tmpdir = Path(tmpdir)
    values = dict(name="test-builder", arch_tag="amd64",
                  cache_dir=tmpdir / "cache", work_dir=tmpdir / "work",
                  port=0, interface="127.0.0.1", secret=TEST_SECRET,
                  memory_limit=256 << 20, pids_limit=256, build_timeout=60.0,
                  download_timeout=30.0, work_quota=512 << 20)
    values.update(overrides)
    return AgentConfig(**values).validate()


@dataclass
class RunningAgent:
    """An agent listening on loopback."""

    site: AgentSite
    port: object  # IListeningPort
    config: AgentConfig

    @property
    def agent(self):
        """The domain object (lp_services.slave.agent.Agent)."""
        return self.site.agent

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return "http://127.0.0.1:%d" % self.port.getHost().port

    @property
    def rpc_url(self) -> str:
        """``http://127.0.0.1:PORT/rpc``."""
        return self.base_url + "/rpc"

    def proxy(self, secret: str | None = None, **kwargs) -> Proxy:
        """A twisted.web.xmlrpc.Proxy sending Basic ``buildd:secret``."""
        return Proxy(self.rpc_url.encode(), user=b"buildd",
                     password=(secret or self.config.secret or "").encode(),
                     allowNone=True, **kwargs)

    def stop(self) -> defer.Deferred:
        """Stop listening, kill any build, wait for deletions."""
        d = defer.maybeDeferred(self.port.stopListening)
        return d.addCallback(lambda _: self.agent.stop())


def start_agent(tmpdir=None, config: AgentConfig | None = None, reactor=None,
                **kwargs) -> defer.Deferred:
    """Start an agent on 127.0.0.1:0; fire with a :class:`RunningAgent`.

    Give ``config`` or a ``tmpdir`` for :func:`make_test_config`; ``kwargs``
    (``backend``, ``registry``) go to :func:`build_site`.
    """
    if reactor is None:
        from twisted.internet import reactor
    if config is None:
        config = make_test_config(tmpdir)
    site = build_site(config, reactor, **kwargs)
    d = site.agent.start()
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return d.addCallback(lambda _: RunningAgent(site, port, config))
