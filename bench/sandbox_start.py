"""Compare the cost of starting one sandboxed command: bubblewrap's own
one-id user namespace (the old sandbox: as root it mapped the build onto
host root) against the id-range launcher (a full, unprivileged range,
nested user namespaces off, the seccomp filter), side by side in one run.

    .venv/bin/python bench/sandbox_start.py [--runs 30]

Runs ``/bin/true`` in a busybox chroot, alternating the two ways so that
both see the same machine load; prints every run, then the medians and
their ratio. Needs root (the agent's case).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lp_services.slave import idmap, seccomp
from lp_services.slave.busybox_chroot import busybox_chroot
from lp_services.slave.chroot import unpack
from lp_services.slave.idmap import IdRange
from lp_services.slave.sandbox import SECCOMP_FD, USERNS_FD, bwrap_argv

_BOUNDARY = ["--unshare-all", "--die-with-parent", "--new-session",
             "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
             "--chdir", "/work", "--clearenv"]


def one_id(root: Path, work: Path) -> list[str]:
    """The old command line (one id, mapped to host root)."""
    return ["bwrap", "--unshare-user", "--uid", "65534", "--gid", "65534",
            "--cap-drop", "ALL", "--ro-bind", str(root), "/",
            "--bind", str(work), "/work", *_BOUNDARY, "--", "/bin/true"]


def id_range(root: Path, work: Path) -> list[str]:
    """The current command line (launcher, range, seccomp)."""
    inner = bwrap_argv(idmap.alias(0), idmap.alias(1), ["/bin/true"],
                       as_root=True, bwrap=shutil.which("bwrap"),
                       status_fd=None, seccomp_fd=SECCOMP_FD)
    argv = idmap.launcher_argv(IdRange(), USERNS_FD, inner,
                               expose=[root, work])
    return ["/bin/sh", "-c", 'exec "$@" %d<&0' % SECCOMP_FD, "sh", *argv]


def timed(argv: list[str], stdin=None) -> float:
    if stdin is not None:
        os.lseek(stdin, 0, os.SEEK_SET)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdin=stdin)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    if os.geteuid() != 0:
        raise SystemExit("needs root (the agent's case)")
    tmp = Path(tempfile.mkdtemp(prefix="lp-sandbox-bench-"))
    try:
        root, work = tmp / "root", tmp / "work"
        unpack(busybox_chroot(fmt="gz"), root)
        work.mkdir()
        ids = IdRange()
        idmap.shift_tree(root, ids.host(0), ids.host(0))
        idmap.shift_tree(work, ids.host(1000), ids.host(1000))
        program = seccomp.memfd(seccomp.filter_program())
        old, new = [], []
        timed(one_id(root, work))             # warm caches, not counted
        timed(id_range(root, work), program)
        for _ in range(runs):
            old.append(timed(one_id(root, work)))
            new.append(timed(id_range(root, work), program))
        os.close(program)
    finally:
        shutil.rmtree(tmp)
    print("sandbox start of /bin/true: one-id bwrap (old) vs id-range "
          "launcher + seccomp (now), %d alternating runs" % runs)
    print("old ms:", " ".join("%.1f" % (1000 * t) for t in old))
    print("new ms:", " ".join("%.1f" % (1000 * t) for t in new))
    mo, mn = statistics.median(old), statistics.median(new)
    print("median old %.1f ms, new %.1f ms, new/old %.2f, +%.1f ms"
          % (1000 * mo, 1000 * mn, mn / mo, 1000 * (mn - mo)))


if __name__ == "__main__":
    main()
