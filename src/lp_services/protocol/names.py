"""What a file name and a sha1 may be on the wire, and where a
content-addressed directory (the master's file store, the agent's file
cache) keeps a sha1's bytes."""

import re
from pathlib import Path

__all__ = [
    "InvalidFileName",
    "check_filename",
    "content_path",
    "is_sha1",
]

_SHA1 = re.compile(r"\A[0-9a-f]{40}\Z")


class InvalidFileName(ValueError):
    """A file name that could escape a directory or is otherwise unsafe."""


def is_sha1(value) -> bool:
    """Whether ``value`` is a sha1 as the protocol writes it: 40 lower-case
    hexadecimal digits (a ``str``; bytes are decoded as ASCII)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return False
    return isinstance(value, str) and _SHA1.match(value) is not None


def check_filename(name: str) -> str:
    """Return ``name`` if it is a safe single path component, else raise.

    Refused: empty, ``.``/``..``, any ``/``, NUL or control character, more
    than 255 bytes. These match the CHECK on ``library_file.filename``.
    """
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise InvalidFileName("unsafe file name: %r" % (name,))
    if "/" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidFileName("unsafe file name: %r" % (name,))
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise InvalidFileName("file name longer than 255 bytes: %r..." % name[:40])
    return name


def content_path(root: Path, sha1: str) -> Path:
    """Where a content-addressed directory keeps ``sha1``'s bytes:
    ``root/<sha1[:2]>/<sha1>`` (ValueError if it is not a sha1)."""
    if not is_sha1(sha1):
        raise ValueError("not a sha1: %r" % (sha1,))
    return Path(root) / sha1[:2] / sha1
