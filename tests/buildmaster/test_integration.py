"""Integration: the buildmaster's services with real PostgreSQL, real
LISTEN/NOTIFY, the real agent on loopback (sandbox backend, busybox
chroot), and a real `twistd buildmaster` process killed and restarted."""

import hashlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.clock import utcnow
from lp_services.database.transactor import Transactor
from lp_services.testing.database import DatabaseTestMixin
from tests.buildmaster.support import InProcessMaster
from tests.buildmaster.test_agent_contract import sandbox_unavailable

SCRIPT = b"""set -e
echo building
sleep %d
printf 'result one\\n' > out/one.txt
printf 'two\\n' > out/two.txt
"""


def sha1(data):
    return hashlib.sha1(data).hexdigest()


async def wait_until(predicate, timeout=30.0, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await task.deferLater(reactor, step, lambda: None)


class IntegrationBase(DatabaseTestMixin, TestCase):

    skip = sandbox_unavailable()

    async def start_agent(self):
        from lp_services.testing.agents import TEST_SECRET, start_agent

        tmp = Path(tempfile.mkdtemp(prefix="bm-int-agent-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.running = await start_agent(tmp)
        self.addCleanup(self.running.stop)
        return self.running.base_url, TEST_SECRET

    def blocking(self, function, *args, **kwargs):
        transactor = Transactor(self.database_url)
        try:
            return transactor.run_blocking(
                lambda store: function(store, *args, **kwargs))
        finally:
            transactor.stop()

    def setup_farm(self, file_store, agent_url, secret, processor="amd64",
                   **builder):
        from lp_services.slave.busybox_chroot import busybox_chroot

        def setup(store):
            B.add_builder(store, name="b1", url=agent_url,
                          processors=[processor], secret=secret, **builder)
            record = file_store.add_path(store, busybox_chroot(fmt="gz"))
            B.register_chroot(store, processor, "default", record.id)
        self.blocking(setup)

    def request(self, file_store, seconds=0, **kwargs):
        script = SCRIPT % seconds

        def queue(store):
            record = file_store.add(store, "build.sh", io.BytesIO(script))
            return Q.request_build(
                store, build_type="script", processor="amd64",
                now=utcnow(reactor), build_args={"script": "build.sh"},
                filemap={"build.sh": record.sha1}, **kwargs)
        return self.blocking(queue)

    def show(self, job):
        return self.blocking(Q.show_build, job, utcnow(reactor))


class EndToEndTests(IntegrationBase):
    """NOTIFY -> claim -> dispatch to the real agent -> sandbox build ->
    collect over HTTP -> stored and checked."""

    async def start_stack(self, **builder):
        """Agent, master services (in this reactor) and the HTTP site."""
        agent_url, secret = await self.start_agent()
        master = InProcessMaster(self, self.database_url, "it", interval=0.5,
                                 logtail_interval=0.2, echo_interval=0.1)
        self.setup_farm(master.file_store, agent_url, secret, **builder)
        await master.start()
        await wait_until(lambda: master.manager.scanners)
        return master.farm, master.manager, master.file_store

    def finished(self, job, status):
        return lambda: (lambda i: i if i["status"] == status else None)(
            self.show(job))

    async def test_script_build_end_to_end(self):
        """A script build on a busybox chroot ends FULLYBUILT with its two
        result files and its log stored under their sha1s, and served by
        the master's HTTP site."""
        farm, manager, file_store = await self.start_stack()
        job = self.request(file_store, seconds=2)
        await wait_until(lambda: self.show(job)["status"] == "BUILDING",
                         timeout=10)
        await wait_until(lambda: self.show(job)["logtail"], timeout=10)
        info = await wait_until(self.finished(job, "FULLYBUILT"), timeout=60)
        self.assertEqual(info["job_status"], "COMPLETED")
        self.assertEqual({f["filename"]: f["sha1"] for f in info["files"]},
                         {"one.txt": sha1(b"result one\n"),
                          "two.txt": sha1(b"two\n")})
        for f in info["files"]:
            self.assertEqual(
                sha1(file_store.path_for(f["sha1"]).read_bytes()), f["sha1"])
        log = file_store.path_for(info["log"]["sha1"]).read_bytes()
        self.assertIn(b"building", log)
        from twisted.web.client import Agent, readBody

        response = await Agent(reactor).request(
            b"GET", ("%s/files/%s/one.txt" % (
                farm.config.files_url,
                sha1(b"result one\n"))).encode())
        self.assertEqual(await readBody(response), b"result one\n")
        response = await Agent(reactor).request(
            b"GET", ("%s/api/v1/work/%d" % (farm.config.files_url, job)).encode())
        page = json.loads(await readBody(response))
        self.assertEqual(page["build"]["build_status"], "FULLYBUILT")
        await wait_until(lambda: manager.scanners["b1"].vitals.clean_status
                         .name == "CLEAN", timeout=10)


    async def test_cancel_real_build(self):
        """`build cancel` of a running build: the master aborts it on the
        real agent and the build ends CANCELLED; the agent is IDLE."""
        farm, manager, file_store = await self.start_stack()
        job = self.request(file_store, seconds=60)
        from lp_services.protocol.states import BuilderStatus

        await self.running.agent.wait_for(BuilderStatus.BUILDING)
        self.assertEqual(self.blocking(Q.cancel_build, job, utcnow(reactor)),
                         Q.BuildStatus.CANCELLING)
        info = await wait_until(self.finished(job, "CANCELLED"), timeout=20)
        self.assertEqual(info["job_status"], "FAILED")
        await self.running.agent.wait_for(BuilderStatus.IDLE)

    async def test_virtual_builder_reset(self):
        """A virtual builder runs its real reset command (a process) and
        is pinged before each dispatch; DIRTY after the build, CLEAN again
        after the next reset."""
        marker = Path(self.mktemp()).resolve()
        farm, manager, file_store = await self.start_stack(
            virtualized=True, reset_command="echo reset >> %s" % marker)
        job = self.request(file_store, virtualized=True)
        await wait_until(self.finished(job, "FULLYBUILT"), timeout=60)
        await wait_until(lambda: marker.exists()
                         and marker.read_text().count("reset") >= 2,
                         timeout=20)
        await wait_until(lambda: manager.scanners["b1"].vitals.clean_status
                         .name == "CLEAN", timeout=10)
