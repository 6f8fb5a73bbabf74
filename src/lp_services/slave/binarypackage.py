"""Build type ``binarypackage``: build a Debian source package's binaries.

The filemap carries a source package: its ``.dsc`` (named by
``args["dsc"]``, or the one ``.dsc`` in the filemap) and every file the
``.dsc`` lists. Steps (each with a header in the log):

1. **verify** — before anything else: the ``.dsc`` is parsed (a clear-
   signed one too; the signature itself is not checked: the master vouches
   for its files) and every file in ``Checksums-Sha256`` (and ``Files``,
   MD5) must be in the filemap with that size and hash. A missing or
   mismatched file, or a ``.dsc`` that lists none -> ``PACKAGEFAIL`` with
   the reason in the log; nothing is unpacked.
2. **unpack** the chroot into ``<build>/chroot`` (``CHROOTFAIL`` if
   refused) and copy the files into ``<build>/build`` (``/work``).
3. **extract**: ``dpkg-source -x`` in the backend (the source is untrusted)
   into ``/work/src``.
4. **install build dependencies**, the only step with network: in a
   bubblewrap of its own (a user namespace where the builder is root, the
   per-build chroot writable, the host's network shared so the archives
   are reachable, nothing else of the host visible), the chroot's apt
   sources are replaced by ``args["archives"]`` (sources.list lines; the
   chroot's own are kept if none are given), then ``apt-get update`` and
   ``apt-get build-dep`` on the ``.dsc`` (when that fails, each build
   dependency is tried alone with ``apt-get satisfy``, so that only the
   truly unavailable ones stay unmet). The installed packages land in
   this build's own unpacked chroot only. The build backend then sees the
   chroot read-only, without network, whatever backend it is (``sandbox``
   or ``qemu``). An archive that cannot be reached (``apt-get update``
   fails) -> ``GIVENBACK``.
5. **check build dependencies**: ``dpkg-checkbuilddeps`` in the backend;
   unmet ones -> ``DEPFAIL``, ``dependencies`` being the list it printed
   (e.g. ``libfoo-dev (>= 1.2), bar``).
6. **build**: ``dpkg-buildpackage -rfakeroot -us -uc -b`` in
   ``/work/src`` as the backend's unprivileged build user (fakeroot for
   the root-requiring targets, as sbuild does; it is installed in step 4
   when the chroot lacks it); the log's first line of the step names the
   user. Failure or timeout -> ``PACKAGEFAIL``.
7. **collect** the ``.deb``, ``.udeb``, ``.ddeb``, ``.changes`` and
   ``.buildinfo`` files dpkg-buildpackage left in ``/work``.

Args: ``dsc`` (optional, see above), ``archives`` (list of sources.list
lines, optional), ``arch_indep`` (bool: also build Architecture: all
packages, ``-b``; default true; false gives ``-B``), ``trusted_keys``
(list of base64-encoded OpenPGP public keys, armored or binary, as
Launchpad's master sends them: each becomes a file in the chroot's
``/etc/apt/trusted.gpg.d/`` before ``apt-get update``, so the archives
they sign are trusted), ``build_debug_symbols`` (bool, default false: as
launchpad-buildd, ``DEB_BUILD_OPTIONS=noautodbgsym`` unless true, so
automatic ``-dbgsym`` packages are made only when asked for). The other
arguments Launchpad's master sends (``suite``, ``ogrecomponent``,
``archive_purpose``, and the common ones the agent checks) are checked
for type and shown in the log; they change nothing here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
import shutil

from twisted.internet import defer
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from zope.interface import implementer, provider

from lp_services.protocol.names import InvalidFileName, check_filename
from lp_services.slave import idmap, seccomp
from lp_services.slave.chroot import resolve_in_root
from lp_services.slave.errors import BadArguments
from lp_services.slave.idmap import BUILD_GID, BUILD_UID, IdRange
from lp_services.slave.interfaces import IBuildManager, IBuildManagerFactory
from lp_services.slave.manager import (
    BuildContext, BuildOutcome, SandboxedBuildManager)
from lp_services.slave.results import DIR_FLAGS, Collected, collect_directory
from lp_services.slave.sandbox import SECCOMP_FD, namespace_options
from lp_services.protocol.states import BuildStatus

__all__ = [
    "BinaryPackageBuildManager",
    "DscError",
    "SourcePackage",
    "dsc_fields",
    "build_script",
    "dep_install_argv",
    "dep_install_command",
    "parse_dsc",
    "parse_unmet_dependencies",
    "verify_source",
]

#: Suffixes of result files.
RESULT_SUFFIXES = (".deb", ".udeb", ".ddeb", ".changes", ".buildinfo")
_DSC_MAX = 1 << 20
#: Build-dependency installation may take this long (downloads).
DEP_INSTALL_TIMEOUT = 1800.0
#: Environment of the dependency-installation step.
_APT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
}
_APT_OPTIONS = [
    # Only root exists in the user namespace: apt cannot drop to _apt.
    "-o", "APT::Sandbox::User=root",
    "-o", "Acquire::Retries=3",
    "-o", "Debug::pkgProblemResolver=yes",
    "-o", "APT::Install-Recommends=false",
    "-o", "Dpkg::Use-Pty=0",
]


class DscError(ValueError):
    """A source package that cannot be built as given (one clear line)."""


@dataclasses.dataclass(frozen=True)
class SourcePackage:
    """What a .dsc says."""

    source: str
    version: str
    #: name -> (size, sha256 or None, md5 or None)
    files: dict[str, tuple[int, str | None, str | None]]
    build_depends: str


def _strip_signature(text: str) -> str:
    """The signed content of a clear-signed message (or `text` as is)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "-----BEGIN PGP SIGNED MESSAGE-----":
        return text
    body, state = [], "headers"
    for line in lines[1:]:
        if state == "headers":
            if not line.strip():
                state = "body"
            continue
        if line.startswith("-----BEGIN PGP SIGNATURE-----"):
            break
        body.append(line[2:] if line.startswith("- ") else line)
    return "\n".join(body)


def _fields(text: str) -> dict[str, str]:
    """The first deb822 paragraph: field (lower-cased) -> value, with
    continuation lines joined by newlines."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t":
            if key is None:
                raise DscError("continuation line before any field")
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
        else:
            raise DscError(f"malformed line in the .dsc: {line[:60]!r}")
    return fields


def dsc_fields(text: str) -> dict[str, str]:
    """The fields of a .dsc (clear-signed or not): lower-cased name ->
    value, continuation lines joined by newlines.

    :raises DscError: if a line is malformed.
    """
    return _fields(_strip_signature(text))


def parse_dsc(text: str) -> SourcePackage:
    """Parse a .dsc (clear-signed or not).

    :raises DscError: if it is not a source package description, lists no
        files, or lists a file under an unsafe name.
    """
    fields = dsc_fields(text)
    for required in ("source", "version"):
        if not fields.get(required):
            raise DscError(f"the .dsc has no {required.capitalize()} field")
    files: dict[str, list] = {}

    def listing(field: str, hash_len: int, slot: int):
        for line in fields.get(field, "").splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or not re.fullmatch(
                    r"[0-9a-f]{%d}" % hash_len, parts[0]) \
                    or not parts[1].isdigit():
                raise DscError(f"malformed {field} line: {line[:80]!r}")
            digest, size, name = parts[0], int(parts[1]), parts[2]
            try:
                check_filename(name)
            except InvalidFileName as e:
                raise DscError(f"unsafe file name in the .dsc: {e}") from None
            entry = files.setdefault(name, [size, None, None])
            if entry[0] != size:
                raise DscError(f"{name}: the .dsc gives two sizes")
            entry[slot] = digest

    listing("checksums-sha256", 64, 1)
    listing("files", 32, 2)
    if not files:
        raise DscError("the .dsc lists no files (no Checksums-Sha256 "
                       "or Files)")
    return SourcePackage(
        source=fields["source"], version=fields["version"],
        files={k: tuple(v) for k, v in files.items()},
        build_depends=", ".join(fields[f] for f in (
            "build-depends", "build-depends-arch", "build-depends-indep")
            if fields.get(f)).replace("\n", " "))


def verify_source(dsc_name: str, files: dict) -> SourcePackage:
    """Check a source package against the build's files (name -> Path)
    before anything runs (blocking: hashes the files).

    :raises DscError: naming the first missing or mismatched file.
    """
    try:
        with open(files[dsc_name], "rb") as f:
            raw = f.read(_DSC_MAX + 1)
    except KeyError:
        raise DscError(f"{dsc_name} is not among the build's files") from None
    if len(raw) > _DSC_MAX:
        raise DscError(f"{dsc_name} is larger than {_DSC_MAX} bytes")
    package = parse_dsc(raw.decode("utf-8", "replace"))
    for name, (size, sha256, md5) in sorted(package.files.items()):
        path = files.get(name)
        if path is None:
            raise DscError(f"{name} (listed in {dsc_name}) is missing from "
                           "the build's files")
        actual = os.stat(path).st_size
        if actual != size:
            raise DscError(f"{name}: size {actual} but {dsc_name} says "
                           f"{size}")
        h256, h5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h256.update(block)
                h5.update(block)
        if sha256 is not None and h256.hexdigest() != sha256:
            raise DscError(f"{name}: SHA-256 {h256.hexdigest()} does not "
                           f"match {dsc_name} ({sha256})")
        if md5 is not None and h5.hexdigest() != md5:
            raise DscError(f"{name}: MD5 {h5.hexdigest()} does not match "
                           f"{dsc_name} ({md5})")
    return package


_UNMET = re.compile(r"Unmet build dependencies:\s*(.*)")


def parse_unmet_dependencies(output: str) -> str | None:
    """The dependencies ``dpkg-checkbuilddeps`` says are unmet, as a
    comma-separated list (``foo (>= 1.0), bar | baz``); None if none."""
    found = []
    for line in output.splitlines():
        m = _UNMET.search(line)
        if m:
            found.append(m.group(1).strip())
    if not found:
        return None
    # dpkg-checkbuilddeps separates the unmet ones with spaces; put commas
    # back between them without splitting "foo (>= 1.0)" or "a | b".
    items, current, depth = [], "", 0
    for token in " ".join(found).split():
        if current and depth == 0 and not token.startswith(("(", "|", "[",
                                                              "<")) \
                and not current.endswith("|"):
            items.append(current)
            current = token
        else:
            current = f"{current} {token}" if current else token
        depth += token.count("(") + token.count("[")
        depth -= token.count(")") + token.count("]")
        # Build profiles: "<!nocheck !cross>" ("(>= 1)" has no "<" first).
        depth += token.startswith("<")
        depth -= token.endswith(">") and not token.startswith("(")
        depth = max(depth, 0)
    if current:
        items.append(current)
    return ", ".join(items)


def dep_install_argv(root, work, script: str, bwrap: str = "bwrap",
                     resolv_conf: str = "/etc/resolv.conf", *,
                     as_root: bool | None = None,
                     seccomp_fd: int | None = None) -> list[str]:
    """bubblewrap command line of the dependency-installation step: root
    in a user namespace, the chroot writable, the network shared.

    As root (``as_root``, default: the agent is root) bubblewrap runs as
    the root of the id range's user namespace (so dpkg can chown between
    any of the 65,536 inside ids, and nothing maps to host root): it must
    be started through :func:`dep_install_command`."""
    if as_root is None:
        as_root = os.geteuid() == 0
    if as_root:
        argv = [bwrap] + namespace_options(
            as_root=True, userns_fd=None, share_net=True, drop_caps=False)
    else:
        argv = [bwrap, "--unshare-user", "--uid", "0", "--gid", "0",
                "--unshare-all", "--share-net"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--die-with-parent",
             "--new-session", "--hostname", "lp-build",
             "--bind", str(root), "/",
             "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
             "--dev", "/dev", "--tmpfs", "/tmp",
             "--ro-bind", str(work), "/work"]
    if os.path.exists(resolv_conf):
        argv += ["--ro-bind", resolv_conf, "/etc/resolv.conf"]
    argv += ["--chdir", "/work", "--clearenv"]
    for key, value in _APT_ENV.items():
        argv += ["--setenv", key, value]
    return argv + ["--", "/bin/sh", "-c", script]


def dep_install_command(root, work, script: str, ids: IdRange | None,
                        bwrap: str = "bwrap",
                        resolv_conf: str = "/etc/resolv.conf",
                        seccomp_fd: int | None = SECCOMP_FD) -> list[str]:
    """The whole command of the dependency step: with ``ids`` (the agent
    is root), the id-map launcher around :func:`dep_install_argv`; the
    chroot must already belong to the range (:func:`idmap.shift_tree`).
    The seccomp program must be open on ``seccomp_fd``
    (:func:`lp_services.slave.seccomp.memfd`)."""
    if ids is None:
        return dep_install_argv(root, work, script, bwrap, resolv_conf,
                                as_root=False, seccomp_fd=seccomp_fd)
    return idmap.launcher_argv(
        ids, idmap.AS_ROOT,
        dep_install_argv(idmap.alias(0), idmap.alias(1), script, bwrap,
                         resolv_conf, as_root=True, seccomp_fd=seccomp_fd),
        expose=[root, work])


#: Run first in the dependency step: the build user exists in the chroot
#: (tools that look the user up, such as whoami or Python's getpass,
#: need an entry), unless the chroot already has one with that id.
_BUILD_USER_SCRIPT = (
    "getent group %(gid)d >/dev/null || "
    "echo 'build:x:%(gid)d:' >> /etc/group\n"
    "getent passwd %(uid)d >/dev/null || echo "
    "'build:x:%(uid)d:%(gid)d:lp-services build user:/work:/bin/sh' "
    ">> /etc/passwd\n" % {"uid": BUILD_UID, "gid": BUILD_GID})


#: Bound on the decoded size of all of a build's trusted keys.
MAX_TRUSTED_KEYS = 1 << 20
#: Where the agent leaves the trusted keys in ``/work`` for the
#: dependency step to install (a name dpkg-source never makes: it
#: extracts into ``/work/src``).
TRUSTED_KEYS_DIR = ".lp-trusted-keys"
_ARMORED = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"


def trusted_keys(args: dict) -> list[tuple[str, bytes]]:
    """``args["trusted_keys"]`` decoded: (file name, key) pairs, an
    armored key as ``.asc`` and a binary one as ``.gpg`` (apt reads both
    from ``trusted.gpg.d``).

    :raises BadArguments: not a list of base64 strings, or over
        :data:`MAX_TRUSTED_KEYS` bytes decoded.
    """
    import base64
    import binascii

    keys = args.get("trusted_keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str)
                                             for k in keys):
        raise BadArguments("args['trusted_keys'] must be a list of base64 "
                           "strings")
    found, total = [], 0
    for number, text in enumerate(keys, 1):
        try:
            key = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise BadArguments("args['trusted_keys'][%d] is not base64"
                               % (number - 1)) from None
        total += len(key)
        if total > MAX_TRUSTED_KEYS:
            raise BadArguments("args['trusted_keys'] are over %d bytes"
                               % MAX_TRUSTED_KEYS)
        suffix = ".asc" if key.lstrip().startswith(_ARMORED) else ".gpg"
        found.append(("launchpad-buildd-%d%s" % (number, suffix), key))
    return found


def write_trusted_keys(work, keys: list[tuple[str, bytes]]) -> None:
    """Leave ``keys`` in ``work``/:data:`TRUSTED_KEYS_DIR` for the
    dependency step. The directory must be new and no file is followed
    through a link: the build had ``/work`` before this (the extract
    step), and the agent runs as root."""
    from pathlib import Path

    directory = Path(work) / TRUSTED_KEYS_DIR
    directory.mkdir(mode=0o755)
    for name, key in keys:
        fd = os.open(directory / name,
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o644)
        with os.fdopen(fd, "wb") as stream:
            stream.write(key)


def dep_install_script(dsc: str, archives: list[str] | None,
                       need_fakeroot: bool,
                       build_depends: str = "",
                       with_trusted_keys: bool = False) -> str:
    """The shell run by the dependency-installation step.

    ``apt-get build-dep`` installs all or nothing; when it fails, each
    build dependency is tried on its own with ``apt-get satisfy``, so that
    what is left unmet (and reported by dpkg-checkbuilddeps) is exactly
    what the archives cannot provide.
    """
    opts = " ".join(_APT_OPTIONS)
    lines = ["set -e"]
    if archives:
        text = "".join(line.strip() + "\n" for line in archives)
        lines += [
            "rm -f /etc/apt/sources.list.d/*.list "
            "/etc/apt/sources.list.d/*.sources",
            "cat > /etc/apt/sources.list <<'LP_EOF'\n" + text + "LP_EOF",
        ]
    if with_trusted_keys:
        lines += [
            "mkdir -p /etc/apt/trusted.gpg.d",
            f"for key in /work/{TRUSTED_KEYS_DIR}/*; do",
            '    install -m 644 "$key" /etc/apt/trusted.gpg.d/',
            '    echo "trusted key: ${key##*/}"',
            "done",
        ]
    deps = [d.strip() for d in build_depends.split(",") if d.strip()]
    one_by_one = " ".join(shlex.quote(d) for d in deps)
    lines += [
        f"apt-get {opts} -q update || exit 90",
        # Unmet build dependencies are judged by dpkg-checkbuilddeps next;
        # this step installs what it can.
        f"if ! apt-get {opts} -q -y build-dep /work/{dsc}; then",
        "    echo 'build-dep failed: installing the build dependencies "
        "one by one'",
        f"    for dep in {one_by_one or '-'}; do",
        "        [ \"$dep\" = - ] && continue",
        f"        apt-get {opts} -q -y satisfy \"$dep\" "
        "|| echo \"unmet: $dep\"",
        "    done",
        "fi",
    ]
    if need_fakeroot:
        lines.append(f"apt-get {opts} -q -y install fakeroot || true")
    lines.append("apt-get clean")
    return "\n".join(lines) + "\n"


def build_script(flag: str = "-b", debug_symbols: bool = False) -> str:
    """The shell of the build step: says which user it runs as (the log
    shows the build was not root), then ``dpkg-buildpackage -rfakeroot``
    (fakeroot for the targets that need root, as sbuild does); without
    ``debug_symbols``, ``DEB_BUILD_OPTIONS=noautodbgsym`` as
    launchpad-buildd sets it."""
    options = "" if debug_symbols else "DEB_BUILD_OPTIONS=noautodbgsym "
    return ('echo "build user: $(id -un 2>/dev/null || echo ?) '
            '(uid $(id -u), gid $(id -g))"; '
            "cd /work/src && exec env %sdpkg-buildpackage -rfakeroot "
            "-us -uc %s" % (options, flag))


#: Exit status of the dependency step when `apt-get update` failed.
_UPDATE_FAILED = 90


class _Collector(ProcessProtocol):
    def __init__(self, output, done):
        self.output = output
        self.done = done

    def connectionMade(self):
        self.transport.closeStdin()

    def childDataReceived(self, fd, data):
        self.output(data)

    def processEnded(self, reason):
        code = 0 if reason.check(ProcessDone) else reason.value.exitCode
        self.done.callback(code)


@provider(IBuildManagerFactory)
@implementer(IBuildManager)
class BinaryPackageBuildManager(SandboxedBuildManager):
    """See the module docstring."""

    name = "binarypackage"
    log = Logger()
    #: The bubblewrap binary of the dependency step.
    bwrap = "bwrap"

    @staticmethod
    def validate_args(args: dict) -> None:
        """``dsc`` (if given) must be a safe name ending in ``.dsc``;
        ``archives`` a list of ``deb`` lines."""
        dsc = args.get("dsc")
        if dsc is not None:
            if not isinstance(dsc, str) or not dsc.endswith(".dsc"):
                raise BadArguments("args['dsc'] must name a .dsc file")
            try:
                check_filename(dsc)
            except InvalidFileName as e:
                raise BadArguments("args['dsc']: %s" % e) from None
        archives = args.get("archives")
        if archives is not None:
            if not isinstance(archives, list) or not all(
                    isinstance(a, str) for a in archives):
                raise BadArguments("args['archives'] must be a list of "
                                   "sources.list lines")
            for line in archives:
                if "\n" in line or not re.match(r"\s*deb(-src)?\s", line):
                    raise BadArguments("not a sources.list line: %r"
                                       % line[:80])
        for key in ("arch_indep", "build_debug_symbols"):
            if not isinstance(args.get(key, False), bool):
                raise BadArguments("args[%r] must be a boolean" % key)
        for key in ("archive_purpose", "ogrecomponent"):
            if not isinstance(args.get(key, ""), str):
                raise BadArguments("args[%r] must be a string" % key)
        trusted_keys(args)

    @staticmethod
    def needed_files(args: dict) -> list[str]:
        """Names that must be in the build's filemap."""
        return [args["dsc"]] if args.get("dsc") else []

    def __init__(self, context: BuildContext):
        super().__init__(context)
        self._dep_transport = None

    def _kill(self):
        super()._kill()
        if self._dep_transport is not None:
            try:
                self._dep_transport.signalProcess("KILL")
            except Exception:  # already gone
                pass

    def _dsc_name(self) -> str:
        name = self.ctx.args.get("dsc")
        if name:
            return name
        dscs = sorted(n for n in self.ctx.files if n.endswith(".dsc"))
        if len(dscs) != 1:
            raise DscError("the build's files hold %d .dsc files; name one "
                           "with args['dsc']" % len(dscs))
        return dscs[0]

    async def _in_sandbox(self, argv, timeout, output=None):
        """Run argv in the build's backend sandbox."""
        return await self._sandbox.run(argv, output or self.ctx.log.write,
                                       timeout)

    async def _run(self) -> BuildOutcome:
        ctx, log = self.ctx, self.ctx.log
        root = ctx.build_dir / "chroot"
        work = ctx.build_dir / "build"

        log.header("verify")
        try:
            dsc = self._dsc_name()
            package = await self._thread(verify_source, dsc, ctx.files)
        except (DscError, OSError) as e:
            log.line("source package refused: %s" % e)
            return BuildOutcome(BuildStatus.PACKAGEFAIL)
        log.line("source %s %s: %d files verified" % (
            package.source, package.version, len(package.files)))

        failed = await self._prepare(
            root, work, tools=("/bin/sh", "/usr/bin/dpkg-source",
                               "/usr/bin/dpkg-buildpackage",
                               "/usr/bin/apt-get"),
            missing=" (a buildd chroot is needed)")
        if failed is not None:
            return failed
        if self._aborted:
            return BuildOutcome(BuildStatus.ABORTED)
        self._sandbox = ctx.backend.sandbox(ctx.build_id, root, work)

        log.header("extract")
        result = await self._in_sandbox(
            ["dpkg-source", "--no-check", "-x", "/work/" + dsc, "/work/src"],
            ctx.timeout)
        outcome = self._failed_step(result, "dpkg-source -x")
        if outcome is not None:
            return outcome

        log.header("install build dependencies")
        need_fakeroot = resolve_in_root(root, "/usr/bin/fakeroot") is None
        code = await self._install_deps(root, work, dsc, need_fakeroot,
                                        package.build_depends)
        if self._aborted:
            return BuildOutcome(BuildStatus.ABORTED)
        if code == _UPDATE_FAILED:
            log.line("apt-get update failed: the archives are unreachable; "
                     "giving the build back")
            return BuildOutcome(BuildStatus.GIVENBACK)
        if code != 0:
            log.line("dependency installation failed (exit %s)" % code)
            return BuildOutcome(BuildStatus.BUILDERFAIL)

        log.header("check build dependencies")
        chunks: list[bytes] = []

        def tee(data):
            chunks.append(data)
            log.write(data)
        result = await self._in_sandbox(
            ["/bin/sh", "-c", "cd /work/src && dpkg-checkbuilddeps"],
            ctx.timeout, tee)
        if self._aborted or result.killed:
            return BuildOutcome(BuildStatus.ABORTED)
        if not result.started:
            log.line("the sandbox did not start: %s" % result.error)
            return BuildOutcome(BuildStatus.BUILDERFAIL)
        if result.exit_code != 0:
            missing = parse_unmet_dependencies(
                b"".join(chunks).decode("utf-8", "replace"))
            if missing:
                log.line("missing dependencies: %s" % missing)
                return BuildOutcome(BuildStatus.DEPFAIL,
                                    dependencies=missing)
            log.line("dpkg-checkbuilddeps failed (exit %s)"
                     % result.exit_code)
            return BuildOutcome(BuildStatus.PACKAGEFAIL)

        log.header("build")
        flag = "-b" if ctx.args.get("arch_indep", True) else "-B"
        result = await self._in_sandbox(
            ["/bin/sh", "-c", build_script(
                flag, ctx.args.get("build_debug_symbols", False))],
            ctx.timeout)
        status = BuildStatus.OK
        outcome = self._failed_step(result, "dpkg-buildpackage")
        if outcome is not None:
            if outcome.status is not BuildStatus.PACKAGEFAIL:
                return outcome
            status = BuildStatus.PACKAGEFAIL
        else:
            log.line("dpkg-buildpackage exited 0")

        log.header("collect")
        found = await self._thread(_collect, work, ctx.cache,
                                   ctx.work_quota or None)
        for note in found.notes:
            log.line(note)
        filemap, added = found.filemap, found.added
        for name, sha1 in sorted(filemap.items()):
            log.line("result %s %s" % (sha1, name))
        if found.no_space:
            # The agent's disk, not the build: give it back, keep nothing.
            log.line("the agent's cache has no room for the results: "
                     "giving the build back")
            for sha1 in added:
                ctx.cache.remove(sha1)
            return BuildOutcome(BuildStatus.GIVENBACK)
        if found.over_quota and status is BuildStatus.OK:
            # The build's own doing (e.g. a sparse multi-GiB "package").
            log.line("the results do not fit in the build's quota")
            status = BuildStatus.PACKAGEFAIL
        if status is BuildStatus.OK and not any(
                n.endswith(".deb") or n.endswith(".udeb") for n in filemap):
            log.line("the build made no .deb")
            status = BuildStatus.PACKAGEFAIL
        return BuildOutcome(status, filemap, None, frozenset(added))

    def _failed_step(self, result, what) -> BuildOutcome | None:
        """The outcome of a failed backend step, or None if it succeeded."""
        log = self.ctx.log
        cut_short = self._cut_short(result)
        if cut_short is not None:
            return cut_short
        if result.timed_out:
            log.line("%s timed out after %g s; killed"
                     % (what, self.ctx.timeout))
            return BuildOutcome(BuildStatus.PACKAGEFAIL)
        if result.exit_code != 0:
            log.line("%s exited %s" % (what, result.exit_code))
            return BuildOutcome(BuildStatus.PACKAGEFAIL)
        return None

    async def _install_deps(self, root, work, dsc, need_fakeroot,
                            build_depends) -> int:
        """Run the dependency step; return its exit code.

        As root it runs in the backend's id range (the default range for a
        backend without one, such as qemu): the chroot is given to the
        range's root first, as the sandbox backend does, and given back to
        host root afterwards for a backend without a range."""
        ctx = self.ctx
        ids = None
        if os.geteuid() == 0:
            ids = getattr(ctx.backend, "ids", None) or IdRange()
            await self._thread(idmap.shift_tree, root, ids.host(0),
                               ids.host(0))
        keys = trusted_keys(ctx.args)
        if keys:
            await self._thread(write_trusted_keys, work, keys)
        script = _BUILD_USER_SCRIPT + dep_install_script(
            dsc, ctx.args.get("archives"), need_fakeroot, build_depends,
            with_trusted_keys=bool(keys))
        argv = dep_install_command(root, work, script, ids,
                                   bwrap=shutil.which(self.bwrap)
                                   or self.bwrap)
        done = defer.Deferred()
        proto = _Collector(ctx.log.write, done)
        filter_fd = seccomp.memfd(seccomp.filter_program())
        try:
            self._dep_transport = ctx.reactor.spawnProcess(
                proto, argv[0], argv, env={"PATH": "/usr/bin:/bin"},
                childFDs={0: "w", 1: "r", 2: "r", SECCOMP_FD: filter_fd})
        finally:
            os.close(filter_fd)
        timer = ctx.reactor.callLater(min(DEP_INSTALL_TIMEOUT, ctx.timeout),
                                      self._kill_deps)

        def ended(code):
            self._dep_transport = None
            if timer.active():
                timer.cancel()
            return code
        code = await done.addCallback(ended)
        if ids is not None and getattr(ctx.backend, "ids", None) is None:
            # A backend without the id range (qemu: its 9p server reads the
            # chroot as host root) gets the chroot back as unpack made it.
            await self._thread(idmap.shift_tree, root, 0, 0)
        return code

    def _kill_deps(self):
        self.ctx.log.line("dependency installation timed out; killed")
        if self._dep_transport is not None:
            try:
                self._dep_transport.signalProcess("KILL")
            except Exception:  # already gone
                pass


def _collect(work, cache, budget=None) -> Collected:
    """Move result files into the cache (blocking); never follows a link
    the build made. Results may take ``budget`` bytes together (apparent
    size: the build's quota); a collection over it is marked
    ``over_quota``, one the agent's cache cannot hold ``no_space``."""
    try:
        work_fd = os.open(work, DIR_FLAGS)
    except OSError as e:
        found = Collected()
        found.notes.append("no build directory: %s" % e.strerror)
        return found
    try:
        return collect_directory(
            work_fd, cache, accept=lambda name: name.endswith(RESULT_SUFFIXES),
            budget=budget, raise_no_space=False)
    finally:
        os.close(work_fd)
