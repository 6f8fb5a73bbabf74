"""`twistd buildslave`: options and service.

``twistd -n buildslave --config /etc/lp-services/buildslave.toml`` (every
key can also be given as an option; options win). See docs/agent.md.
"""

from twisted.application.service import MultiService, Service
from twisted.logger import Logger
from twisted.python import usage

from lp_services.config import ConfigError
from lp_services.slave.config import load_config
from lp_services.slave.web import build_site

__all__ = ["AgentService", "Options", "makeService"]


class Options(usage.Options):
    """Options of `twistd buildslave`."""

    optParameters = [
        ["config", "c", None, "Configuration file (TOML)."],
        ["name", None, None, "Builder name."],
        ["arch-tag", None, None, "Architecture tag (e.g. amd64)."],
        ["cache-dir", None, None, "File cache directory."],
        ["work-dir", None, None, "Build directory."],
        ["backend", None, None, "Backend (sandbox)."],
        ["port", "p", None, "TCP port (default 8221; 0 = any free port)."],
        ["interface", None, None, "Interface to listen on (default: all)."],
        ["port-file", None, None, "Write the port listened on to this file."],
        ["secret-file", None, None, "File holding the shared secret."],
        ["memory-limit", None, None, "Memory of one build (e.g. 4G)."],
        ["pids-limit", None, None, "Processes of one build."],
        ["cpu-limit", None, None, "CPU cores of one build (0 = no limit)."],
        ["build-timeout", None, None, "Wall-clock seconds of one build."],
        ["cgroup", None, None, "auto, v1, v2 or none."],
        ["id-range-base", None, None,
         "First host id of the builds' id range (default 1879048192)."],
    ]
    optFlags = [
        ["no-auth", None, "Accept unauthenticated requests (warns)."],
    ]

    def __init__(self):
        super().__init__()
        self.trusted_networks = []

    def opt_trusted_network(self, cidr):
        """A source network (CIDR) whose requests need no credentials
        (repeatable)."""
        self.trusted_networks.append(cidr)

    def postOptions(self):
        overrides = {k.replace("-", "_"): v for k, v in self.items()
                     if k not in ("config", "no-auth")}
        if self["no-auth"]:
            overrides["no_auth"] = True
        if self.trusted_networks:
            overrides["trusted_networks"] = self.trusted_networks
        try:
            self.agent_config = load_config(self["config"], overrides)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


class AgentService(Service):
    """Listens with the agent's site; cleans the work directory at start;
    kills any build at stop."""

    log = Logger()

    def __init__(self, config, reactor=None):
        self.config = config
        self._reactor = reactor
        self.site = None
        self.port = None

    def startService(self):
        super().startService()
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        self.site = build_site(self.config, reactor)
        self.site.agent.start()
        self.port = reactor.listenTCP(self.config.port, self.site,
                                      interface=self.config.interface)
        port = self.port.getHost().port
        if self.config.port_file is not None:
            self.config.port_file.write_text("%d\n" % port)
        self.log.info(
            "buildslave {name} ({arch}) listening on port {port}; backend "
            "{backend}; cache {cache}; work {work}",
            name=self.config.name, arch=self.config.arch_tag, port=port,
            backend=self.config.backend, cache=self.config.cache_dir,
            work=self.config.work_dir)

    def stopService(self):
        super().stopService()
        self.log.info("buildslave stopping")
        d = self.port.stopListening() if self.port is not None else None
        agent = self.site.agent if self.site is not None else None

        def stop_agent(_):
            return agent.stop() if agent is not None else None

        if d is None:
            from twisted.internet import defer
            d = defer.succeed(None)
        return d.addCallback(stop_agent)


def makeService(options):
    """Build the buildslave service from its options."""
    top = MultiService()
    AgentService(options.agent_config).setServiceParent(top)
    return top
