"""The domain object (lp_services.slave.agent.Agent) called directly:
what XML-RPC cannot carry (NUL), start-up cleaning, waiting on states."""

import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, TestCase

from lp_services.slave.agent import Agent
from lp_services.slave.errors import (
    BadBuildId, BadFileName, NotClean, WrongState)
from lp_services.slave.manager import BuildOutcome
from lp_services.protocol.states import BuilderStatus, BuildStatus
from lp_services.testing.agents import make_test_config
from lp_services.slave.volume import (
    create_volume, detach_mounts, mounts_under)

from tests.slave.hold import HoldBuildManager, hold_registry
from tests.slave.test_tree import deep_tree
from tests.slave.test_volume import volume_unavailable


class AgentTests(TestCase):
    """Direct calls on Agent."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="lp-agent-domain-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.config = make_test_config(self.tmp)
        self.agent = Agent(self.config, reactor, registry=hold_registry())
        self.addCleanup(self.agent.stop)
        chroot = self.agent.cache.path_for("a" * 40)
        chroot.parent.mkdir(parents=True)
        chroot.write_bytes(b"x")

    def test_nul_and_control_characters_refused(self):
        """A NUL or newline in a build id or file name is refused (these
        cannot even travel over XML-RPC, but the domain checks anyway)."""
        self.assertRaises(BadBuildId, self.agent.build, "a\0b", "hold",
                          "a" * 40, {}, {})
        self.assertRaises(BadBuildId, self.agent.build, "a\nb", "hold",
                          "a" * 40, {}, {})
        self.assertRaises(BadFileName, self.agent.build, "b", "hold",
                          "a" * 40, {"x\0y": "a" * 40}, {})
        self.assertIs(self.agent.state, BuilderStatus.IDLE)

    @defer.inlineCallbacks
    def test_start_empties_work_dir(self):
        """start() removes what a previous run left in the work directory."""
        (self.config.work_dir / "old-build" / "chroot").mkdir(parents=True)
        (self.config.work_dir / "stray").write_text("x")
        yield self.agent.start()
        self.assertEqual(list(self.config.work_dir.iterdir()), [])

    @defer.inlineCallbacks
    def test_start_unmounts_a_crashed_runs_volume(self):
        """A work volume still mounted by a run that died (and a deep tree
        in it) is unmounted and removed by start(); builds are accepted."""
        skip = volume_unavailable()
        if skip:
            raise SkipTest(skip)
        old = self.config.work_dir / "crashed"
        old.mkdir()
        create_volume(old / "work.img", old / "build", 8 << 20)
        self.addCleanup(detach_mounts, self.config.work_dir)
        deep_tree(old / "build" / "tree", 1500)
        self.assertEqual(len(mounts_under(self.config.work_dir)), 1)
        self.assertEqual((yield self.agent.start()), [])
        self.assertEqual(mounts_under(self.config.work_dir), [])
        self.assertEqual(list(self.config.work_dir.iterdir()), [])
        self.agent.build("c-6", "hold", "a" * 40, {}, {})
        HoldBuildManager.instances[-1].finish.callback(
            BuildOutcome(BuildStatus.OK))
        yield self.agent.wait_for(BuilderStatus.WAITING)
        yield self.agent.clean()

    @defer.inlineCallbacks
    def test_wait_for_and_full_cycle(self):
        """wait_for fires on entering a state (at once if already there);
        a build goes IDLE -> BUILDING -> WAITING -> IDLE."""
        yield self.agent.wait_for(BuilderStatus.IDLE)
        waiting = self.agent.wait_for(BuilderStatus.WAITING)
        self.assertEqual(self.agent.build("c-1", "hold", "a" * 40, {}, {}),
                         ["BuilderStatus.BUILDING", "c-1"])
        self.assertNoResult(waiting)
        self.assertRaises(WrongState, self.agent.clean)
        HoldBuildManager.instances[-1].finish.callback(
            BuildOutcome(BuildStatus.OK))
        yield waiting
        self.assertEqual(self.agent.status()["build_status"],
                         "BuildStatus.OK")
        self.assertEqual((yield self.agent.clean()), "BuilderStatus.IDLE")

    @defer.inlineCallbacks
    def test_no_build_over_leftovers(self):
        """A leftover in the work directory (here with the new build's id)
        makes build() refuse with NotClean and sweep again; once it is gone
        the build is accepted and starts clean."""
        old = self.config.work_dir / "c-2"
        old.mkdir()
        (old / "junk").write_text("old")
        e = self.assertRaises(NotClean, self.agent.build, "c-2", "hold",
                              "a" * 40, {}, {})
        self.assertIn("c-2", str(e))
        self.assertIs(self.agent.state, BuilderStatus.IDLE)
        self.assertRaises(NotClean, self.agent.build, "c-2", "hold",
                          "a" * 40, {}, {})
        yield self.agent._wait_sweep()
        self.agent.build("c-2", "hold", "a" * 40, {}, {})
        self.assertFalse((old / "junk").exists())
        self.assertTrue((old / "buildlog").exists())
        HoldBuildManager.instances[-1].finish.callback(
            BuildOutcome(BuildStatus.OK))
        yield self.agent.wait_for(BuilderStatus.WAITING)
        yield self.agent.clean()

    def immutable(self, path: Path) -> None:
        """Make ``path`` impossible to delete until the test ends."""
        path.write_text("stuck")
        if subprocess.run(["chattr", "+i", str(path)],
                          capture_output=True).returncode != 0:
            raise SkipTest("chattr +i is not supported here")
        self.addCleanup(subprocess.run, ["chattr", "-i", str(path)])

    @defer.inlineCallbacks
    def test_clean_that_cannot_remove_fails_loudly(self):
        """clean() that cannot remove the build's files fails with
        NotClean naming them and leaves the builder WAITING (no new build);
        once they can go, clean() again reaches IDLE."""
        self.agent.build("c-3", "hold", "a" * 40, {}, {})
        stuck = self.config.work_dir / "c-3" / "stuck"
        self.immutable(stuck)
        HoldBuildManager.instances[-1].finish.callback(
            BuildOutcome(BuildStatus.OK))
        yield self.agent.wait_for(BuilderStatus.WAITING)
        e = yield self.assertFailure(self.agent.clean(), NotClean)
        self.assertIn("stuck", str(e))
        self.assertIs(self.agent.state, BuilderStatus.WAITING)
        self.assertRaises(WrongState, self.agent.build, "c-4", "hold",
                          "a" * 40, {}, {})
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
        self.assertEqual((yield self.agent.clean()), "BuilderStatus.IDLE")
        self.assertEqual(list(self.config.work_dir.iterdir()), [])

    @defer.inlineCallbacks
    def test_leftovers_survive_a_restart_and_refuse_builds(self):
        """What a previous run left and cannot be removed keeps a new
        agent (same work directory) from accepting builds, loudly."""
        yield self.agent.stop()
        (self.config.work_dir / "old").mkdir()
        self.immutable(self.config.work_dir / "old" / "stuck")
        agent = Agent(self.config, reactor, registry=hold_registry())
        self.addCleanup(agent.stop)
        failures = yield agent.start()
        self.assertEqual(len(failures), 1)
        self.assertIn("stuck", failures[0])
        e = self.assertRaises(NotClean, agent.build, "c-5", "hold",
                              "a" * 40, {}, {})
        self.assertIn("old", str(e))
        yield agent._wait_sweep()
        self.assertIs(agent.state, BuilderStatus.IDLE)
