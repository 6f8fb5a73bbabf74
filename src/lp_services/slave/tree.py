"""Removing a directory tree a build made, whatever it holds.

A build controls its directories: they may be thousands of levels deep
(deeper than Python's recursion limit, and longer than ``PATH_MAX`` as a
path), hold links to anywhere, have no permissions at all, or belong to
ids that are not the agent's (the sandbox maps the build's users onto
unprivileged host ids). :func:`remove_tree` therefore

- walks with one open directory fd at a time and an explicit stack (no
  recursion, no long paths): down through ``openat(name, O_NOFOLLOW)``, up
  through ``openat("..")`` checked against the device and inode it came
  from;
- never follows a link (links are unlinked like files) and never crosses
  into another file system (mounts under the tree are detached first by
  the caller, see :mod:`lp_services.slave.volume`; one found anyway is an
  error);
- gives every directory ``u+rwx`` before reading it (as root this matters
  only for an agent without ``CAP_DAC_OVERRIDE``; it never hurts);
- raises :class:`RemoveFailed` naming the path and the reason when it
  cannot finish: callers report it, they never ignore it.

:func:`walk_tree` visits such a tree the same way (one fd at a time, no
recursion, no links followed, no other file system entered) for the
sandbox's id shifting and set-uid stripping.

Blocking: call it in a thread.
"""

import errno
import os
import stat
from pathlib import Path

__all__ = ["RemoveFailed", "remove_tree", "walk_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RemoveFailed(OSError):
    """A tree that could not be removed completely."""


def _open_dir(name, dir_fd, dev):
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    st = os.fstat(fd)
    if st.st_dev != dev:
        os.close(fd)
        raise RemoveFailed(errno.EXDEV, "a mount point inside the tree "
                           "(refusing to cross file systems)")
    if st.st_mode & 0o700 != 0o700:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    return fd, st


def _scan(fd) -> list[str]:
    """Unlink every non-directory in ``fd``; return the directories."""
    dirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except OSError as e:
                    raise OSError(e.errno, e.strerror, entry.name) from None
    return dirs


def _ascend(fd, parent_identity) -> int:
    """Close ``fd`` and return its parent's, checked to be the directory
    (device, inode) we came down from: a tree rearranged under the walk
    fails instead of leading it elsewhere."""
    up = os.open("..", _DIR_FLAGS, dir_fd=fd)
    ust = os.fstat(up)
    if (ust.st_dev, ust.st_ino) != parent_identity:
        os.close(up)
        raise RemoveFailed(errno.ESTALE, "the tree changed while it was "
                           "being walked")
    os.close(fd)
    return up


def remove_tree(path) -> None:
    """Delete ``path`` (a file, a link or a directory tree); nothing if it
    does not exist. See the module docstring."""
    path = Path(path)
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return
    where: list[str] = []
    try:
        _remove_dir(path, top, where)
    except OSError as e:
        inside = "/".join(where + ([e.filename] if isinstance(e.filename, str)
                                   else []))
        if len(inside) > 300:
            inside = "..." + inside[-300:]
        raise RemoveFailed(e.errno, "cannot remove %s: %s (at depth %d: %r)"
                           % (path, e.strerror or e, len(where),
                              inside)) from None


def _remove_dir(path: Path, top, where: list[str]) -> None:
    parent_fd = os.open(path.parent, _DIR_FLAGS)
    try:
        fd, st = _open_dir(path.name, parent_fd, top.st_dev)
    finally:
        os.close(parent_fd)
    # One frame per level: (dev, ino) of the directory, its subdirectories
    # still to visit. Only ``fd`` (the current level) is open.
    stack = [((st.st_dev, st.st_ino), _scan(fd))]
    try:
        while True:
            identity, pending = stack[-1]
            if pending:
                name = pending.pop()
                try:
                    child, cst = _open_dir(name, fd, top.st_dev)
                except OSError as e:
                    raise OSError(e.errno, e.strerror, name) from None
                os.close(fd)
                fd = child
                where.append(name)
                stack.append(((cst.st_dev, cst.st_ino), _scan(fd)))
                continue
            # No directory left to visit: anything new (there should be
            # nothing: the build is dead) is scanned again.
            again = _scan(fd)
            if again:
                pending.extend(again)
                continue
            if len(stack) == 1:
                break
            fd = _ascend(fd, stack[-2][0])
            name = where.pop()
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as e:
                raise OSError(e.errno, e.strerror, name) from None
            stack.pop()
    finally:
        os.close(fd)
    os.rmdir(path)


def walk_tree(path, visit) -> int:
    """Call ``visit(dir_fd, name, st)`` for ``path`` itself (``dir_fd`` is
    its parent's) and every entry under it, directories before what they
    hold; ``st`` is the entry's ``lstat``. Like :func:`remove_tree`: one
    directory fd open at a time, an explicit stack instead of recursion,
    links never followed, other file systems never entered, entries that
    vanish meanwhile skipped. Nothing if ``path`` does not exist. Returns
    how many entries were visited."""
    path = Path(path)
    try:
        parent_fd = os.open(path.parent, _DIR_FLAGS)
    except FileNotFoundError:
        return 0
    try:
        try:
            top = os.stat(path.name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return 0
        visit(parent_fd, path.name, top)
        if not stat.S_ISDIR(top.st_mode):
            return 1
        fd = os.open(path.name, _DIR_FLAGS, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)
    count = 1
    # One frame per level: (dev, ino) of the directory and its
    # subdirectories still to visit; only ``fd`` (the current level) is open.
    stack = [((top.st_dev, top.st_ino), None)]
    try:
        while True:
            identity, pending = stack[-1]
            if pending is None:
                pending = []
                with os.scandir(fd) as entries:
                    names = [e.name for e in entries]
                for name in names:
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    visit(fd, name, st)
                    count += 1
                    if stat.S_ISDIR(st.st_mode) and st.st_dev == top.st_dev:
                        pending.append(name)
                stack[-1] = (identity, pending)
            if pending:
                name = pending.pop()
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                cst = os.fstat(child)
                if cst.st_dev != top.st_dev:
                    os.close(child)
                    continue
                os.close(fd)
                fd = child
                stack.append(((cst.st_dev, cst.st_ino), None))
                continue
            if len(stack) == 1:
                break
            fd = _ascend(fd, stack[-2][0])
            stack.pop()
    finally:
        os.close(fd)
    return count
