"""cgroup handling (lp_services.slave.cgroup) against a fake cgroupfs tree
(plain files), plus the real v1 hierarchy when it is writable."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from lp_services.slave.cgroup import CgroupV1, CgroupV2, Limits, detect

LIMITS = Limits(memory=64 << 20, pids=32, cpu=0.5)


class FakeTreeTests(SynchronousTestCase):
    """Limits land in the right control files; detection picks a version."""

    def setUp(self):
        self.root = Path(tempfile.mkdtemp(prefix="lp-cgroup-test-"))
        self.addCleanup(shutil.rmtree, self.root)

    def make_v1(self):
        for controller in ("memory", "pids", "cpu"):
            (self.root / controller).mkdir()
            (self.root / controller / "cgroup.procs").write_text("")

    def test_detect(self):
        """none -> None; an empty tree -> None in auto and an error when a
        version is demanded; v1 files -> CgroupV1; v2 controllers ->
        CgroupV2 (preferred)."""
        self.assertIsNone(detect("none", self.root))
        self.assertIsNone(detect("auto", self.root))
        self.assertRaises(RuntimeError, detect, "v1", self.root)
        self.make_v1()
        self.assertIsInstance(detect("auto", self.root), CgroupV1)
        (self.root / "cgroup.controllers").write_text("cpu memory pids\n")
        self.assertIsInstance(detect("auto", self.root), CgroupV2)
        self.assertIsInstance(detect("v1", self.root), CgroupV1)

    def test_v1_limits(self):
        """v1: memory.limit_in_bytes, pids.max and the CPU quota are set
        in per-controller directories."""
        self.make_v1()
        group = CgroupV1(self.root).create("b-1", LIMITS)
        memory = self.root / "memory/lp-buildslave/b-1"
        self.assertEqual((memory / "memory.limit_in_bytes").read_text(),
                         str(64 << 20))
        self.assertEqual((self.root / "pids/lp-buildslave/b-1/pids.max")
                         .read_text(), "32")
        cpu = self.root / "cpu/lp-buildslave/b-1"
        self.assertEqual((cpu / "cpu.cfs_quota_us").read_text(), "50000")
        self.assertEqual((cpu / "cpu.cfs_period_us").read_text(), "100000")
        self.assertEqual(len(group.procs_files), 3)

    def test_v2_limits(self):
        """v2: memory.max, swap off, pids.max and cpu.max in one group;
        controllers enabled for the subtree."""
        (self.root / "cgroup.controllers").write_text("cpu memory pids\n")
        (self.root / "cgroup.subtree_control").write_text("")

        class Prepared(CgroupV2):
            def create(inner, name, limits):
                d = self.root / "lp-buildslave" / name
                d.mkdir(parents=True, exist_ok=True)
                for f in ("memory.swap.max", "cpu.max",
                          "cgroup.subtree_control"):
                    (d / f).write_text("")
                (self.root / "lp-buildslave" / "cgroup.subtree_control") \
                    .write_text("")
                return super().create(name, limits)

        group = Prepared(self.root).create("b-2", LIMITS)
        d = self.root / "lp-buildslave/b-2"
        self.assertEqual((d / "memory.max").read_text(), str(64 << 20))
        self.assertEqual((d / "memory.swap.max").read_text(), "0")
        self.assertEqual((d / "pids.max").read_text(), "32")
        self.assertEqual((d / "cpu.max").read_text(), "50000 100000")
        self.assertEqual(group.procs_files, [d / "cgroup.procs"])


class StaleTests(SynchronousTestCase):
    """Groups of agents that died are removed; others are kept."""

    def test_remove_stale(self):
        """A group named after a dead pid is removed; one of a live pid and
        one not named by us are kept."""
        root = Path(tempfile.mkdtemp(prefix="lp-cgroup-stale-"))
        self.addCleanup(shutil.rmtree, root)
        dead = subprocess.Popen(["true"])
        dead.wait()
        parent = root / "lp-buildslave"
        for name in ("b-%d-1" % dead.pid, "b-%d-2" % os.getpid(), "other"):
            (parent / name).mkdir(parents=True)
        removed = CgroupV2(root).remove_stale()
        self.assertEqual(removed, ["b-%d-1" % dead.pid])
        self.assertEqual(sorted(p.name for p in parent.iterdir()),
                         ["b-%d-2" % os.getpid(), "other"])


class RealV1Tests(SynchronousTestCase):
    """The machine's own cgroup v1 hierarchy (root only)."""

    def setUp(self):
        if not CgroupV1.available():
            raise self.skipTest("cgroup v1 memory/pids not writable here")

    def test_kill_and_remove(self):
        """A process placed in the group is killed by remove(), and the
        groups are gone."""
        group = CgroupV1(parent="lp-buildslave-test").create(
            "t-%d" % os.getpid(), Limits(memory=64 << 20, pids=16))
        procs = " ".join(str(p) for p in group.procs_files)
        child = subprocess.Popen(
            ["sh", "-c", 'for f in %s; do echo $$ > $f; done; exec sleep 300'
             % procs])
        self.addCleanup(child.kill)
        for _ in range(200):
            if group.pids():
                break
            os.sched_yield()
            subprocess.run(["true"])
        self.assertEqual(group.pids(), {child.pid})
        group.remove()
        self.assertEqual(child.wait(timeout=10), -9)
        for d in group.dirs:
            self.assertFalse(d.exists())
            try:
                d.parent.rmdir()
            except OSError:
                pass
