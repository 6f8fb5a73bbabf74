"""Building a real source package through the farm: the real buildmaster's
services (InProcessMaster) and a real agent on loopback, over real
PostgreSQL and XML-RPC. Shared by tests/slave/test_corpus.py and
bench/packages.py."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import datetime, timezone

from twisted.internet import reactor

from lp_services.buildmaster import builders as B
from lp_services.buildmaster import queue as Q
from lp_services.clock import utcnow
from lp_services.testing.corpus import archive_lines
from tests.buildmaster.support import InProcessMaster
from tests.buildmaster.test_integration import wait_until

__all__ = ["FINAL", "FarmBuild", "buildd_chroot", "farm_build",
           "step_times"]

#: Build statuses a build ends in.
FINAL = ("FULLYBUILT", "FAILEDTOBUILD", "MANUALDEPWAIT", "CHROOTWAIT",
         "CANCELLED")
_HEADER = re.compile(rb"^=== (.+?) \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\)"
                     rb" ===$", re.M)


def buildd_chroot():
    """The cached bookworm buildd chroot tarball (built on first use)."""
    from lp_services.images.chroots import build_chroot
    return build_chroot("bookworm", "buildd").path


@dataclasses.dataclass
class FarmBuild:
    """How one build through the farm ended."""

    info: dict             # Q.show_build()
    log: bytes             # the build log from the master's file store
    files: dict            # result name -> Path in the master's store
    requested: float       # time.time() at the request
    finished: float        # time.time() when the master saw the end


async def farm_build(case, agent_url: str, secret: str, files: dict, *,
                     virtualized: bool = False, timeout: float = 1200.0,
                     args: dict | None = None) -> FarmBuild:
    """Request a ``binarypackage`` build of `files` (name -> Path, one
    .dsc among them) on a builder at `agent_url` and wait for its end.

    `case` gives ``mktemp`` and ``addCleanup`` (a TestCase, or the
    benchmark's stand-in); ``case.blocking(function)`` runs
    ``function(store)`` in a transaction.
    """
    master = InProcessMaster(case, case.database_url, "corpus",
                             interval=1.0, logtail_interval=1.0)
    store_files = master.file_store
    build_args = {"archives": archive_lines()}
    build_args.update(args or {})

    def setup(store):
        B.add_builder(store, name="corpus1", url=agent_url,
                      processors=["amd64"], secret=secret,
                      virtualized=virtualized,
                      # A virtual builder is reset after each build; the
                      # qemu agent boots a fresh guest anyway.
                      **({"reset_command": "true"} if virtualized else {}))
        record = store_files.add_path(store, buildd_chroot())
        B.register_chroot(store, "amd64", "bookworm", record.id)
        filemap = {name: store_files.add_path(store, path).sha1
                   for name, path in files.items()}
        return Q.request_build(
            store, build_type="binarypackage", processor="amd64",
            series="bookworm", virtualized=virtualized,
            now=utcnow(reactor), build_args=build_args, filemap=filemap)
    requested = time.time()
    job = case.blocking(setup)
    await master.start()

    def ended():
        info = case.blocking(Q.show_build, job, utcnow(reactor))
        return info if info["status"] in FINAL and info["log"] else None
    info = await wait_until(ended, timeout=timeout, step=1.0)
    finished = time.time()
    log = store_files.path_for(info["log"]["sha1"]).read_bytes()
    results = {f["filename"]: store_files.path_for(f["sha1"])
               for f in info["files"]}
    return FarmBuild(info, log, results, requested, finished)


def step_times(build: FarmBuild) -> dict[str, float]:
    """Seconds spent in each part of a build, from the log's step headers
    (one-second resolution) and the request and end times:

    - ``unpack``: request -> ``install build dependencies`` (dispatch,
      file transfer, verify, chroot unpack, ``dpkg-source -x``);
    - ``dependencies``: -> ``build`` (apt, ``dpkg-checkbuilddeps``);
    - ``build``: -> the master seeing FULLYBUILT (``dpkg-buildpackage``,
      collection, upload to the master).
    """
    marks = {name.decode(): datetime.strptime(
                 when.decode(), "%Y-%m-%d %H:%M:%S").replace(
                 tzinfo=timezone.utc).timestamp()
             for name, when in _HEADER.findall(build.log)}
    deps, build_start = marks["install build dependencies"], marks["build"]
    return {"unpack": deps - build.requested,
            "dependencies": build_start - deps,
            "build": build.finished - build_start,
            "total": build.finished - build.requested}
