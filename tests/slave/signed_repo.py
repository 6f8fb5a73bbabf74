"""A flat apt repository signed with a key made for the test, served over
HTTP on loopback: what a private Launchpad archive looks like to a build
(``archives`` names it, ``trusted_keys`` carries its key)."""

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from twisted.internet import reactor
from twisted.web.server import Site
from twisted.web.static import File

__all__ = ["SignedRepository", "make_signed_repository", "serve"]

CONTROL = """\
Package: {name}
Version: 1.0
Architecture: all
Maintainer: lp-services tests <tests@example.invalid>
Description: a package only the test's signed repository has
"""


@dataclass(frozen=True)
class SignedRepository:
    root: Path
    #: The signing key, ASCII-armored, base64-encoded as Launchpad sends
    #: ``trusted_keys``.
    trusted_key: str


def make_signed_repository(where: Path, package: str) -> SignedRepository:
    """A repository at ``where`` holding one arch:all ``package``, its
    InRelease signed by a new ed25519 key."""
    # A short home: gpg-agent's socket lives there and its path is
    # bounded; the agent is stopped and the home removed at the end.
    home = Path(tempfile.mkdtemp(prefix="lp-gpg-"))
    env = dict(os.environ, GNUPGHOME=str(home))

    def gpg(*args, **kwargs):
        return subprocess.run(
            ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback",
             *args], env=env, check=True, capture_output=True,
            **kwargs).stdout

    try:
        return _make(where, package, gpg)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env,
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _make(where: Path, package: str, gpg) -> SignedRepository:
    where.mkdir(parents=True, exist_ok=True)

    gpg("--passphrase", "", "--quick-gen-key",
        "lp-services test archive <archive@example.invalid>",
        "ed25519", "sign", "never")
    key = gpg("--armor", "--export")
    root = where / "repo"
    tree = where / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(CONTROL.format(name=package))
    root.mkdir()
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree),
                    str(root / f"{package}_1.0_all.deb")], check=True,
                   capture_output=True)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."],
                              cwd=root, check=True,
                              capture_output=True).stdout
    (root / "Packages").write_bytes(packages)
    release = (
        "Origin: lp-services-test\nLabel: lp-services-test\n"
        f"Date: {formatdate(usegmt=True)}\n"
        "Architectures: amd64 all\n"
        "SHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")
    (root / "Release").write_text(release)
    gpg("--clearsign", "--output", str(root / "InRelease"),
        str(root / "Release"))
    return SignedRepository(root, base64.b64encode(key).decode())


def serve(case, root: Path) -> str:
    """Serve ``root`` on a loopback port until ``case`` ends; its URL."""
    port = reactor.listenTCP(0, Site(File(str(root))), interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    return "http://127.0.0.1:%d/" % port.getHost().port
