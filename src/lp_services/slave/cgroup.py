"""Resource limits of one build: cgroup v1 or v2, or rlimits as fallback.

A :class:`Limits` record says what a build may use. :func:`detect` picks
how to enforce it on this machine: cgroup v2 when the unified hierarchy
has the memory and pids controllers, else cgroup v1 when its memory and
pids hierarchies are mounted and writable (the case on the machines in
ISOLATION.md), else none (the sandbox then applies rlimits with
``prlimit``: address space and process count, which are weaker).

A :class:`BuildCgroup` is created per build; the sandbox's launcher writes
its own pid into every ``cgroup.procs`` before it execs bubblewrap, so the
whole process tree is inside from its first instruction. ``kill()`` sends
SIGKILL to every member until none is left; ``remove()`` also deletes the
groups.
"""

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from lp_services.process import pid_alive

__all__ = ["BuildCgroup", "CgroupV1", "CgroupV2", "Limits", "detect"]

_ROOT = Path("/sys/fs/cgroup")
#: cpu.cfs_period_us / cpu.max period: the kernel's default, 100 ms.
_CPU_PERIOD = 100_000


@dataclass(frozen=True)
class Limits:
    """What one build may use."""

    memory: int          # bytes of RAM (swap not allowed beyond it)
    pids: int            # processes and threads at once
    cpu: float = 0.0     # cores; 0 = unlimited


def _write(path: Path, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _kill_members(procs_files: list[Path], rounds: int = 200) -> None:
    """SIGKILL every pid in the groups until they are empty."""
    for _ in range(rounds):
        pids = set()
        for procs in procs_files:
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except FileNotFoundError:
                continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Killed processes leave the group only once reaped; a fork bomb
        # may add more meanwhile (bounded by pids.max). Yield briefly.
        os.sched_yield()


class BuildCgroup:
    """The cgroup(s) of one build (see the module docstring)."""

    def __init__(self, dirs: list[Path], kill_file: Path | None = None):
        self.dirs = dirs
        self._kill_file = kill_file

    @property
    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files the launcher joins."""
        return [d / "cgroup.procs" for d in self.dirs]

    def pids(self) -> set[int]:
        """Pids currently inside."""
        found = set()
        for procs in self.procs_files:
            try:
                found.update(int(p) for p in procs.read_text().split())
            except FileNotFoundError:
                pass
        return found

    def kill(self) -> None:
        """SIGKILL everything inside; returns when the groups are empty
        (or after a bounded number of rounds)."""
        if self._kill_file is not None and self._kill_file.exists():
            try:
                _write(self._kill_file, 1)
            except OSError:
                pass
        _kill_members(self.procs_files)

    def remove(self) -> bool:
        """Kill everything inside and delete the groups; whether all are
        gone (a member not yet reaped by its parent can keep one busy)."""
        self.kill()
        gone = True
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: a member not yet reaped
                    _kill_members([d / "cgroup.procs"], rounds=1)
                    os.sched_yield()
            else:
                gone = False
        return gone

    def read(self, controller: str, name: str) -> str | None:
        """A control file's text (for tests and logs), or None."""
        for d in self.dirs:
            if controller in d.parts or len(self.dirs) == 1:
                try:
                    return (d / name).read_text()
                except OSError:
                    return None
        return None


def _owner_alive(name: str) -> bool:
    """Whether the agent that made group ``<build>-<pid>-<n>`` still runs."""
    try:
        pid = int(name.rsplit("-", 2)[-2])
    except (IndexError, ValueError):
        return True  # not ours: leave it
    return pid_alive(pid)


def _remove_stale(parents: list[Path]) -> list[str]:
    removed = []
    for parent in parents:
        try:
            children = [d for d in parent.iterdir() if d.is_dir()]
        except OSError:
            continue
        for d in children:
            if not _owner_alive(d.name):
                BuildCgroup([d]).remove()
                removed.append(d.name)
    return removed


class CgroupV1:
    """Separate memory, pids and cpu hierarchies under /sys/fs/cgroup."""

    version = "v1"

    def __init__(self, root: Path = _ROOT, parent: str = "lp-buildslave"):
        self.root = root
        self.parent = parent

    @classmethod
    def available(cls, root: Path = _ROOT) -> bool:
        """Whether memory and pids v1 hierarchies are mounted and writable."""
        return all(os.access(root / c, os.W_OK)
                   and (root / c / "cgroup.procs").exists()
                   for c in ("memory", "pids"))

    def remove_stale(self) -> list[str]:
        """Kill and remove groups left by agents that no longer run."""
        return _remove_stale([self.root / c / self.parent
                              for c in ("memory", "pids", "cpu")])

    def create(self, name: str, limits: Limits) -> BuildCgroup:
        """Make the build's groups with ``limits`` applied."""
        dirs = []
        controllers = ["memory", "pids"]
        if limits.cpu > 0 and (self.root / "cpu" / "cgroup.procs").exists():
            controllers.append("cpu")
        try:
            for controller in controllers:
                d = self.root / controller / self.parent / name
                d.mkdir(parents=True, exist_ok=True)
                dirs.append(d)
                if controller == "memory":
                    _write(d / "memory.limit_in_bytes", limits.memory)
                    if (d / "memory.memsw.limit_in_bytes").exists():
                        _write(d / "memory.memsw.limit_in_bytes", limits.memory)
                    if (d / "memory.swappiness").exists():
                        try:
                            _write(d / "memory.swappiness", 0)
                        except OSError:
                            pass
                elif controller == "pids":
                    _write(d / "pids.max", limits.pids)
                else:
                    _write(d / "cpu.cfs_period_us", _CPU_PERIOD)
                    _write(d / "cpu.cfs_quota_us", int(limits.cpu * _CPU_PERIOD))
        except OSError:
            BuildCgroup(dirs).remove()
            raise
        return BuildCgroup(dirs)


class CgroupV2:
    """The unified hierarchy with memory, pids (and cpu) controllers."""

    version = "v2"

    def __init__(self, root: Path = _ROOT, parent: str = "lp-buildslave"):
        self.root = root
        self.parent = parent

    @classmethod
    def available(cls, root: Path = _ROOT) -> bool:
        """Whether the unified root offers memory and pids and is writable."""
        try:
            controllers = (root / "cgroup.controllers").read_text().split()
        except OSError:
            return False
        return {"memory", "pids"} <= set(controllers) and os.access(root, os.W_OK)

    def remove_stale(self) -> list[str]:
        """Kill and remove groups left by agents that no longer run."""
        return _remove_stale([self.root / self.parent])

    def create(self, name: str, limits: Limits) -> BuildCgroup:
        """Make the build's group with ``limits`` applied."""
        parent = self.root / self.parent
        parent.mkdir(exist_ok=True)
        wanted = ["+memory", "+pids"] + (["+cpu"] if limits.cpu > 0 else [])
        for d in (self.root, parent):
            for c in wanted:
                try:
                    _write(d / "cgroup.subtree_control", c)
                except OSError:
                    pass
        d = parent / name
        d.mkdir(exist_ok=True)
        group = BuildCgroup([d], kill_file=d / "cgroup.kill")
        try:
            _write(d / "memory.max", limits.memory)
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", 0)
            _write(d / "pids.max", limits.pids)
            if limits.cpu > 0 and (d / "cpu.max").exists():
                _write(d / "cpu.max", "%d %d" % (int(limits.cpu * _CPU_PERIOD),
                                                 _CPU_PERIOD))
        except OSError:
            group.remove()
            raise
        return group


def detect(mode: str = "auto", root: Path = _ROOT):
    """The cgroup manager to use (``CgroupV1``/``CgroupV2``) or None.

    ``mode`` is the configuration's ``cgroup``: auto, v1, v2 or none.
    An explicit version that is not available raises RuntimeError.
    """
    if mode == "none":
        return None
    if mode in ("auto", "v2") and CgroupV2.available(root):
        return CgroupV2(root)
    if mode in ("auto", "v1") and CgroupV1.available(root):
        return CgroupV1(root)
    if mode != "auto":
        raise RuntimeError("cgroup %s is not usable on this machine" % mode)
    return None
