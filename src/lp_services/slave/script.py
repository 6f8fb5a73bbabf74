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
   devices and unsafe names are skipped with a note in the log).

Results: exit 0 -> ``OK``; the DEPFAIL convention (the script writes the
missing dependencies, e.g. ``libfoo-dev (>= 1.2), bar``, to
``/work/out/.depwait`` and exits with status :data:`DEPWAIT_EXIT_CODE`)
-> ``DEPFAIL`` with that text as ``dependencies``; any other failure or the
timeout -> ``PACKAGEFAIL``; a sandbox that cannot start -> ``BUILDERFAIL``.

Args: ``script`` (required): the name of one of the build's files.
"""

import os
import shutil
import stat

from twisted.logger import Logger
from zope.interface import implementer, provider

from lp_services.filestore.store import InvalidFileName, check_filename
from lp_services.slave.chroot import UnsafeArchive, resolve_in_root, unpack
from lp_services.slave.errors import BadArguments
from lp_services.slave.interfaces import IBuildManager, IBuildManagerFactory
from lp_services.slave.manager import BuildOutcome, SandboxedBuildManager
from lp_services.slave.state import BuildStatus

__all__ = ["DEPWAIT_EXIT_CODE", "DEPWAIT_FILE", "ScriptBuildManager"]

#: The exit status that, with :data:`DEPWAIT_FILE`, means DEPFAIL.
DEPWAIT_EXIT_CODE = 100
#: Written by the script in /work/out: the missing dependencies.
DEPWAIT_FILE = ".depwait"
#: At most this many result files are collected.
MAX_RESULTS = 1000
_DEPWAIT_MAX = 64 << 10
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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

        log.header("unpack")
        try:
            count = await self._thread(unpack, ctx.chroot, root)
        except UnsafeArchive as e:
            log.line("chroot refused: %s" % e)
            return BuildOutcome(BuildStatus.CHROOTFAIL)
        log.line("unpacked %d members of the chroot" % count)
        if resolve_in_root(root, "/bin/sh") is None:
            log.line("the chroot has no /bin/sh")
            return BuildOutcome(BuildStatus.CHROOTFAIL)
        await self._thread(_place_files, ctx.files, work)
        log.line("placed %d files in /work" % len(ctx.files))
        if self._aborted:
            return BuildOutcome(BuildStatus.ABORTED)

        log.header("build")
        self._sandbox = ctx.backend.sandbox(ctx.build_id, root, work)
        script = ctx.args["script"]
        result = await self._sandbox.run(["/bin/sh", "/work/" + script],
                                         log.write, ctx.timeout)
        if self._aborted or result.killed:
            log.line("aborted")
            return BuildOutcome(BuildStatus.ABORTED)
        if not result.started:
            log.line("the sandbox did not start: %s" % result.error)
            return BuildOutcome(BuildStatus.BUILDERFAIL)
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
        filemap, added, notes, depwait = await self._thread(
            _collect, work, ctx.cache)
        for note in notes:
            log.line(note)
        for name, sha1 in sorted(filemap.items()):
            log.line("result %s %s" % (sha1, name))
        dependencies = None
        if status is BuildStatus.PACKAGEFAIL and not result.timed_out \
                and result.exit_code == DEPWAIT_EXIT_CODE and depwait is not None:
            status, dependencies = BuildStatus.DEPFAIL, depwait
            log.line("missing dependencies: %s" % depwait)
        return BuildOutcome(status, filemap, dependencies, frozenset(added))


def _place_files(files: dict, work) -> None:
    """Copy the build's files into ``work`` and make ``work/out``
    (blocking). Copies, not links: the sandbox may change them."""
    work.mkdir(mode=0o755)
    for name, source in files.items():
        shutil.copyfile(source, work / name)
        os.chmod(work / name, 0o644)
    (work / "out").mkdir(mode=0o755)


def _collect(work, cache):
    """Move results into the cache (blocking). Never follows a link the
    build made. Returns (filemap, new sha1s, notes, depwait text)."""
    filemap, added, notes, depwait = {}, set(), [], None
    try:
        work_fd = os.open(work, _DIR_FLAGS)
    except OSError as e:
        return filemap, added, ["no build directory: %s" % e.strerror], None
    try:
        try:
            out_fd = os.open("out", _DIR_FLAGS, dir_fd=work_fd)
        except OSError:
            return filemap, added, ["/work/out is missing or not a "
                                    "directory: no results"], None
        try:
            names = sorted(os.listdir(out_fd))
            for name in names:
                try:
                    check_filename(name)
                except InvalidFileName:
                    notes.append("skipped unsafe result name %r" % name)
                    continue
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW
                                 | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=out_fd)
                except OSError:
                    notes.append("skipped %s: not a regular file" % name)
                    continue
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        notes.append("skipped %s: not a regular file" % name)
                        continue
                    if name == DEPWAIT_FILE:
                        depwait = os.read(fd, _DEPWAIT_MAX).decode(
                            "utf-8", "replace").strip()
                        continue
                    if len(filemap) >= MAX_RESULTS:
                        notes.append("more than %d results: %s skipped"
                                     % (MAX_RESULTS, name))
                        continue
                    try:
                        sha1, size, new = cache.add_fd(fd)
                    except ValueError as e:
                        notes.append("skipped %s: %s" % (name, e))
                        continue
                    filemap[name] = sha1
                    if new:
                        added.add(sha1)
                finally:
                    os.close(fd)
        finally:
            os.close(out_fd)
    finally:
        os.close(work_fd)
    return filemap, added, notes, depwait
