"""The real launchpad-buildd, installed from the package index into a
virtualenv of its own and run under twistd on loopback, for the tests
that drive it with our buildmaster.

Version: launchpad-buildd 206, the newest the package index has. What it
needed here: Debian's Python (``/usr/bin/python3``: python3-apt's
``apt`` and ``apt_pkg`` are built for it and are not on the index; they
are linked into the virtualenv by a ``.pth``, not by
``--system-site-packages``, whose old pyOpenSSL breaks the index's
Twisted). Its configuration
names a ``sharepath`` whose ``bin/`` holds launchpad-buildd's host tools
(builder-prep, in-target, sbuild-package from the Debian package); the
wheel has none of them. The test's sharepath holds a ``builder-prep``
that prints the kernel as the real one does and then waits as long as
``$HOME/prep-seconds`` says (so a build is BUILDING long enough to
cancel); ``in-target`` is absent, so every build ends where the real
machine's tools would take over: unpacking the chroot fails
(``CHROOTFAIL``) after builder-prep.
launchpad-buildd's XML-RPC, file cache, state machine, abort and clean
are its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from xmlrpc.client import ServerProxy

from lp_services.cli.demo_farm import free_port
from lp_services.images.chroots import cache_lock, cache_root

__all__ = ["LaunchpadBuildd", "VERSION", "install", "unavailable"]

VERSION = "206"
DEBIAN_PYTHON = "/usr/bin/python3"
#: python3-apt's modules, linked into the virtualenv.
APT_MODULES = ("apt", "apt_pkg", "apt_inst")
_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")

BUILDER_PREP = """\
#!/bin/sh
# What launchpad-buildd's builder-prep prints first; then wait as long as
# the test asks (a stand-in for the host tools this machine lacks).
echo "Kernel version: $(uname -snrvm)"
sleep "$(cat "$HOME/prep-seconds" 2>/dev/null || echo 0)"
"""

CONFIG = """\
[builder]
architecturetag = amd64
filecache = {cache}
bindhost = 127.0.0.1
bindport = {port}
ntphost =
sharepath = {share}
proxyport = {proxy_port}
"""


def _debian_env() -> dict:
    """This environment without what points a Python at another Python's
    modules (the test runner's virtualenv)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}


def unavailable() -> str | None:
    """Why launchpad-buildd cannot run here, or None."""
    if not os.path.exists(DEBIAN_PYTHON):
        return f"{DEBIAN_PYTHON} is missing"
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import apt_pkg, apt, venv, ensurepip"],
        capture_output=True, text=True, env=_debian_env())
    if probe.returncode != 0:
        return ("launchpad-buildd needs Debian's python3-apt and "
                "python3-venv (apt-get install python3-apt python3-venv): "
                + probe.stderr.strip().splitlines()[-1])
    return None


def install(root: Path | None = None) -> Path:
    """The virtualenv holding launchpad-buildd (cached; made once)."""
    root = (root or cache_root()) / "launchpad-buildd"
    venv = root / VERSION
    marker = venv / ".installed"
    with cache_lock(root / f"{VERSION}.lock"):
        if marker.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", str(venv)], check=True,
                       capture_output=True, env=_debian_env())
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet",
             f"launchpad-buildd=={VERSION}"],
            capture_output=True, text=True, timeout=900, env=_debian_env())
        if pip.returncode != 0:
            raise RuntimeError("pip install launchpad-buildd==%s failed: %s"
                               % (VERSION, pip.stderr.strip()[-500:]))
        links = venv / "debian-apt"
        links.mkdir()
        for name in os.listdir(_DIST_PACKAGES):
            if name.split(".")[0] in APT_MODULES:
                (links / name).symlink_to(_DIST_PACKAGES / name)
        site = next((venv / "lib").glob("python3*/site-packages"))
        (site / "debian-apt.pth").write_text(str(links) + "\n")
        marker.write_text(VERSION + "\n")
    return venv


class LaunchpadBuildd:
    """One launchpad-buildd under twistd on a loopback port."""

    def __init__(self, venv: Path, base: Path):
        self.venv = venv
        self.base = base
        self.home = base / "home"
        self.cache = base / "filecache"
        self.share = base / "share"
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = base / "launchpad-buildd.log"
        self.process = None

    def start(self, timeout: float = 60.0) -> None:
        for d in (self.home, self.cache, self.share / "bin"):
            d.mkdir(parents=True, exist_ok=True)
        prep = self.share / "bin" / "builder-prep"
        prep.write_text(BUILDER_PREP)
        prep.chmod(0o755)
        config = self.base / "buildd.conf"
        config.write_text(CONFIG.format(
            cache=self.cache, port=self.port, share=self.share,
            proxy_port=free_port()))
        site = next((self.venv / "lib").glob("python3*/site-packages"))
        env = {"HOME": str(self.home), "BUILDD_SLAVE_CONFIG": str(config),
               "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
        self.process = subprocess.Popen(
            [str(self.venv / "bin" / "twistd"), "--nodaemon", "--pidfile=",
             "--logfile", str(self.log_path), "--python",
             str(site / "lpbuildd" / "buildd-slave.tac")],
            env=env, cwd=self.base, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.proxy().echo("up") == ["up"]:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("launchpad-buildd did not start: %s"
                                   % self.log()[-2000:])
            time.sleep(0.2)

    def proxy(self) -> ServerProxy:
        return ServerProxy(self.url + "/rpc")

    def prep_seconds(self, seconds: float) -> None:
        """How long the next builds' builder-prep waits."""
        (self.home / "prep-seconds").write_text("%g\n" % seconds)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
