"""The seccomp filter of every sandboxed step: system calls builds never
need are refused, whatever the build's ids or capabilities.

Compiled to a BPF program by libseccomp (Debian ``libseccomp2``, the
library systemd, Docker, Flatpak and bubblewrap's own tests use: it
knows every architecture's syscall numbers and emits the architecture
checks a hand-written filter gets wrong) through ``ctypes``: the few
calls needed do not justify a binding package (Debian's python3-seccomp
is built for the system Python only; PyPI's pyseccomp is an unmaintained
ctypes wrapper of the same library). bubblewrap loads the program with
``--seccomp FD`` just before it runs the command, after its own set-up.

The filter allows everything but:

* :data:`DENIED` -> ``EPERM``: key rings (``keyctl``, ``add_key``,
  ``request_key``), kernel modules and kexec, ``bpf`` and
  ``perf_event_open``, every mount call (bubblewrap made all the mounts a
  build has), ``setns``, file handles (``open_by_handle_at``, the classic
  container escape), ``userfaultfd``, swap, reboot, accounting, quotas,
  the clock, the kernel log, and obsolete calls;
* ``unshare`` and ``clone`` asking for a new user namespace -> ``EPERM``
  (nested user namespaces are also refused by the namespace's
  ``max_user_namespaces`` of 0: two independent locks);
* ``clone3`` -> ``ENOSYS`` (its flags are in memory a filter cannot
  read; the C library then falls back to ``clone``, which is checked);
* netlink sockets of the netfilter family -> ``EPERM`` (nftables and
  iptables: no build configures a firewall).

On x86_64 the filter covers the i386 and x32 system call tables too.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

__all__ = ["DENIED", "SeccompError", "filter_program", "memfd",
           "syscall_number"]

#: Refused with EPERM (see the module docstring). Names a kernel or
#: architecture lacks are skipped.
DENIED = (
    "keyctl", "add_key", "request_key",
    "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open",
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree",
    "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    "setns",
    "open_by_handle_at", "name_to_handle_at",
    "userfaultfd",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
    "syslog", "lookup_dcookie", "uselib", "ustat", "sysfs", "_sysctl",
    "nfsservctl", "vhangup", "iopl", "ioperm",
)

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
_CLONE_NEWUSER = 0x10000000
_AF_NETLINK = 16
_NETLINK_NETFILTER = 12
#: Extra system call tables of a native architecture.
_EXTRA_ARCHES = {"x86_64": ("x86", "x32")}


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class SeccompError(RuntimeError):
    """libseccomp is missing or refused the filter (one clear line)."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@functools.cache
def _lib():
    # By its soname first: find_library runs ldconfig (tens of ms, and the
    # launcher pays it on every sandbox start).
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        name = find_library("seccomp")
        try:
            lib = ctypes.CDLL(name, use_errno=True) if name else None
        except OSError:
            lib = None
        if lib is None:
            raise SeccompError("libseccomp is not installed (Debian package "
                               "libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
        ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def syscall_number(name: str) -> int | None:
    """The native number of system call ``name``, or None if unknown."""
    number = _lib().seccomp_syscall_resolve_name(name.encode())
    return None if number < 0 else number


def _rule(ctx, action: int, name: str, *cmps: tuple[int, int, int, int]):
    lib = _lib()
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        return
    array = (_ArgCmp * max(len(cmps), 1))(*[_ArgCmp(*c) for c in cmps])
    rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
    if rc < 0:
        raise SeccompError("seccomp rule for %s refused: %s"
                           % (name, os.strerror(-rc)))


@functools.cache
def filter_program() -> bytes:
    """The compiled BPF program (cached; see the module docstring).

    :raises SeccompError: if libseccomp is missing or fails.
    """
    lib = _lib()
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompError("seccomp_init failed")
    try:
        for arch in _EXTRA_ARCHES.get(os.uname().machine, ()):
            token = lib.seccomp_arch_resolve_name(arch.encode())
            rc = lib.seccomp_arch_add(ctx, token) if token else -1
            if rc < 0 and rc != -errno.EEXIST:
                raise SeccompError("seccomp cannot add architecture %s"
                                   % arch)
        eperm = _errno_action(errno.EPERM)
        for name in DENIED:
            _rule(ctx, eperm, name)
        newuser = (0, _SCMP_CMP_MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER)
        _rule(ctx, eperm, "unshare", newuser)
        _rule(ctx, eperm, "clone", newuser)
        _rule(ctx, _errno_action(errno.ENOSYS), "clone3")
        _rule(ctx, eperm, "socket", (0, _SCMP_CMP_EQ, _AF_NETLINK, 0),
              (2, _SCMP_CMP_EQ, _NETLINK_NETFILTER, 0))
        fd = os.memfd_create("lp-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise SeccompError("seccomp_export_bpf: %s"
                                   % os.strerror(-rc))
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise SeccompError("libseccomp produced no valid program")
    return program


def memfd(program: bytes) -> int:
    """A new file descriptor holding ``program`` at offset 0 (what
    bubblewrap's ``--seccomp FD`` reads); the caller closes it."""
    fd = os.memfd_create("lp-seccomp-filter", os.MFD_CLOEXEC)
    view = memoryview(program)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
