"""What build managers share: the context they get, the outcome they give,
and the registry of build types by name."""

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface.verify import verifyClass

from lp_services.slave.buildlog import BuildLog
from lp_services.slave.chroot import UnsafeArchive, resolve_in_root, unpack
from lp_services.slave.interfaces import IBuildManager
from lp_services.protocol.states import BuildStatus
from lp_services.slave.volume import VolumeError, create_volume

__all__ = ["BuildContext", "BuildOutcome", "ManagerRegistry",
           "SandboxedBuildManager", "place_files"]


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
    #: Bytes of the build's /work (its own file system); 0 = no quota.
    work_quota: int = 0


@dataclass(frozen=True)
class BuildOutcome:
    """How a build ended, as status() reports it in WAITING."""

    status: BuildStatus
    filemap: dict[str, str] = field(default_factory=dict)
    dependencies: str | None = None
    #: sha1s this build added to the cache (removed again by clean()).
    added: frozenset[str] = frozenset()


class SandboxedBuildManager:
    """What every build manager that runs its build in one sandbox shares:
    start (an agent failure becomes BUILDERFAIL), abort and destroy (kill
    and release the sandbox), and running blocking steps off the reactor.

    Subclasses set ``name`` and implement ``async _run() -> BuildOutcome``,
    checking ``self._aborted`` between steps and keeping their sandbox in
    ``self._sandbox``; they may extend :meth:`_kill`.
    """

    log = Logger()

    def __init__(self, context: BuildContext):
        self.ctx = context
        self._aborted = False
        self._sandbox = None

    @property
    def sandbox(self):
        """The build's ISandbox once the build step started, else None."""
        return self._sandbox

    def _thread(self, f, *args):
        reactor = self.ctx.reactor
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(),
                                         f, *args)

    def start(self):
        """See ``IBuildManager.start``."""
        d = defer.ensureDeferred(self._run())

        def failed(failure):
            self.log.failure("build {id} failed in the agent", failure,
                             id=self.ctx.build_id)
            self.ctx.log.line("agent failure: %s" % failure.getErrorMessage())
            return BuildOutcome(BuildStatus.BUILDERFAIL)

        return d.addErrback(failed)

    def abort(self):
        """See ``IBuildManager.abort``."""
        self._aborted = True
        self._kill()

    def destroy(self):
        """See ``IBuildManager.destroy``: kill everything, release the
        sandbox."""
        self._aborted = True
        self._kill()
        if self._sandbox is not None:
            self._sandbox.destroy()

    def _kill(self):
        if self._sandbox is not None:
            self._sandbox.kill()

    async def _prepare(self, root, work, tools=("/bin/sh",),
                       missing="") -> BuildOutcome | None:
        """The unpack step: unpack the chroot into ``root`` (refused
        members -> CHROOTFAIL), check it has each of ``tools`` (else
        CHROOTFAIL, the log line ending with ``missing``), and copy the
        build's files into ``work`` (on the build's own work volume when
        it has a quota; files that do not fit are PACKAGEFAIL). Returns an
        outcome to end the build with, or None to go on."""
        ctx, log = self.ctx, self.ctx.log
        log.header("unpack")
        if ctx.work_quota:
            try:
                await self._thread(create_volume, ctx.build_dir / "work.img",
                                   work, ctx.work_quota)
            except VolumeError as e:
                log.line("cannot make the build's work volume: %s" % e)
                return BuildOutcome(BuildStatus.BUILDERFAIL)
            log.line("/work is a file system of its own: %d MiB"
                     % (ctx.work_quota >> 20))
        try:
            count = await self._thread(unpack, ctx.chroot, root)
        except UnsafeArchive as e:
            log.line("chroot refused: %s" % e)
            return BuildOutcome(BuildStatus.CHROOTFAIL)
        log.line("unpacked %d members of the chroot" % count)
        for tool in tools:
            if resolve_in_root(root, tool) is None:
                log.line("the chroot has no %s%s" % (tool, missing))
                return BuildOutcome(BuildStatus.CHROOTFAIL)
        try:
            await self._thread(place_files, ctx.files, work)
        except OSError as e:
            if not ctx.work_quota or e.errno not in (errno.ENOSPC,
                                                     errno.EDQUOT):
                raise
            log.line("the build's files do not fit in its work quota of "
                     "%d bytes" % ctx.work_quota)
            return BuildOutcome(BuildStatus.PACKAGEFAIL)
        log.line("placed %d files in /work" % len(ctx.files))
        return None

    def _cut_short(self, result) -> BuildOutcome | None:
        """The outcome of a sandbox run that did not run its course: the
        build was aborted (ABORTED) or the sandbox never started
        (BUILDERFAIL: the agent's fault, not the build's); else None."""
        log = self.ctx.log
        if self._aborted or result.killed:
            log.line("aborted")
            return BuildOutcome(BuildStatus.ABORTED)
        if not result.started:
            log.line("the sandbox did not start: %s" % result.error)
            return BuildOutcome(BuildStatus.BUILDERFAIL)
        return None

    async def _run(self) -> BuildOutcome:
        raise NotImplementedError


def place_files(files: dict, work) -> None:
    """Copy a build's files into ``work`` (blocking; made if missing, e.g.
    without a work volume). Copies, not links: the sandbox may change
    them."""
    work.mkdir(mode=0o755, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, work / name)
        os.chmod(work / name, 0o644)


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
