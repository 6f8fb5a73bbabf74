"""The ``sandbox`` backend: bubblewrap, with cgroup limits.

Every build runs as ISOLATION.md says confines it (as root:
``--unshare-user --uid 65534 --gid 65534 --cap-drop ALL``, then
``--unshare-all --die-with-parent --new-session --ro-bind ROOT /
--proc /proc --dev /dev --tmpfs /tmp --bind WORK /work --chdir /work
--clearenv``): an unprivileged uid, no network but its own ``lo``, its own
pid namespace, a read-only root, a writable ``/work``, private /proc, /dev
and /tmp.

The process is started with ``reactor.spawnProcess`` through a tiny
``/bin/sh`` launcher that first writes its own pid into the build's
cgroups and then execs bubblewrap (so every descendant is counted from the
start); without cgroups the launcher execs ``prlimit`` to set rlimits.
Bubblewrap reports through ``--json-status-fd`` whether the command
started and its exit code, so a sandbox that failed to start is told apart
from a script that failed.

Killing: SIGKILL to bubblewrap (``--die-with-parent`` then kills the pid
namespace's init, which takes the whole namespace with it) and SIGKILL to
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

from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from zope.interface import implementer

from lp_services.slave.cgroup import Limits, detect
from lp_services.slave.interfaces import IBackend, ISandbox

__all__ = ["RunResult", "SandboxBackend", "bwrap_argv", "SANDBOX_UID"]

#: The uid and gid builds run as inside the sandbox (``nobody``).
SANDBOX_UID = 65534
#: The environment inside (after --clearenv).
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/work",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
}
_STATUS_FD = 3
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


def bwrap_argv(root: Path, work: Path, argv: list[str], *, as_root: bool,
               bwrap: str = "bwrap", status_fd: int | None = _STATUS_FD,
               env: dict | None = None) -> list[str]:
    """The bubblewrap command line of ISOLATION.md for ``argv``."""
    cmd = [bwrap]
    if as_root:
        cmd += ["--unshare-user", "--uid", str(SANDBOX_UID),
                "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    cmd += ["--unshare-all", "--die-with-parent", "--new-session",
            "--hostname", "lp-build",
            "--ro-bind", str(root), "/",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
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
        command = bwrap_argv(self.root, self.work, argv, as_root=b.as_root,
                             bwrap=b.bwrap, env={**SANDBOX_ENV, **(env or {})})
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
                childFDs={0: "w", 1: "r", 2: "r", _STATUS_FD: "r"})
        except OSError as e:
            return defer.succeed(RunResult(
                False, None, error="cannot start bubblewrap: %s" % e))
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

        return done.addCallback(ended)

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
                 bwrap: str | None = None, cgroups=None):
        self.reactor = reactor
        self.limits = limits
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.as_root = os.geteuid() == 0
        self.cgroups = cgroups if cgroups is not None else detect(cgroup_mode)
        self.running: set[SandboxSession] = set()
        if self.cgroups is None:
            self.log.warn("no usable cgroups: builds are limited by rlimits "
                          "only (address space; see docs/agent.md)")

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
        """Remove cgroups left by an agent that died (not part of
        IBackend: called by the agent when the backend has it)."""
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
