"""Tests of the ``qemu`` backend: command lines and KVM detection (fast),
real guests under software emulation (slow)."""

import subprocess
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from lp_services.slave.interfaces import IBackend, ISandbox
from lp_services.slave.qemu import (
    QemuBackend,
    QemuConfig,
    bwrap_argv,
    guest_script,
    kvm_usable,
    parse_query_kvm,
    qemu_argv,
)
from lp_services.slave.vmimage import GuestImage

_IMAGE = GuestImage(Path("/cache/vm/vmlinux"), Path("/cache/vm/init.cpio"),
                    "6.1.0-1-amd64", "linux-image-6.1.0-1-amd64", "6.1.1-1")


def _after(argv, flag):
    """Every value following ``flag`` in argv."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


class QemuArgvTests(unittest.SynchronousTestCase):
    """qemu_argv() and bwrap_argv()."""

    def argv(self, accel="tcg", **config):
        return qemu_argv(QemuConfig(**config), _IMAGE, accel, Path("/b/root"),
                         Path("/b/work"), Path("/p/ctl"), Path("/p/qmp.sock"))

    def test_machine(self):
        """A pc machine, no default devices, no display, no reboot, the
        seccomp sandbox on, the serial console on stdout, QMP on a unix
        socket, the Debian kernel booted directly."""
        argv = self.argv(memory=512, smp=2)
        self.assertEqual("qemu-system-x86_64", argv[0])
        for flag in ("-nodefaults", "-no-reboot", "-no-user-config"):
            self.assertIn(flag, argv)
        self.assertEqual(["pc"], _after(argv, "-M"))
        self.assertEqual(["512"], _after(argv, "-m"))
        self.assertEqual(["2"], _after(argv, "-smp"))
        self.assertEqual(["none"], _after(argv, "-display"))
        self.assertEqual(["stdio"], _after(argv, "-serial"))
        self.assertTrue(_after(argv, "-sandbox")[0].startswith("on,"))
        self.assertIn("spawn=deny", _after(argv, "-sandbox")[0])
        self.assertEqual(["unix:/p/qmp.sock,server=on,wait=off"],
                         _after(argv, "-qmp"))
        self.assertEqual(["/cache/vm/vmlinux"], _after(argv, "-kernel"))
        self.assertEqual(["/cache/vm/init.cpio"], _after(argv, "-initrd"))
        append = _after(argv, "-append")[0]
        self.assertIn("console=ttyS0", append)
        self.assertIn("panic=-1", append)
        self.assertNotIn("-netdev", argv)
        self.assertNotIn("-nic", argv)

    def test_accel_never_falls_back(self):
        """The accelerator is exactly the one chosen: never kvm:tcg."""
        for accel in ("kvm", "tcg"):
            self.assertEqual([accel], _after(self.argv(accel), "-accel"))
        self.assertFalse(any(":" in a for a in _after(self.argv("kvm"),
                                                      "-accel")))

    def test_shares(self):
        """Three 9p shares: the root read-only, work and ctl writable."""
        fsdevs = _after(self.argv(), "-fsdev")
        self.assertEqual(3, len(fsdevs))
        root, work, ctl = fsdevs
        self.assertIn("path=/b/root", root)
        self.assertIn("readonly=on", root)
        self.assertIn("path=/b/work", work)
        self.assertNotIn("readonly", work)
        self.assertIn("path=/p/ctl", ctl)
        tags = [d.split("mount_tag=")[1] for d in _after(self.argv(),
                                                         "-device")]
        self.assertEqual(["lproot", "lpwork", "lpctl"], tags)

    def test_bwrap(self):
        """QEMU runs in every namespace bubblewrap has, with only /usr,
        the image and the build's directories visible; /dev/kvm only
        when KVM is used; all capabilities but file access dropped."""
        inner = ["qemu-system-x86_64", "-x"]
        argv = bwrap_argv(QemuConfig(), inner, [Path("/img"), Path("/root")],
                          [Path("/work"), Path("/priv")], kvm=False)
        self.assertEqual("bwrap", argv[0])
        for flag in ("--unshare-all", "--die-with-parent", "--new-session",
                     "--clearenv"):
            self.assertIn(flag, argv)
        self.assertNotIn("--share-net", argv)
        self.assertEqual(inner, argv[argv.index("--") + 1:])
        self.assertIn("/dev", _after(argv, "--dev"))
        self.assertNotIn("/dev/kvm", argv)
        ro = _after(argv, "--ro-bind")
        self.assertEqual({"/usr", "/img", "/root"}, set(ro) - {"/lib",
                                                                 "/lib64",
                                                                 "/bin",
                                                                 "/sbin"})
        self.assertEqual(["/work", "/priv"], _after(argv, "--bind"))
        self.assertEqual(["ALL"], _after(argv, "--cap-drop"))
        self.assertNotIn("CAP_SYS_ADMIN", _after(argv, "--cap-add"))
        kvm = bwrap_argv(QemuConfig(), inner, [], [], kvm=True)
        self.assertEqual(["/dev/kvm"], _after(kvm, "--dev-bind"))

    def test_guest_script_quotes(self):
        """The guest's shell text runs argv exactly, in a clean
        environment, in /work (checked by running it with a real sh)."""
        tmp = Path(self.mktemp())
        tmp.mkdir()
        script = guest_script(["printf", "%s|", "a b", "$HOME", "'q'"],
                              {"EXTRA": "x y"}, cwd=str(tmp))
        out = subprocess.run(["/bin/sh", "-c", script], capture_output=True,
                             text=True, env={"PATH": "/usr/bin:/bin",
                                             "LEAK": "1"})
        self.assertEqual("a b|$HOME|'q'|", out.stdout)
        env = subprocess.run(["/bin/sh", "-c",
                              guest_script(["env"], cwd=str(tmp))],
                             capture_output=True, text=True,
                             env={"LEAK": "1", "PATH": "/usr/bin:/bin"})
        self.assertNotIn("LEAK", env.stdout)
        self.assertIn("LANG=C.UTF-8", env.stdout)
        self.assertIn(f"HOME={tmp}\n", env.stdout)

    def test_interfaces(self):
        """The backend and its sandboxes provide the agent's interfaces."""
        backend = QemuBackend(image=_IMAGE, reactor=reactor)
        verifyObject(IBackend, backend)
        box = backend.sandbox("b", Path("/r"), Path("/w"))
        verifyObject(ISandbox, box)
        self.assertEqual("qemu", backend.name)


class KvmDetectionTests(unittest.SynchronousTestCase):
    """parse_query_kvm() and kvm_usable(): KVM only when it truly works."""

    def test_parse(self):
        """QMP query-kvm replies, good, partial and malformed."""
        self.assertEqual((True, True), parse_query_kvm(
            {"return": {"enabled": True, "present": True}}))
        self.assertEqual((False, True), parse_query_kvm(
            {"return": {"enabled": False, "present": True}}))
        self.assertEqual((False, False), parse_query_kvm(
            {"error": {"class": "GenericError", "desc": "x"}}))
        self.assertEqual((False, False), parse_query_kvm(
            {"return": {"enabled": "yes", "present": 1}}))
        self.assertEqual((False, False), parse_query_kvm(None))
        self.assertEqual((False, False), parse_query_kvm({"return": []}))

    def test_verdicts(self):
        """KVM needs QMP's enabled+present AND a probe guest that ran."""
        good = {"return": {"enabled": True, "present": True}}
        self.assertEqual("kvm", kvm_usable(good, 0).accel)
        # This machine's case: QMP says yes, the kernel cannot run.
        verdict = kvm_usable(good, None, "QEMU exit status 134")
        self.assertEqual("tcg", verdict.accel)
        self.assertIn("did not run", verdict.reason)
        self.assertIn("134", verdict.reason)
        self.assertEqual("tcg", kvm_usable(good, 1).accel)
        absent = {"return": {"enabled": False, "present": False}}
        verdict = kvm_usable(absent, 0)
        self.assertEqual("tcg", verdict.accel)
        self.assertIn("enabled=false present=false", verdict.reason)
        verdict = kvm_usable(None, None, "abort")
        self.assertEqual("tcg", verdict.accel)
        self.assertIn("did not answer QMP", verdict.reason)

    def test_configured_tcg(self):
        """accel = tcg never probes KVM."""
        backend = QemuBackend(QemuConfig(accel="tcg"), image=_IMAGE,
                              reactor=reactor)
        verdict = self.successResultOf(backend.accelerator())
        self.assertEqual(("tcg", "configured: accel = tcg"),
                         (verdict.accel, verdict.reason))


class _ProbedBackend(QemuBackend):
    """A backend whose KVM probe is a Deferred the test fires."""

    def __init__(self):
        super().__init__(image=_IMAGE, reactor=reactor)
        self.probes = []

    async def _probe_kvm(self):
        d = defer.Deferred()
        self.probes.append(d)
        return await d


class AcceleratorTests(unittest.SynchronousTestCase):
    """accelerator(): one probe for every caller; a failed probe is
    reported to all of them and tried again by the next build."""

    def test_one_probe_shared(self):
        """Two builds asking at once share one probe and its verdict;
        later calls do not probe again."""
        from lp_services.slave.qemu import AccelVerdict
        backend = _ProbedBackend()
        first, second = backend.accelerator(), backend.accelerator()
        self.assertEqual(1, len(backend.probes))
        self.assertNoResult(first)
        verdict = AccelVerdict("tcg", "no")
        backend.probes[0].callback(verdict)
        self.assertIs(verdict, self.successResultOf(first))
        self.assertIs(verdict, self.successResultOf(second))
        self.assertIs(verdict, self.successResultOf(backend.accelerator()))
        self.assertEqual(1, len(backend.probes))

    def test_failed_probe(self):
        """A probe that fails errbacks every waiter; the next call probes
        again."""
        backend = _ProbedBackend()
        first, second = backend.accelerator(), backend.accelerator()
        backend.probes[0].errback(RuntimeError("no image"))
        for d in (first, second):
            self.failureResultOf(d, RuntimeError)
        third = backend.accelerator()
        self.assertEqual(2, len(backend.probes))
        self.assertNoResult(third)

    def test_destroy_forgets_sandbox(self):
        """A destroyed sandbox is no longer tracked by the backend."""
        backend = QemuBackend(image=_IMAGE, reactor=reactor)
        box = backend.sandbox("b", Path("/r"), Path("/w"))
        self.assertIn(box, backend._sandboxes)
        box.destroy()
        self.assertNotIn(box, backend._sandboxes)
        result = self.successResultOf(box.run(["true"], lambda d: None, 5))
        self.assertFalse(result.started)
        self.assertEqual("sandbox destroyed", result.error)
