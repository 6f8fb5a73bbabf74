"""Slow tier: our buildmaster in front of the real launchpad-buildd
(tests/buildmaster/launchpad_buildd.py says which version and what it
needed): the calls Launchpad's master makes, our file store's downloads,
a build type it does not offer, a binarypackage dispatch and a cancel."""

import io
from pathlib import Path

from twisted.internet import reactor, task
from twisted.trial import unittest

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.agentclient import (
    AgentClient,
    parse_info,
)
from lp_services.clock import utcnow
from lp_services.testing.tiers import slow
from tests.buildmaster import launchpad_buildd as LPB
from tests.buildmaster.support import InProcessMaster
from tests.buildmaster.test_integration import IntegrationBase, wait_until
from tests.slave.packages import make_source_package

FINAL = ("FULLYBUILT", "FAILEDTOBUILD", "MANUALDEPWAIT", "CHROOTWAIT",
         "CANCELLED")


@slow
class LaunchpadBuilddTests(IntegrationBase):
    """One launchpad-buildd builder, one in-process buildmaster."""

    timeout = 900

    def setUp(self):
        super().setUp()
        reason = LPB.unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        self.lpb = LPB.LaunchpadBuildd(LPB.install(), base)
        self.lpb.start()
        self.addCleanup(self.lpb.stop)

    def lpb_state(self):
        return self.lpb.proxy().status()["builder_status"]

    async def test_our_master_over_launchpad_buildd(self):
        """echo, info and status as Launchpad's master reads them; our
        file store's file made present in launchpad-buildd's cache; a
        script build (a type it does not offer) waits and says why, nobody
        blamed; a binarypackage build dispatched with the arguments
        launchpad-buildd needs, collected where it ends here (CHROOTFAIL
        after builder-prep: its host tools are missing), launchpad-buildd
        cleaned back to IDLE; and a build cancelled while BUILDING, which
        launchpad-buildd aborts, CANCELLED and IDLE again."""
        master = InProcessMaster(self, self.database_url, "lpb",
                                 interval=1.0, logtail_interval=0.5)
        files = master.file_store
        where = Path(self.mktemp())
        where.mkdir()
        sources = make_source_package(where, "xxd")

        def setup(store):
            B.add_builder(store, name="lpb1", url=self.lpb.url,
                          processors=["amd64"])
            chroot = files.add(store, "chroot.tar.gz",
                               io.BytesIO(b"not really a chroot"))
            B.register_chroot(store, "amd64", "bookworm", chroot.id)
            return ({name: files.add_path(store, path).sha1
                     for name, path in sources.items()}, chroot.sha1)
        filemap, chroot_sha1 = self.blocking(setup)
        await master.start()

        # -- the calls, as Launchpad's master makes them -----------------
        agent = AgentClient(self.lpb.url, None, reactor)
        self.assertEqual(["x", 1], await agent.echo("x", 1))
        info = parse_info(await agent.info())
        self.assertEqual("amd64", info.arch_tag)
        self.assertIn("binarypackage", info.build_types)
        self.assertNotIn("script", info.build_types)
        self.assertEqual("BuilderStatus.IDLE",
                         (await agent.status()).builder_status)
        present = await agent.ensurepresent(
            chroot_sha1, master.farm.file_url(chroot_sha1), "buildd", "")
        self.assertEqual(True, present[0], present)
        self.assertEqual(b"not really a chroot",
                         (self.lpb.cache / chroot_sha1).read_bytes())

        # -- a type launchpad-buildd does not offer ----------------------
        script = self.request(files, max_retries=0)
        await wait_until(lambda: self.blocking(
            B.load_vitals, "lpb1")[0].build_types, timeout=60)
        # Three more scans: it still waits.
        await task.deferLater(reactor, 3.5, lambda: None)
        details = self.describe(script)
        self.assertEqual("WAITING", details.status)
        self.assertEqual("no available builder for amd64 (non-virtualized) "
                         "offers build type script",
                         details.build.waiting_reason)
        self.assertEqual(0, self.blocking(B.load_vitals, "lpb1")[0]
                         .failure_count)

        # -- a binarypackage build: as far as it goes here ---------------
        self.lpb.prep_seconds(3)
        package = self.request_package(filemap)
        shown = await wait_until(lambda: self.ended(package), timeout=300)
        log = self.lpb.log()
        self.assertIn("builder-prep", log)
        # builder-prep ran; unpacking the chroot needs launchpad-buildd's
        # in-target, which this machine lacks: it reports CHROOTFAIL,
        # which we collect as CHROOTWAIT, with its build log.
        self.assertEqual("CHROOTWAIT", shown["status"], shown)
        collected = files.path_for(shown["log"]["sha1"]).read_bytes()
        self.assertIn(b"Kernel version:", collected)
        self.assertIn(b"builder-prep", collected)
        self.assertEqual("BuilderStatus.IDLE", await self.idle_soon())
        self.assertNotIn("KeyError", log)

        # -- a cancel while launchpad-buildd is BUILDING -----------------
        self.lpb.prep_seconds(15)
        cancelled = self.request_package(filemap)
        await wait_until(lambda: self.lpb_state()
                         == "BuilderStatus.BUILDING", timeout=120)
        self.blocking(Q.cancel_build, cancelled, utcnow(reactor))
        await wait_until(lambda: self.lpb_state()
                         == "BuilderStatus.ABORTING", timeout=60)
        shown = await wait_until(lambda: self.ended(cancelled), timeout=300)
        self.assertEqual("CANCELLED", shown["status"])
        self.assertEqual("BuilderStatus.IDLE", await self.idle_soon())
        # The script build still waits, unblamed.
        self.assertEqual("WAITING", self.describe(script).status)

    # -- helpers ---------------------------------------------------------

    def request_package(self, filemap):
        def queue(store):
            return Q.request_build(
                store, build_type="binarypackage", processor="amd64",
                series="bookworm", now=utcnow(reactor), filemap=filemap,
                max_retries=0)
        return self.blocking(queue)

    def describe(self, job):
        from lp_services.database.sql import raw_cursor
        from lp_services.ops.work import describe_work

        return self.blocking(lambda store: describe_work(raw_cursor(store),
                                                         job))

    def ended(self, job):
        shown = self.show(job)
        return shown if shown["status"] in FINAL else None

    async def idle_soon(self):
        await wait_until(lambda: self.lpb_state() == "BuilderStatus.IDLE",
                         timeout=60)
        return self.lpb_state()
