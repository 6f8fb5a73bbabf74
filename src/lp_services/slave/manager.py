"""What build managers share: the context they get, the outcome they give,
and the registry of build types by name."""

from dataclasses import dataclass, field
from pathlib import Path

from zope.interface.verify import verifyClass

from lp_services.slave.buildlog import BuildLog
from lp_services.slave.interfaces import IBuildManager
from lp_services.slave.state import BuildStatus

__all__ = ["BuildContext", "BuildOutcome", "ManagerRegistry"]


@dataclass
class BuildContext:
    """Everything one build needs, prepared by the agent."""

    build_id: str
    build_dir: Path               # <work_dir>/<build_id>: the build's own
    chroot: Path                  # the chroot tarball in the cache
    files: dict[str, Path]        # name -> cached file to place in /work
    args: dict
    backend: object               # IBackend
    cache: object                 # FileCache
    log: BuildLog
    reactor: object
    timeout: float


@dataclass(frozen=True)
class BuildOutcome:
    """How a build ended, as status() reports it in WAITING."""

    status: BuildStatus
    filemap: dict[str, str] = field(default_factory=dict)
    dependencies: str | None = None
    #: sha1s this build added to the cache (removed again by clean()).
    added: frozenset[str] = frozenset()


class ManagerRegistry:
    """Build type name -> manager class."""

    def __init__(self):
        self._managers: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Register ``cls`` under ``cls.name`` (usable as a decorator)."""
        verifyClass(IBuildManager, cls)
        if not isinstance(cls.name, str) or not cls.name:
            raise ValueError("a build manager needs a name")
        self._managers[cls.name] = cls
        return cls

    def get(self, name: str) -> type | None:
        """The class for ``name``, or None."""
        return self._managers.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._managers)
