"""A build type the test holds in BUILDING until it says how the build
ended: it drives the real agent through every state without timing races.
It plugs in through the build-type registry, like any build type."""

from twisted.internet import defer
from zope.interface import implementer, provider

from lp_services.slave.agent import default_registry
from lp_services.slave.errors import BadArguments
from lp_services.slave.interfaces import IBuildManager, IBuildManagerFactory


@provider(IBuildManagerFactory)
@implementer(IBuildManager)
class HoldBuildManager:
    """Writes ``args["log"]`` bytes to the log and waits for the test."""

    name = "hold"
    instances: list = []

    @staticmethod
    def validate_args(args):
        if "bad" in args:
            raise BadArguments("args['bad'] is refused by the hold type")

    @staticmethod
    def needed_files(args):
        return list(args.get("needs", []))

    def __init__(self, context):
        self.ctx = context
        self.finish = defer.Deferred()
        self.aborted = False
        self.destroyed = False
        HoldBuildManager.instances.append(self)

    def start(self):
        self.ctx.log.header("hold")
        self.ctx.log.write(self.ctx.args.get("log", "held\n").encode())
        return self.finish

    def abort(self):
        self.aborted = True

    def destroy(self):
        self.destroyed = True


def hold_registry():
    """The default registry plus ``hold``."""
    HoldBuildManager.instances = []
    registry = default_registry()
    registry.register(HoldBuildManager)
    return registry
