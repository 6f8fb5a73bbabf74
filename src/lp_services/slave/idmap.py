"""The build's id range: a user namespace where ids 0-65535 inside are a
dedicated, unprivileged range of host ids that owns nothing on the host.

Why: bubblewrap run as root with ``--unshare-user --uid N`` maps the one
inside id onto host uid 0, so the build is host root to every uid check
the kernel makes (``/proc/sys`` writable, setuid-root files left in
``/work``, root's key ring). A one-id map also stops dpkg from chowning
to any other user. sbuild's and mmdebstrap's unshare modes instead map a
whole range of 65,536 ids onto subordinate ids; this module does the same
(see docs/virtualization.md, "Isolation facts").

How: the agent is root, and a root parent may write any ``uid_map`` of a
child namespace itself (user_namespaces(7)), so neither ``newuidmap`` nor
``/etc/subuid`` entries are needed. :func:`main` is a launcher
(``python -m lp_services.slave.idmap BASE FD -- COMMAND...``; the agent
starts it through :func:`launcher_argv`): it forks a
helper that unshares a user namespace, writes the helper's ``uid_map``
and ``gid_map`` (``0 BASE 65536``), has the helper set that namespace's
``user.max_user_namespaces`` to 0 (no nested user namespaces, for
anything inside), joins a new, empty session key ring (host root's
stays out of reach), opens the namespace as file descriptor ``FD`` and
runs COMMAND (bubblewrap with ``--userns FD``) as the first process of a
new pid namespace. The launcher stays its parent and exits with its
status; it dies with the agent (``PR_SET_PDEATHSIG``) and the command
dies with it, and with the command the whole pid namespace, so killing
the process the agent spawned kills the build. (bubblewrap's
``--die-with-parent`` alone does not: its outer process has dropped all
capabilities and the build runs as another uid, so the kernel does not
deliver that parent-death signal to the build's side.)

Inside that namespace host root's files are nobody's, so bubblewrap
cannot walk a path through a directory only host root may search (a
``mkdtemp`` directory above the agent's work directory, say). The
launcher therefore also makes a private mount namespace (invisible to the
host) and binds each directory the build needs at a fixed, searchable
place: :func:`alias` (``/run/lp-sandbox/N``) for the Nth path given.

Files the agent makes for the build (the unpacked chroot, ``/work``) are
moved into the range with :func:`shift_tree` before anything of the build
runs, so that the namespace's root owns the chroot and the build user
owns ``/work``. Host root can still read and remove all of it.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
import select
import signal
import stat
import sys

from lp_services.slave.tree import walk_tree

__all__ = [
    "BUILD_GID",
    "BUILD_UID",
    "DEFAULT_BASE",
    "IdRange",
    "AS_ROOT",
    "IdRangeError",
    "RANGE_SIZE",
    "check_free",
    "launcher_argv",
    "shift_tree",
]

#: How many ids the namespace maps: 0-65535 inside, like sbuild and
#: mmdebstrap (a Debian chroot uses ids up to 65534, ``nobody``).
RANGE_SIZE = 65536
#: The default first host id of the range: 0x70000000. systemd's
#: UIDS-GIDS table leaves 1879048192-2147352575 unused (container ranges
#: end below it), useradd's subordinate ids end at 600100000 by default
#: (SUB_UID_MAX), and it stays below 2^31 for tools that use signed ids.
DEFAULT_BASE = 0x70000000
#: The unprivileged user builds run as inside (sbuild's way: a normal
#: user, with fakeroot for what needs root).
BUILD_UID = 1000
BUILD_GID = 1000
#: The largest valid id is 2^32 - 2 ((uid_t) -1 means "no change").
_ID_MAX = (1 << 32) - 2
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_PR_SET_PDEATHSIG = 1
_KEYCTL_JOIN_SESSION_KEYRING = 1
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    2, 4, 4096, 16384, 1 << 18)
#: ``launcher_argv(ids, AS_ROOT, ...)``: the command runs as the
#: namespace's root (host id ``base``) instead of getting its descriptor:
#: bubblewrap cannot switch to uid 0 itself there (0 is its own uid, as
#: it sees it, so it does not try).
AS_ROOT = -1
#: Where the launcher binds the build's directories (a tmpfs of its own
#: mount namespace; only the empty directory is seen on the host).
ALIAS_DIR = "/run/lp-sandbox"


class IdRangeError(ValueError):
    """A range the agent must not use (one clear line)."""


class IdRange:
    """Host ids ``base`` .. ``base + size - 1``, seen as 0 .. size-1
    inside the build's user namespace. (A plain class: the launcher
    imports this module on every sandbox start, and dataclasses costs
    more to import than the rest of it.)"""

    __slots__ = ("base", "size")

    def __init__(self, base: int = DEFAULT_BASE, size: int = RANGE_SIZE):
        if isinstance(base, bool) or not isinstance(base, int):
            raise IdRangeError("the id range base must be an integer, not %r"
                               % (base,))
        if base < RANGE_SIZE:
            # Host ids below 65536 are system and human users.
            raise IdRangeError(
                "the id range base %d is below %d: the range would hold "
                "host users' ids" % (base, RANGE_SIZE))
        if base + size - 1 > _ID_MAX:
            raise IdRangeError("the id range %d-%d passes the largest id %d"
                               % (base, base + size - 1, _ID_MAX))
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "size", size)

    def __setattr__(self, name, value):
        raise AttributeError("IdRange is immutable")

    def __eq__(self, other):
        return (isinstance(other, IdRange)
                and (self.base, self.size) == (other.base, other.size))

    def __hash__(self):
        return hash((self.base, self.size))

    def __repr__(self):
        return "IdRange(base=%d, size=%d)" % (self.base, self.size)

    @property
    def last(self) -> int:
        """The last host id of the range."""
        return self.base + self.size - 1

    def host(self, inside: int) -> int:
        """The host id of ``inside``."""
        if not 0 <= inside < self.size:
            raise IdRangeError("id %d is outside the namespace" % inside)
        return self.base + inside

    def contains(self, host_id: int) -> bool:
        """Whether ``host_id`` belongs to the range."""
        return self.base <= host_id <= self.last

    def map_line(self) -> str:
        """The ``uid_map`` / ``gid_map`` content."""
        return "0 %d %d\n" % (self.base, self.size)


def _subordinate_entries(path) -> list[tuple[str, int, int]]:
    """``name:start:count`` lines of /etc/subuid or /etc/subgid."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    entries = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            entries.append((parts[0], int(parts[1]), int(parts[2])))
    return entries


def check_free(ids: IdRange, etc="/etc", users=None, groups=None) -> None:
    """Check that no host user, group or subordinate-id grant uses an id
    of ``ids`` (the range must own nothing on the host).

    ``users`` / ``groups`` are ``(name, id)`` pairs (default: every
    passwd and group entry NSS gives).

    :raises IdRangeError: naming the first overlap.
    """
    if users is None:
        users = [(p.pw_name, p.pw_uid) for p in pwd.getpwall()]
    if groups is None:
        groups = [(g.gr_name, g.gr_gid) for g in grp.getgrall()]
    for kind, entries in (("user", users), ("group", groups)):
        for name, number in entries:
            if ids.contains(number):
                raise IdRangeError(
                    "host %s %s has id %d, inside the build id range %d-%d: "
                    "choose another id_range_base" % (kind, name, number,
                                                      ids.base, ids.last))
    for file in ("subuid", "subgid"):
        for name, start, count in _subordinate_entries(
                os.path.join(etc, file)):
            if start <= ids.last and ids.base <= start + count - 1:
                raise IdRangeError(
                    "%s/%s gives %s ids %d-%d, which overlap the build id "
                    "range %d-%d: choose another id_range_base"
                    % (etc, file, name, start, start + count - 1, ids.base,
                       ids.last))


def shift_tree(path, uid: int, gid: int) -> int:
    """Give every entry under ``path`` (and ``path``) to ``uid:gid``
    (blocking). Never follows a link and has no depth limit
    (:func:`~lp_services.slave.tree.walk_tree`), and changes links
    themselves, so a tree a build has touched cannot redirect it onto host
    files. Returns the count."""
    def chown(dir_fd, name, st):
        try:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
    return walk_tree(path, chown)


def strip_privilege_bits(path) -> int:
    """Clear set-uid and set-gid bits under ``path`` (blocking; links are
    never followed, any depth). Returns how many files had them."""
    found = 0

    def strip(dir_fd, name, st):
        nonlocal found
        if not (stat.S_ISREG(st.st_mode)
                and st.st_mode & (stat.S_ISUID | stat.S_ISGID)):
            return
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        try:
            os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode)
                      & ~(stat.S_ISUID | stat.S_ISGID))
        finally:
            os.close(fd)
        found += 1
    walk_tree(path, strip)
    return found


#: Signals Python sets to SIG_IGN that the launcher gives back their
#: default action before it execs the command (as subprocess's
#: ``restore_signals`` does).
_DEFAULT_SIGNALS = ("SIGPIPE", "SIGXFSZ", "SIGXFZ")

#: Where the lp_services package is imported from.
_PACKAGE_PATH = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.realpath(__file__))))
#: The launcher runs Python without ``site`` (half its start-up time, paid
#: on every sandboxed command): only this module and ``seccomp`` are
#: needed, found from the package's own directory.
_BOOTSTRAP = ("import sys; sys.path.insert(0, %r); "
              "from lp_services.slave.idmap import main; "
              "sys.exit(main(sys.argv[1:]))")


def alias(index: int) -> str:
    """Where the launcher shows the ``index``-th exposed path."""
    return "%s/%d" % (ALIAS_DIR, index)


def launcher_argv(ids: IdRange, userns_fd: int, command: list[str],
                  expose: list = (), python: str | None = None) -> list[str]:
    """The command that runs ``command`` with the range's user namespace
    open as ``userns_fd`` (for bubblewrap's ``--userns``), or as that
    namespace's root with :data:`AS_ROOT`, and each directory of
    ``expose`` bound at :func:`alias` of its index."""
    return [python or sys.executable, "-S", "-c", _BOOTSTRAP % _PACKAGE_PATH,
            str(ids.base), "root" if userns_fd == AS_ROOT else str(userns_fd),
            *(str(p) for p in expose), "--", *command]


_libc = None


def _libc_handle():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _call(name: str, *args) -> None:
    if getattr(_libc_handle(), name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s%r: %s" % (name, args, os.strerror(err)))


def _new_session_keyring() -> None:
    from lp_services.slave.seccomp import syscall_number

    libc = _libc_handle()
    if libc.syscall(syscall_number("keyctl"), _KEYCTL_JOIN_SESSION_KEYRING,
                    None) < 0:
        err = ctypes.get_errno()
        raise OSError(err, "keyctl(JOIN_SESSION_KEYRING): %s"
                      % os.strerror(err))


def _unshare_user() -> None:
    _call("unshare", _CLONE_NEWUSER)


def _expose(paths: list[str]) -> None:
    """A private mount namespace where ``paths[i]`` is also at
    ``alias(i)`` (host root only; nothing propagates to the host)."""
    _call("unshare", _CLONE_NEWNS)
    _call("mount", None, b"/", None, _MS_REC | _MS_PRIVATE, None)
    os.makedirs(ALIAS_DIR, 0o755, exist_ok=True)
    _call("mount", b"tmpfs", ALIAS_DIR.encode(), b"tmpfs",
          _MS_NOSUID | _MS_NODEV, b"mode=0755,size=16k")
    for i, path in enumerate(paths):
        # Opened without following a link, then bound through the
        # descriptor: the path cannot be swapped for a link meanwhile.
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                     | os.O_CLOEXEC)
        try:
            os.mkdir(alias(i), 0o755)
            _call("mount", ("/proc/self/fd/%d" % fd).encode(),
                  alias(i).encode(), None, _MS_BIND | _MS_REC, None)
        finally:
            os.close(fd)


def _helper(ids: IdRange, to_parent: int, from_parent: int) -> int:
    """The forked helper: make the namespace, wait for its maps, disable
    nested user namespaces in it."""
    try:
        _unshare_user()
    except OSError as e:
        os.write(to_parent, b"E" + str(e).encode())
        return 1
    os.write(to_parent, b"U")
    if os.read(from_parent, 1) != b"M":
        return 1
    try:
        # Now root of the mapped namespace: its own limits are ours to
        # set, and nothing created inside can raise them again.
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    except OSError as e:
        os.write(to_parent, b"E" + ("max_user_namespaces: %s" % e).encode())
        return 1
    os.write(to_parent, b"D")
    return 0


def enter(ids: IdRange, userns_fd: int, expose: list = ()) -> None:
    """Make the mapped user namespace and open it as ``userns_fd``
    (inheritable), or become its root with :data:`AS_ROOT`; show each of
    ``expose`` at its :func:`alias`. Must run as host root,
    single-threaded (it forks).

    :raises OSError: with a clear message if any step fails.
    """
    # Host root's supplementary groups must not follow the build, nor its
    # session key ring (possessing a key ring grants its keys' possessor
    # permissions whatever the ids): start a new, empty one.
    os.setgroups([])
    _new_session_keyring()
    if expose:
        _expose([str(p) for p in expose])
    to_parent_r, to_parent_w = os.pipe()
    from_parent_r, from_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(to_parent_r)
            os.close(from_parent_w)
            code = _helper(ids, to_parent_w, from_parent_r)
        finally:
            os._exit(code)
    os.close(to_parent_w)
    os.close(from_parent_r)
    try:
        reply = os.read(to_parent_r, 512)
        if reply != b"U":
            raise OSError("cannot create the build's user namespace: %s"
                          % reply[1:].decode(errors="replace"))
        ns = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY)
        for name in ("uid_map", "gid_map"):
            with open("/proc/%d/%s" % (pid, name), "w") as f:
                f.write(ids.map_line())
        os.write(from_parent_w, b"M")
        reply = os.read(to_parent_r, 512)
        if reply != b"D":
            raise OSError("cannot set up the build's user namespace: %s"
                          % reply[1:].decode(errors="replace"))
    finally:
        os.close(from_parent_w)
        os.close(to_parent_r)
        _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise OSError("the user namespace helper failed (%d)" % status)
    if userns_fd == AS_ROOT:
        try:
            _call("setns", ns, _CLONE_NEWUSER)
        finally:
            os.close(ns)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        return
    if ns != userns_fd:
        os.dup2(ns, userns_fd)
        os.close(ns)
    os.set_inheritable(userns_fd, True)


def main(argv: list[str]) -> int:
    """``BASE FD [PATH...] -- COMMAND...``: see the module docstring."""
    if "--" not in argv[2:] or argv.index("--", 2) == len(argv) - 1:
        print("usage: python -m lp_services.slave.idmap BASE FD [PATH...] "
              "-- COMMAND", file=sys.stderr)
        return 2
    end = argv.index("--", 2)
    command = argv[end + 1:]
    # Found before entering: as the namespace's root this process may no
    # longer read host root's directories (nor import from them).
    program = _which(command[0])
    if program is None:
        print("lp-sandbox: cannot run %s: not found" % command[0],
              file=sys.stderr)
        return 125
    agent = os.getppid()
    try:
        ids = IdRange(int(argv[0]))
        fd = AS_ROOT if argv[1] == "root" else int(argv[1])
        # Die with the agent (it spawned us; it is root, so it may).
        _call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != agent:
            return 125
        enter(ids, fd, argv[2:end])
        # The command is the first process of a pid namespace of our own:
        # when it dies the kernel kills everything inside, however deep.
        _call("unshare", _CLONE_NEWPID)
        alive_r, alive_w = os.pipe()
        pid = os.fork()
    except (ValueError, OSError) as e:
        print("lp-sandbox: %s" % e, file=sys.stderr)
        return 125
    if pid == 0:
        os._exit(_exec_command(program, command, alive_r, alive_w))
    os.close(alive_r)
    return _wait(pid, keep=alive_w)


def _exec_command(program: str, command: list[str], alive_r: int,
                  alive_w: int) -> int:
    """In the forked child (pid 1 of the new pid namespace): die with the
    launcher, then exec the command."""
    try:
        os.close(alive_w)
        # The launcher (host root, or the namespace's root) may signal us;
        # bubblewrap's own --die-with-parent may not reach the build: its
        # outer process has dropped every capability and the build runs
        # as another uid, so the kernel refuses that parent-death signal.
        _call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if select.select([alive_r], [], [], 0)[0]:
            return 125  # EOF: the launcher died before prctl
        os.close(alive_r)
        # Python ignores SIGPIPE and SIGXFSZ at start-up, and an ignored
        # signal stays ignored across exec: give the build the defaults,
        # or a writer into a closed pipe (``yes | head``) spins on EPIPE
        # forever.
        for name in _DEFAULT_SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        os.execv(program, command)
    except OSError as e:
        print("lp-sandbox: cannot run %s: %s" % (program, e),
              file=sys.stderr)
    return 125


def _wait(pid: int, keep: int) -> int:
    """Wait for the command; its exit status (128+N for signal N).
    ``keep`` stays open until the launcher ends (the child's sign that it
    is alive)."""
    for fd in range(3, 64):
        if fd == keep:
            continue
        # The command's descriptors (status pipe, seccomp, namespace) are
        # its own; the launcher only waits.
        try:
            os.close(fd)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _which(name: str) -> str | None:
    if "/" in name:
        return name
    for directory in os.get_exec_path():
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
