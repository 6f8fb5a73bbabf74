"""Collecting a build's result files into the cache, safely.

A build controls its output directory, so nothing there is trusted: names
are checked (:func:`lp_services.protocol.names.check_filename`, and
:func:`lp_services.protocol.wire.wire_name`: only valid UTF-8 without control
characters goes on the wire; others are skipped with a note), files are
opened relative to the directory with ``O_NOFOLLOW`` (a link the build
planted is never followed), only regular files are taken, and at most
:data:`MAX_RESULTS` of them.

Size: a result costs the cache its apparent size (a sparse file's holes
are copied as zeros), so that is what counts: all results of a build
together must fit in its ``budget`` (the build's work quota); one that does
not is skipped with a note and the collection is marked ``over_quota`` (the
build's fault). Before each copy the cache's free space is checked, and a
copy that still hits ``ENOSPC`` (or another write error) is abandoned: the
collection is marked ``no_space`` (the agent's disk, not the build's
fault; callers that do not handle that get :class:`NoSpace` instead, so
no result goes missing silently) and nothing is left behind.

Blocking: build managers call it in a thread.
"""

import errno
import os
import stat
from dataclasses import dataclass, field

from lp_services.protocol.names import InvalidFileName, check_filename
from lp_services.protocol.wire import wire_name

__all__ = ["DIR_FLAGS", "MAX_RESULTS", "Collected", "NoSpace",
           "collect_directory"]

#: At most this many result files are collected from one build.
MAX_RESULTS = 1000
#: How a build's directories are opened: never through a link.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass
class Collected:
    """What a collection found: results by name, the sha1s it added to
    the cache (removed again by clean()), and notes for the build log."""

    filemap: dict[str, str] = field(default_factory=dict)
    added: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    #: A result did not fit in the build's budget (the build's fault).
    over_quota: bool = False
    #: The cache had no room for a result (the agent's disk).
    no_space: bool = False


def _free_bytes(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class NoSpace(OSError):
    """The cache had no room for a result (when the caller does not take
    ``no_space`` itself)."""


def collect_directory(dir_fd: int, cache, accept=lambda name: True,
                      special=None, budget: int | None = None,
                      raise_no_space: bool = True) -> Collected:
    """Add the regular files directly in ``dir_fd`` to ``cache``.

    :param accept: which names are results at all (others are ignored
        silently).
    :param special: ``special(name, fd) -> bool``: called for every
        regular file first; True means it was handled (e.g. the DEPFAIL
        convention file) and is not a result.
    :param budget: bytes all results may take together (None: no bound
        but the cache's file size cap).
    :param raise_no_space: raise :class:`NoSpace` (after the whole
        directory was seen, nothing partial left) instead of returning a
        collection marked ``no_space``; for callers that do not handle it,
        so no result goes missing silently.
    """
    found = Collected()
    used = 0
    for name in sorted(os.listdir(dir_fd)):
        if not accept(name):
            continue
        try:
            check_filename(name)
        except InvalidFileName:
            found.notes.append("skipped unsafe result name %s"
                               % ascii(name)[:300])
            continue
        why = wire_name(name)
        if why is not None:
            found.notes.append("skipped result name %s: %s"
                               % (ascii(name)[:300], why))
            continue
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError:
            found.notes.append("skipped %s: not a regular file" % name)
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                found.notes.append("skipped %s: not a regular file" % name)
                continue
            if special is not None and special(name, fd):
                continue
            if len(found.filemap) >= MAX_RESULTS:
                found.notes.append("more than %d results: %s skipped"
                                   % (MAX_RESULTS, name))
                continue
            st = os.fstat(fd)
            real = st.st_blocks * 512
            if budget is not None and used + st.st_size > budget:
                found.over_quota = True
                found.notes.append(
                    "skipped %s: %d bytes (%d really allocated) would take "
                    "the results past the build's quota of %d bytes"
                    % (name, st.st_size, real, budget))
                continue
            try:
                free = _free_bytes(cache.root)
            except OSError:
                free = None
            if free is not None and st.st_size > free:
                found.no_space = True
                found.notes.append("skipped %s: %d bytes, but the agent's "
                                   "cache has only %d free"
                                   % (name, st.st_size, free))
                continue
            try:
                sha1, size, new = cache.add_fd(fd)
            except ValueError as e:
                found.notes.append("skipped %s: %s" % (name, e))
                continue
            except OSError as e:
                found.no_space = True
                found.notes.append("skipped %s: the agent's cache cannot "
                                   "store it: %s" % (name, e.strerror or e))
                continue
            used += size
            found.filemap[name] = sha1
            if new:
                found.added.add(sha1)
        finally:
            os.close(fd)
    if found.no_space and raise_no_space:
        for sha1 in found.added:
            cache.remove(sha1)
        raise NoSpace(errno.ENOSPC, "the agent's cache has no room for the "
                      "results: %s" % "; ".join(found.notes)[-1000:])
    return found
