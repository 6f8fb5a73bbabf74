"""Build type ``script``: run a shell script from the build's files.

Steps (each with a header in the log):

1. **unpack** the chroot into ``<build>/chroot`` (refused members or a
   chroot without ``/bin/sh`` -> ``CHROOTFAIL``) and copy the build's
   files into ``<build>/build``, which the sandbox sees as ``/work``;
   ``/work/out`` is created empty.
2. **build**: ``/bin/sh /work/<args["script"]>`` in the sandbox, with the
   build timeout.
3. **collect**: every regular file directly in ``/work/out`` is copied into
   the cache under its sha1 and listed in ``filemap`` (links, directories,
   devices and unsafe names are skipped with a note in the log). All
   results together must fit in the build's work quota (counted by their
   apparent size: a sparse file is copied whole).

Results: exit 0 -> ``OK``; the DEPFAIL convention (the script writes the
missing dependencies, e.g. ``libfoo-dev (>= 1.2), bar``, to
``/work/out/.depwait`` and exits with status :data:`DEPWAIT_EXIT_CODE`)
-> ``DEPFAIL`` with that text as ``dependencies``; any other failure or the
timeout -> ``PACKAGEFAIL``, and so does a build whose results do not fit
in its quota (a build that fills its own ``/work`` fails as it would on a
full disk); a sandbox that cannot start -> ``BUILDERFAIL``; results the
agent's cache has no room for -> ``GIVENBACK`` (the agent's disk is not
the build's fault; the build is tried again).

Args: ``script`` (required): the name of one of the build's files.
"""

import os

from twisted.logger import Logger
from zope.interface import implementer, provider

from lp_services.protocol.names import InvalidFileName, check_filename
from lp_services.slave.errors import BadArguments
from lp_services.slave.interfaces import IBuildManager, IBuildManagerFactory
from lp_services.slave.manager import BuildOutcome, SandboxedBuildManager
from lp_services.slave.results import DIR_FLAGS, Collected, collect_directory
from lp_services.protocol.states import BuildStatus

__all__ = ["DEPWAIT_EXIT_CODE", "DEPWAIT_FILE", "ScriptBuildManager"]

#: The exit status that, with :data:`DEPWAIT_FILE`, means DEPFAIL.
DEPWAIT_EXIT_CODE = 100
#: Written by the script in /work/out: the missing dependencies.
DEPWAIT_FILE = ".depwait"
_DEPWAIT_MAX = 64 << 10


@provider(IBuildManagerFactory)
@implementer(IBuildManager)
class ScriptBuildManager(SandboxedBuildManager):
    """See the module docstring."""

    name = "script"
    log = Logger()

    @staticmethod
    def validate_args(args: dict) -> None:
        """``script`` must name a file of the build (checked by the agent
        against the filemap via :meth:`needed_files`)."""
        script = args.get("script")
        if not isinstance(script, str):
            raise BadArguments("args['script'] must be a string naming one "
                               "of the build's files")
        try:
            check_filename(script)
        except InvalidFileName as e:
            raise BadArguments("args['script']: %s" % e) from None

    @staticmethod
    def needed_files(args: dict) -> list[str]:
        """Names that must be in the build's filemap."""
        return [args["script"]]

    async def _run(self) -> BuildOutcome:
        ctx, log = self.ctx, self.ctx.log
        root = ctx.build_dir / "chroot"
        work = ctx.build_dir / "build"

        failed = await self._prepare(root, work)
        if failed is not None:
            return failed
        await self._thread((work / "out").mkdir, 0o755)
        if self._aborted:
            return BuildOutcome(BuildStatus.ABORTED)

        log.header("build")
        self._sandbox = ctx.backend.sandbox(ctx.build_id, root, work)
        script = ctx.args["script"]
        result = await self._sandbox.run(["/bin/sh", "/work/" + script],
                                         log.write, ctx.timeout)
        cut_short = self._cut_short(result)
        if cut_short is not None:
            return cut_short
        if result.timed_out:
            log.line("build timed out after %g s; killed" % ctx.timeout)
            status = BuildStatus.PACKAGEFAIL
        elif result.exit_code == 0:
            log.line("script exited 0")
            status = BuildStatus.OK
        else:
            log.line("script exited %s" % result.exit_code)
            status = BuildStatus.PACKAGEFAIL

        log.header("collect")
        found, depwait = await self._thread(
            _collect, work, ctx.cache, ctx.work_quota or None)
        for note in found.notes:
            log.line(note)
        for name, sha1 in sorted(found.filemap.items()):
            log.line("result %s %s" % (sha1, name))
        dependencies = None
        if found.no_space:
            log.line("the agent's cache has no room for the results: "
                     "giving the build back")
            for sha1 in found.added:
                ctx.cache.remove(sha1)
            return BuildOutcome(BuildStatus.GIVENBACK)
        if found.over_quota and status is BuildStatus.OK:
            log.line("the results do not fit in the build's quota")
            status = BuildStatus.PACKAGEFAIL
        if status is BuildStatus.PACKAGEFAIL and not result.timed_out \
                and result.exit_code == DEPWAIT_EXIT_CODE and depwait is not None:
            status, dependencies = BuildStatus.DEPFAIL, depwait
            log.line("missing dependencies: %s" % depwait)
        return BuildOutcome(status, found.filemap, dependencies,
                            frozenset(found.added))


def _collect(work, cache, budget):
    """Move results into the cache (blocking). Never follows a link the
    build made. Returns (Collected, depwait text)."""
    try:
        work_fd = os.open(work, DIR_FLAGS)
    except OSError as e:
        return Collected(notes=["no build directory: %s" % e.strerror]), None
    try:
        try:
            out_fd = os.open("out", DIR_FLAGS, dir_fd=work_fd)
        except OSError:
            return Collected(notes=["/work/out is missing or not a "
                                    "directory: no results"]), None
        depwait = []

        def read_depwait(name, fd):
            if name != DEPWAIT_FILE:
                return False
            depwait.append(os.read(fd, _DEPWAIT_MAX).decode(
                "utf-8", "replace").strip())
            return True

        try:
            found = collect_directory(out_fd, cache, special=read_depwait,
                                      budget=budget, raise_no_space=False)
        finally:
            os.close(out_fd)
    finally:
        os.close(work_fd)
    return found, depwait[0] if depwait else None
