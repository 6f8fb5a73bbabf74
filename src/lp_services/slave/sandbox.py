"""The ``sandbox`` backend: bubblewrap, with cgroup limits.

As root (the agent's normal case), every build runs in a user namespace
that maps ids 0-65535 inside onto a dedicated range of host ids that owns
nothing on the host (:mod:`lp_services.slave.idmap`; base
``id_range_base``, checked free by :meth:`SandboxBackend.start`), never
onto host root. The launcher makes that namespace and bubblewrap joins it
(``--userns``) as the unprivileged build user (uid/gid 1000 inside) with
no capabilities, nested user namespaces refused
(``--assert-userns-disabled``), a seccomp filter
(:mod:`lp_services.slave.seccomp`), its own ipc, pid, net, uts and cgroup
namespaces, a read-only root, ``/proc/sys`` read-only, a writable
``/work``, private /proc, /dev and /tmp, and a clear environment. Before
the first command the unpacked chroot is given to the namespace's root and
``/work`` to the build user (so the build can write there and chown works
between inside ids, as fakeroot and dpkg need); after every command
set-uid/set-gid bits are stripped from ``/work``. See
docs/virtualization.md, "Isolation facts".

Run as another user (a developer's machine), bubblewrap makes its own
one-id user namespace (``--unshare-all``): the build is that user (the
seccomp filter still applies).

The process is started with ``reactor.spawnProcess`` through a tiny
``/bin/sh`` launcher that first writes its own pid into the build's
cgroups and then execs the id-map launcher, which runs bubblewrap as the
first process of a pid namespace that dies with the launcher (so every
descendant is counted from the start); without cgroups the launcher
execs ``prlimit`` to set rlimits. Bubblewrap reports through
``--json-status-fd`` whether the command started and its exit code, so a
sandbox that failed to start is told apart from a script that failed.

Killing: SIGKILL to the launcher (its child, bubblewrap, dies with it
and takes the launcher's pid namespace with it) and SIGKILL to
every member of the cgroups until they are empty.
"""

import json
import os
import re
import shutil
import signal
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from twisted.internet import defer, threads
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from zope.interface import implementer

from lp_services.slave import idmap, seccomp
from lp_services.slave.cgroup import Limits, detect
from lp_services.slave.idmap import BUILD_GID, BUILD_UID, IdRange
from lp_services.slave.interfaces import IBackend, ISandbox

__all__ = ["RunResult", "SandboxBackend", "bwrap_argv", "SANDBOX_UID",
           "SECCOMP_FD", "USERNS_FD", "namespace_options"]

#: The uid and gid builds run as inside the sandbox (the build user).
SANDBOX_UID = BUILD_UID
#: The environment inside (after --clearenv).
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/work",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
}
_STATUS_FD = 3
#: The descriptor bubblewrap reads the seccomp program from.
SECCOMP_FD = 4
#: The descriptor the id-map launcher gives bubblewrap the user namespace
#: on (``--userns``).
USERNS_FD = 5
_STATUS_MAX = 64 << 10

# Joins the cgroup.procs files given before "--", then execs the rest.
_LAUNCHER = ('while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; '
             'shift; done; shift; exec "$@"')

_serial = count(1)


@dataclass(frozen=True)
class RunResult:
    """How a sandboxed command ended."""

    started: bool                 # bubblewrap ran the command
    exit_code: int | None         # the command's status (128+N: signal N)
    timed_out: bool = False
    killed: bool = False          # kill() was called (abort)
    error: str | None = None      # why the sandbox failed to start

    @property
    def ok(self) -> bool:
        """Started, finished on its own and exited 0."""
        return (self.started and self.exit_code == 0
                and not self.timed_out and not self.killed)


def namespace_options(*, as_root: bool, uid: int = SANDBOX_UID,
                      gid: int = BUILD_GID,
                      userns_fd: int | None = USERNS_FD,
                      share_net: bool = False,
                      drop_caps: bool = True) -> list[str]:
    """bubblewrap's namespace and identity options.

    As root: join the id range's user namespace on ``userns_fd`` (made by
    :func:`lp_services.slave.idmap.launcher_argv`) as ``uid``/``gid``
    inside, or with ``userns_fd`` None run as the root the launcher
    already made bubblewrap in that namespace (``as_root=True`` there);
    fail unless nested user namespaces are disabled; new ipc, pid, uts,
    cgroup (and net unless ``share_net``) namespaces owned by it.
    Otherwise bubblewrap's own unprivileged user namespace."""
    if not as_root:
        return ["--unshare-all"] + (["--share-net"] if share_net else [])
    opts = []
    if userns_fd is not None:
        opts += ["--userns", str(userns_fd), "--uid", str(uid),
                 "--gid", str(gid)]
    opts.append("--assert-userns-disabled")
    if drop_caps:
        opts += ["--cap-drop", "ALL"]
    opts += ["--unshare-ipc", "--unshare-pid", "--unshare-uts",
             "--unshare-cgroup-try"]
    if not share_net:
        opts.append("--unshare-net")
    return opts


def bwrap_argv(root: Path, work: Path, argv: list[str], *, as_root: bool,
               bwrap: str = "bwrap", status_fd: int | None = _STATUS_FD,
               env: dict | None = None,
               userns_fd: int = USERNS_FD,
               seccomp_fd: int | None = None) -> list[str]:
    """The bubblewrap command line for ``argv`` (see the module
    docstring); as root it must be run through
    :func:`lp_services.slave.idmap.launcher_argv` with ``userns_fd``;
    ``seccomp_fd`` holds the program of :mod:`lp_services.slave.seccomp`."""
    cmd = [bwrap] + namespace_options(as_root=as_root, userns_fd=userns_fd)
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    cmd += ["--die-with-parent", "--new-session",
            "--hostname", "lp-build",
            "--ro-bind", str(root), "/",
            "--proc", "/proc",
            # bubblewrap leaves /proc/sys writable (its directories are
            # mode 0555, so it thinks them read-only already).
            "--ro-bind", "/proc/sys", "/proc/sys",
            "--dev", "/dev", "--tmpfs", "/tmp",
            "--bind", str(work), "/work", "--chdir", "/work", "--clearenv"]
    for key, value in (env or SANDBOX_ENV).items():
        cmd += ["--setenv", key, value]
    if status_fd is not None:
        cmd += ["--json-status-fd", str(status_fd)]
    return cmd + ["--"] + list(argv)


class _SandboxProtocol(ProcessProtocol):
    def __init__(self, output, done: defer.Deferred):
        self.output = output
        self.done = done
        self.status = b""

    def connectionMade(self):
        self.transport.closeStdin()

    def childDataReceived(self, fd, data):
        if fd == _STATUS_FD:
            if len(self.status) < _STATUS_MAX:
                self.status += data[:_STATUS_MAX - len(self.status)]
        else:
            self.output(data)

    def processEnded(self, reason):
        code = 0 if reason.check(ProcessDone) else reason.value.exitCode
        self.done.callback((code, reason.value.signal, self.status))


@implementer(ISandbox)
class SandboxSession:
    """One build's bubblewrap sandbox. See ``ISandbox``."""

    log = Logger()

    def __init__(self, backend: "SandboxBackend", build_id: str,
                 root: Path, work: Path):
        self._backend = backend
        self.build_id = build_id
        self.root = Path(root)
        self.work = Path(work)
        self.cgroup = None
        self._transport = None
        self._killed = False
        self._timed_out = False
        self._destroyed = False
        self._leftover = None  # a cgroup destroy() could not remove yet
        self._shifted = False  # the chroot and /work are in the id range

    def _cgroup_name(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.build_id)[:64]
        return "%s-%d-%d" % (safe, os.getpid(), next(_serial))

    def run(self, argv, output, timeout, env=None):
        """See ``ISandbox.run``; ``env`` adds to the sandbox's
        environment."""
        b = self._backend
        if self._destroyed:
            return defer.succeed(RunResult(False, None,
                                           error="sandbox destroyed"))
        self._killed = self._timed_out = False
        if b.ids is None or self._shifted:
            d = defer.succeed(None)
        else:
            d = b.in_thread(self._shift)

            def shifted(_):
                self._shifted = True

            def not_shifted(failure):
                return RunResult(False, None, error=(
                    "cannot give the build its files: %s"
                    % failure.getErrorMessage()))
            d.addCallbacks(shifted, not_shifted)

        def start(previous):
            if isinstance(previous, RunResult):
                return previous
            if self._destroyed or self._killed:
                return RunResult(False, None, killed=self._killed,
                                 error="sandbox destroyed")
            return self._start(argv, output, timeout, env)
        return d.addCallback(start)

    def _shift(self):
        """Give the chroot to the namespace's root and /work to the build
        user (blocking; before anything of the build ran)."""
        ids = self._backend.ids
        if self.root.resolve() == Path("/"):
            raise ValueError("refusing to give the host's / to the build")
        idmap.shift_tree(self.root, ids.host(0), ids.host(0))
        idmap.shift_tree(self.work, ids.host(SANDBOX_UID),
                         ids.host(BUILD_GID))

    def _start(self, argv, output, timeout, env):
        b = self._backend
        launcher_args = []
        try:
            if b.cgroups is not None:
                if self.cgroup is None:
                    self.cgroup = b.cgroups.create(self._cgroup_name(),
                                                   b.limits)
                launcher_args = [str(p) for p in self.cgroup.procs_files]
        except OSError as e:
            return defer.succeed(RunResult(
                False, None, error="cannot create the build's cgroup: %s" % e))
        env = {**SANDBOX_ENV, **(env or {})}
        if b.ids is not None:
            command = idmap.launcher_argv(
                b.ids, USERNS_FD,
                bwrap_argv(idmap.alias(0), idmap.alias(1), argv,
                           as_root=True, bwrap=b.bwrap, env=env,
                           seccomp_fd=SECCOMP_FD),
                expose=[self.root, self.work])
        else:
            command = bwrap_argv(self.root, self.work, argv, as_root=False,
                                 bwrap=b.bwrap, env=env,
                                 seccomp_fd=SECCOMP_FD)
        try:
            filter_fd = seccomp.memfd(seccomp.filter_program())
        except (seccomp.SeccompError, OSError) as e:
            return defer.succeed(RunResult(
                False, None, error="no seccomp filter: %s" % e))
        if b.cgroups is None:
            command = b.rlimit_prefix() + command
        args = ["/bin/sh", "-c", _LAUNCHER, "lp-sandbox",
                *launcher_args, "--", *command]
        done = defer.Deferred()
        proto = _SandboxProtocol(output, done)
        try:
            self._transport = b.reactor.spawnProcess(
                proto, "/bin/sh", args,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                childFDs={0: "w", 1: "r", 2: "r", _STATUS_FD: "r",
                          SECCOMP_FD: filter_fd})
        except OSError as e:
            return defer.succeed(RunResult(
                False, None, error="cannot start bubblewrap: %s" % e))
        finally:
            os.close(filter_fd)
        b.running.add(self)
        timer = b.reactor.callLater(timeout, self._on_timeout)

        def ended(result):
            code, sig, status = result
            if timer.active():
                timer.cancel()
            self._transport = None
            b.running.discard(self)
            if self.cgroup is not None:
                # Anything that slipped out of the pid namespace's teardown.
                self.cgroup.kill()
            if self._leftover is not None and self._leftover.remove():
                self._leftover = None
            started, child_code = _parse_status(status)
            error = None
            if not started and not (self._killed or self._timed_out):
                error = ("bubblewrap failed (exit %s%s)"
                         % (code, ", signal %s" % sig if sig else ""))
            return RunResult(started, child_code, self._timed_out,
                             self._killed, error)

        done.addCallback(ended)
        if b.ids is not None:
            done.addCallback(self._strip)
        return done

    def _strip(self, result):
        """Clear set-uid/set-gid bits the build left in /work (nothing of
        the build runs any more: its pid namespace is gone)."""
        d = self._backend.in_thread(idmap.strip_privilege_bits, self.work)

        def stripped(count):
            if count:
                self.log.info("build {id}: cleared set-uid/set-gid bits of "
                              "{n} files", id=self.build_id, n=count)

        def failed(failure):
            self.log.failure("build {id}: stripping /work failed", failure,
                             id=self.build_id)
        d.addCallbacks(stripped, failed)
        return d.addCallback(lambda _: result)

    def _on_timeout(self):
        self._timed_out = True
        self._kill_now()

    def _kill_now(self):
        if self._transport is not None:
            try:
                self._transport.signalProcess(signal.SIGKILL)
            except (ProcessExitedAlready, OSError):
                pass
        if self.cgroup is not None:
            self.cgroup.kill()

    def kill(self):
        """See ``ISandbox.kill``."""
        self._killed = True
        self._kill_now()

    def destroy(self):
        """See ``ISandbox.destroy``."""
        self._destroyed = True
        self._kill_now()
        if self.cgroup is not None:
            if not self.cgroup.remove():
                self._leftover = self.cgroup
            self.cgroup = None
        elif self._leftover is not None and self._leftover.remove():
            self._leftover = None
        self._backend.running.discard(self)


def _parse_status(status: bytes) -> tuple[bool, int | None]:
    """bubblewrap's JSON status lines -> (command started, exit code)."""
    started, code = False, None
    for line in status.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "child-pid" in record:
            started = True
        if isinstance(record.get("exit-code"), int):
            code = record["exit-code"]
    return started, code


@implementer(IBackend)
class SandboxBackend:
    """See ``IBackend`` and the module docstring."""

    name = "sandbox"
    log = Logger()

    def __init__(self, reactor, limits: Limits, cgroup_mode: str = "auto",
                 bwrap: str | None = None, cgroups=None,
                 ids: IdRange | None = None):
        self.reactor = reactor
        self.limits = limits
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.as_root = os.geteuid() == 0
        #: The id range builds run in (None when not root: then
        #: bubblewrap's own one-id namespace is all there is).
        self.ids = (ids or IdRange()) if self.as_root else None
        self.cgroups = cgroups if cgroups is not None else detect(cgroup_mode)
        self.running: set[SandboxSession] = set()
        if self.cgroups is None:
            self.log.warn("no usable cgroups: builds are limited by rlimits "
                          "only (address space; see docs/agent.md)")
        if not self.as_root:
            self.log.warn("not running as root: builds run as the agent's "
                          "own user, without the dedicated id range (see "
                          "docs/virtualization.md)")

    def in_thread(self, f, *args):
        """Run blocking ``f`` in the reactor's thread pool."""
        return threads.deferToThreadPool(self.reactor,
                                         self.reactor.getThreadPool(),
                                         f, *args)

    @property
    def cgroup_version(self) -> str:
        """``v1``, ``v2`` or ``none``."""
        return self.cgroups.version if self.cgroups is not None else "none"

    def rlimit_prefix(self) -> list[str]:
        """``prlimit`` options for the fallback (no cgroups)."""
        prefix = ["prlimit", "--as=%d" % self.limits.memory]
        if not self.as_root:
            # RLIMIT_NPROC counts per real uid; for root it would count
            # every root process of the host, so it is only set otherwise.
            prefix.append("--nproc=%d" % self.limits.pids)
        return prefix + ["--"]

    def start(self) -> None:
        """Check the id range is free (:func:`idmap.check_free`; raises
        ``IdRangeError`` naming the overlap), compile the seccomp filter
        (raises ``SeccompError`` without libseccomp) and remove cgroups left by an
        agent that died (not part of IBackend: called by the agent when
        the backend has it)."""
        if self.ids is not None:
            idmap.check_free(self.ids)
        seccomp.filter_program()
        if self.cgroups is not None:
            removed = self.cgroups.remove_stale()
            if removed:
                self.log.info("removed {n} stale build cgroups", n=len(removed))

    def sandbox(self, build_id, root, work):
        """See ``IBackend.sandbox``."""
        return SandboxSession(self, build_id, root, work)

    def stop(self):
        """See ``IBackend.stop``."""
        for session in list(self.running):
            session.destroy()
