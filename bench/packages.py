#!/usr/bin/env python3
"""Benchmark: Debian's ``hello`` from request to FULLYBUILT, sandbox backend
against qemu backend, through the farm.

    .venv/bin/python bench/packages.py [--runs 3] [--package hello]
                                       [--backends sandbox,qemu]

In one process, on one scratch database: the real buildmaster's services
(in this reactor) and one real agent per backend on loopback, the cached
bookworm buildd chroot and the cached source package (fetched with
``apt-get source`` on first use; lp_services.testing.corpus). Each run
requests one ``binarypackage`` build per backend, alternating sandbox and
qemu run by run so both see the same machine load, and splits the time
from the request to the master's FULLYBUILT into:

- **unpack**: request -> the dependency step (dispatch, files to the
  agent, verify, chroot unpack, ``dpkg-source -x``; on qemu one guest
  boot);
- **dependencies**: ``apt-get build-dep`` (downloads from the archive:
  network speed counts) and ``dpkg-checkbuilddeps`` (one guest boot on
  qemu);
- **build**: ``dpkg-buildpackage`` (one guest boot on qemu, guest code under
  TCG here) and collection by the master.

The split comes from the log's step headers (one-second resolution).
Prints every run, then the median of each part per backend and the qemu /
sandbox ratio. Without ``--database`` a scratch embedded PostgreSQL is
started and removed.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer, task

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

PARTS = ("unpack", "dependencies", "build", "total")


class Scratch:
    """What InProcessMaster asks of a test case: temporary directories,
    cleanups, a database URL and a blocking transaction."""

    def __init__(self, database_url):
        self.database_url = database_url
        self.base = Path(tempfile.mkdtemp(prefix="bench-packages-"))
        self.cleanups = []
        self.serial = 0

    def mktemp(self):
        self.serial += 1
        return str(self.base / ("t%d" % self.serial))

    def addCleanup(self, function, *args, **kwargs):
        self.cleanups.append((function, args, kwargs))

    def blocking(self, function, *args, **kwargs):
        from lp_services.database.transactor import Transactor
        transactor = Transactor(self.database_url)
        try:
            return transactor.run_blocking(
                lambda store: function(store, *args, **kwargs))
        finally:
            transactor.stop()

    async def cleanup(self):
        while self.cleanups:
            function, args, kwargs = self.cleanups.pop()
            await defer.maybeDeferred(function, *args, **kwargs)
        shutil.rmtree(self.base, ignore_errors=True)


async def one_run(database_url, backend_name, backend, source):
    """One build on a fresh database, master and agent: its step times."""
    from lp_services.testing.agents import TEST_SECRET, start_agent
    from tests.slave.corpus_support import farm_build, step_times

    scratch = Scratch(database_url)
    try:
        kwargs = {"backend": backend} if backend is not None else {}
        running = await start_agent(Path(scratch.mktemp()), **kwargs)
        scratch.addCleanup(running.stop)
        running.agent.config.build_timeout = 3600.0
        running.agent.config.memory_limit = 2 << 30
        running.agent.config.pids_limit = 4096
        done = await farm_build(scratch, running.base_url, TEST_SECRET,
                                source.files,
                                virtualized=backend_name == "qemu",
                                timeout=3600.0)
        if done.info["status"] != "FULLYBUILT":
            sys.stdout.write(done.log[-3000:].decode("utf-8", "replace"))
            raise SystemExit("%s build ended %s" % (backend_name,
                                                    done.info["status"]))
        return step_times(done)
    finally:
        await scratch.cleanup()


def fresh_database():
    from lp_services.testing.database import create_test_database
    return create_test_database()


async def main(reactor, args):
    from lp_services.slave.qemu import QemuBackend, QemuConfig
    from lp_services.slave.vmimage import prepare_image
    from lp_services.testing.corpus import fetch_source
    from tests.slave.corpus_support import buildd_chroot

    source = fetch_source(args.package, log=lambda l: print("source:", l))
    chroot = buildd_chroot()
    print("package: %s %s; chroot %s" % (source.name, source.version,
                                         chroot.name))
    backends = {}
    for name in args.backends.split(","):
        if name == "sandbox":
            backends[name] = None          # the agent's default
        elif name == "qemu":
            backend = QemuBackend(QemuConfig(memory=args.memory),
                                  image=prepare_image(), reactor=reactor)
            verdict = await backend.accelerator()
            print("qemu: %s (%s), %d MiB" % (verdict.accel, verdict.reason,
                                             args.memory))
            backends[name] = backend
        else:
            raise SystemExit("unknown backend %r" % name)
    times = {name: [] for name in backends}
    for run in range(args.runs):
        for name, backend in backends.items():
            url = fresh_database()
            parts = await one_run(url, name, backend, source)
            times[name].append(parts)
            print("run %d %-7s " % (run + 1, name) + "  ".join(
                "%s %6.1f s" % (p, parts[p]) for p in PARTS))
    print("\n%s, request -> FULLYBUILT, median of %d runs (every run above)"
          % (source.name, args.runs))
    print("%-13s" % "part" + "".join("%12s" % n for n in backends)
          + ("   qemu/sandbox" if len(backends) == 2 else ""))
    for part in PARTS:
        medians = {n: statistics.median(t[part] for t in times[n])
                   for n in backends}
        line = "%-13s" % part + "".join("%10.1f s" % medians[n]
                                        for n in backends)
        if len(backends) == 2 and medians.get("sandbox"):
            line += "   x%.1f" % (medians["qemu"] / medians["sandbox"])
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--package", default="hello")
    parser.add_argument("--backends", default="sandbox,qemu")
    parser.add_argument("--memory", type=int, default=1024,
                        help="guest memory, MiB (default 1024)")
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
