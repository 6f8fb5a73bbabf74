#!/usr/bin/env python3
"""Benchmark: the ``qemu`` backend against the ``sandbox`` backend.

    .venv/bin/python bench/vm.py [--runs 5] [--loop 200000] [--memory 256]

In one process, on this machine:

1. **guest boot to power-off**: ``--runs`` guests running ``true`` on a
   busybox root through the qemu backend (bubblewrap-confined QEMU, the
   accelerator the backend chose, logged); prints the median, min and max
   of QEMU start -> QEMU exit, and of QEMU start -> the guest's "booted"
   line;
2. **script build overhead**: two real agents on loopback, one per
   backend, each given the same ``script`` builds over XML-RPC (the
   busybox chroot; ``build()`` -> ``WAITING``, then ``clean()``),
   alternating sandbox / qemu run by run so both see the same machine
   load; two workloads: ``echo`` (a trivial script) and ``loop`` (a shell
   loop of ``--loop`` iterations: CPU-bound guest code); prints each
   backend's median and the VM's overhead (difference and ratio).

The kernel/initramfs come from the cache (prepared on first use).
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, task

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from lp_services.slave.busybox_chroot import busybox_chroot  # noqa: E402
from lp_services.slave.qemu import QemuBackend, QemuConfig  # noqa: E402
from lp_services.slave.state import BuilderStatus  # noqa: E402
from lp_services.testing.agents import start_agent  # noqa: E402
from lp_services.slave.vmimage import prepare_image  # noqa: E402


def summary(values):
    return "median %6.2f s  (min %.2f, max %.2f, n=%d)" % (
        statistics.median(values), min(values), max(values), len(values))


async def boot_times(reactor, backend, runs):
    work = Path(tempfile.mkdtemp(prefix="bench-vm-"))
    try:
        root = work / "root"
        for d in ("bin", "work", "proc", "dev", "tmp"):
            (root / d).mkdir(parents=True)
        shutil.copy2("/bin/busybox", root / "bin" / "busybox")
        for applet in ("sh", "env", "true"):
            (root / "bin" / applet).symlink_to("busybox")
        (work / "w").mkdir()
        totals, boots, accel = [], [], None
        for _ in range(runs):
            box = backend.sandbox("bench", root, work / "w")
            result = await box.run(["true"], lambda data: None, 60)
            box.destroy()
            assert result.exit_code == 0, result
            totals.append(box.last.seconds)
            boots.append(box.last.boot_seconds)
            accel = box.last.accel
        return accel, totals, boots
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def one_build(running, chroot_sha1, script_sha1, build_id):
    proxy = running.proxy()
    started = time.monotonic()
    reply = await proxy.callRemote("build", build_id, "script", chroot_sha1,
                                   {"build.sh": script_sha1},
                                   {"script": "build.sh"})
    assert reply[0] == "BuilderStatus.BUILDING", reply
    await running.agent.wait_for(BuilderStatus.WAITING)
    elapsed = time.monotonic() - started
    status = await proxy.callRemote("status")
    assert status["build_status"] == "BuildStatus.OK", status
    await proxy.callRemote("clean")
    return elapsed


def seed(running, data):
    import hashlib
    sha1 = hashlib.sha1(data).hexdigest()
    path = running.agent.cache.path_for(sha1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha1


async def main(reactor, args):
    image = prepare_image()
    print("image: %s (%s %s)" % (image.kernel_release, image.package,
                                 image.version))
    backend = QemuBackend(QemuConfig(memory=args.memory), image=image,
                          reactor=reactor)
    verdict = await backend.accelerator()
    print("accelerator: %s (%s)" % (verdict.accel, verdict.reason))

    accel, totals, boots = await boot_times(reactor, backend, args.runs)
    print("\n1. guest boot to power-off (%s, %d MiB, busybox root, `true`)"
          % (accel, args.memory))
    print("   QEMU start -> exit     " + summary(totals))
    print("   QEMU start -> booted   " + summary(boots))

    tmp = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    try:
        sandbox = await start_agent(tmp / "sandbox")
        vm = await start_agent(tmp / "qemu", backend=backend)
        tarball = busybox_chroot(fmt="gz").read_bytes()
        workloads = {
            "echo": b"echo hello > out/result.txt\n",
            "loop": (b"i=0; while [ $i -lt %d ]; do i=$((i+1)); done\n"
                     b"echo $i > out/result.txt\n" % args.loop),
        }
        print("\n2. script build, build() -> WAITING over XML-RPC, "
              "alternating backends")
        for name, script in workloads.items():
            times = {"sandbox": [], "qemu": []}
            agents = {"sandbox": sandbox, "qemu": vm}
            sha = {k: (seed(a, tarball), seed(a, script))
                   for k, a in agents.items()}
            for run in range(args.runs):
                for kind in ("sandbox", "qemu"):
                    times[kind].append(await one_build(
                        agents[kind], *sha[kind], "%s-%s-%d" % (kind, name,
                                                                 run)))
            s, q = (statistics.median(times["sandbox"]),
                    statistics.median(times["qemu"]))
            print("   %-5s sandbox %s" % (name, summary(times["sandbox"])))
            print("   %-5s qemu    %s" % (name, summary(times["qemu"])))
            print("   %-5s VM overhead: +%.2f s per build (x%.1f)"
                  % (name, q - s, q / s))
        await sandbox.stop()
        await vm.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loop", type=int, default=200000)
    parser.add_argument("--memory", type=int, default=256)
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
