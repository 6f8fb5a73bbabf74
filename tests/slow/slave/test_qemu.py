"""Slow tier: real qemu guests under software emulation: the guest itself, the
agent over it, the farm over it, and the escape suite inside it."""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from lp_services.protocol.states import BuilderStatus
from lp_services.slave.qemu import QemuBackend, QemuConfig
from lp_services.slave.vmimage import prepare_image
from lp_services.testing.tiers import slow
from tests.buildmaster.test_integration import IntegrationBase, wait_until
from tests.slave import test_sandbox as _sandbox_suite
from tests.slave.helpers import AgentTestCase, ScriptBuildTestCase


def qemu_unavailable():
    """Why real guests cannot run here, or None."""
    for tool in ("qemu-system-x86_64", "bwrap", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (see ./run DEBIAN_PACKAGES)"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


_shared = {}


def shared_backend() -> QemuBackend:
    """One backend (one prepared image, one KVM probe) for the module."""
    if "backend" not in _shared:
        _shared["backend"] = QemuBackend(QemuConfig(memory=256),
                                         image=prepare_image(),
                                         reactor=reactor)
    return _shared["backend"]


def busybox_root(where: Path) -> Path:
    """A minimal root: busybox and its applets."""
    root = where / "root"
    for d in ("bin", "work", "proc", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    return root


@slow
class GuestTests(unittest.TestCase):
    """Real guests (software emulation here), one boot per run."""

    skip = qemu_unavailable()
    timeout = 300

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-qemu-test-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.root = busybox_root(self.dir)
        self.work = self.dir / "work"
        self.work.mkdir()
        self.backend = shared_backend()
        self.box = self.backend.sandbox("test", self.root, self.work)
        self.addCleanup(self.box.destroy)
        self.output = []

    def text(self):
        return b"".join(self.output).decode(errors="replace")

    def run_guest(self, script, timeout=60):
        return self.box.run(["/bin/sh", "-c", script], self.output.append,
                            timeout)

    @defer.inlineCallbacks
    def test_runs_and_streams(self):
        """A command runs in the guest: its output streams while the guest
        runs, its exit status and the files it writes in /work come back,
        and the log says which accelerator ran (and why)."""
        seen_before_end = []

        def watch(data):
            self.output.append(data)
            if not seen_before_end and b"started" in b"".join(self.output):
                seen_before_end.append(d.called)
        d = self.box.run(["/bin/sh", "-c", "echo started; sleep 2; "
                          "echo data > /work/out; echo done; exit 7"],
                         watch, 60)
        result = yield d
        self.assertEqual([False], seen_before_end)
        self.assertTrue(result.started)
        self.assertEqual(7, result.exit_code)
        self.assertFalse(result.timed_out or result.killed)
        self.assertEqual("data\n", (self.work / "out").read_text())
        text = self.text()
        self.assertRegex(text, r"\[qemu\] accelerator: (tcg|kvm) \(")
        self.assertIn("QMP query-kvm: enabled=", text)
        self.assertIn("lp-guest: booted", text)
        self.assertIsNotNone(self.box.last.boot_seconds)

    @defer.inlineCallbacks
    def test_escape_probes(self):
        """Inside the guest: no network interface but lo, the host's
        loopback and the agent's port unreachable, no host file visible
        (a marker written on the host is found nowhere), the root
        read-only, the work share the only writable host directory."""
        marker = "lp-marker-" + hashlib.sha1(os.urandom(8)).hexdigest()
        host_file = Path(tempfile.gettempdir()) / marker
        host_file.write_text("secret")
        self.addCleanup(host_file.unlink)
        script = f"""
            sed -n '3,$p' /proc/net/dev | cut -d: -f1 | tr -d ' ' |
                tr '\\n' ' '; echo '<- nets'
            if nc -w 2 127.0.0.1 22 </dev/null; then echo NET-LOOPBACK-OPEN; fi
            if nc -w 2 10.0.2.2 22 </dev/null; then echo NET-SLIRP-OPEN; fi
            if nc -w 2 10.255.255.53 53 </dev/null; then echo NET-HOST-DNS; fi
            if find / -xdev -name '{marker}' 2>/dev/null | grep -q .; then
                echo HOST-FILE-FOUND; fi
            if [ -e /etc/shadow ] || [ -e /root/.bashrc ]; then
                echo HOST-ETC; fi
            if touch /bin/planted 2>/dev/null; then echo ROOT-WRITABLE; fi
            if mount -o remount,rw / 2>/dev/null && touch /x 2>/dev/null; then
                echo REMOUNT; fi
            grep -c 9p /proc/mounts
            echo probes-done
        """
        result = yield self.run_guest(script)
        text = self.text()
        self.assertEqual(0, result.exit_code, text)
        self.assertIn("probes-done", text)
        for bad in ("NET-LOOPBACK-OPEN", "NET-SLIRP-OPEN", "NET-HOST-DNS",
                    "HOST-FILE-FOUND", "HOST-ETC", "ROOT-WRITABLE",
                    "REMOUNT"):
            self.assertNotIn(bad, text)
        nets = [line for line in text.splitlines() if "<- nets" in line][0]
        self.assertEqual(["lo"], nets.replace("<- nets", "").split())
        self.assertFalse((self.root / "bin" / "planted").exists())

    @defer.inlineCallbacks
    def test_hang_killed_then_usable(self):
        """A guest that hangs and one that floods the console are killed
        at the timeout (reported as timed out once booted), and the
        backend runs the next guest normally."""
        result = yield self.run_guest("echo hanging; sleep 1000", timeout=15)
        self.assertTrue(result.timed_out, self.text())
        self.assertIn("[qemu] timeout after 15 s", self.text())
        self.output.clear()
        result = yield self.run_guest("yes flood-flood-flood-flood",
                                      timeout=15)
        self.assertTrue(result.timed_out)
        self.assertGreater(len(self.text()), 100000)
        self.output.clear()
        result = yield self.run_guest("echo alive", timeout=60)
        self.assertEqual(0, result.exit_code)
        self.assertIn("alive", self.text())

    @defer.inlineCallbacks
    def test_never_boots(self):
        """A timeout shorter than any boot: the guest is killed and the
        run reports that it never started (a builder failure)."""
        result = yield self.run_guest("true", timeout=0.5)
        self.assertFalse(result.started)
        self.assertIn("did not boot", result.error)

    @defer.inlineCallbacks
    def test_abort(self):
        """kill() during a run ends it with killed set."""
        d = self.run_guest("sleep 1000", timeout=120)
        reactor.callLater(8, self.box.kill)
        result = yield d
        self.assertTrue(result.killed)


SCRIPT = b"""\
set -e
echo "building in $(uname -r)"
printf 'result from the guest\\n' > out/result.txt
sed -n '3,$p' /proc/net/dev | cut -d: -f1 | tr -d ' ' > out/nets.txt
echo built
"""


@slow
class AgentGuestTests(AgentTestCase):
    """A ``script`` build on a real agent whose backend is ``qemu``."""

    skip = qemu_unavailable()
    timeout = 300

    def agent_kwargs(self):
        return {"backend": shared_backend()}

    @defer.inlineCallbacks
    def test_script_build_in_guest(self):
        """build() over XML-RPC runs the script in a guest VM: the log
        streams into logtail while the guest runs, the results come back
        by sha1, clean() returns the agent to IDLE, and a second build
        boots a fresh guest (no state carried over)."""
        chroot = self.seed_chroot("gz")
        script = self.seed(SCRIPT)
        yield self.call("build", "vm-1", "script", chroot,
                        {"build.sh": script}, {"script": "build.sh"})
        tails = []
        while True:
            status = yield self.call("status")
            if status["builder_status"] != BuilderStatus.BUILDING.value:
                break
            tails.append(bytes(status.get("logtail").data)
                         if status.get("logtail") is not None else b"")
            yield _sleep(0.3)
        self.assertTrue(any(b"[qemu] accelerator" in t for t in tails),
                        "the log did not stream while building")
        self.assertEqual("BuildStatus.OK", status["build_status"], status)
        self.assertEqual(["nets.txt", "result.txt"], sorted(status["filemap"]))
        code, body = yield self.fetch(
            "/filecache/" + status["filemap"]["result.txt"])
        self.assertEqual(b"result from the guest\n", body)
        code, body = yield self.fetch("/filecache/" + status["filemap"]
                                      ["nets.txt"])
        self.assertEqual(b"lo\n", body)
        code, log = yield self.fetch("/filecache/buildlog")
        self.assertIn(b"building in ", log)
        self.assertIn(b"lp-guest: booted", log)
        self.assertEqual("BuilderStatus.IDLE", (yield self.call("clean")))
        yield self.call("build", "vm-2", "script", chroot,
                        {"build.sh": self.seed(b"test ! -e out/result.txt "
                                               b"&& echo fresh")},
                        {"script": "build.sh"})
        yield self.wait_for(BuilderStatus.WAITING, timeout=120)
        status = yield self.call("status")
        code, log = yield self.fetch("/filecache/buildlog")
        self.assertEqual("BuildStatus.OK", status["build_status"], log)
        self.assertIn(b"fresh", log)

    @defer.inlineCallbacks
    def test_hanging_build_times_out(self):
        """A script that hangs in the guest is killed at the build timeout
        (PACKAGEFAIL) and the agent is usable afterwards."""
        self.agent.config.build_timeout = 15.0
        chroot = self.seed_chroot("gz")
        yield self.call("build", "vm-hang", "script", chroot,
                        {"build.sh": self.seed(b"sleep 1000\n")},
                        {"script": "build.sh"})
        yield self.wait_for(BuilderStatus.WAITING, timeout=120)
        status = yield self.call("status")
        code, log = yield self.fetch("/filecache/buildlog")
        self.assertEqual("BuildStatus.PACKAGEFAIL", status["build_status"],
                         log)
        self.assertIn(b"timeout after 15 s", log)
        self.assertEqual("BuilderStatus.IDLE", (yield self.call("clean")))
        self.agent.config.build_timeout = 60.0
        yield self.call("build", "vm-after", "script", chroot,
                        {"build.sh": self.seed(b"echo ok\n")},
                        {"script": "build.sh"})
        yield self.wait_for(BuilderStatus.WAITING, timeout=120)
        status = yield self.call("status")
        code, log = yield self.fetch("/filecache/buildlog")
        self.assertEqual("BuildStatus.OK", status["build_status"], log)
        self.assertIn(b"ok", log)


def _sleep(seconds):
    from twisted.internet.task import deferLater
    return deferLater(reactor, seconds, lambda: None)


@slow
class BuildmasterGuestTests(IntegrationBase):
    """A virtualized builder whose agent runs the ``qemu`` backend, driven
    by the real buildmaster over real PostgreSQL and XML-RPC."""

    timeout = 300

    async def start_agent(self):
        from lp_services.testing.agents import TEST_SECRET, start_agent

        tmp = Path(tempfile.mkdtemp(prefix="bm-qemu-agent-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.running = await start_agent(tmp, backend=shared_backend())
        self.addCleanup(self.running.stop)
        return self.running.base_url, TEST_SECRET

    async def test_script_build_in_guest_via_buildmaster(self):
        """A script build on a virtualized builder: dispatched by the
        master, built in a guest VM, its logtail seen while building, its
        results and log collected and stored; the builder is reset (its
        reset command run, the agent pinged) and clean afterwards."""
        import io

        from lp_services.buildmaster import builders as B
        from lp_services.buildmaster import queue as Q
        from lp_services.clock import utcnow
        from lp_services.slave.busybox_chroot import busybox_chroot
        from tests.buildmaster.support import InProcessMaster

        agent_url, secret = await self.start_agent()
        master = InProcessMaster(self, self.database_url, "vm", interval=1.0,
                                 logtail_interval=0.2)
        file_store, manager = master.file_store, master.manager
        reset_marker = Path(self.mktemp()).resolve()

        def setup(store):
            B.add_builder(store, name="vm1", url=agent_url,
                          processors=["amd64"], secret=secret,
                          virtualized=True,
                          reset_command="touch %s" % reset_marker)
            record = file_store.add_path(store, busybox_chroot(fmt="gz"))
            B.register_chroot(store, "amd64", "default", record.id)
        self.blocking(setup)
        await master.start()
        await wait_until(lambda: manager.scanners)

        script = (b"set -e\necho building in the guest\nsleep 2\n"
                  b"uname -r > out/kernel.txt\n")

        def queue(store):
            record = file_store.add(store, "build.sh", io.BytesIO(script))
            return Q.request_build(
                store, build_type="script", processor="amd64",
                virtualized=True, now=utcnow(reactor),
                build_args={"script": "build.sh"},
                filemap={"build.sh": record.sha1})
        job = self.blocking(queue)
        await wait_until(lambda: self.show(job)["status"] == "BUILDING",
                         timeout=30)
        tail = await wait_until(
            lambda: (lambda t: t if t and "accelerator" in t else None)(
                self.show(job)["logtail"]), timeout=60)
        self.assertIn("[qemu] accelerator", tail)
        info = await wait_until(
            lambda: (lambda i: i if i["status"] in (
                "FULLYBUILT", "FAILEDTOBUILD") else None)(self.show(job)),
            timeout=120)
        self.assertEqual("FULLYBUILT", info["status"], info)
        files = {f["filename"]: f["sha1"] for f in info["files"]}
        kernel = file_store.path_for(files["kernel.txt"]).read_bytes()
        self.assertTrue(kernel.strip().endswith(b"-amd64"), kernel)
        log = file_store.path_for(info["log"]["sha1"]).read_bytes()
        self.assertIn(b"building in the guest", log)
        self.assertIn(b"lp-guest: booted", log)
        await wait_until(lambda: manager.scanners["vm1"].vitals.clean_status
                         .name == "CLEAN", timeout=60)
        self.assertTrue(reset_marker.exists())


@slow
class GuestEscapeTests(ScriptBuildTestCase):
    """The sandbox escape suite's network and host-file probes, run
    unchanged on an agent whose backend is ``qemu``: they run in the
    guest."""

    skip = qemu_unavailable()
    timeout = 300
    config_overrides = {"build_timeout": 120.0}

    def agent_kwargs(self):
        return {"backend": shared_backend()}

    test_host_loopback_unreachable = \
        _sandbox_suite.EscapeTests.test_host_loopback_unreachable
    test_cannot_read_host_file = \
        _sandbox_suite.EscapeTests.test_cannot_read_host_file
