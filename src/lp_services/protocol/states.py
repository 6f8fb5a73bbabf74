"""Builder states, build results and status keys, as on the wire.

The names are launchpad-buildd's (``BuilderStatus.IDLE``,
``BuildStatus.OK``); the wire strings are the enum values. Do not confuse
:class:`BuildStatus` (how a build ended on the agent) with
:class:`lp_services.buildmaster.enums.BuildStatus` (a build's status in the
database, Launchpad's other enum of that name).
"""

import enum

__all__ = [
    "BuildStatus",
    "BuilderStatus",
    "KEY_BUILD_ID",
    "KEY_BUILD_STATUS",
    "KEY_BUILDER_STATUS",
    "KEY_BUILDER_VERSION",
    "KEY_DEPENDENCIES",
    "KEY_FILEMAP",
    "KEY_LOGTAIL",
    "UNKNOWNBUILDER",
    "UNKNOWNSUM",
]


class _Wire(enum.Enum):
    @property
    def short(self) -> str:
        """The name without its class: ``IDLE`` for BuilderStatus.IDLE."""
        return self.name


class BuilderStatus(_Wire):
    """What the agent is doing (``status()["builder_status"]``)."""

    IDLE = "BuilderStatus.IDLE"
    BUILDING = "BuilderStatus.BUILDING"
    WAITING = "BuilderStatus.WAITING"
    ABORTING = "BuilderStatus.ABORTING"


class BuildStatus(_Wire):
    """How a build ended (``status()["build_status"]`` in WAITING)."""

    OK = "BuildStatus.OK"
    PACKAGEFAIL = "BuildStatus.PACKAGEFAIL"
    DEPFAIL = "BuildStatus.DEPFAIL"
    CHROOTFAIL = "BuildStatus.CHROOTFAIL"
    BUILDERFAIL = "BuildStatus.BUILDERFAIL"
    GIVENBACK = "BuildStatus.GIVENBACK"
    ABORTED = "BuildStatus.ABORTED"


#: ``build()``'s first answer for a build type the agent does not offer.
UNKNOWNBUILDER = "BuilderStatus.UNKNOWNBUILDER"
#: ``build()``'s first answer for a file the agent's cache lacks.
UNKNOWNSUM = "BuilderStatus.UNKNOWNSUM"

#: The keys of ``status()``'s answer.
KEY_BUILDER_STATUS = "builder_status"
KEY_BUILDER_VERSION = "builder_version"
KEY_BUILD_ID = "build_id"
KEY_BUILD_STATUS = "build_status"
KEY_LOGTAIL = "logtail"
KEY_FILEMAP = "filemap"
KEY_DEPENDENCIES = "dependencies"
