"""A build's log file: step headers, output as it comes, a bounded size.

Two voices write it, and a reader must always tell them apart:

- **The agent's lines** start with ``[agent] `` or ``=== `` at the start of
  a line. They are written whole (an agent line after a half-written build
  line starts on a new line), with control characters replaced (a build
  cannot smuggle a newline into them through a name or a dependency text)
  and at most :data:`MAX_LINE` characters long.
- **The build's output** is written as it comes, except that a line of it
  that would start with one of those markers is prefixed with ``[build] ``
  (``\\r`` counts as a line end too, as terminals show it). So a line that
  starts with ``[agent] `` or ``=== `` is always the agent's.

Size: the build's output stops at ``max_size`` bytes (one note says so);
the agent's lines may use :data:`AGENT_RESERVE` bytes more, and the closing
lines (``final=True``: the result) :data:`FINAL_RESERVE` beyond that, so
they are always there, whatever the build printed. The file never exceeds
``max_size + AGENT_RESERVE + FINAL_RESERVE`` bytes.

Private archives (``scrub=True``, from the build's ``archive_private``
argument, as launchpad-buildd does): credentials are removed from every
line before it is written, so neither the log tail nor the stored log ever
holds them: URL userinfo (``scheme://user:password@host`` becomes
``scheme://host``) and ``,proxyauth=user:token`` suffixes. The build's
output is then written a whole line at a time (a partial line is held
until its end, or until :data:`SCRUB_HOLD` bytes).

Errors: writing never raises. A write the disk refuses (``ENOSPC``, ``EIO``)
is counted; the next write that succeeds is preceded by an agent line
saying how many bytes were lost and why, so a full disk cannot wedge the
agent, and a freed disk is used again at once.
"""

import os
import re
from pathlib import Path

from twisted.logger import Logger

from lp_services.clock import utcnow

__all__ = ["AGENT_RESERVE", "BuildLog", "FINAL_RESERVE", "LOGTAIL_SIZE",
           "MAX_LINE", "scrub_credentials"]

#: Bytes of the log's end that status() carries (the protocol's logtail).
LOGTAIL_SIZE = 2048
#: Room past the cap for the agent's own lines.
AGENT_RESERVE = 1 << 20
#: Room past that for the closing lines (the result).
FINAL_RESERVE = 16 << 10
#: Longest agent line, in characters.
MAX_LINE = 4096

_MARKERS = (b"[agent]", b"=== ")
_ESCAPE = b"[build] "
_AT_LINE_START = re.compile(rb"(?<=[\r\n])(?=\[agent\]|=== )")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


#: A private build's partial output line is held at most this long.
SCRUB_HOLD = 64 << 10
# launchpad-buildd's patterns: userinfo with a password in a URL, and a
# proxy token appended to an apt source line.
_URL_USERINFO = re.compile(rb"://[^:@/\s]*:[^@/\s]+@")
_PROXYAUTH = re.compile(rb",proxyauth=[^\s:]+:[A-Za-z0-9._~+/=-]+")


def scrub_credentials(data: bytes) -> bytes:
    """``data`` without URL userinfo or ``,proxyauth=`` tokens."""
    return _PROXYAUTH.sub(b"", _URL_USERINFO.sub(b"://", data))


def _could_be_marker(tail: bytes) -> bool:
    return any(m.startswith(tail) for m in _MARKERS)


class BuildLog:
    """Appends to ``path``; readers (``/filecache/buildlog``) see it grow."""

    log = Logger()

    def __init__(self, path: Path, clock, max_size: int,
                 scrub: bool = False):
        self.path = Path(path)
        self._scrub = scrub
        self._unscrubbed = b""  # a private build's partial line
        self._clock = clock
        self._max_size = max_size
        self._size = 0
        self._truncated = False
        self._line_start = True
        self._held = b""      # a line start that may become a marker
        self._lost = 0        # bytes the disk refused since the last note
        self._lost_reason = ""
        self._file = open(self.path, "ab", buffering=0)

    def header(self, step: str, final: bool = False) -> None:
        """Start a step: ``=== <step> (<UTC time>) ===``."""
        when = utcnow(self._clock).strftime("%Y-%m-%d %H:%M:%S UTC")
        self._agent("\n=== %s (%s) ===\n" % (self._clean(step), when), final)

    def line(self, text: str, final: bool = False) -> None:
        """One line of the agent's own (not the build's) words."""
        self._agent("[agent] %s\n" % self._clean(text), final)

    def write(self, data: bytes) -> None:
        """Append the build's output ``data`` (escaped, see the module
        docstring); past the size cap, drop it with one note."""
        if self._file is None or not data:
            return
        if self._scrub:
            data = self._scrubbed_lines(data)
            if not data:
                return
        data = self._escape(data)
        if not data:
            return
        room = self._max_size - self._size
        if room <= 0:
            if not self._truncated:
                self._truncated = True
                self.line("log limit reached (%d bytes); further build "
                          "output dropped" % self._max_size)
            return
        data = data[:room]
        self._put(data)
        if data:
            self._line_start = data[-1:] in (b"\n", b"\r")

    def tail(self, size: int = LOGTAIL_SIZE) -> bytes:
        """The last ``size`` bytes written."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                end = f.tell()
                f.seek(max(0, end - size))
                return f.read(size)
        except OSError:
            return b""

    def close(self) -> None:
        """Stop writing (the file stays until clean())."""
        if self._file is not None:
            if self._unscrubbed:
                rest, self._unscrubbed = self._unscrubbed, b""
                self._scrub = False  # already held: write it scrubbed now
                self.write(scrub_credentials(rest))
            if self._held:
                self._put(self._held)
                self._held = b""
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    # -- internals -------------------------------------------------------

    @staticmethod
    def _clean(text: str) -> str:
        text = _CONTROL.sub("\ufffd", str(text))
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + "..."
        return text

    def _scrubbed_lines(self, data: bytes) -> bytes:
        """The complete lines of held + ``data``, scrubbed; the rest held
        (a URL may be split across writes)."""
        data = self._unscrubbed + data
        last = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if last < 0 and len(data) < SCRUB_HOLD:
            self._unscrubbed = data
            return b""
        if last < 0:
            last = len(data) - 1
        self._unscrubbed = data[last + 1:]
        return scrub_credentials(data[:last + 1])

    def _escape(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        last = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if last >= 0 or self._line_start:
            tail = data[last + 1:]
            if tail and len(tail) < 7 and _could_be_marker(tail):
                # Not yet known whether this line starts with a marker.
                self._held, data = tail, data[:last + 1]
        starts_marked = self._line_start and data.startswith(_MARKERS)
        data = _AT_LINE_START.sub(_ESCAPE, data)
        return _ESCAPE + data if starts_marked else data

    def _agent(self, text: str, final: bool) -> None:
        if self._file is None:
            return
        if self._held:
            self._put(self._held)  # a partial build line: ended below
            self._held = b""
            self._line_start = False
        if self._unscrubbed:
            # A private build's partial line: scrubbed and ended below.
            rest, self._unscrubbed = self._unscrubbed, b""
            self._put(self._escape(scrub_credentials(rest)))
            self._line_start = False
        if self._held:
            self._put(self._held)
            self._held = b""
            self._line_start = False
        data = text.encode("utf-8", "replace")
        if self._scrub:
            data = scrub_credentials(data)
        if not self._line_start:
            data = b"\n" + data
        limit = self._max_size + AGENT_RESERVE
        if final:
            limit += FINAL_RESERVE
        room = limit - self._size
        if len(data) > room:
            return
        self._put(data)
        self._line_start = True

    def _put(self, data: bytes) -> None:
        """Write all of ``data`` or count what was not written as lost;
        never raise."""
        if self._lost:
            note = ("[agent] %d bytes of the log were lost: %s\n"
                    % (self._lost, self._lost_reason)).encode()
            if not self._line_start:
                note = b"\n" + note
            if self._write_all(note):
                self._lost += len(data)
                return
            self._lost = 0
        self._lost += self._write_all(data)

    def _write_all(self, data: bytes) -> int:
        """Write ``data``; return how many bytes could not be written."""
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                self._size += written
                view = view[written:]
        except OSError as e:
            if not self._lost:
                self.log.warn("build log {path}: {error}", path=self.path,
                              error=e.strerror)
            self._lost_reason = e.strerror or str(e)
            return len(view)
        return 0
