"""`twistd buildslave`: options, and a real daemon started, called over
XML-RPC and stopped with SIGTERM."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import hashlib
import xmlrpc.client
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lp_services.slave.busybox_chroot import busybox_chroot
from lp_services.slave.tap import Options

from tests.slave.helpers import processes_matching, sandbox_unavailable


class OptionsTests(SynchronousTestCase):
    """Command-line options over the configuration file."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-tap-test-"))
        self.addCleanup(shutil.rmtree, self.dir)

    def test_options_override_file(self):
        """--port and --name win over the file; the secret comes from
        --secret-file."""
        (self.dir / "agent.toml").write_text(
            'name = "file-name"\nport = 1234\ncache_dir = "%s/c"\n'
            'work_dir = "%s/w"\n' % (self.dir, self.dir))
        (self.dir / "secret").write_text("s3cret\n")
        options = Options()
        options.parseOptions(["--config", str(self.dir / "agent.toml"),
                              "--port", "4321", "--name", "opt-name",
                              "--secret-file", str(self.dir / "secret")])
        config = options.agent_config
        self.assertEqual((config.name, config.port, config.secret),
                         ("opt-name", 4321, "s3cret"))

    def test_trusted_network_is_repeatable(self):
        """--trusted-network may be given several times; each is a network
        of the config's trusted_networks; a bad one is a usage error."""
        import ipaddress

        from twisted.python import usage
        (self.dir / "secret").write_text("s3cret\n")
        base = ["--secret-file", str(self.dir / "secret"),
                "--cache-dir", str(self.dir / "c"),
                "--work-dir", str(self.dir / "w")]
        options = Options()
        options.parseOptions(base + ["--trusted-network", "10.1.0.0/16",
                                     "--trusted-network", "fd00::/8"])
        self.assertEqual(options.agent_config.trusted_networks,
                         (ipaddress.ip_network("10.1.0.0/16"),
                          ipaddress.ip_network("fd00::/8")))
        self.assertRaises(usage.UsageError, Options().parseOptions,
                          base + ["--trusted-network", "nonsense"])

    def test_no_secret_is_a_usage_error(self):
        """Without a secret or --no-auth the options are refused with one
        clear line."""
        self.addCleanup(os.environ.__setitem__, "LP_BUILDSLAVE_SECRET",
                        os.environ.get("LP_BUILDSLAVE_SECRET", ""))
        os.environ["LP_BUILDSLAVE_SECRET"] = ""
        e = self.assertRaises(usage.UsageError, Options().parseOptions,
                              ["--work-dir", str(self.dir)])
        self.assertIn("no secret", str(e))
        options = Options()
        options.parseOptions(["--no-auth", "--work-dir", str(self.dir / "w"),
                              "--cache-dir", str(self.dir / "c")])
        self.assertTrue(options.agent_config.no_auth)


def _twistd() -> list[str]:
    """The venv's twistd script, or the same entry point via python -c."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c",
            "from twisted.scripts.twistd import run; run()"]


class TwistdTests(TestCase):
    """A real `twistd -n buildslave` process."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lp-twistd-test-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        # Runs first: a SIGKILLed daemon's work volume must not outlive
        # the test (see the closing note: the restart leaves it mounted).
        from lp_services.slave.volume import detach_mounts
        self.addCleanup(detach_mounts, self.dir)

    def start_daemon(self, *extra):
        """Start twistd; return (process, port, log path)."""
        (self.dir / "secret").write_text("daemon-secret\n")
        port_file = self.dir / "port"
        if port_file.exists():
            port_file.unlink()
        log_path = self.dir / "twistd.log"
        log = open(log_path, "ab")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            _twistd() + ["-n", "--pidfile=", "--logfile=-", "buildslave",
                         "--port", "0", "--interface", "127.0.0.1",
                         "--port-file", str(port_file),
                         "--secret-file", str(self.dir / "secret"),
                         "--cache-dir", str(self.dir / "cache"),
                         "--work-dir", str(self.dir / "work"), *extra],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            self.assertIsNone(process.poll(), log_path.read_text())
            self.assertLess(time.monotonic(), deadline, "twistd did not listen")
            time.sleep(0.05)
        return process, int(port_file.read_text()), log_path

    def test_sigkill_takes_the_build_with_it(self):
        """If the daemon is SIGKILLed mid-build, the build's processes die
        with it (bubblewrap's --die-with-parent), and a restarted daemon
        starts IDLE with an empty work directory."""
        skip = sandbox_unavailable()
        if skip:
            raise self.skipTest(skip)
        tarball = busybox_chroot(fmt="gz").read_bytes()
        marker = "sigkill" + uuid.uuid4().hex[:8]
        script = ("sh -c 'sleep 1000; : %s' &\nsleep 1000\n" % marker).encode()
        sha1s = {}
        for data in (tarball, script):
            sha1 = hashlib.sha1(data).hexdigest()
            path = self.dir / "cache" / sha1[:2] / sha1
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            sha1s[data] = sha1
        process, port, _ = self.start_daemon()
        url = "http://buildd:daemon-secret@127.0.0.1:%d/rpc" % port
        with xmlrpc.client.ServerProxy(url, allow_none=True) as proxy:
            proxy.build("k-1", "script", sha1s[tarball],
                        {"b.sh": sha1s[script]}, {"script": "b.sh"})
        deadline = time.monotonic() + 30
        while not processes_matching(marker):
            self.assertLess(time.monotonic(), deadline, "build never ran")
            time.sleep(0.05)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while processes_matching(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(processes_matching(marker), [])
        process, port, _ = self.start_daemon()
        url = "http://buildd:daemon-secret@127.0.0.1:%d/rpc" % port
        with xmlrpc.client.ServerProxy(url, allow_none=True) as proxy:
            self.assertEqual(proxy.status()["builder_status"],
                             "BuilderStatus.IDLE")
        deadline = time.monotonic() + 10
        while list((self.dir / "work").iterdir()) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(list((self.dir / "work").iterdir()), [])
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    def test_start_call_sigterm(self):
        """twistd starts on a free port (--port 0, --port-file), answers
        info and status with the secret, refuses without it (401), and
        on SIGTERM stops in order (service stopped, main loop terminated,
        no traceback)."""
        process, port, log_path = self.start_daemon(
            "--name", "twistd-test", "--arch-tag", "riscv64")
        url = "http://buildd:daemon-secret@127.0.0.1:%d/rpc" % port
        with xmlrpc.client.ServerProxy(url, allow_none=True) as proxy:
            self.assertEqual(proxy.info()[:2], ["1.0", "riscv64"])
            self.assertEqual(proxy.status()["builder_status"],
                             "BuilderStatus.IDLE")
        bad = "http://buildd:nope@127.0.0.1:%d/rpc" % port
        with xmlrpc.client.ServerProxy(bad) as proxy:
            e = self.assertRaises(xmlrpc.client.ProtocolError, proxy.status)
            self.assertEqual(e.errcode, 401)
        process.send_signal(signal.SIGTERM)
        # twistd shuts down in order, then ends by re-raising the signal it
        # was stopped with (so the exit status says "terminated").
        self.assertIn(process.wait(timeout=30), (0, -signal.SIGTERM))
        text = log_path.read_text()
        self.assertIn("Main loop terminated", text)
        self.assertIn("listening on port %d" % port, text)
        self.assertIn("buildslave stopping", text)
        self.assertNotIn("Traceback", text)
