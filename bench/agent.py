"""Measure the agent on this machine: chroot unpack, sandbox start, and a
whole ``script`` build over XML-RPC.

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
from lp_services.slave.state import BuilderStatus
from lp_services.slave.testing import start_agent


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
        running = yield start_agent(tmp / "agent")
        try:
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=20)
    args = parser.parse_args()
    task.react(_main, [args.builds])


if __name__ == "__main__":
    main()
