"""A build's disk quota: its ``/work`` on a loop-mounted image of its own.

Each build's work directory (``<build>/build``, the sandbox's ``/work``) is
an ext4 file system in a sparse image file ``<build>/work.img`` of
``work_quota`` bytes, mounted ``nosuid,nodev`` before the build's files are
placed there. A build that fills it gets ``ENOSPC`` inside its own file
system and nowhere else: the host's disk, the agent's cache and the build
log (which live outside the image) keep their space, and the build fails
as the build's fault. The image is sparse, so a build costs only the space
it really uses.

Why an image and not a project quota: project quotas need the host file
system made with the ``quota``/``project`` features and mounted with
``prjquota``, which the machines here (and most existing builders) do not
have; a loop image works on any file system that holds sparse files, needs
only root (which the agent has for its sandboxes) and ``e2fsprogs`` and
``mount`` (``./run`` installs both), and costs a few tens of milliseconds
per build. It is also simple to reason about: the build's writable space is
one file system, unmounted and deleted as a whole by ``clean()``.

:func:`detach_mounts` is the other half: before a tree is deleted, every
mount under it is detached (lazily, so a busy mount cannot wedge the
agent; ``mount -o loop`` sets autoclear, so the loop device goes with it).
The agent uses it for ``clean()`` and for what a previous run left behind.

Blocking: call these in a thread.
"""

import ctypes
import errno
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["VolumeError", "create_volume", "detach_mounts", "mounts_under"]

#: umount2() flag: detach now, finish when the mount is no longer busy.
_MNT_DETACH = 2
#: How long mkfs or mount may take before the agent gives up.
_COMMAND_TIMEOUT = 120
#: The smallest image mkfs.ext4 makes usefully (journal and metadata).
MIN_SIZE = 4 << 20

_libc = ctypes.CDLL(None, use_errno=True)


class VolumeError(Exception):
    """The volume could not be made or mounted (the builder's fault)."""


def _program(name: str) -> str:
    # /usr/sbin is not on every daemon's PATH.
    return shutil.which(name) or shutil.which(
        name, path="/usr/sbin:/sbin:/usr/bin:/bin") or name


def _command(argv: list[str]) -> None:
    argv = [_program(argv[0])] + argv[1:]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=_COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VolumeError("%s: %s" % (argv[0], e)) from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).decode("utf-8", "replace")
        raise VolumeError("%s failed (exit %d): %s" % (
            argv[0], done.returncode, message.strip()[:500]))


def create_volume(image: Path, mount_point: Path, size: int) -> None:
    """Make a sparse ext4 image of ``size`` bytes at ``image`` and mount it
    at ``mount_point`` (created if missing), empty, root-owned, 0755."""
    if size < MIN_SIZE:
        raise VolumeError("work quota %d is smaller than %d bytes"
                          % (size, MIN_SIZE))
    image, mount_point = Path(image), Path(mount_point)
    try:
        with open(image, "xb") as f:
            f.truncate(size)
        mount_point.mkdir(mode=0o755, exist_ok=True)
    except OSError as e:
        raise VolumeError("cannot create %s: %s"
                          % (image, e.strerror)) from None
    _command(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "lp-work",
              "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
              str(image)])
    _command(["mount", "-t", "ext4", "-o",
              "loop,nosuid,nodev,noatime,noinit_itable",
              str(image), str(mount_point)])
    try:
        os.rmdir(mount_point / "lost+found")
        os.chmod(mount_point, 0o755)
    except OSError as e:
        detach_mounts(mount_point)
        raise VolumeError("cannot prepare %s: %s"
                          % (mount_point, e.strerror)) from None


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    top = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8",
              errors="surrogateescape") as f:
        for line in f:
            point = _unescape(line.split(" ")[4])
            if point == top or point.startswith(top.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def detach_mounts(path) -> list[str]:
    """Detach every mount at or below ``path`` (lazily); return them.
    Raises VolumeError if one cannot be detached."""
    detached = []
    for point in mounts_under(path):
        if _libc.umount2(os.fsencode(point), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                continue  # already gone
            raise VolumeError("cannot unmount %s: %s"
                              % (point, os.strerror(err)))
        detached.append(point)
    return detached
