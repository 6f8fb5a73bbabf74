"""The agent's domain object: state, the current build, the file cache.

:class:`Agent` holds everything; the XML-RPC resource
(:mod:`lp_services.slave.rpc`) only translates calls to it. Every method
either does what it says or raises an :class:`~lp_services.slave.errors.
RequestRefused` having changed nothing. The state moves only through
:class:`~lp_services.slave.state.StateMachine`.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer, threads
from twisted.logger import Logger

from lp_services.protocol.names import InvalidFileName, check_filename
from lp_services.slave.buildlog import BuildLog
from lp_services.slave.cache import FileCache
from lp_services.slave.cgroup import Limits
from lp_services.slave.config import AgentConfig
from lp_services.slave.errors import (
    AgentDiskError, BadArguments, BadBuildId, BadFileName, BadSha1, NotClean,
    StaleLease, WrongState)
from lp_services.slave.manager import BuildContext, BuildOutcome, ManagerRegistry
from lp_services.protocol.states import (
    UNKNOWNBUILDER,
    UNKNOWNSUM,
    BuilderStatus,
    BuildStatus,
)
from lp_services.slave.state import StateMachine
from lp_services.slave.tree import remove_tree
from lp_services.slave.volume import VolumeError, detach_mounts
from lp_services.protocol.names import is_sha1
from lp_services.protocol.wire import wire_text, wire_value

__all__ = [
    "Agent",
    "BUILDER_VERSION",
    "PROTOCOL_VERSION",
    "default_registry",
    "make_backend",
]

PROTOCOL_VERSION = "1.0"
BUILDER_VERSION = "lp-services-buildslave 0.1.0"

#: Build ids become directory names: safe characters, bounded length.
_BUILD_ID = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._+:-]{0,199}\Z")
_MAX_URL = 8192
_MAX_CREDENTIAL = 1024
_MAX_FILES = 1000
#: Common build args and their types (PROTOCOL.md); others are free.
_COMMON_ARGS = {
    "arch_tag": str, "series": str, "suite": str, "archives": list,
    "archive_private": bool, "build_url": str, "builder_constraints": list,
    "fast_cleanup": bool, "image_type": str, "launchpad_instance": str,
    "launchpad_server_url": str,
}
_LIST_OF_STR = {"archives", "builder_constraints"}


def default_registry() -> ManagerRegistry:
    """The build types this agent knows."""
    from lp_services.slave.binarypackage import BinaryPackageBuildManager
    from lp_services.slave.script import ScriptBuildManager

    registry = ManagerRegistry()
    registry.register(ScriptBuildManager)
    registry.register(BinaryPackageBuildManager)
    return registry


def make_backend(config: AgentConfig, reactor):
    """The backend named by ``config.backend``."""
    limits = Limits(memory=config.memory_limit, pids=config.pids_limit,
                    cpu=config.cpu_limit)
    if config.backend == "sandbox":
        from lp_services.slave.idmap import IdRange
        from lp_services.slave.sandbox import SandboxBackend

        return SandboxBackend(reactor, limits, cgroup_mode=config.cgroup,
                              ids=IdRange(config.id_range_base))
    if config.backend == "qemu":
        from lp_services.slave.qemu import QemuBackend

        return QemuBackend.from_agent_config(config, reactor)
    raise ValueError("unknown backend %r (known: sandbox, qemu)"
                     % config.backend)


@dataclass
class _Build:
    build_id: str
    build_dir: Path
    manager: object
    log: BuildLog
    outcome: BuildOutcome | None = None


def _check_str(name: str, value, limit: int, optional: bool = False):
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise BadArguments("%s must be a string%s, not %s"
                           % (name, " or nil" if optional else "",
                              type(value).__name__))
    if len(value) > limit:
        raise BadArguments("%s is longer than %d characters" % (name, limit))
    if "\0" in value:
        raise BadArguments("%s contains NUL" % name)


def _sweep(work_dir: Path) -> list[str]:
    """Remove everything in ``work_dir`` (blocking): detach the mounts
    under each entry (a build's volume), then delete it. Return one line per
    entry that could not be removed (empty: all gone)."""
    failures = []
    try:
        names = sorted(p.name for p in work_dir.iterdir())
    except OSError as e:
        return ["cannot list %s: %s" % (work_dir, e.strerror)]
    for name in names:
        try:
            detach_mounts(work_dir / name)
            remove_tree(work_dir / name)
        except (OSError, VolumeError) as e:
            failures.append(str(e))
    return failures


def check_sha1(value, what: str = "sha1") -> str:
    """``value`` if it is 40 lower-case hex digits, else BadSha1."""
    if not isinstance(value, str) or not is_sha1(value):
        raise BadSha1("%s is not 40 lower-case hex digits: %.60r"
                      % (what, value))
    return value


class Agent:
    """See the module docstring."""

    log = Logger()

    def __init__(self, config: AgentConfig, reactor, backend=None,
                 registry: ManagerRegistry | None = None):
        self.config = config
        self.reactor = reactor
        self.cache = FileCache(config.cache_dir, reactor, config.max_file_size,
                               config.download_timeout)
        config.work_dir.mkdir(parents=True, exist_ok=True)
        self.backend = backend if backend is not None \
            else make_backend(config, reactor)
        self.registry = registry if registry is not None else default_registry()
        self._machine = StateMachine()
        self._waiters: list[tuple[BuilderStatus, defer.Deferred]] = []
        self._build: _Build | None = None
        #: The sweep of the work directory in progress, its waiters, and
        #: what the last one could not remove.
        self._sweeping: defer.Deferred | None = None
        self._sweep_waiters: list[defer.Deferred] = []
        self._leftovers: list[str] = []
        #: The newest buildmaster lease seen: (epoch, master).
        self._lease: tuple[int, str] | None = None

    def check_lease(self, method: str, master: str | None,
                    epoch: int | None) -> None:
        """Before a state change (build, abort, clean): refuse it from a
        buildmaster whose lease epoch is older than the newest seen, or
        equal to it but another master's (each take is a new epoch), which
        means that master lost this builder (perhaps while paused) and
        another took it. A caller that sends no lease (Launchpad's master,
        or a test) is not fenced.

        :raises StaleLease: nothing is changed.
        """
        if epoch is None:
            return
        if self._lease is not None and (
                epoch < self._lease[0]
                or (epoch == self._lease[0] and master != self._lease[1])):
            # Each take of the lease is a new epoch: the same epoch from
            # another master is a stale one too.
            raise StaleLease(
                "%s() from %s with lease %d, but %s holds lease %d of this "
                "builder" % (method, master, epoch, self._lease[1],
                             self._lease[0]))
        self._lease = (epoch, master or "")
        self.log.info("{method}() from {master} (lease {epoch})",
                      method=method, master=master, epoch=epoch)

    @property
    def state(self) -> BuilderStatus:
        """The current state."""
        return self._machine.state

    @property
    def current_manager(self):
        """The current build's manager (IBuildManager), or None."""
        return self._build.manager if self._build is not None else None

    @property
    def build_log_path(self) -> Path | None:
        """The current build's log, if there is a build."""
        return self._build.log.path if self._build is not None else None

    def wait_for(self, state: BuilderStatus) -> defer.Deferred:
        """A Deferred firing (with None) when the agent is in ``state``
        (at once if it is). For tests and in-process callers."""
        if self.state is state:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append((state, d))
        return d

    def _move(self, state: BuilderStatus) -> None:
        self._machine.move(state)
        ready = [w for w in self._waiters if w[0] is state]
        self._waiters = [w for w in self._waiters if w[0] is not state]
        for _, d in ready:
            d.callback(None)

    # -- protocol methods ------------------------------------------------

    def echo(self, *args) -> list:
        """The arguments, unchanged."""
        return list(args)

    def info(self) -> list:
        """``[protocol version, arch tag, build type names]``."""
        return [PROTOCOL_VERSION, self.config.arch_tag, self.registry.names()]

    def status(self) -> dict:
        """The protocol's status dict (``logtail`` as bytes); every string
        in it can be sent (see lp_services.protocol.wire)."""
        state = self.state
        result = {"builder_status": state.value,
                  "builder_version": BUILDER_VERSION}
        build = self._build
        if state is BuilderStatus.BUILDING:
            result["build_id"] = build.build_id
            result["logtail"] = build.log.tail()
        elif state is BuilderStatus.ABORTING:
            result["build_id"] = build.build_id
        elif state is BuilderStatus.WAITING:
            outcome = build.outcome
            result["build_id"] = build.build_id
            result["build_status"] = outcome.status.value
            if outcome.status in (BuildStatus.OK, BuildStatus.PACKAGEFAIL,
                                  BuildStatus.DEPFAIL):
                result["filemap"] = dict(outcome.filemap)
                # launchpad-buildd sends the key with all three results,
                # empty unless DEPFAIL; Launchpad's master expects it.
                result["dependencies"] = (
                    outcome.dependencies or ""
                    if outcome.status is BuildStatus.DEPFAIL else "")
        return wire_value(result)

    def ensure_present(self, sha1, url, username=None, password=None):
        """A Deferred firing with ``[present, info]`` (see FileCache)."""
        check_sha1(sha1)
        _check_str("url", url, _MAX_URL, optional=True)
        _check_str("username", username, _MAX_CREDENTIAL, optional=True)
        _check_str("password", password, _MAX_CREDENTIAL, optional=True)
        d = self.cache.ensure_present(sha1, url, username, password)
        return d.addCallback(wire_value)

    def build(self, build_id, build_type, chroot_sha1, filemap, args) -> list:
        """Start a build, or answer UNKNOWNBUILDER / UNKNOWNSUM, or raise."""
        if self.state is not BuilderStatus.IDLE:
            raise WrongState("build() needs the builder IDLE; it is %s"
                             % self.state.value)
        if not isinstance(build_id, str) or not build_id:
            raise BadBuildId("build id must be a non-empty string")
        if not _BUILD_ID.match(build_id):
            raise BadBuildId("build id %.60r has unsafe characters or is "
                             "longer than 200 (allowed: A-Z a-z 0-9 _ . + : -,"
                             " not first . + : -)" % build_id)
        _check_str("build type", build_type, 100)
        check_sha1(chroot_sha1, "chroot sha1")
        if not isinstance(filemap, dict):
            raise BadArguments("filemap must be a struct {name: sha1}, not %s"
                               % type(filemap).__name__)
        if len(filemap) > _MAX_FILES:
            raise BadArguments("more than %d files" % _MAX_FILES)
        for name, sha1 in filemap.items():
            try:
                check_filename(name)
            except InvalidFileName as e:
                raise BadFileName(str(e)) from None
            if name == "out":
                raise BadFileName("'out' is the output directory's name")
            check_sha1(sha1, "sha1 of %s" % name)
        if not isinstance(args, dict):
            raise BadArguments("args must be a struct, not %s"
                               % type(args).__name__)
        for key, kind in _COMMON_ARGS.items():
            if key in args and not isinstance(args[key], kind):
                raise BadArguments("args[%r] must be %s, not %s" % (
                    key, kind.__name__, type(args[key]).__name__))
            if key in _LIST_OF_STR and key in args and \
                    not all(isinstance(x, str) for x in args[key]):
                raise BadArguments("args[%r] must be a list of strings" % key)

        manager_cls = self.registry.get(build_type)
        if manager_cls is None:
            return [UNKNOWNBUILDER,
                    "unknown build type %.100r (known: %s)"
                    % (build_type, ", ".join(self.registry.names()))]
        manager_cls.validate_args(args)
        for name in manager_cls.needed_files(args):
            if name not in filemap:
                raise BadArguments("args name %r, which is not in the filemap"
                                   % name)
        if not self.cache.has(chroot_sha1):
            return [UNKNOWNSUM,
                    "chroot %s is not in the cache" % chroot_sha1]
        for name, sha1 in sorted(filemap.items()):
            if not self.cache.has(sha1):
                return [UNKNOWNSUM,
                        "%s (%s) is not in the cache" % (name, sha1)]

        self._check_clean()
        build_dir = self.config.work_dir / build_id
        try:
            build_dir.mkdir(mode=0o755)
            # A private archive's credentials never reach the log (as
            # launchpad-buildd scrubs archive_private builds' logs).
            log = BuildLog(build_dir / "buildlog", self.reactor,
                           self.config.max_log_size,
                           scrub=bool(isinstance(args, dict)
                                      and args.get("archive_private")))
        except OSError as e:
            try:
                remove_tree(build_dir)
            except OSError:
                pass  # build() refuses over it (NotClean) and sweeps again
            raise AgentDiskError("cannot create the build directory: %s"
                                 % e.strerror) from None
        context = BuildContext(
            build_id=build_id, build_dir=build_dir,
            chroot=self.cache.path_for(chroot_sha1),
            files={n: self.cache.path_for(s) for n, s in filemap.items()},
            args=dict(args), backend=self.backend, cache=self.cache,
            log=log, reactor=self.reactor, timeout=self.config.build_timeout,
            work_quota=self.config.work_quota)
        build = _Build(build_id, build_dir, manager_cls(context), log)
        self._build = build
        self._move(BuilderStatus.BUILDING)
        log.line("build %s (%s) on %s" % (build_id, build_type,
                                          self.config.name))
        if isinstance(args.get("build_url"), str):
            # As launchpad-buildd: the build's page, first in its log
            # (scrubbed like every line of a private build's log).
            log.line(args["build_url"])
        self.log.info("build {id} ({type}) started", id=build_id,
                      type=build_type)
        d = defer.maybeDeferred(build.manager.start)
        d.addErrback(self._manager_failed, build)
        d.addCallback(self._finished, build)
        return [BuilderStatus.BUILDING.value, build_id]

    def abort(self) -> str:
        """Kill the build; the agent ends in WAITING/ABORTED."""
        state = self.state
        if state is BuilderStatus.ABORTING:
            return state.value
        if state is not BuilderStatus.BUILDING:
            raise WrongState("abort() needs the builder BUILDING; it is %s"
                             % state.value)
        self._move(BuilderStatus.ABORTING)
        self._build.log.line("abort requested")
        self._build.manager.abort()
        return BuilderStatus.ABORTING.value

    def clean(self):
        """Remove the finished build; a Deferred firing with the IDLE state
        string once the work directory is empty, or failing with NotClean
        (the agent stays WAITING; a later clean() tries again)."""
        if self.state is not BuilderStatus.WAITING:
            raise WrongState("clean() needs the builder WAITING; it is %s"
                             % self.state.value)
        build = self._build
        build.manager.destroy()
        build.log.close()
        for sha1 in build.outcome.added:
            try:
                self.cache.remove(sha1)
            except OSError as e:
                self.log.warn("cannot remove result {sha1} from the cache: "
                              "{e}", sha1=sha1, e=e)
        build.outcome = BuildOutcome(build.outcome.status,
                                     build.outcome.filemap,
                                     build.outcome.dependencies)

        def swept(failures):
            if failures:
                raise NotClean(wire_text(
                    "clean() could not remove the build's files (the "
                    "builder stays WAITING; clean() again retries): %s"
                    % "; ".join(failures)[:2000]))
            if self._build is build:
                self._build = None
                self._move(BuilderStatus.IDLE)
                self.log.info("build {id} cleaned", id=build.build_id)
            return BuilderStatus.IDLE.value
        return self._sweep().addCallback(swept)

    # -- lifecycle -------------------------------------------------------

    def start(self) -> defer.Deferred:
        """Remove what a previous run left in the work directory (and the
        backend's leftovers, for a backend with a ``start()``). Fires with
        the list of what could not be removed (logged; build() refuses to
        start over it)."""
        start_backend = getattr(self.backend, "start", None)
        if start_backend is not None:
            start_backend()
        return self._sweep()

    def stop(self) -> defer.Deferred:
        """Kill any build, unmount its work volume (its files stay for the
        next start() to remove) and close connections."""
        if self._build is not None:
            self._build.manager.destroy()
        self.backend.stop()
        if self._sweeping is None:
            try:
                detach_mounts(self.config.work_dir)
            except (OSError, VolumeError) as e:
                self.log.error("cannot unmount the work volumes: {e}", e=e)
        ds = [self.cache.stop()]
        if self._sweeping is not None:
            ds.append(self._wait_sweep())
        return defer.gatherResults(ds)

    # -- internals -------------------------------------------------------

    def _check_clean(self) -> None:
        """Raise NotClean unless the work directory is empty (and start a
        new sweep of what is there, so a passing problem heals)."""
        if self._sweeping is not None:
            raise NotClean("the previous build's files are still being "
                           "removed; try again shortly")
        try:
            leftovers = sorted(p.name for p in self.config.work_dir.iterdir())
        except OSError as e:
            raise NotClean("cannot list the work directory: %s"
                           % e.strerror) from None
        if leftovers:
            reasons = "; ".join(self._leftovers) or "not removed yet"
            self._sweep()
            raise NotClean(wire_text(
                "the work directory holds leftovers (%s): %s; removing them "
                "again now" % (", ".join(leftovers[:10]), reasons[:2000])))

    def _wait_sweep(self) -> defer.Deferred:
        waiter = defer.Deferred()
        self._sweep_waiters.append(waiter)
        return waiter

    def _sweep(self) -> defer.Deferred:
        """Empty the work directory in a thread (one sweep at a time; a
        caller during a sweep waits for it). Fires with the failures."""
        if self._sweeping is None:
            pool = self.reactor.getThreadPool()
            d = threads.deferToThreadPool(self.reactor, pool, _sweep,
                                          self.config.work_dir)
            self._sweeping = d

            def done(result):
                self._sweeping = None
                if not isinstance(result, list):  # a Failure: a bug
                    self.log.failure("sweep failed", result)
                    result = ["sweep failed: %s" % result.getErrorMessage()]
                self._leftovers = result
                for failure in result:
                    self.log.error("work directory not clean: {reason}",
                                   reason=failure)
                waiters, self._sweep_waiters = self._sweep_waiters, []
                for waiter in waiters:
                    waiter.callback(list(result))
            d.addBoth(done)
        return self._wait_sweep()

    def _manager_failed(self, failure, build):
        self.log.failure("build {id}: manager failed", failure,
                         id=build.build_id)
        build.log.line("agent failure: %s" % failure.getErrorMessage())
        return BuildOutcome(BuildStatus.BUILDERFAIL)

    def _finished(self, outcome: BuildOutcome, build: _Build):
        if self._build is not build:
            return
        if self.state is BuilderStatus.ABORTING:
            outcome = BuildOutcome(BuildStatus.ABORTED, added=outcome.added)
        build.outcome = outcome
        build.log.header("result", final=True)
        build.log.line(outcome.status.value, final=True)
        self._move(BuilderStatus.WAITING)
        self.log.info("build {id} finished: {status}", id=build.build_id,
                      status=outcome.status.value)
