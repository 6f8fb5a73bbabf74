"""Unpacking a chroot tarball safely.

The archive is read as a stream (gzip, xz, zstd or plain tar, detected by
its magic bytes: cache files have no extension) and every member is checked
before it is written. Refused: absolute names, ``..``, device nodes, links
(symbolic or hard) whose target lies outside the root, and any member whose
path passes through a symbolic link (extraction never follows a link, so an
archive cannot plant ``bin -> /usr/bin`` and then write through it into the
host). Files are written through directory file descriptors opened with
``O_NOFOLLOW``. Ownership is not kept (everything belongs to the agent's
user) and set-uid/set-gid bits are dropped: inside the sandbox the root is
read-only and no privilege can be gained anyway.

Amplification is bounded (:class:`UnpackLimits`): the total size of the
members' data (at most ``ratio`` times the archive's size, at least
``floor``, never more than ``max_total``), the number of members, and the
size of every extended header (GNU long names and links, pax headers)
before it is read, so neither the disk, nor the agent's memory, nor the
log (which quotes member names) can be filled by a small archive. Sparse
members are refused; names are at most :data:`MAX_PATH` bytes and
:data:`MAX_DEPTH` levels. A member the file system refuses for what the
archive says (a name too long, a link to nothing, too many links) is the
archive's fault as well. Going over a bound is :class:`UnsafeArchive`: the
chroot's fault (CHROOTFAIL), not the builder's.

Blocking: call :func:`unpack` in a thread.
"""

import errno
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

__all__ = ["MOUNT_POINTS", "UnpackLimits", "UnsafeArchive",
           "resolve_in_root", "unpack"]

#: Directories bubblewrap mounts over; created if the archive lacks them.
MOUNT_POINTS = ("proc", "dev", "tmp", "work")

_MAGIC_GZ = b"\x1f\x8b"
_MAGIC_XZ = b"\xfd7zXZ\x00"
_MAGIC_ZST = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Directory fds the writer keeps open at most (plus MAX_DEPTH).
_MAX_OPEN_DIRS = 256
#: Longest member name or link target (PATH_MAX less the NUL), deepest
#: member; real chroots stay far below both. They bound the writer's open
#: fds and the memory of the directory modes kept for the end.
MAX_PATH = 4095
MAX_DEPTH = 256
_DIR_MODES_BYTES = 64 << 20
#: Errors of writing a member that the archive's content causes (a name
#: or link the file system refuses), as opposed to the host's trouble
#: (ENOSPC, EIO, ...), which stays an OSError (BUILDERFAIL).
_ARCHIVE_ERRNOS = frozenset({
    errno.ENAMETOOLONG, errno.EEXIST, errno.EINVAL, errno.ENOTDIR,
    errno.EISDIR, errno.ELOOP, errno.EMLINK, errno.ENOENT, errno.EPERM,
    errno.ENOTEMPTY})


class UnsafeArchive(ValueError):
    """A member that could escape the root, an archive over a bound, or an
    unreadable archive."""


@dataclass(frozen=True)
class UnpackLimits:
    """How much one chroot may unpack to. The defaults hold a full Debian
    or Ubuntu buildd chroot (a few hundred MB, tens of thousands of
    members; compressed 3-5 times) with a wide margin."""

    #: Total bytes of member data, whatever the archive's size.
    max_total: int = 8 << 30
    #: ... and at most this many times the archive's size ...
    ratio: int = 100
    #: ... but always at least this much (small archives).
    floor: int = 256 << 20
    #: Members of any kind.
    max_members: int = 500_000
    #: One extended header (GNU long name/link, pax); names are at most
    #: 4096 bytes, pax headers with extended attributes a few KB.
    max_header: int = 1 << 20
    #: Extended headers in front of one member.
    max_header_chain: int = 8

    def total_for(self, archive_size: int) -> int:
        """The data budget of an archive of ``archive_size`` bytes."""
        return min(self.max_total, max(self.floor, self.ratio * archive_size))


_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
             tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _BoundedTarInfo(tarfile.TarInfo):
    """Checks an extended header's size before tarfile reads it into
    memory, and refuses sparse members. (tarfile has no public hook for
    this; ``_proc_member`` is where every header is dispatched.)"""

    limits = UnpackLimits()

    def _proc_member(self, tarfile_):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchive("sparse member: %.200r" % self.name)
        if self.type in _EXTENDED:
            if self.size > self.limits.max_header:
                raise UnsafeArchive(
                    "extended header of %d bytes (at most %d): %.200r"
                    % (self.size, self.limits.max_header, self.name))
            chain = getattr(tarfile_, "_lp_header_chain", 0) + 1
            tarfile_._lp_header_chain = chain
            if chain > self.limits.max_header_chain:
                raise UnsafeArchive("more than %d extended headers in front "
                                    "of one member"
                                    % self.limits.max_header_chain)
        return super()._proc_member(tarfile_)

    def _proc_gnusparse_00(self, *args):
        raise UnsafeArchive("sparse member (pax 0.0): %.200r" % self.name)

    def _proc_gnusparse_01(self, *args):
        raise UnsafeArchive("sparse member (pax 0.1): %.200r" % self.name)

    def _proc_gnusparse_10(self, *args):
        raise UnsafeArchive("sparse member (pax 1.0): %.200r" % self.name)


def _open_stream(raw, limits: UnpackLimits):
    head = raw.read(6)
    raw.seek(0)
    tarinfo = type("BoundedTarInfo", (_BoundedTarInfo,), {"limits": limits})
    if head.startswith(_MAGIC_ZST):
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        return tarfile.open(fileobj=reader, mode="r|", tarinfo=tarinfo)
    if head.startswith(_MAGIC_GZ):
        return tarfile.open(fileobj=raw, mode="r|gz", tarinfo=tarinfo)
    if head.startswith(_MAGIC_XZ):
        return tarfile.open(fileobj=raw, mode="r|xz", tarinfo=tarinfo)
    return tarfile.open(fileobj=raw, mode="r|", tarinfo=tarinfo)


def _clean_name(name: str) -> list[str]:
    """Member name -> path components, or UnsafeArchive."""
    if "\0" in name:
        raise UnsafeArchive("member name with NUL: %.200r" % name)
    if name.startswith("/"):
        raise UnsafeArchive("absolute member name: %.200r" % name)
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise UnsafeArchive("member name longer than %d bytes: %.200r"
                            % (MAX_PATH, name))
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive("member name with '..': %.200r" % name)
    if len(parts) > MAX_DEPTH:
        raise UnsafeArchive("member deeper than %d levels: %.200r"
                            % (MAX_DEPTH, name))
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise UnsafeArchive("member name with a component longer than 255 "
                            "bytes: %.200r" % name)
    return parts


def _inside(base_parts: list[str], target: str) -> bool:
    """Whether symlink ``target`` seen from directory ``base_parts`` stays
    inside the root (an absolute target is read relative to the root, as
    it is inside the sandbox)."""
    if target.startswith("/"):
        joined = target
    else:
        joined = "/" + "/".join(base_parts + [target])
    depth = 0
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        else:
            depth += 1
    return True


class _Writer:
    """Writes members under an open root directory fd, never following
    a symbolic link. Directory fds are cached: a directory, once made, is
    never replaced (see :meth:`clear`), so a cached fd stays right."""

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self._dirs: dict[tuple, int] = {(): root_fd}
        self._retired: list[int] = []

    def end_member(self) -> None:
        """Close the fds forgotten while the last member was written."""
        for fd in self._retired:
            os.close(fd)
        self._retired = []

    def parent(self, parts: list[str]) -> int:
        """The directory holding ``parts`` (created as needed); the fd
        belongs to the writer: do not close it."""
        key = tuple(parts[:-1])
        fd = self._dirs.get(key)
        if fd is not None:
            return fd
        if len(self._dirs) > _MAX_OPEN_DIRS:
            # Bound the open fds: forget the cache (reopened as needed);
            # the fds stay open until the member is done (end_member()),
            # since the caller may still hold one.
            self._retired.extend(fd for key, fd in self._dirs.items() if key)
            self._dirs = {(): self.root_fd}
        depth = len(key)
        while key[:depth] not in self._dirs:
            depth -= 1
        fd = self._dirs[key[:depth]]
        for i in range(depth, len(key)):
            part = key[i]
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeArchive(
                        "member path passes through a link or file: %r"
                        % "/".join(key[:i + 1])) from None
                raise
            self._dirs[key[:i + 1]] = nfd
            fd = nfd
        return fd

    def close(self) -> None:
        """Close the cached directory fds (not the root's)."""
        self.end_member()
        for key, fd in self._dirs.items():
            if key:
                os.close(fd)
        self._dirs = {(): self.root_fd}

    @staticmethod
    def clear(name: str, dir_fd: int) -> None:
        """Remove a non-directory entry ``name`` so it can be replaced."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive("member replaces a directory: %r" % name)
        os.unlink(name, dir_fd=dir_fd)


def unpack(archive: Path, root: Path,
           limits: UnpackLimits = UnpackLimits()) -> int:
    """Unpack ``archive`` into the new directory ``root``; return the
    number of members. Raise :class:`UnsafeArchive` on the first refused
    member or bound (``root`` is then partly filled: the caller removes
    it)."""
    root = Path(root)
    root.mkdir(mode=0o755, parents=True)
    root_fd = os.open(root, _DIR_FLAGS)
    writer = _Writer(root_fd)
    count = 0
    dir_modes = _DirModes()
    try:
        with open(archive, "rb") as raw:
            budget = limits.total_for(os.fstat(raw.fileno()).st_size)
            try:
                tar = _open_stream(raw, limits)
            except (tarfile.TarError, zstandard.ZstdError, EOFError,
                    OSError) as e:
                raise UnsafeArchive("not a readable tar archive: %s" % e) from None
            total = 0
            try:
                for member in _members(tar):
                    count += 1
                    if count > limits.max_members:
                        raise UnsafeArchive("more than %d members"
                                            % limits.max_members)
                    if member.isfile():
                        total += member.size
                        if total > budget:
                            raise UnsafeArchive(
                                "unpacks to more than %d bytes (%d times the "
                                "archive, at least %d, at most %d): at %.200r"
                                % (budget, limits.ratio, limits.floor,
                                   limits.max_total, member.name))
                    try:
                        _extract(tar, member, writer, dir_modes)
                    except OSError as e:
                        if e.errno not in _ARCHIVE_ERRNOS:
                            raise
                        raise UnsafeArchive("member %.200r cannot be "
                                            "written: %s" % (member.name,
                                                             e.strerror)
                                            ) from None
                    writer.end_member()
            except (tarfile.TarError, zstandard.ZstdError, EOFError) as e:
                raise UnsafeArchive("corrupt archive: %s" % e) from None
        for parts, mode in dir_modes.deepest_first():
            fd = _open_dir(root_fd, parts)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        for name in MOUNT_POINTS:
            try:
                os.mkdir(name, 0o755, dir_fd=root_fd)
            except FileExistsError:
                st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafeArchive("/%s is not a directory" % name) from None
    finally:
        writer.close()
        os.close(root_fd)
    return count


class _DirModes:
    """Modes of directories, set at the end (a read-only directory must
    stay writable while its members are written). Only modes other than
    the 0755 directories are made with are kept, once per directory, and
    their names may take at most :data:`_DIR_MODES_BYTES` bytes."""

    def __init__(self):
        self._modes: dict[str, int] = {}
        self._bytes = 0

    def add(self, parts: list[str], mode: int) -> None:
        key = "/".join(parts)
        if key not in self._modes:
            if mode == 0o755:
                return
            self._bytes += len(key)
            if self._bytes > _DIR_MODES_BYTES:
                raise UnsafeArchive("too many directories with their own "
                                    "modes")
        self._modes[key] = mode

    def deepest_first(self):
        """(parts, mode), children before their parents."""
        for key in sorted(self._modes, key=lambda k: k.count("/"),
                          reverse=True):
            yield key.split("/"), self._modes[key]


def _members(tar):
    while True:
        tar._lp_header_chain = 0
        member = tar.next()
        if member is None:
            return
        # A stream TarFile keeps every member it has read: forget them, so
        # memory does not grow with the archive.
        tar.members.clear()
        yield member


def _open_dir(root_fd: int, parts: list[str]) -> int:
    fd = os.dup(root_fd)
    for part in parts:
        nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def _extract(tar, member, writer: _Writer, dir_modes: "_DirModes") -> None:
    parts = _clean_name(member.name)
    if not parts:
        return  # the root itself
    if member.ischr() or member.isblk():
        raise UnsafeArchive("device node: %r" % member.name)
    if not (member.isfile() or member.isdir() or member.issym()
            or member.islnk() or member.isfifo()):
        raise UnsafeArchive("unsupported member type: %r" % member.name)
    mode = member.mode & 0o1777
    name = parts[-1]
    parent = writer.parent(parts)
    if member.isdir():
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeArchive("directory over a non-directory: %r"
                                    % member.name) from None
        dir_modes.add(parts, mode | 0o700)
    elif member.issym():
        if len(member.linkname.encode("utf-8", "surrogateescape")) > MAX_PATH:
            raise UnsafeArchive("symlink target longer than %d bytes: %.200r"
                                % (MAX_PATH, member.name))
        if not _inside(parts[:-1], member.linkname):
            raise UnsafeArchive("symlink points outside the root: %r -> %r"
                                % (member.name, member.linkname))
        writer.clear(name, parent)
        os.symlink(member.linkname, name, dir_fd=parent)
    elif member.islnk():
        target = _clean_name(member.linkname)
        if not target:
            raise UnsafeArchive("hard link to the root: %r" % member.name)
        src_parent = writer.parent(target)
        writer.clear(name, parent)
        os.link(target[-1], name, src_dir_fd=src_parent,
                dst_dir_fd=parent, follow_symlinks=False)
    elif member.isfifo():
        writer.clear(name, parent)
        os.mkfifo(name, mode, dir_fd=parent)
    else:
        writer.clear(name, parent)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        try:
            source = tar.extractfile(member)
            while chunk := source.read(_CHUNK):
                _write_all(fd, chunk)
            os.fchmod(fd, mode)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def resolve_in_root(root: Path, path: str, max_links: int = 40) -> Path | None:
    """Resolve ``path`` inside ``root`` as the sandbox would see it
    (absolute link targets are relative to ``root``); None if missing or
    looping. Never leaves ``root``."""
    root = Path(root)
    pending = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                return None
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p not in ("", ".")] \
                + pending
            continue
        done.append(part)
    return root.joinpath(*done)
