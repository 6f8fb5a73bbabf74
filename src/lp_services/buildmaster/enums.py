"""Enumerations of the build farm, stored as smallint columns."""

import enum

__all__ = ["BuildStatus", "BuilderCleanStatus"]


class BuildStatus(enum.IntEnum):
    """A build's status in ``build_farm_job`` (Launchpad's names)."""

    NEEDSBUILD = 0
    FULLYBUILT = 1
    FAILEDTOBUILD = 2
    MANUALDEPWAIT = 3
    CHROOTWAIT = 4
    SUPERSEDED = 5
    BUILDING = 6
    FAILEDTOUPLOAD = 7
    UPLOADING = 8
    CANCELLING = 9
    CANCELLED = 10
    GATHERING = 11


class BuilderCleanStatus(enum.IntEnum):
    """Whether a builder is known to be fit for the next build."""

    CLEAN = 0
    DIRTY = 1
    CLEANING = 2
