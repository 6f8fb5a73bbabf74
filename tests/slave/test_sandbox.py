"""The sandbox backend and the escape suite: each escape is attempted by a
real script build inside the real bubblewrap sandbox, and must fail."""

import os
import shutil
import socket
import tempfile
from pathlib import Path
import subprocess
import time
import uuid

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lp_services.slave.cgroup import Limits
from lp_services.slave.chroot import unpack
from lp_services.slave.interfaces import IBackend, ISandbox

from lp_services.slave.sandbox import SANDBOX_UID, SandboxBackend, bwrap_argv
from lp_services.protocol.states import BuilderStatus

from tests.slave.helpers import (
    ScriptBuildTestCase, busybox_tarball, processes_matching,
    sandbox_unavailable)


class BwrapArgvTests(SynchronousTestCase):
    """The command line is ISOLATION.md's."""

    def test_as_root(self):
        """As root: join the id range's user namespace (--userns) as the
        build user with no capabilities, nested user namespaces asserted
        off, new ipc/pid/uts/net namespaces, /proc/sys read-only, then the
        full confinement, clear environment, /work as cwd; never
        bubblewrap's own one-id --unshare-user (which maps to host
        root)."""
        argv = bwrap_argv("/r", "/w", ["/bin/sh", "x"], as_root=True)
        line = " ".join(argv)
        self.assertIn("--userns 5 --uid %d --gid %d --assert-userns-disabled "
                      "--cap-drop ALL" % (SANDBOX_UID, SANDBOX_UID), line)
        self.assertNotIn("--unshare-user", line)
        self.assertNotIn("--unshare-all", line)
        self.assertNotIn("--share-net", line)
        for part in ("--unshare-ipc", "--unshare-pid", "--unshare-uts",
                     "--unshare-net", "--die-with-parent", "--new-session",
                     "--ro-bind /r /", "--proc /proc",
                     "--ro-bind /proc/sys /proc/sys", "--dev /dev",
                     "--tmpfs /tmp", "--bind /w /work", "--chdir /work",
                     "--clearenv"):
            self.assertIn(part, line)
        self.assertEqual(argv[-3:], ["--", "/bin/sh", "x"])

    def test_unprivileged(self):
        """As another user no uid switch is asked for."""
        argv = bwrap_argv("/r", "/w", ["true"], as_root=False)
        self.assertNotIn("--uid", argv)
        self.assertIn("--unshare-all", argv)


class BackendTests(TestCase):
    """The backend on its own (no agent)."""

    skip = sandbox_unavailable()

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="lp-backend-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.root = self.tmp / "root"
        unpack(busybox_tarball("gz"), self.root)
        self.work = self.tmp / "work"
        self.work.mkdir()
        self.backend = SandboxBackend(reactor, Limits(memory=64 << 20,
                                                      pids=64))
        verifyObject(IBackend, self.backend)

    @defer.inlineCallbacks
    def test_run_streams_output_and_reports_exit(self):
        """Output arrives through the callback, the exit code and the extra
        environment come through; destroy() is idempotent."""
        box = self.backend.sandbox("t-1", self.root, self.work)
        verifyObject(ISandbox, box)
        chunks = []
        result = yield box.run(["/bin/sh", "-c", "echo $FOO; exit 7"],
                               chunks.append, 30, env={"FOO": "bar"})
        self.assertEqual(b"".join(chunks), b"bar\n")
        self.assertEqual((result.started, result.exit_code, result.ok),
                         (True, 7, False))
        box.destroy()
        box.destroy()
        self.assertEqual(self.backend.running, set())

    @defer.inlineCallbacks
    def test_missing_command_is_not_a_started_sandbox_failure(self):
        """A command missing from the chroot is a failed run, never ok."""
        box = self.backend.sandbox("t-2", self.root, self.work)
        self.addCleanup(box.destroy)
        result = yield box.run(["/no/such/command"], lambda d: None, 30)
        self.assertFalse(result.ok)


class ConfinementTests(ScriptBuildTestCase):
    """What a build sees inside."""

    @defer.inlineCallbacks
    def test_identity_capabilities_and_namespaces(self):
        """The build runs as uid/gid 65534 with no capabilities, sees only
        its own processes and only the lo interface, and /work is its cwd."""
        status, log, results = yield self.run_script(
            "id -u > out/uid; id -g > out/gid\n"
            "grep CapEff /proc/self/status > out/caps\n"
            "ls /proc | grep -c '^[0-9]' > out/nprocs\n"
            "cat /proc/net/dev > out/netdev\n"
            "pwd > out/pwd; env > out/env\n")
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
        self.assertEqual(results["uid"].strip(), str(SANDBOX_UID).encode())
        self.assertEqual(results["gid"].strip(), str(SANDBOX_UID).encode())
        self.assertEqual(results["caps"].split()[-1], b"0000000000000000")
        self.assertLess(int(results["nprocs"]), 10)
        interfaces = [line.split(b":")[0].strip()
                      for line in results["netdev"].splitlines()[2:]]
        self.assertEqual(interfaces, [b"lo"])
        self.assertEqual(results["pwd"].strip(), b"/work")
        self.assertNotIn(b"LP_", results["env"])
        self.assertNotIn(b"secret", results["env"])


class StopTests(ScriptBuildTestCase):
    """Stopping the agent (daemon shutdown) kills a running build."""

    @defer.inlineCallbacks
    def test_stop_kills_running_build(self):
        """Agent.stop() during a build leaves none of its processes."""
        marker = "stop" + uuid.uuid4().hex[:8]
        yield self.start_script("sh -c 'sleep 1000; : %s' &\nsleep 1000\n"
                                % marker)
        for _ in range(200):
            if processes_matching(marker):
                break
            yield _tick()
        self.assertTrue(processes_matching(marker))
        yield self.agent.stop()
        for _ in range(100):
            if not processes_matching(marker):
                break
            yield _tick()
        self.assertEqual(processes_matching(marker), [])
        yield self.wait_for(BuilderStatus.WAITING)
        yield self.call("clean")


def _tick():
    d = defer.Deferred()
    reactor.callLater(0.05, d.callback, None)
    return d


class CpuLimitTests(ScriptBuildTestCase):
    """The CPU quota holds (cgroup cpu controller)."""

    config_overrides = {"cpu_limit": 0.2}

    @defer.inlineCallbacks
    def test_busy_loop_is_throttled(self):
        """A build spinning for over a second at a 0.2-core quota is
        throttled (cpu.stat counts throttled periods)."""
        yield self.start_script(
            "end=$(( $(date +%s) + 2 ))\n"
            "while [ $(date +%s) -lt $end ]; do :; done\n")
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.OK")
        cgroup = self.agent.current_manager.sandbox.cgroup
        if cgroup is None:
            raise self.skipTest("no cgroups on this machine")
        stat = dict(line.split() for line in
                    (cgroup.read("cpu", "cpu.stat") or "").splitlines())
        self.assertGreater(int(stat.get("nr_throttled", 0)), 0, stat)
        yield self.call("clean")


class EscapeTests(ScriptBuildTestCase):
    """Each escape attempt fails (ISOLATION.md's checks, automated)."""

    config_overrides = {"pids_limit": 64, "memory_limit": 64 << 20,
                        "build_timeout": 20.0}

    @defer.inlineCallbacks
    def test_host_loopback_unreachable(self):
        """A server on the host's 127.0.0.1 gets no connection from a build,
        and nc reports failure."""
        connections = []

        class Recorder(protocol.Protocol):
            def connectionMade(self):
                connections.append(self)

        factory = protocol.Factory.forProtocol(Recorder)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        host_ip = socket.gethostbyname(socket.gethostname())
        status, log, results = yield self.run_script(
            "if echo hi | nc -w 2 127.0.0.1 %d; then echo reached; "
            "else echo blocked; fi > out/loopback\n"
            "if echo hi | nc -w 2 %s %d; then echo reached; "
            "else echo blocked; fi > out/hostip\n" % (number, host_ip, number))
        self.assertEqual(results["loopback"], b"blocked\n", log)
        self.assertEqual(results["hostip"], b"blocked\n", log)
        self.assertEqual(connections, [])

    @defer.inlineCallbacks
    def test_cannot_write_outside_build_directory(self):
        """Writes to /, /etc, /bin, /work/.., the host's own paths and /proc
        fail; /tmp is private (nothing lands in the host's /tmp); the
        unpacked chroot on the host is unchanged."""
        name = "lp-escape-" + uuid.uuid4().hex
        host_dir = self.tmp / "host"
        host_dir.mkdir()
        targets = ["/%s" % name, "/etc/%s" % name, "/bin/%s" % name,
                   "/work/../%s" % name, "%s/%s" % (host_dir, name),
                   "%s/%s" % (self.config.cache_dir, name),
                   "/proc/sysrq-trigger", "/sys/kernel/%s" % name]
        script = "".join(
            "if echo x > %s; then echo written; else echo refused; fi "
            ">> out/verdicts\n" % t for t in targets)
        script += "echo x > /tmp/%s && echo tmp-ok > out/tmp\n" % name
        # Its own UTS namespace: a hostname change stays inside.
        script += "hostname escaped-%s\n" % name[-6:]
        host_name = socket.gethostname()
        build_dir = yield self.start_script(script)
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        verdicts = self.agent.cache.path_for(
            status["filemap"]["verdicts"]).read_bytes()
        self.assertEqual(verdicts, b"refused\n" * len(targets))
        self.assertIn("tmp", status["filemap"])
        self.assertFalse(os.path.exists("/tmp/" + name))
        self.assertEqual(list(host_dir.iterdir()), [])
        self.assertFalse((self.config.cache_dir / name).exists())
        self.assertFalse((build_dir / "chroot" / name).exists())
        self.assertFalse((build_dir / "chroot" / "etc" / name).exists())
        self.assertEqual(socket.gethostname(), host_name)

    @defer.inlineCallbacks
    def test_cannot_read_host_file(self):
        """A host file's content never reaches the build: by its path, via
        /proc/1/root, or by chrooting out (no CAP_SYS_CHROOT)."""
        token = uuid.uuid4().hex
        secret = self.tmp / "host-secret"
        secret.write_text(token)
        status, log, results = yield self.run_script(
            "cat %s\n"
            "cat /proc/1/root%s\n"
            "cat /proc/self/root%s\n"
            "mkdir -p /tmp/jail && chroot /tmp/jail /bin/sh -c 'cat %s'; "
            "echo chroot=$? > out/chroot\n"
            "cat /etc/shadow /root/.bash_history\n"
            "cat %s\n" % (secret, secret, secret, secret,
                          self.agent.cache.path_for(self.chroot)))
        self.assertNotIn(token.encode(), log)
        for data in results.values():
            self.assertNotIn(token.encode(), data)
        self.assertNotEqual(results["chroot"], b"chroot=0\n")

    @defer.inlineCallbacks
    def test_mknod_fails(self):
        """mknod of a character device fails in /work and /tmp; no node is
        created."""
        build_dir = yield self.start_script(
            "mknod /work/mem c 1 1; echo $? > out/work\n"
            "mknod /tmp/null c 1 3; echo $? > out/tmp\n")
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        for key in ("work", "tmp"):
            code = self.agent.cache.path_for(status["filemap"][key]).read_bytes()
            self.assertNotEqual(code.strip(), b"0")
        self.assertFalse(os.path.lexists(build_dir / "build" / "mem"))

    @defer.inlineCallbacks
    def test_mount_fails(self):
        """mount of tmpfs, proc, a bind mount and a remount of / read-write
        all fail."""
        status, log, results = yield self.run_script(
            "mkdir -p /tmp/m\n"
            "mount -t tmpfs none /tmp/m; echo $? >> out/codes\n"
            "mount -t proc proc /tmp/m; echo $? >> out/codes\n"
            "mount --bind /work /tmp/m; echo $? >> out/codes\n"
            "mount -o remount,rw /; echo $? >> out/codes\n")
        codes = results["codes"].split()
        self.assertEqual(len(codes), 4, log)
        self.assertNotIn(b"0", codes)

    @defer.inlineCallbacks
    def test_cannot_signal_host_process(self):
        """kill -9 of a host pid (and of every pid it can see) leaves a host
        process alive."""
        victim = subprocess.Popen(["sleep", "300"])
        self.addCleanup(victim.wait)
        self.addCleanup(victim.kill)
        status, log, results = yield self.run_script(
            "kill -9 %d; echo $? > out/kill\n"
            "kill -9 %d; echo $? >> out/kill\n"
            "kill -9 -1\n" % (victim.pid, os.getpid()))
        self.assertIsNone(victim.poll())
        codes = results.get("kill", b"1\n1\n").split()
        self.assertNotIn(b"0", codes)

    @defer.inlineCallbacks
    def test_fork_bomb_bounded_by_pids_limit(self):
        """A fork bomb hits pids.max (the cgroup records refused forks),
        never has more than the limit alive, and is killed by the timeout
        with nothing left after clean."""
        marker = "bomb" + uuid.uuid4().hex[:8]
        self.config.build_timeout = 4.0
        started = time.monotonic()
        yield self.start_script(
            "%s() { %s | %s & }; %s\nsleep 60\n" % ((marker,) * 4))
        yield self.wait_for(BuilderStatus.WAITING)
        elapsed = time.monotonic() - started
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL")
        cgroup = self.agent.current_manager.sandbox.cgroup
        if cgroup is not None:
            events = cgroup.read("pids", "pids.events") or ""
            self.assertIn("max", events)
            self.assertNotEqual(events.split()[-1], "0", events)
            self.assertEqual(cgroup.pids(), set())
        self.assertLess(elapsed, 15)
        yield self.call("clean")
        self.assertEqual(processes_matching(marker), [])

    @defer.inlineCallbacks
    def test_memory_bomb_bounded_by_memory_limit(self):
        """A build that allocates without end is killed by the memory limit
        (64 MiB here): the script fails, the cgroup's peak stays within the
        limit."""
        status, log, results = yield self.run_script(
            "awk 'BEGIN { s = \"x\"; while (1) s = s s }'\n"
            "echo awk=$? > out/awk\n")
        self.assertEqual(status["build_status"], "BuildStatus.OK", log)
        self.assertEqual(results["awk"], b"awk=137\n", log)
        cgroup = self.agent.current_manager.sandbox.cgroup
        if cgroup is not None and cgroup.read("memory",
                                              "memory.max_usage_in_bytes"):
            peak = int(cgroup.read("memory", "memory.max_usage_in_bytes"))
            self.assertLessEqual(peak, self.config.memory_limit)
            oom = dict(line.split() for line in cgroup.read(
                "memory", "memory.oom_control").splitlines())
            self.assertGreater(int(oom.get("oom_kill", 1)), 0)

    @defer.inlineCallbacks
    def test_nothing_outlives_clean(self):
        """Daemons a build leaves behind (setsid, nohup, a subshell loop)
        are gone once clean() returns, and so is the build's cgroup."""
        marker = "outlive" + uuid.uuid4().hex[:8]
        build_dir = yield self.start_script(
            "setsid sh -c 'while :; do sleep 1; done; : %s' &\n"
            "nohup sh -c 'sleep 1000; : %s' > /dev/null 2>&1 &\n"
            "( trap '' HUP TERM; while :; do sleep 1; done; : %s ) &\n"
            "sleep 0.5; ps > out/ps\n" % (marker, marker, marker))
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        ps = self.agent.cache.path_for(status["filemap"]["ps"]).read_bytes()
        self.assertIn(marker.encode(), ps)
        cgroup = self.agent.current_manager.sandbox.cgroup
        self.assertEqual((yield self.call("clean")), "BuilderStatus.IDLE")
        self.assertEqual(processes_matching(marker), [])
        self.assertEqual(processes_matching(str(build_dir)), [])
        if cgroup is not None:
            for d in cgroup.dirs:
                self.assertFalse(d.exists(), d)

    @defer.inlineCallbacks
    def test_abort_kills_everything(self):
        """abort() during a build with background processes ends in
        WAITING/ABORTED with no process of the build left."""
        marker = "abort" + uuid.uuid4().hex[:8]
        yield self.start_script(
            "sh -c 'sleep 1000; : %s' &\nsetsid sh -c 'sleep 1000; : %s' &\n"
            "echo ready > /work/ready\nsleep 1000\n" % (marker, marker))
        ready = self.config.work_dir / "s-1" / "build" / "ready"
        for _ in range(200):
            if ready.exists():
                break
            yield _tick()
        self.assertTrue(processes_matching(marker))
        self.assertEqual((yield self.call("abort")), "BuilderStatus.ABORTING")
        yield self.wait_for(BuilderStatus.WAITING)
        status = yield self.call("status")
        self.assertEqual(status["build_status"], "BuildStatus.ABORTED")
        self.assertEqual(processes_matching(marker), [])
        yield self.call("clean")

    @defer.inlineCallbacks
    def test_timeout_kills_build(self):
        """A build past its wall-clock timeout is killed: PACKAGEFAIL and
        the log says so."""
        self.config.build_timeout = 1.0
        started = time.monotonic()
        status, log, _ = yield self.run_script("sleep 100\n")
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(status["build_status"], "BuildStatus.PACKAGEFAIL")
        self.assertIn(b"timed out after 1 s", log)


class BuildUserTests(TestCase):
    """The build user and fakeroot in the id range, with the host's own
    (read-only) root as the sandbox's root, for its fakeroot."""

    skip = sandbox_unavailable() or (
        None if os.geteuid() == 0 else "needs root (the agent's case)") or (
        None if shutil.which("fakeroot") else "fakeroot is not installed")

    def run_in_range(self, script: str) -> subprocess.CompletedProcess:
        from lp_services.slave import idmap, seccomp
        from lp_services.slave.idmap import IdRange
        from lp_services.slave.sandbox import SECCOMP_FD, USERNS_FD

        work = Path(tempfile.mkdtemp(prefix="lp-builduser-test-"))
        self.addCleanup(shutil.rmtree, work)
        ids = IdRange()
        idmap.shift_tree(work, ids.host(SANDBOX_UID), ids.host(SANDBOX_UID))
        inner = bwrap_argv(Path("/"), idmap.alias(0),
                           ["/bin/sh", "-c", script], as_root=True,
                           bwrap=shutil.which("bwrap"), status_fd=None,
                           seccomp_fd=SECCOMP_FD)
        argv = idmap.launcher_argv(ids, USERNS_FD, inner, expose=[work])
        fd = seccomp.memfd(seccomp.filter_program())
        try:
            return subprocess.run(
                ["/bin/sh", "-c", 'exec "$@" %d<&%d' % (SECCOMP_FD, fd),
                 "sh", *argv], capture_output=True, timeout=60,
                pass_fds=(fd,))
        finally:
            os.close(fd)

    def test_fakeroot_chown_and_root_owned_files(self):
        """As the build user (uid 1000, not root), fakeroot gives the
        build root: chown to root and to other ids succeeds under it (the
        kernel refuses the real chown with EPERM in a full range, which
        fakeroot ignores; a one-id map gave EINVAL) and a tar made under
        it records root ownership. Outside fakeroot the file is the build
        user's."""
        done = self.run_in_range(
            "id -u; touch f; "
            "fakeroot sh -c 'chown 0:0 f && chown 5:60 f && id -u && "
            "stat -c %u:%g f && tar -cf t.tar f && tar --numeric-owner -tvf t.tar' && "
            "stat -c %u:%g f")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.decode().splitlines()
        self.assertEqual(lines[0], str(SANDBOX_UID))
        self.assertEqual(lines[1:3], ["0", "5:60"])
        self.assertIn("5/60", lines[3])
        self.assertEqual(lines[4], "%d:%d" % (SANDBOX_UID, SANDBOX_UID))

    def test_plain_chown_refused_as_build_user(self):
        """Without fakeroot the build user cannot give a file away (EPERM:
        it has no capability), so nothing it makes is owned by the
        range's root."""
        done = self.run_in_range("touch f; chown 0:0 f")
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(b"Operation not permitted", done.stderr)
