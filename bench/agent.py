"""Measure the agent on this machine: chroot unpack, sandbox start, a
whole ``script`` build over XML-RPC, and what the hostile-build defences
cost, side by side in one run:

- a script build with its /work on a loop-mounted work volume
  (``work_quota`` 16G) against the same build without one (``0``),
  alternating, every run listed, medians and their ratio;
- ``remove_tree`` (fd walk, no recursion) against ``shutil.rmtree`` on
  copies of the unpacked busybox chroot (~290 entries) and of a
  200-level tree, alternating.

    .venv/bin/python bench/agent.py [--builds 20]

Prints one line per figure (median and worst of the runs).
"""

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, task

from lp_services.slave.busybox_chroot import busybox_chroot
from lp_services.slave.cgroup import Limits
from lp_services.slave.chroot import unpack
from lp_services.slave.sandbox import SandboxBackend
from lp_services.protocol.states import BuilderStatus
from lp_services.testing.agents import make_test_config, start_agent
from lp_services.slave.tree import remove_tree


def _pair(what, a_name, a, b_name, b):
    """Two series measured alternately: every run, medians, ratio."""
    print("%s:" % what)
    for name, samples in ((a_name, a), (b_name, b)):
        print("  %-22s median %7.1f ms   runs: %s" % (
            name, 1000 * statistics.median(samples),
            " ".join("%.1f" % (1000 * s) for s in samples)))
    print("  ratio %s / %s = %.2f" % (a_name, b_name,
                                      statistics.median(a)
                                      / statistics.median(b)))


def _deep(path: Path, depth: int) -> None:
    path.mkdir()
    for _ in range(depth):
        path = path / "d"
        path.mkdir()
    (path / "f").write_text("x")


def _compare_removal(tmp: Path, rounds: int) -> None:
    tarball = busybox_chroot(fmt="gz")
    for label, make in (
            ("busybox chroot", lambda p: unpack(tarball, p)),
            ("200-level tree", lambda p: _deep(p, 200))):
        ours, theirs = [], []
        for i in range(rounds):
            for fn, out in ((remove_tree, ours), (shutil.rmtree, theirs)):
                path = tmp / ("rm-%s-%d" % (fn.__name__, i))
                make(path)
                started = time.monotonic()
                fn(path)
                out.append(time.monotonic() - started)
        _pair("remove a %s" % label, "remove_tree", ours, "shutil.rmtree",
              theirs)


@defer.inlineCallbacks
def _seeded_agent(base: Path, **overrides):
    running = yield start_agent(config=make_test_config(base, **overrides))
    tarball = busybox_chroot(fmt="gz")
    chroot = hashlib.sha1(tarball.read_bytes()).hexdigest()
    dest = running.agent.cache.path_for(chroot)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tarball, dest)
    script = b"echo hello > out/hello\n"
    sha1 = hashlib.sha1(script).hexdigest()
    path = running.agent.cache.path_for(sha1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(script)
    return running, chroot, sha1


@defer.inlineCallbacks
def _timed_build(running, chroot, sha1, build_id):
    proxy = running.proxy()
    started = time.monotonic()
    yield proxy.callRemote("build", build_id, "script", chroot,
                           {"b.sh": sha1}, {"script": "b.sh"})
    yield running.agent.wait_for(BuilderStatus.WAITING)
    status = yield proxy.callRemote("status")
    assert status["build_status"] == "BuildStatus.OK", status
    yield proxy.callRemote("clean")
    return time.monotonic() - started


@defer.inlineCallbacks
def _compare_volume(tmp: Path, builds: int):
    with_volume = yield _seeded_agent(tmp / "vol", work_quota=16 << 30)
    without = yield _seeded_agent(tmp / "novol", work_quota=0)
    try:
        a, b = [], []
        for i in range(builds):
            a.append((yield _timed_build(*with_volume, "v-%d" % i)))
            b.append((yield _timed_build(*without, "n-%d" % i)))
        _pair("script build over XML-RPC (build..clean)", "16G work volume",
              a, "no volume", b)
    finally:
        yield with_volume[0].stop()
        yield without[0].stop()


def _line(what, samples):
    samples = sorted(samples)
    print("%-44s median %7.1f ms   worst %7.1f ms   (n=%d)" % (
        what, 1000 * statistics.median(samples), 1000 * samples[-1],
        len(samples)))


@defer.inlineCallbacks
def _main(reactor, builds):
    tmp = Path(tempfile.mkdtemp(prefix="lp-agent-bench-"))
    try:
        for fmt in ("gz", "xz", "zst"):
            tarball = busybox_chroot(fmt=fmt)
            times = []
            for i in range(5):
                started = time.monotonic()
                unpack(tarball, tmp / ("u-%s-%d" % (fmt, i)))
                times.append(time.monotonic() - started)
            _line("unpack busybox chroot (.tar.%s, %d KB)"
                  % (fmt, tarball.stat().st_size >> 10), times)
        root, work = tmp / "u-gz-0", tmp / "work"
        work.mkdir()
        backend = SandboxBackend(reactor, Limits(memory=256 << 20, pids=256))
        times = []
        for i in range(builds):
            box = backend.sandbox("bench-%d" % i, root, work)
            started = time.monotonic()
            result = yield box.run(["/bin/true"], lambda data: None, 60)
            times.append(time.monotonic() - started)
            box.destroy()
            assert result.ok, result
        _line("sandbox run of /bin/true (cgroup %s)" % backend.cgroup_version,
              times)
        running, chroot, sha1 = yield _seeded_agent(tmp / "agent")
        try:
            proxy = running.proxy()
            times = []
            for i in range(builds):
                started = time.monotonic()
                yield proxy.callRemote("build", "bench-%d" % i, "script",
                                       chroot, {"b.sh": sha1},
                                       {"script": "b.sh"})
                yield running.agent.wait_for(BuilderStatus.WAITING)
                status = yield proxy.callRemote("status")
                assert status["build_status"] == "BuildStatus.OK", status
                yield proxy.callRemote("clean")
                times.append(time.monotonic() - started)
            _line("script build over XML-RPC (build..clean)", times)
        finally:
            yield running.stop()
        yield _compare_volume(tmp, builds)
        _compare_removal(tmp, max(5, builds // 2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=20)
    args = parser.parse_args()
    task.react(_main, [args.builds])


if __name__ == "__main__":
    main()
