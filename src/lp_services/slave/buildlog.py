"""A build's log file: step headers, output as it comes, a bounded size."""

import os
from pathlib import Path

from lp_services.clock import utcnow

__all__ = ["BuildLog", "LOGTAIL_SIZE"]

#: Bytes of the log's end that status() carries (the protocol's logtail).
LOGTAIL_SIZE = 2048


class BuildLog:
    """Appends to ``path``; readers (``/filecache/buildlog``) see it grow."""

    def __init__(self, path: Path, clock, max_size: int):
        self.path = Path(path)
        self._clock = clock
        self._max_size = max_size
        self._size = 0
        self._truncated = False
        self._file = open(self.path, "ab", buffering=0)

    def header(self, step: str) -> None:
        """Start a step: ``=== <step> (<UTC time>) ===``."""
        when = utcnow(self._clock).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.write(("\n=== %s (%s) ===\n" % (step, when)).encode())

    def line(self, text: str) -> None:
        """One line of the agent's own (not the build's) words."""
        self.write(("[agent] %s\n" % text).encode("utf-8", "replace"))

    def write(self, data: bytes) -> None:
        """Append ``data``; past the size cap, drop it with one note."""
        if self._file is None or not data:
            return
        room = self._max_size - self._size
        if room <= 0:
            if not self._truncated:
                self._truncated = True
                self._file.write(b"\n[agent] log limit reached; "
                                 b"further output dropped\n")
            return
        data = data[:room]
        self._file.write(data)
        self._size += len(data)

    def tail(self, size: int = LOGTAIL_SIZE) -> bytes:
        """The last ``size`` bytes written."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                end = f.tell()
                f.seek(max(0, end - size))
                return f.read(size)
        except FileNotFoundError:
            return b""

    def close(self) -> None:
        """Stop writing (the file stays until clean())."""
        if self._file is not None:
            self._file.close()
            self._file = None
