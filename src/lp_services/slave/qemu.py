"""The ``qemu`` backend: every command of a build runs in a fresh guest VM.

One :meth:`QemuSandbox.run` boots one guest and throws it away:

* the kernel and initramfs come from lp_services.slave.vmimage (a Debian
  kernel, booted as an uncompressed vmlinux; busybox and the virtio, 9p
  and ext4 modules);
* three 9p shares: ``lproot`` — the unpacked chroot, read-only, the
  guest's ``/``; ``lpwork`` — the build's work directory, writable, the
  guest's ``/work``; ``lpctl`` — a private directory holding the command
  (``run``) and receiving its exit status (``status``), mounted only in
  the initramfs, outside the build's root;
* the serial console (QEMU's stdout) is the build's output, streamed to
  ``output`` as the guest writes it;
* the guest ends with ``poweroff -f`` and QEMU runs with ``-no-reboot``,
  so a power-off, a reboot or a kernel panic (``panic=-1``) all end QEMU;
* a hard timeout SIGKILLs QEMU's confinement, whatever the guest does;
* QEMU itself runs in bubblewrap (new mount, pid, net, ipc, uts and cgroup
  namespaces; only /usr, the image and the build's three directories
  visible; every capability dropped but file-access ones) with
  ``-sandbox on`` (its seccomp filter, no spawning, no privilege gain);
* no network device: the guest has none at all.

The accelerator is KVM only when it truly works: QEMU is started with
``-accel kvm`` (never ``kvm:tcg``, which falls back silently), QMP
``query-kvm`` must answer enabled and present, and a probe guest must
boot and power off with status 0; otherwise TCG (software emulation).
The probe runs once per backend; its verdict and reason are logged at the
start of every run, and each run's QMP ``query-kvm`` answer too.
See docs/virtualization.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from lp_services.slave.interfaces import IBackend, ISandbox
from lp_services.slave.sandbox import RunResult
from lp_services.slave.vmimage import GuestImage, prepare_image

__all__ = [
    "AccelVerdict",
    "GuestResult",
    "QemuBackend",
    "QemuConfig",
    "QemuSandbox",
    "bwrap_argv",
    "guest_script",
    "kvm_usable",
    "parse_query_kvm",
    "qemu_argv",
]

log = Logger()

#: Default PATH inside the guest's build root.
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: How long a KVM probe guest may take: a KVM boot is well under a second;
#: a KVM that hangs a stock kernel must not delay the first build long.
KVM_PROBE_TIMEOUT = 20.0
#: How long to keep trying to reach QMP after QEMU started (it creates the
#: socket before the guest runs, in milliseconds; this is slack).
QMP_CONNECT_TIMEOUT = 5.0
#: Capabilities QEMU keeps inside bubblewrap: it runs as root so that its
#: 9p server can read every file of the chroot whatever its owner, and
#: write the work share; nothing else (no mount, chroot, ptrace, net...).
QEMU_CAPS = ("CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER")


@dataclasses.dataclass(frozen=True)
class QemuConfig:
    """How guests are made."""

    #: Guest RAM in MiB. A busybox job runs in 128; a Debian package build
    #: needs more (dpkg, compilers): 1024 by default.
    memory: int = 1024
    smp: int = 1
    machine: str = "pc"       # -M microvm hung a third of boots here
    cpu: str = "max"
    #: "auto" (KVM if it truly works, else TCG), "kvm" (fail without it),
    #: or "tcg".
    accel: str = "auto"
    qemu: str = "qemu-system-x86_64"
    bwrap: str = "bwrap"
    #: Run QEMU inside bubblewrap (turn off only where bwrap is missing).
    confine: bool = True
    #: Extra kernel command-line words.
    append: str = ""
    #: Where per-run private directories go (None: the system's tmp).
    runtime_dir: Path | None = None


@dataclasses.dataclass(frozen=True)
class GuestResult:
    """How one guest run ended."""

    #: The command's exit status; None if it never reported one.
    exit_code: int | None
    timed_out: bool
    #: Set when the guest failed before or around the command (no boot,
    #: init failure, QEMU error): a builder failure, not the build's.
    error: str | None
    accel: str
    #: Seconds from QEMU's start to the guest's "booted" line (None if
    #: it never got there) and to QEMU's exit.
    boot_seconds: float | None
    seconds: float
    killed: bool = False


@dataclasses.dataclass(frozen=True)
class AccelVerdict:
    """Which accelerator to use, and why."""

    accel: str      # "kvm" or "tcg"
    reason: str


def parse_query_kvm(reply: dict) -> tuple[bool, bool]:
    """(enabled, present) from a QMP ``query-kvm`` reply; (False, False)
    for an error reply or anything malformed."""
    ret = reply.get("return") if isinstance(reply, dict) else None
    if not isinstance(ret, dict):
        return False, False
    return ret.get("enabled") is True, ret.get("present") is True


def kvm_usable(query_kvm_reply: dict | None, probe_exit: int | None,
               probe_error: str | None = None) -> AccelVerdict:
    """The verdict from a KVM probe: QMP must say enabled and present and
    the probe guest must have powered off with status 0."""
    if query_kvm_reply is None:
        return AccelVerdict("tcg", "KVM probe: QEMU did not answer QMP"
                            + (f" ({probe_error})" if probe_error else ""))
    enabled, present = parse_query_kvm(query_kvm_reply)
    if not (enabled and present):
        return AccelVerdict("tcg", "QMP query-kvm: enabled=%s present=%s"
                            % (str(enabled).lower(), str(present).lower()))
    if probe_exit != 0:
        return AccelVerdict("tcg", "QMP query-kvm says enabled and present "
                            "but a probe guest did not run"
                            + (f" ({probe_error})" if probe_error else ""))
    return AccelVerdict("kvm", "QMP query-kvm: enabled and present; a probe "
                        "guest ran")


def qemu_argv(config: QemuConfig, image: GuestImage, accel: str, root: Path,
              work: Path, ctl: Path, qmp: Path) -> list[str]:
    """QEMU's command line for one guest."""
    append = "console=ttyS0 quiet loglevel=3 panic=-1 " + config.append
    argv = [
        config.qemu,
        "-M", config.machine, "-accel", accel, "-cpu", config.cpu,
        "-m", str(config.memory), "-smp", str(config.smp),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
                    "resourcecontrol=deny",
        "-serial", "stdio",
        "-qmp", f"unix:{qmp},server=on,wait=off",
        "-kernel", str(image.kernel), "-initrd", str(image.initramfs),
        "-append", append.strip(),
    ]
    for tag, path, readonly in (("lproot", root, True),
                                ("lpwork", work, False),
                                ("lpctl", ctl, False)):
        fsdev = f"local,id={tag},path={path},security_model=none"
        if readonly:
            fsdev += ",readonly=on"
        argv += ["-fsdev", fsdev,
                 "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]
    return argv


def bwrap_argv(config: QemuConfig, inner: list[str], readable: list[Path],
               writable: list[Path], kvm: bool) -> list[str]:
    """Wrap QEMU's command line in bubblewrap: only /usr (QEMU, its
    libraries and firmware), ``readable`` and ``writable`` are visible."""
    argv = [config.bwrap, "--unshare-all", "--die-with-parent",
            "--new-session", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "sbin"):
        target = os.readlink(f"/{name}") if os.path.islink(f"/{name}") \
            else None
        if target is not None:
            argv += ["--symlink", target, f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            argv += ["--ro-bind", f"/{name}", f"/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if kvm:
        argv += ["--dev-bind", "/dev/kvm", "/dev/kvm"]
    for path in readable:
        argv += ["--ro-bind", str(path), str(path)]
    for path in writable:
        argv += ["--bind", str(path), str(path)]
    argv += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
             "--cap-drop", "ALL"]
    for cap in QEMU_CAPS:
        argv += ["--cap-add", cap]
    return argv + ["--"] + inner


def guest_script(argv: list[str], env: dict[str, str] | None = None,
                 cwd: str = "/work") -> str:
    """The shell text the guest's /init runs (as root, in the build root)
    for ``argv``: a clean environment, in ``cwd``."""
    # The console is a tty: keep dpkg's colour escapes out of the log.
    variables = {"PATH": GUEST_PATH, "HOME": cwd, "LANG": "C.UTF-8",
                 "TERM": "dumb", "TMPDIR": "/tmp", "DPKG_COLORS": "never"}
    variables.update(env or {})
    assignments = " ".join(shlex.quote(f"{k}={v}")
                           for k, v in sorted(variables.items()))
    return (f"cd {shlex.quote(cwd)} || exit 125\n"
            f"exec env -i {assignments} {shlex.join(argv)}\n")


class _QMPClient(LineOnlyReceiver):
    """Sends qmp_capabilities then query-kvm; fires with the reply."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self):
        self.answer = defer.Deferred()
        self._step = 0

    def lineReceived(self, line):
        try:
            message = json.loads(line)
        except ValueError:
            return
        if "event" in message:
            return
        if "QMP" in message:
            self._send({"execute": "qmp_capabilities"})
        elif self._step == 0:
            self._step = 1
            self._send({"execute": "query-kvm"})
        elif self._step == 1:
            self._step = 2
            if not self.answer.called:
                self.answer.callback(message)
            self.transport.loseConnection()

    def _send(self, obj):
        self.sendLine(json.dumps(obj).encode())

    def connectionLost(self, reason):
        if not self.answer.called:
            self.answer.callback(None)


class _GuestProcess(protocol.ProcessProtocol):
    """QEMU's process: stdout (the serial console) and stderr go to
    ``output``; remembers when the guest said it booted."""

    BOOTED = b"lp-guest: booted"

    def __init__(self, output, clock):
        self.output = output
        self.clock = clock
        self.started = clock.seconds()
        self.booted_at = None
        self.ended = defer.Deferred()
        self._tail = b""

    def outReceived(self, data):
        if self.booted_at is None:
            window = self._tail + data
            if self.BOOTED in window:
                self.booted_at = self.clock.seconds()
            self._tail = window[-len(self.BOOTED):]
        self.output(data)

    def errReceived(self, data):
        self.output(data)

    def processEnded(self, reason):
        self.ended.callback(reason.value)


@implementer(ISandbox)
class QemuSandbox:
    """One build's guests.  See ``ISandbox``.

    :meth:`run` fires with the agent's ``RunResult``: ``started`` once the
    guest booted (a guest that never boots, or whose init fails, is a
    builder failure: ``started`` False with ``error``); ``timed_out`` when
    the hard timeout killed it; ``killed`` after :meth:`kill`.  The last
    run's :class:`GuestResult` (accelerator, boot time) is ``last``.
    """

    def __init__(self, backend: "QemuBackend", build_id: str, root: Path,
                 work: Path):
        self.backend = backend
        self.build_id = build_id
        # QEMU and bubblewrap run elsewhere: absolute paths only.
        self.root = Path(root).absolute()
        self.work = Path(work).absolute()
        self._transport = None
        self._private: list[Path] = []
        self._destroyed = False
        self._killed = False
        self.last: GuestResult | None = None

    def run(self, argv, output, timeout, env=None):
        """See ``ISandbox.run``: boot a guest that runs ``argv`` in the
        build root (as the guest's root user: the VM is the boundary)."""
        if self._destroyed:
            return defer.succeed(RunResult(False, None,
                                           error="sandbox destroyed"))
        self._killed = False
        d = self.backend._run(self, list(argv), output, timeout, env)

        def adapt(result: GuestResult) -> RunResult:
            self.last = result
            booted = result.boot_seconds is not None
            error = result.error
            if result.timed_out and not booted:
                error = "the guest did not boot within %g s" % timeout
            started = booted and not (result.error or "").startswith(
                "guest init failed")
            return RunResult(started=started or result.killed,
                             exit_code=result.exit_code,
                             timed_out=result.timed_out and booted,
                             killed=result.killed,
                             error=None if started else error)
        return d.addCallback(adapt)

    def kill(self):
        """See ``ISandbox.kill`` (abort)."""
        self._killed = True
        self._kill_now()

    def _kill_now(self):
        """SIGKILL the running guest's QEMU (and its bubblewrap)."""
        transport = self._transport
        if transport is not None and transport.pid:
            try:
                transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

    def destroy(self):
        """See ``ISandbox.destroy``: kill anything left, remove the
        private directories."""
        self._destroyed = True
        self._kill_now()
        self.backend._sandboxes.discard(self)
        for path in self._private:
            shutil.rmtree(path, ignore_errors=True)
        self._private.clear()


@implementer(IBackend)
class QemuBackend:
    """The ``qemu`` backend.  See ``IBackend``."""

    name = "qemu"

    def __init__(self, config: QemuConfig | None = None,
                 image: GuestImage | None = None, reactor=None,
                 image_factory=prepare_image):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config or QemuConfig()
        self.reactor = reactor
        self._image = image
        self._image_factory = image_factory
        self._verdict: AccelVerdict | None = None
        self._verdict_waiters: list[defer.Deferred] = []
        self._sandboxes: set[QemuSandbox] = set()

    @classmethod
    def from_agent_config(cls, config, reactor) -> "QemuBackend":
        """The backend for an agent's ``AgentConfig``: guest RAM from
        ``memory_limit`` (at least 256 MiB), vCPUs from ``cpu_limit``
        (at least 1)."""
        memory = max(256, config.memory_limit >> 20)
        smp = max(1, int(config.cpu_limit or 1))
        return cls(QemuConfig(memory=memory, smp=smp), reactor=reactor)

    # -- IBackend ---------------------------------------------------------

    def sandbox(self, build_id, root, work):
        """A :class:`QemuSandbox` for one build."""
        box = QemuSandbox(self, build_id, root, work)
        self._sandboxes.add(box)
        return box

    def stop(self):
        """Kill every guest."""
        for box in list(self._sandboxes):
            box.destroy()
        self._sandboxes.clear()

    # -- image and accelerator --------------------------------------------

    def image(self) -> defer.Deferred:
        """The guest image, prepared in a thread on first use."""
        if self._image is not None:
            return defer.succeed(self._image)
        from twisted.internet.threads import deferToThreadPool
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                              self._image_factory)

        def keep(image):
            self._image = image
            return image
        return d.addCallback(keep)

    def accelerator(self) -> defer.Deferred:
        """Fire with the :class:`AccelVerdict` (probed once)."""
        if self._verdict is not None:
            return defer.succeed(self._verdict)
        if self.config.accel == "tcg":
            self._verdict = AccelVerdict("tcg", "configured: accel = tcg")
            return defer.succeed(self._verdict)
        d = defer.Deferred()
        self._verdict_waiters.append(d)
        if len(self._verdict_waiters) == 1:
            defer.ensureDeferred(self._probe_kvm()).addBoth(self._probed)
        return d

    def _probed(self, result):
        """Hand the probe's verdict (or failure: the next build probes
        again) to everyone waiting for it."""
        waiters, self._verdict_waiters = self._verdict_waiters, []
        if not isinstance(result, Failure):
            self._verdict = result
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _probe_kvm(self) -> AccelVerdict:
        if not os.path.exists("/dev/kvm"):
            return AccelVerdict("tcg", "no /dev/kvm")
        probe = Path(tempfile.mkdtemp(prefix="lp-qemu-probe-",
                                      dir=self.config.runtime_dir))
        try:
            root = probe / "root"
            for d in ("bin", "work", "proc", "dev", "tmp"):
                (root / d).mkdir(parents=True)
            shutil.copy2("/bin/busybox", root / "bin" / "busybox")
            os.symlink("busybox", root / "bin" / "sh")
            os.symlink("busybox", root / "bin" / "env")
            os.symlink("busybox", root / "bin" / "true")
            (probe / "work").mkdir()
            box = QemuSandbox(self, "kvm-probe", root, probe / "work")
            chunks = []
            result, qmp = await self._boot(box, ["true"], chunks.append,
                                           KVM_PROBE_TIMEOUT, None, "kvm")
            box.destroy()
        finally:
            shutil.rmtree(probe, ignore_errors=True)
        err = result.error
        if err is None and result.exit_code != 0:
            err = f"exit status {result.exit_code}"
        if err:
            text = b"".join(chunks).decode(errors="replace").strip()
            if text:
                err += ": " + text.splitlines()[-1][:200]
        verdict = kvm_usable(qmp, result.exit_code, err)
        if self.config.accel == "kvm" and verdict.accel != "kvm":
            raise RuntimeError("accel = kvm but KVM does not work: "
                               + verdict.reason)
        log.info("qemu backend accelerator: {accel} ({reason})",
                 accel=verdict.accel, reason=verdict.reason)
        return verdict

    # -- one guest --------------------------------------------------------

    @defer.inlineCallbacks
    def _run(self, box: QemuSandbox, argv, output, timeout, env):
        verdict = yield self.accelerator()
        result, qmp = yield defer.ensureDeferred(
            self._boot(box, argv, output, timeout, env, verdict.accel,
                       verdict.reason))
        return result

    async def _boot(self, box: QemuSandbox, argv, output, timeout, env,
                    accel, reason=None):
        clock: IReactorTime = self.reactor
        image = await self.image()
        private = Path(tempfile.mkdtemp(prefix="lp-qemu-",
                                        dir=self.config.runtime_dir))
        box._private.append(private)
        ctl = private / "ctl"
        ctl.mkdir()
        qmp_path = private / "qmp.sock"
        (ctl / "run").write_text(guest_script(argv, env))
        for d in ("work", "proc", "dev", "tmp"):
            # The root is read-only in the guest: its mount points must
            # exist. The agent's unpack makes them; a bare root may not.
            if not (box.root / d).is_dir():
                (box.root / d).mkdir(parents=True, exist_ok=True)
        inner = qemu_argv(self.config, image, accel, box.root, box.work, ctl,
                          qmp_path)
        if self.config.confine:
            command = bwrap_argv(
                self.config, inner,
                readable=[image.kernel.parent, box.root],
                writable=[box.work, private], kvm=(accel == "kvm"))
        else:
            command = inner
        if reason is not None:
            output(f"[qemu] accelerator: {accel} ({reason})\n".encode())
        proto = _GuestProcess(output, clock)
        started = time.monotonic()
        executable = shutil.which(command[0]) or command[0]
        box._transport = self.reactor.spawnProcess(
            proto, executable, command, env={"PATH": "/usr/bin:/bin"},
            childFDs={0: "w", 1: "r", 2: "r"})
        box._transport.closeStdin()
        timed_out = []

        def on_timeout():
            timed_out.append(True)
            output(f"\n[qemu] timeout after {timeout:g} s: killing the "
                   f"guest\n".encode())
            box._kill_now()
        timer = clock.callLater(timeout, on_timeout)
        qmp_reply = await self._query_kvm(qmp_path, proto.ended)
        if reason is not None:
            enabled, present = parse_query_kvm(qmp_reply or {})
            output(("[qemu] QMP query-kvm: enabled=%s present=%s\n" % (
                str(enabled).lower(), str(present).lower())
                if qmp_reply is not None else
                "[qemu] QMP did not answer\n").encode())
        reason_ended = await proto.ended
        if timer.active():
            timer.cancel()
        box._transport = None
        seconds = time.monotonic() - started
        boot = (proto.booted_at - proto.started
                if proto.booted_at is not None else None)
        status_text = None
        try:
            status_text = (ctl / "status").read_text().strip()
        except FileNotFoundError:
            pass
        exit_code, err = None, None
        if timed_out:
            err = f"timed out after {timeout:g} s"
        elif status_text is None:
            code = getattr(reason_ended, "exitCode", None)
            sig = getattr(reason_ended, "signal", None)
            err = ("the guest ended without reporting a status (QEMU "
                   + (f"killed by signal {sig}" if sig else
                      f"exit status {code}") + ")")
            if box._destroyed or box._killed:
                err = "killed"
        elif status_text.startswith("init:"):
            err = "guest init failed: " + status_text[5:]
        else:
            try:
                exit_code = int(status_text)
            except ValueError:
                err = f"unreadable guest status {status_text[:40]!r}"
        if reason is not None:
            output((f"\n[qemu] guest ended after {seconds:.1f} s"
                    + (f" (booted in {boot:.1f} s)" if boot else "")
                    + (f": {err}" if err else f", exit status {exit_code}")
                    + "\n").encode())
        shutil.rmtree(private, ignore_errors=True)
        if private in box._private:
            box._private.remove(private)
        return GuestResult(exit_code=exit_code, timed_out=bool(timed_out),
                           error=err, accel=accel, boot_seconds=boot,
                           seconds=seconds,
                           killed=box._killed or box._destroyed), \
            qmp_reply

    async def _query_kvm(self, path: Path, ended: defer.Deferred):
        """QMP ``query-kvm`` on a running QEMU; None if it does not answer
        (it may already have ended)."""
        from twisted.internet.endpoints import UNIXClientEndpoint
        from twisted.internet.task import deferLater
        deadline = time.monotonic() + QMP_CONNECT_TIMEOUT
        while time.monotonic() < deadline and not ended.called:
            if path.exists():
                endpoint = UNIXClientEndpoint(self.reactor, str(path),
                                              timeout=2)
                try:
                    proto = await endpoint.connect(
                        protocol.Factory.forProtocol(_QMPClient))
                except Exception:  # refused, reset, gone: retry or give up
                    proto = None
                if proto is not None:
                    guard = self.reactor.callLater(
                        QMP_CONNECT_TIMEOUT, proto.transport.loseConnection)
                    reply = await proto.answer
                    if guard.active():
                        guard.cancel()
                    return reply
            await deferLater(self.reactor, 0.02, lambda: None)
        return None
