"""An embedded PostgreSQL server under the state directory.

The server binaries come from the ``pgserver`` wheel, so a fresh machine
needs nothing but ``pip install``. We drive ``initdb`` and ``pg_ctl``
ourselves rather than through ``pgserver.get_server`` because we want a
server that outlives the command that started it (``db start`` then any
number of daemons), listens on loopback TCP (txpostgres, Storm and every
daemon use one plain URL), and stops only when asked.

PostgreSQL refuses to run as root, so as root the server runs as the
system user ``pgserver`` (created when missing, as the wheel itself does).
Start and stop hold an exclusive lock on ``<home>/pgdata.lock``: two
``db start`` at once leave one server.
"""

import fcntl
import os
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lp_services.process import pid_alive

__all__ = [
    "DATABASE_NAME",
    "EmbeddedServer",
    "EmbeddedServerError",
    "ServerState",
]

#: The database the embedded server holds for lp-services.
DATABASE_NAME = "lp_services"

# The server's own settings, rewritten at every start. Connections: each
# daemon holds a few (a transactor pool plus a LISTEN connection), and the
# tests run many processes at once.
_BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "300",
    "shared_buffers": "'128MB'",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}

# For throwaway servers (tests, benchmarks' scratch clusters): durability
# buys nothing there and costs most of the run time.
_UNSAFE_FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

_SYSTEM_USER = "pgserver"
_CONF_NAME = "lp_services.conf"


class EmbeddedServerError(Exception):
    """The embedded server could not be started, stopped or inspected."""


@dataclass(frozen=True)
class ServerState:
    """What ``db status`` reports."""

    running: bool
    pgdata: Path
    pid: int | None
    port: int | None
    url: str | None


def _bin_dir() -> Path:
    import warnings

    # Importing pgserver warns about XDG_RUNTIME_DIR (for a lock directory
    # we do not use); the binaries' path is all we take from it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As PostgreSQL's own listener does: connections of the previous
        # server lingering in TIME_WAIT must not make us move the port,
        # or every client holding the URL would lose the database.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


class EmbeddedServer:
    """One PostgreSQL cluster in ``<home>/pgdata``.

    :param home: the state directory.
    :param fast_unsafe: turn off fsync and friends (tests only).
    """

    def __init__(self, home: Path, fast_unsafe: bool = False):
        self.home = Path(home).resolve()
        self.pgdata = self.home / "pgdata"
        self.fast_unsafe = fast_unsafe

    # -- queries ---------------------------------------------------------

    def state(self) -> ServerState:
        """Return whether the server runs, its pid, port and URL."""
        pid, port = self._postmaster()
        if pid is None:
            return ServerState(False, self.pgdata, None, None, None)
        return ServerState(True, self.pgdata, pid, port, self._url(port))

    def url(self, database: str = DATABASE_NAME) -> str | None:
        """Return the running server's URL, or None when it is stopped."""
        _, port = self._postmaster()
        return None if port is None else self._url(port, database)

    # -- actions ---------------------------------------------------------

    def start(self) -> str:
        """Start the server unless it runs; return the database URL.

        Idempotent and safe to call from several processes at once.
        """
        with self._locked():
            pid, port = self._postmaster()
            if pid is None:
                self._prepare_user()
                if not (self.pgdata / "PG_VERSION").exists():
                    self._initdb()
                port = self._write_settings()
                self._pg_ctl("start", "-w", "-t", "60",
                             "-l", str(self.pgdata / "server.log"))
                pid, port = self._postmaster()
                if pid is None:
                    raise EmbeddedServerError(
                        "PostgreSQL did not start; see %s"
                        % (self.pgdata / "server.log"))
            self._ensure_database(port)
            return self._url(port)

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the server if it runs; return True if it was running.

        Waits until the postmaster has exited, so that no server process
        is left behind when this returns.
        """
        with self._locked():
            pid, _ = self._postmaster()
            if pid is None:
                return False
            self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(int(timeout)))
            deadline = time.monotonic() + timeout
            while pid_alive(pid):
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        "PostgreSQL (pid %d) did not stop within %ds"
                        % (pid, timeout))
                time.sleep(0.05)
            return True

    def restart(self) -> str:
        """Stop and start again (fault tests use this)."""
        self.stop()
        return self.start()

    # -- internals -------------------------------------------------------

    @contextmanager
    def _locked(self):
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "pgdata.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _url(self, port: int, database: str = DATABASE_NAME) -> str:
        return "postgresql://postgres@127.0.0.1:%d/%s" % (port, database)

    def _postmaster(self) -> tuple[int | None, int | None]:
        """Read postmaster.pid: (pid, port) of a live server, or Nones."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None, None
        if not pid_alive(pid):
            return None, None
        return pid, port

    def _run_as(self) -> dict:
        return {"user": _SYSTEM_USER} if os.geteuid() == 0 else {}

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            self.pgdata.mkdir(parents=True, exist_ok=True)
            return
        import pwd
        import stat

        _bin_dir()  # imports pgserver quietly first
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(_SYSTEM_USER)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(
            bin_dir, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(
            bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(_SYSTEM_USER)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    def _run(self, program: str, *args: str) -> None:
        # Output goes to temporary files, not pipes: pg_ctl start leaves a
        # daemon holding inherited pipes open, and reading them would hang.
        cmd = [str(_bin_dir() / program), *args]
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(cmd, check=True, stdout=out, stderr=out,
                               stdin=subprocess.DEVNULL, cwd="/",
                               **self._run_as())
            except subprocess.CalledProcessError as error:
                out.seek(0)
                raise EmbeddedServerError(
                    "%s failed (exit %d): %s"
                    % (program, error.returncode, out.read().strip())
                ) from None

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "-U", "postgres",
                  "--no-sync")
        conf = self.pgdata / "postgresql.conf"
        with open(conf, "a") as f:
            f.write("\ninclude_if_exists = '%s'\n" % _CONF_NAME)

    def _write_settings(self) -> int:
        """Write our settings; keep the port unless something took it."""
        conf = self.pgdata / _CONF_NAME
        port = None
        if conf.exists():
            for line in conf.read_text().splitlines():
                if line.startswith("port = "):
                    port = int(line.split("=", 1)[1])
        if port is None or _port_in_use(port):
            port = _free_port()
        settings = dict(_BASE_SETTINGS, port=str(port))
        if self.fast_unsafe:
            settings.update(_UNSAFE_FAST_SETTINGS)
        conf.write_text("".join("%s = %s\n" % kv for kv in settings.items()))
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(_SYSTEM_USER)
            os.chown(conf, entry.pw_uid, entry.pw_gid)
        return port

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), *args)

    def _ensure_database(self, port: int) -> None:
        import psycopg2

        conn = psycopg2.connect(self._url(port, "postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DATABASE_NAME,))
                if cur.fetchone() is None:
                    cur.execute('CREATE DATABASE "%s"' % DATABASE_NAME)
        finally:
            conn.close()
