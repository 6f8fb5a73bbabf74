"""`twistd jobrunner`: options and service (not yet able to do its work)."""

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python import usage

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    """Options of `twistd jobrunner`."""

    optParameters = [
        ["config", "c", None, "Configuration file."],
    ]


class _NotYetService(Service):
    """Starts, says plainly that it cannot work yet, and stops on SIGTERM."""

    log = Logger()

    def startService(self):
        super().startService()
        self.log.warn("jobrunner is not yet able to do its work in this "
                      "version of lp-services; idling until stopped")

    def stopService(self):
        self.log.info("jobrunner stopping")
        return super().stopService()


def makeService(options):
    """Build the jobrunner service from its options."""
    return _NotYetService()
