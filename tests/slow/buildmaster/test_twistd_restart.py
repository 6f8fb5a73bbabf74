"""Slow tier: a real twistd buildmaster restarted under running builds."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from lp_services.filestore.store import FileStore
from lp_services.testing.tiers import slow
from tests.buildmaster.test_integration import IntegrationBase, wait_until


@slow
class TwistdRestartTests(IntegrationBase):
    """`twistd buildmaster` as a real process: SIGKILL mid-build, start
    again; the build is recognised by its cookie and collected once."""

    def start_twistd(self, home, port, url):
        env = dict(os.environ, LP_HOME=str(home))
        log = open(home / "twistd.log", "ab")
        process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "twistd"), "-n",
             "--pidfile=",
             "buildmaster", "--database", self.database_url, "--home",
             str(home), "--port", "tcp:%d:interface=127.0.0.1" % port,
             "--files-url", url, "--interval", "1", "--identity", "it"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(home))
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process

    async def test_sigkill_and_restart(self):
        """The build started by the first process is collected by the
        second without a second dispatch."""
        import socket

        agent_url, secret = await self.start_agent()
        home = Path(self.mktemp()).resolve()
        home.mkdir()
        file_store = FileStore(home / "files")
        self.setup_farm(file_store, agent_url, secret)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = "http://127.0.0.1:%d" % port
        first = self.start_twistd(home, port, url)
        job = self.request(file_store, seconds=4)
        from lp_services.protocol.states import BuilderStatus

        await self.running.agent.wait_for(BuilderStatus.BUILDING)
        info = self.show(job)
        self.assertEqual(info["status"], "BUILDING")
        cookie = info["cookie"]
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = self.start_twistd(home, port, url)
        info = await wait_until(
            lambda: (lambda i: i if i["status"] == "FULLYBUILT" else None)(
                self.show(job)), timeout=60)
        self.assertEqual((info["attempt_count"], info["job_status"]),
                         (1, "COMPLETED"))
        self.assertEqual(len(info["files"]), 2)
        # The agent is cleaned right after the build's final commit.
        await wait_until(lambda: self.running.agent.status()[
            "builder_status"] == "BuilderStatus.IDLE", timeout=10)
        second.send_signal(signal.SIGTERM)
        await wait_until(lambda: second.poll() is not None, timeout=20)
        # twistd re-raises the signal that stopped it after a clean stop.
        self.assertIn(second.returncode, (0, -signal.SIGTERM))
        log = (home / "twistd.log").read_text()
        self.assertTrue(log.rstrip().endswith("Server Shut Down."), log[-500:])
        self.assertEqual(log.count("dispatching build %d" % job), 1, log)
        self.assertNotIn("lost", log)
        self.assertTrue(cookie)
