"""Tests of the scanner (lp_services.buildmaster.scanner) with task.Clock,
fake agents and real PostgreSQL."""

import hashlib
from datetime import timedelta

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.buildmaster.agentclient import AgentError
from lp_services.buildmaster.blame import SCAN_FAILURE_THRESHOLD
from lp_services.buildmaster.farm import Farm
from lp_services.protocol.states import BuilderStatus
from lp_services.buildmaster.scanner import BuilderScanner
from lp_services.buildmaster.service import BuilderManager
from lp_services.testing.fakeagents import (
    AbortingAgent,
    BrokenAgent,
    BuildingAgent,
    IdleAgent,
    WaitingAgent,
)
from tests.buildmaster.support import CHROOT, FarmMixin


def sha1(data):
    return hashlib.sha1(data).hexdigest()


class ScannerTestBase(FarmMixin, TestCase):

    def builder_row(self, name="b1"):
        return [b for b in self.sql(B.list_builders) if b["name"] == name][0]

    def dispatched(self, name="b1", secret="s3cret", **request):
        """A builder with an idle agent and a build dispatched to it."""
        agent = IdleAgent()
        self.add_builder(name, agent=agent, secret=secret)
        self.add_chroot()
        job = self.request(**request)
        scanner = self.scanner(name)
        self.scan(scanner)
        return agent, scanner, job


class DispatchTests(ScannerTestBase):
    """An idle, clean builder gets the best candidate."""

    def test_dispatch(self):
        """ensurepresent the chroot from the master's file store with the
        builder's credentials, then build under the claim's cookie."""
        agent, scanner, job = self.dispatched()
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"], row["builder"]),
                         ("RUNNING", "BUILDING", "b1"))
        self.assertEqual([c[0] for c in agent.model.calls][:2],
                         ["status", "info"])
        calls = [c for c in agent.model.calls
                 if c[0] not in ("status", "info")]
        chroot = sha1(CHROOT)
        self.assertEqual(calls[0], ("ensurepresent", (
            chroot, "http://master:8220/files/" + chroot, "buildd", "s3cret")))
        method, (cookie, build_type, chroot_sha1, filemap, args) = calls[1]
        self.assertEqual((method, cookie, build_type, chroot_sha1, filemap),
                         ("build", row["cookie"], "script", chroot, {}))
        self.assertEqual(args["arch_tag"], "amd64")
        self.assertEqual(agent.model.state, BuilderStatus.BUILDING)
        self.assertEqual(self.builder_row()["clean_status"], "DIRTY")

    def test_dispatch_sends_files(self):
        """Every file of the filemap is made present before build()."""
        import io

        def add(store):
            return self.file_store.add(store, "in.txt",
                                       io.BytesIO(b"input")).sha1
        digest = self.transactor.run_blocking(add)
        agent, scanner, job = self.dispatched(filemap={"in.txt": digest})
        present = [c[1][0] for c in agent.model.calls
                   if c[0] == "ensurepresent"]
        self.assertIn(digest, present)
        self.assertEqual(agent.model.calls[-1][1][3], {"in.txt": digest})

    def test_records_agent_version(self):
        """The agent's builder_version is recorded once."""
        self.add_builder(agent=IdleAgent())
        scanner = self.scanner()
        self.scan(scanner)
        self.assertEqual(self.builder_row()["version"], "fake-1")
        statements = self.count_statements()
        self.successResultOf(scanner.scan())
        self.assertEqual(statements.count, 0)

    def test_no_work_no_claim(self):
        """An idle builder with nothing queued sends no claim."""
        agent = IdleAgent()
        self.add_builder(agent=agent)
        scanner = self.scanner()
        self.scan(scanner)  # the first scan finds the builder clean
        statements = self.count_statements()
        self.successResultOf(scanner.scan())
        self.assertEqual(statements.count, 0)
        # info() once, at the first scan (what the builder offers).
        self.assertEqual([c[0] for c in agent.model.calls],
                         ["status", "info", "status"])

    def test_manual_and_disabled_builders_get_nothing(self):
        """Manual builders and disabled builders are not dispatched to."""
        self.add_builder("m", agent=IdleAgent(), manual=True)
        self.add_builder("d", agent=IdleAgent())
        self.sql(B.set_builder_mode, "d", "disable", "broken disk")
        self.add_chroot()
        job = self.request()
        self.scan(self.scanner("m"))
        self.scan(self.scanner("d"))
        self.assertEqual(self.build_row(job)["job_status"], "WAITING")
        self.assertEqual(self.agents["d"].model.calls, [])

    def test_missing_chroot(self):
        """A build whose processor has no chroot ends CHROOTWAIT and the
        builder stays clean."""
        self.add_builder(agent=IdleAgent())
        job = self.request()
        self.scan(self.scanner())
        self.assertEqual(self.build_row(job)["status"], "CHROOTWAIT")
        self.assertEqual(self.builder_row()["clean_status"], "CLEAN")

    def test_dispatch_failure_requeues_and_blames_builder(self):
        """An agent that fails during dispatch sends the build back to
        WAITING and counts one builder failure."""
        agent = IdleAgent()
        agent.model.refuse_downloads = True
        self.add_builder(agent=agent)
        self.add_chroot()
        job = self.request()
        self.scan(self.scanner())
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["builder"]),
                         ("WAITING", None))
        self.assertIn("dispatch failed", row["last_error"])
        self.assertEqual(self.builder_row()["failure_count"], 1)

    def test_scans_on_interval(self):
        """A started scanner scans every 15 s on the injected clock."""
        agent = IdleAgent()
        self.add_builder(agent=agent)
        scanner = self.scanner()
        scanner.start(0)
        self.clock.advance(0)
        self.clock.advance(15)
        self.clock.advance(15)
        self.successResultOf(scanner.stop())
        self.assertEqual([c[0] for c in agent.model.calls],
                         ["status", "info", "status", "status"])


    def test_stop_waits_for_running_scan(self):
        """stop() fires when the scan in progress ends, and no scan
        starts after it."""
        agent = IdleAgent()
        self.add_builder(agent=agent)
        scanner = self.scanner()
        pending = defer.Deferred()
        agent.status = lambda: pending
        scan = scanner.scan()
        stopped = scanner.stop()
        self.assertNoResult(stopped)
        pending.errback(AgentError("gone"))
        self.successResultOf(scan)
        self.successResultOf(stopped)
        self.successResultOf(scanner.scan())
        self.assertFalse(scanner.scanning)


class BuildingTests(ScannerTestBase):
    """A BUILDING agent: logtails are buffered and written in batches."""

    def test_logtail_batched_with_lease(self):
        """Scans buffer logtails; one flush writes them all and renews the
        builds' leases."""
        agent, scanner, job = self.dispatched()
        agent.model.logtail = "line 42\n"
        self.scan(scanner)
        self.assertEqual(len(self.farm.logtails), 1)
        self.assertIsNone(self.build_row(job)["logtail"])
        self.clock.advance(60)
        statements = self.count_statements()
        self.successResultOf(self.farm.logtails.flush())
        self.assertEqual(statements.count, 1)
        row = self.build_row(job)
        self.assertEqual(row["logtail"], "line 42\n")
        self.assertEqual(row["lease_expires"],
                         self.now() + self.farm.config.lease)


    def test_unchanged_logtail_written_when_lease_needs_it(self):
        """An unchanged logtail is not written again until a quarter of
        the lease has passed; a changed one is."""
        agent, scanner, job = self.dispatched()
        self.scan(scanner)
        self.successResultOf(self.farm.logtails.flush())
        self.scan(scanner)
        self.assertEqual(len(self.farm.logtails), 0)
        agent.model.logtail = "more\n"
        self.scan(scanner)
        self.assertEqual(len(self.farm.logtails), 1)
        self.successResultOf(self.farm.logtails.flush())
        self.clock.advance(self.farm.config.lease.total_seconds() / 4)
        self.scan(scanner)
        self.assertEqual(len(self.farm.logtails), 1)


class CollectTests(ScannerTestBase):
    """A WAITING agent's build is collected and mapped."""

    def finish(self, result, files=None, **kwargs):
        agent, scanner, job = self.dispatched()
        agent.model.finish(result, files=files, **kwargs)
        self.scan(scanner)
        return agent, scanner, job

    def test_ok(self):
        """OK: log and files fetched, verified, stored; FULLYBUILT, job
        COMPLETED, agent cleaned, builder CLEAN."""
        agent, scanner, job = self.finish("OK", files={"out.bin": b"out"})
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"]),
                         ("COMPLETED", "FULLYBUILT"))
        self.assertEqual([(f["filename"], f["sha1"]) for f in row["files"]],
                         [("out.bin", sha1(b"out"))])
        self.assertEqual(self.file_store.path_for(sha1(b"out")).read_bytes(),
                         b"out")
        self.assertEqual(row["log"]["sha1"], sha1(b"a build log\n"))
        self.assertEqual(agent.model.state, BuilderStatus.IDLE)
        self.assertEqual(self.builder_row()["clean_status"], "CLEAN")
        self.assertEqual(self.builder_row()["current_build"], None)

    def test_failure_results(self):
        """PACKAGEFAIL, DEPFAIL (with dependencies) and CHROOTFAIL map to
        FAILEDTOBUILD, MANUALDEPWAIT and CHROOTWAIT; the job FAILED."""
        expected = {"PACKAGEFAIL": "FAILEDTOBUILD",
                    "DEPFAIL": "MANUALDEPWAIT", "CHROOTFAIL": "CHROOTWAIT"}
        for i, (result, status) in enumerate(expected.items()):
            agent = IdleAgent()
            name = "r%d" % i
            self.add_builder(name, agent=agent)
            if i == 0:
                self.add_chroot()
            job = self.request()
            scanner = self.scanner(name)
            self.scan(scanner)
            agent.model.finish(result, dependencies="libfoo (>= 2)")
            self.scan(scanner)
            row = self.build_row(job)
            self.assertEqual((row["job_status"], row["status"]),
                             ("FAILED", status))
            if result == "DEPFAIL":
                self.assertEqual(row["dependencies"], "libfoo (>= 2)")

    def test_givenback(self):
        """GIVENBACK: the build goes back to WAITING; the agent is
        cleaned; nobody is blamed."""
        agent, scanner, job = self.finish("GIVENBACK")
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"]),
                         ("WAITING", "NEEDSBUILD"))
        self.assertEqual(agent.model.state, BuilderStatus.IDLE)
        self.assertEqual(self.builder_row()["failure_count"], 0)

    def test_builderfail_is_blamed(self):
        """BUILDERFAIL counts a failure of builder and build at once; with
        equal counts the build is reset."""
        agent, scanner, job = self.finish("BUILDERFAIL")
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["failure_count"]),
                         ("WAITING", 1))
        self.assertEqual(self.builder_row()["failure_count"], 1)
        self.scan(scanner)  # the leftover WAITING agent is cleaned
        self.assertEqual(agent.model.state, BuilderStatus.IDLE)

    def test_bad_hash_refused(self):
        """A result whose content does not match its sha1 is not stored;
        the build is handled by the failure rules."""
        agent, scanner, job = self.finish(
            "OK", files={"out.bin": ("0" * 40, b"evil")})
        row = self.build_row(job)
        self.assertEqual(row["job_status"], "WAITING")
        self.assertEqual(row["files"], [])
        self.assertEqual(self.query("SELECT count(*) FROM build_file"), [(0,)])
        self.assertFalse(self.file_store.has(sha1(b"evil")))

    def test_unsafe_name_refused(self):
        """A result name that would escape the upload directory is
        refused before anything is fetched."""
        agent, scanner, job = self.finish("OK", files={"../../etc/x": b"x"})
        self.assertEqual(self.build_row(job)["job_status"], "WAITING")
        self.assertFalse(self.file_store.has(sha1(b"x")))

    def test_garbage_status(self):
        """A status answer that is not the protocol is a failed scan."""
        agent, scanner, job = self.dispatched()
        agent.model.status = lambda: {"builder_status": "Nonsense"}
        self.scan(scanner)
        self.assertEqual(scanner.scan_failures, 1)
        self.assertEqual(self.build_row(job)["job_status"], "RUNNING")


class FailureTests(ScannerTestBase):
    """Failure blame (Launchpad's rules)."""

    def test_consecutive_failures_count_once(self):
        """Four failed scans count nothing; the fifth counts one failure
        for the builder and its build; the build is kept."""
        agent, scanner, job = self.dispatched()
        self.agents["b1"] = broken = BrokenAgent()
        self.farm._agents.clear()
        for _ in range(SCAN_FAILURE_THRESHOLD - 1):
            self.scan(scanner)
        self.assertEqual(self.builder_row()["failure_count"], 0)
        self.scan(scanner)
        self.assertEqual(self.builder_row()["failure_count"], 1)
        self.assertEqual(self.build_row(job)["failure_count"], 1)
        self.assertEqual(self.build_row(job)["job_status"], "RUNNING")
        self.assertEqual(broken.calls, SCAN_FAILURE_THRESHOLD)

    def test_broken_idle_builder_disabled_at_five(self):
        """A builder whose agent never answers is disabled after five
        counted failures, with fail notes."""
        self.add_builder(agent=BrokenAgent("connection refused"))
        scanner = self.scanner()
        for _ in range(5 * SCAN_FAILURE_THRESHOLD):
            self.scan(scanner)
        row = self.builder_row()
        self.assertEqual((row["builderok"], row["failure_count"]), (False, 5))
        self.assertIn("connection refused", row["failnotes"])

    def test_build_failing_everywhere_fails(self):
        """A build that failed more often than its builder is failed."""
        agent, scanner, job = self.dispatched()
        self.sql(lambda c: c.execute(
            "UPDATE build_farm_job SET failure_count = 3"))
        agent.model.finish("BUILDERFAIL")
        self.scan(scanner)
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"]),
                         ("FAILED", "FAILEDTOBUILD"))

    def test_cookie_mismatch_resets(self):
        """An agent building something else means our build was lost:
        it is reset and the stranger aborted."""
        agent, scanner, job = self.dispatched()
        agent.model.build_id = "someone-else"
        self.scan(scanner)
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["builder"]),
                         ("WAITING", None))
        self.assertIn("lost", row["last_error"])
        self.assertEqual(agent.model.state, BuilderStatus.ABORTING)

    def test_idle_agent_with_build_resets(self):
        """An IDLE agent while the database says it builds: reset."""
        agent, scanner, job = self.dispatched()
        agent.model.state = BuilderStatus.IDLE
        self.scan(scanner)
        self.assertEqual(self.build_row(job)["job_status"], "WAITING")

    def test_unknown_leftovers_cleaned(self):
        """A WAITING agent with no build of ours is cleaned, a BUILDING
        one aborted, an ABORTING one left to finish; nobody is blamed."""
        self.add_builder("w", agent=WaitingAgent("OK", build_id="old"))
        self.add_builder("x", agent=BuildingAgent(build_id="old"))
        self.add_builder("y", agent=AbortingAgent(build_id="old"))
        for name in "wxy":
            self.scan(self.scanner(name))
        self.assertEqual(self.agents["w"].model.state, BuilderStatus.IDLE)
        self.assertEqual(self.agents["x"].model.state, BuilderStatus.ABORTING)
        self.assertEqual([c[0] for c in self.agents["y"].model.calls],
                         ["status"])
        self.assertEqual(self.sql(B.list_builders)[2]["failure_count"], 0)


class BuildTypeTests(ScannerTestBase):
    """A build goes only to a builder that offers its type (its agent's
    info()); one that no builder offers waits, and nobody is blamed."""

    def test_unoffered_type_waits_unblamed(self):
        """A builder whose agent offers only binarypackage (as
        launchpad-buildd offers no script): its info() is stored, the
        script build waits, the agent gets no build(), no failure."""
        agent = IdleAgent(build_types=("binarypackage",), arch_tag="arm64")
        self.add_builder(agent=agent)
        self.add_chroot()
        job = self.request()
        scanner = self.scanner()
        self.scan(scanner)
        self.scan(scanner)
        self.assertEqual(self.build_row(job)["job_status"], "WAITING")
        self.assertNotIn("build", [c[0] for c in agent.model.calls])
        vitals = self.sql(B.load_vitals, "b1")[0]
        self.assertEqual(vitals.build_types, ("binarypackage",))
        self.assertEqual(vitals.failure_count, 0)
        self.assertEqual(self.query(
            "SELECT arch_tag FROM builder WHERE name = 'b1'")[0][0], "arm64")

    def test_info_read_again_when_due(self):
        """info() is read again after info_interval, and at once when the
        agent's version changes (an upgraded agent may offer more)."""
        agent = IdleAgent()
        self.add_builder(agent=agent)
        scanner = self.scanner()
        self.scan(scanner)
        self.clock.advance(self.farm.config.info_interval - 1)
        self.scan(scanner)
        self.assertEqual([c[0] for c in agent.model.calls].count("info"), 1)
        self.clock.advance(1)
        self.scan(scanner)
        self.assertEqual([c[0] for c in agent.model.calls].count("info"), 2)
        agent.model.version = "fake-2"
        self.scan(scanner)
        self.assertEqual([c[0] for c in agent.model.calls].count("info"), 3)

    def test_unknownbuilder_answer_gives_back_unblamed(self):
        """An agent that stopped offering the type since its info() was
        read answers build() with UNKNOWNBUILDER: the build waits again at
        once with the attempt not counted, the builder takes no failure,
        and its info() is read again."""
        agent = IdleAgent()
        self.add_builder(agent=agent)
        self.add_chroot()
        scanner = self.scanner()
        self.scan(scanner)  # info(): script
        agent.model.build_types = ["binarypackage"]
        job = self.request()
        self.successResultOf(scanner.reload())
        self.scan(scanner)
        row = self.query("SELECT status, attempt_count, last_error FROM job"
                         " WHERE id = %s", (job,))[0]
        self.assertEqual(row[:2], (0, 0))
        self.assertIn("does not offer build type script", row[2])
        vitals = self.sql(B.load_vitals, "b1")[0]
        self.assertEqual((vitals.failure_count, vitals.build), (0, None))
        self.assertIsNone(vitals.date_info_read)
        self.scan(scanner)
        self.assertEqual(self.sql(B.load_vitals, "b1")[0].build_types,
                         ("binarypackage",))
        self.assertEqual(self.build_row(job)["job_status"], "WAITING")


class CancelTests(ScannerTestBase):
    """Cancellation: CANCELLING -> abort -> CANCELLED."""

    def test_cancel(self):
        """abort() once; CANCELLED when the agent reports ABORTED."""
        agent, scanner, job = self.dispatched()
        self.sql(Q.cancel_build, job, self.now())
        self.successResultOf(scanner.reload())
        self.scan(scanner)
        self.assertEqual(agent.model.state, BuilderStatus.ABORTING)
        self.scan(scanner)
        self.assertEqual(
            [c[0] for c in agent.model.calls].count("abort"), 1)
        agent.model.aborted()
        self.scan(scanner)
        row = self.build_row(job)
        self.assertEqual((row["job_status"], row["status"]),
                         ("FAILED", "CANCELLED"))
        self.assertEqual(agent.model.state, BuilderStatus.IDLE)

    def test_cancel_forced_after_timeout(self):
        """An agent that never finishes aborting: CANCELLED is forced
        after cancel_timeout, and the builder is dirty."""
        agent, scanner, job = self.dispatched()
        self.sql(Q.cancel_build, job, self.now())
        self.successResultOf(scanner.reload())
        self.scan(scanner)
        self.clock.advance(self.farm.config.cancel_timeout - 1)
        self.scan(scanner)
        self.assertEqual(self.build_row(job)["status"], "CANCELLING")
        self.clock.advance(2)
        self.scan(scanner)
        self.assertEqual(self.build_row(job)["status"], "CANCELLED")
        self.assertEqual(self.builder_row()["clean_status"], "DIRTY")


    def test_cancel_deadline_survives_a_restart(self):
        """The deadline is stored when the abort is first asked for; a
        new master (fresh farm and scanner) keeps it rather than starting
        another: it forces CANCELLED at the first deadline, and aborts
        only once in all."""
        agent, scanner, job = self.dispatched()
        self.sql(Q.cancel_build, job, self.now())
        self.successResultOf(scanner.reload())
        self.scan(scanner)
        deadline = self.sql(B.load_vitals, "b1")[0].build.cancel_deadline
        self.assertEqual(
            deadline,
            self.now() + timedelta(seconds=self.farm.config.cancel_timeout))
        self.clock.advance(self.farm.config.cancel_timeout - 1)
        farm = Farm(self.sync, self.clock, self.file_store, self.farm.config,
                    agent_factory=lambda v: self.agents[v.name])
        fresh = BuilderScanner(farm, self.sql(B.load_vitals, "b1")[0])
        self.successResultOf(fresh.scan())
        self.assertEqual(self.build_row(job)["status"], "CANCELLING")
        self.assertEqual(
            self.sql(B.load_vitals, "b1")[0].build.cancel_deadline, deadline)
        self.clock.advance(2)
        self.successResultOf(fresh.reload())
        self.successResultOf(fresh.scan())
        self.assertEqual(self.build_row(job)["status"], "CANCELLED")
        self.assertEqual(
            [c[0] for c in agent.model.calls].count("abort"), 1)


class VirtualTests(ScannerTestBase):
    """Virtual builders are reset before each dispatch."""

    def test_reset_then_dispatch(self):
        """DIRTY -> reset command -> echo -> CLEAN -> dispatch."""
        agent = IdleAgent()
        self.add_builder("v1", agent=agent, virtualized=True)
        self.add_chroot()
        job = self.request(virtualized=True)
        scanner = self.scanner("v1")
        self.scan(scanner)
        self.assertEqual(self.commands[0][0], "reset-v1")
        self.assertEqual(self.commands[0][1]["LP_BUILDER_NAME"], "v1")
        self.assertIn("echo", [c[0] for c in agent.model.calls])
        self.assertEqual(self.build_row(job)["job_status"], "RUNNING")
        self.assertEqual(self.build_row(job)["build_args"], {})
        self.assertTrue(agent.model.build_args["fast_cleanup"])
        agent.model.finish("OK")
        self.scan(scanner)
        self.assertEqual(self.builder_row("v1")["clean_status"], "DIRTY")

    def test_reset_waits_for_echo(self):
        """After the reset the master pings until the agent answers."""
        agent = IdleAgent()
        self.add_builder("v1", agent=agent, virtualized=True)
        answers = [AgentError("refused"), AgentError("refused")]
        real_echo = agent.echo
        agent.echo = lambda *a: (defer.fail(answers.pop())
                                 if answers else real_echo(*a))
        scanner = self.scanner("v1")
        d = scanner.scan()
        self.assertNoResult(d)
        self.assertEqual(self.builder_row("v1")["clean_status"], "CLEANING")
        self.clock.advance(self.farm.config.echo_interval)
        self.clock.advance(self.farm.config.echo_interval)
        self.successResultOf(d)
        self.assertEqual(self.builder_row("v1")["clean_status"], "CLEAN")

    def test_reset_timeout_counts_failure(self):
        """A builder that never answers after its reset is a failure."""
        self.add_builder("v1", agent=BrokenAgent(), virtualized=True)
        scanner = self.scanner("v1")
        d = scanner.scan()
        self.clock.pump([self.farm.config.echo_interval] *
                        int(self.farm.config.echo_timeout /
                            self.farm.config.echo_interval + 2))
        self.successResultOf(d)
        row = self.builder_row("v1")
        self.assertEqual((row["failure_count"], row["clean_status"]),
                         (1, "DIRTY"))

    def test_failed_reset_command(self):
        """A reset command that exits non-zero is a failure."""
        self.command_result = 1
        self.add_builder("v1", agent=IdleAgent(), virtualized=True)
        self.scan(self.scanner("v1"))
        self.assertEqual(self.builder_row("v1")["failure_count"], 1)


class RestartTests(ScannerTestBase):
    """A new buildmaster recognises running builds by their cookie."""

    def test_new_master_keeps_and_collects(self):
        """A fresh farm and scanner over a build dispatched by another
        (dead) master: no second dispatch; collected when it ends."""
        agent, scanner, job = self.dispatched()
        builds_sent = [c for c in agent.model.calls if c[0] == "build"]
        farm = Farm(self.sync, self.clock, self.file_store, self.farm.config,
                    agent_factory=lambda v: self.agents[v.name])
        vitals = self.sql(B.load_vitals, "b1")[0]
        fresh = BuilderScanner(farm, vitals)
        self.successResultOf(fresh.scan())
        self.assertEqual(self.build_row(job)["job_status"], "RUNNING")
        agent.model.finish("OK", files={"r": b"r"})
        self.successResultOf(fresh.scan())
        self.assertEqual(self.build_row(job)["status"], "FULLYBUILT")
        self.assertEqual([c for c in agent.model.calls if c[0] == "build"],
                         builds_sent)


class ManagerTests(ScannerTestBase):
    """The service that keeps scanners for builders and reacts to
    notifications."""

    def test_refresh_and_notify(self):
        """Refresh starts a scanner per active builder; a `queued`
        notification wakes an idle one, which dispatches at once."""
        agent = IdleAgent()
        self.add_builder(agent=agent)
        self.add_chroot()
        manager = BuilderManager(self.farm)
        manager.startService()
        self.addCleanup(manager.stopService)
        self.assertEqual(list(manager.scanners), ["b1"])
        self.clock.advance(15)  # first scans (staggered)
        job = self.request()
        processor = self.query("SELECT id FROM processor")[0][0]
        manager.notified("queued %d 0" % processor)
        self.assertEqual(self.build_row(job)["job_status"], "RUNNING")

    def test_cancel_notification(self):
        """A `cancel` notification refreshes and scans the cancelling
        build's builder at once: the agent is told to abort."""
        agent, scanner, job = self.dispatched()
        manager = BuilderManager(self.farm)
        manager.scanners["b1"] = scanner
        self.sql(Q.cancel_build, job, self.now())
        manager.notified("cancel %d 1" % job)
        self.assertEqual(agent.model.state, BuilderStatus.ABORTING)

    def test_refresh_does_not_clobber_newer_vitals(self):
        """Vitals read before a scanner's own later change are not applied
        by a refresh that finishes after it."""
        agent, scanner, job = self.dispatched()
        manager = BuilderManager(self.farm)
        manager.scanners["b1"] = scanner
        real_run = self.farm.transactor.run

        def run_then_change(function, *args, **kwargs):
            self.farm.transactor.run = real_run
            d = real_run(function, *args, **kwargs)
            # The scanner commits (finishing the build) while the
            # refresher's read is in flight.
            agent.model.finish("OK")
            self.successResultOf(scanner.scan())
            return d
        self.farm.transactor.run = run_then_change
        self.successResultOf(manager.refresh())
        self.farm.transactor.run = real_run
        self.assertIsNone(scanner.vitals.build)
