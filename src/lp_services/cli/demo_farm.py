"""The local farm in one command: ``lp-services demo``.

Starts, as real twistd processes on this machine, a builder agent (sandbox
backend), a buildmaster and a job runner over the embedded database; adds
the builder and a busybox chroot; serves a small source tarball over HTTP;
requests a recipe whose build produces real files; shows the recipe job and
the build moving through their states; then checks the results' hashes
against the file store, prints ``show`` and ``report`` output and says where
the status page is. Everything it started is stopped at the end (unless
``--keep-running``), on Ctrl-C, and on any error.
"""

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Daemon", "DemoError", "DemoFarm", "free_port", "running_recorded",
           "stop_recorded", "stop_started_database"]

BUILDER_NAME = "demo-builder"
PROCESSOR = "amd64"
RECIPE_NAME = "hello-demo"
#: How long the demo waits for the recipe and its build to finish.
BUILD_TIMEOUT = 300.0


class DemoError(Exception):
    """The demo could not go on; the message says why."""


def free_port() -> int:
    """A TCP port free on loopback now (the daemon binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str, daemon=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if daemon is not None and daemon.exited():
            raise DemoError("%s exited before %s; see %s"
                            % (daemon.name, what, daemon.log_path))
        if time.monotonic() > deadline:
            raise DemoError("timed out waiting for %s" % what)
        time.sleep(0.05)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a SIGINT that arrives inside the block and raise it as
    KeyboardInterrupt at the end (only the main thread gets signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda *_: held.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT,
                      signal.SIG_DFL if previous is None else previous)
    if held:
        raise KeyboardInterrupt


@dataclass
class Daemon:
    """One process the demo started, with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict | None = None
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # A session of its own: Ctrl-C in the terminal reaches the demo,
        # which then stops each daemon in order.
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=self.env)
        log.close()

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _hello_source() -> bytes:
    """A small source tarball the demo's recipe builds from."""
    files = {
        "hello/greeting.txt": b"Hello from the lp-services build farm!\n",
        "hello/words.txt": b"one job table\nbuilds and native jobs\n"
                           b"leases retries scores\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# The build script runs in the sandbox with the build's files in its
# working directory (/work); results go to /work/out (see slave/script.py).
_SCRIPT = r"""#!/bin/sh
set -eu
echo "unpacking the source"
tar xzf hello.tar.gz
out=/work/out
echo "building"
cp hello/greeting.txt "$out/greeting.txt"
wc -w hello/words.txt | sed 's/ .*//' > "$out/word-count.txt"
sha1sum hello/*.txt > "$out/SHA1SUMS"
: > "$out/scratch.o"  # not a result: the recipe's patterns drop it
echo "built $(ls "$out" | wc -l) files"
"""


@dataclass
class DemoFarm:
    """The demo's daemons and what it needs to drive them."""

    home: Path
    console: object
    python: str = sys.executable
    daemons: list = field(default_factory=list)
    database_url: str | None = None
    metrics_port: int | None = None
    #: Whether the embedded database is the demo's to stop at the end.
    started_database: bool = False

    @property
    def state_dir(self) -> Path:
        return self.home / "demo"

    # -- set-up ----------------------------------------------------------

    def lp(self, *args: str) -> str:
        """Run an lp-services command as a user would; return its output."""
        result = subprocess.run(
            [self.python, "-m", "lp_services.cli.main", "--database",
             self.database_url, "--home", str(self.home), *args],
            capture_output=True, text=True, env=self._env())
        if result.returncode != 0:
            raise DemoError("lp-services %s failed: %s" % (
                " ".join(args), (result.stderr or result.stdout).strip()))
        return result.stdout.strip()

    def _env(self) -> dict:
        env = dict(os.environ)
        env["LP_HOME"] = str(self.home)
        env.pop("LP_DATABASE_URL", None)
        return env

    def start_database(self) -> None:
        from lp_services.database.connection import connect
        from lp_services.database.embedded import EmbeddedServer
        from lp_services.database.schema import upgrade

        server = EmbeddedServer(self.home)
        if not server.state().running:
            # Ours to stop at the end (a server already running is left as
            # it was); remembered on disk for `demo --stop`.
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "started-database").touch()
        self.database_url = server.start()
        self.started_database = (self.state_dir / "started-database").exists()
        conn = connect(self.database_url)
        try:
            upgrade(conn)
        finally:
            conn.close()

    def twistd(self, name: str, plugin: str, *args: str,
               env: dict | None = None) -> "Daemon":
        logs = self.state_dir / "logs"
        daemon = Daemon(name, [
            self.python, "-c", "from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=",
            "--logfile=%s" % (logs / (name + ".log")), plugin, *args],
            logs / (name + ".out"), env=dict(self._env(), **(env or {})))
        # A Ctrl-C between starting the daemon and remembering it would
        # leave it running in its own session, unseen by stop(): hold
        # SIGINT until it is recorded, then raise it.
        with _sigint_deferred():
            daemon.start()
            self.daemons.append(daemon)
            self._record()
        return daemon

    def _record(self) -> None:
        """Remember pids, so `demo stop` can end a --keep-running farm."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pids = {d.name: {"pid": d.process.pid, "argv": d.argv}
                for d in self.daemons
                if d.process is not None and d.process.poll() is None}
        (self.state_dir / "pids.json").write_text(json.dumps(pids))

    def start_agent(self, secret: str) -> int:
        agent_dir = self.state_dir / "agent"
        port_file = agent_dir / "port"
        secret_file = agent_dir / "secret"
        agent_dir.mkdir(parents=True, exist_ok=True)
        port_file.unlink(missing_ok=True)
        secret_file.write_text(secret)
        secret_file.chmod(0o600)
        daemon = self.twistd(
            "agent", "buildslave", "--name", BUILDER_NAME,
            "--arch-tag", PROCESSOR, "--cache-dir", str(agent_dir / "cache"),
            "--work-dir", str(agent_dir / "work"), "--backend", "sandbox",
            "--port", "0", "--interface", "127.0.0.1",
            "--port-file", str(port_file), "--secret-file", str(secret_file))
        _wait_for(lambda: port_file.exists() and port_file.read_text().strip(),
                  60, "the agent to listen", daemon)
        return int(port_file.read_text().strip())

    def register_builder(self, agent_port: int, secret: str) -> None:
        url = "http://127.0.0.1:%d" % agent_port
        listing = json.loads(self.lp("builder", "list", "--json"))
        if any(b["name"] == BUILDER_NAME for b in listing):
            # A previous demo's builder: point it at this run's agent.
            from lp_services.buildmaster.builders import repoint_builder
            from lp_services.database.connection import connect

            conn = connect(self.database_url)
            try:
                with conn, conn.cursor() as cur:
                    repoint_builder(cur, BUILDER_NAME, url, secret)
            finally:
                conn.close()
        else:
            self.lp("builder", "add", BUILDER_NAME, "--url", url,
                    "--processor", PROCESSOR, "--secret", secret)

    def add_chroot(self) -> str:
        from lp_services.slave.busybox_chroot import busybox_chroot

        tarball = busybox_chroot()
        return self.lp("chroot", "add", "--processor", PROCESSOR, str(tarball))

    def start_buildmaster(self) -> str:
        port = free_port()
        base = "http://127.0.0.1:%d" % port
        daemon = self.twistd(
            "buildmaster", "buildmaster", "--database", self.database_url,
            "--home", str(self.home),
            "--port", "tcp:%d:interface=127.0.0.1" % port,
            "--files-url", base, "--identity", "demo-buildmaster",
            # One local builder: scan it often, so the demo's build is
            # collected within moments of finishing (production: 15 s).
            "--interval", "2")
        _wait_for(lambda: _port_open(port), 60, "the buildmaster to listen",
                  daemon)
        return base

    def start_runner(self) -> None:
        self.metrics_port = free_port()
        self.twistd("jobrunner", "jobrunner", "--database", self.database_url,
                    "--concurrency", "2", "--holder", "demo-runner",
                    "--metrics-port",
                    "tcp:%d:interface=127.0.0.1" % self.metrics_port,
                    # The demo's source server is on loopback, an internal
                    # address recipes may not fetch from unless allowed.
                    env={"LP_RECIPE_SOURCES_ALLOW": "127.0.0.1"})

    def serve_source(self) -> tuple[str, str]:
        """Serve the source tarball over HTTP; return (url, sha1)."""
        directory = self.state_dir / "sources"
        directory.mkdir(parents=True, exist_ok=True)
        data = _hello_source()
        (directory / "hello.tar.gz").write_bytes(data)
        port = free_port()
        daemon = Daemon("sources", [
            self.python, "-m", "http.server", "--bind", "127.0.0.1",
            "--directory", str(directory), str(port)],
            self.state_dir / "logs" / "sources.log")
        daemon.start()
        self.daemons.append(daemon)
        self._record()
        _wait_for(lambda: _port_open(port), 30, "the source server", daemon)
        return ("http://127.0.0.1:%d/hello.tar.gz" % port,
                hashlib.sha1(data).hexdigest())

    def write_recipe(self, source_url: str, source_sha1: str) -> Path:
        path = self.state_dir / "hello-demo.toml"
        path.write_text(
            'name = "%s"\nprocessor = "%s"\nurgency = "high"\n'
            'results = ["*.txt", "SHA1SUMS"]\n'
            'script = """\n%s"""\n\n'
            '[[sources]]\nurl = "%s"\nsha1 = "%s"\n'
            % (RECIPE_NAME, PROCESSOR, _SCRIPT, source_url, source_sha1))
        return path

    # -- tear-down -------------------------------------------------------

    def stop(self) -> None:
        """Stop every daemon, newest first, then the embedded database if
        the demo started it."""
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.daemons.clear()
        (self.state_dir / "pids.json").unlink(missing_ok=True)
        stop_started_database(self.home)


def stop_started_database(home: Path) -> bool:
    """Stop the embedded database if a demo started it; return whether."""
    from lp_services.database.embedded import EmbeddedServer

    marker = Path(home) / "demo" / "started-database"
    if not marker.exists():
        return False
    EmbeddedServer(home).stop()
    marker.unlink(missing_ok=True)
    return True


def _is_ours(pid: int, argv: list[str]) -> bool:
    """Whether process ``pid`` still runs the command we recorded (a pid
    may have been reused by something else since)."""
    try:
        cmdline = Path("/proc", str(pid), "cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.split(b"\0")[:len(argv)] == [a.encode() for a in argv]


def _recorded(home: Path) -> dict:
    """{name: (pid, argv)} of the daemons a demo recorded under ``home``."""
    try:
        recorded = json.loads((Path(home) / "demo" / "pids.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    found = {}
    for name, entry in recorded.items():
        if not isinstance(entry, dict):
            continue
        pid, argv = entry.get("pid"), entry.get("argv")
        if isinstance(pid, int) and isinstance(argv, list):
            found[name] = (pid, argv)
    return found


def running_recorded(home: Path) -> list[str]:
    """Names of the daemons a --keep-running demo left that still run."""
    return [name for name, (pid, argv) in _recorded(home).items()
            if _is_ours(pid, argv)]


def stop_recorded(home: Path, timeout: float = 30.0) -> list[str]:
    """Stop the daemons a --keep-running demo left; return their names.

    Only processes still running the recorded command are signalled.
    """
    path = Path(home) / "demo" / "pids.json"
    stopped = []
    for name, (pid, argv) in _recorded(home).items():
        if not _is_ours(pid, argv):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_ours(pid, argv) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_ours(pid, argv):
            os.kill(pid, signal.SIGKILL)
        stopped.append(name)
    path.unlink(missing_ok=True)
    return stopped


def download(url: str) -> bytes:
    """Fetch a URL from the demo's own buildmaster."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()
