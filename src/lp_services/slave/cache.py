"""The agent's file cache: content under its sha1, filled by
``ensurepresent()`` downloads and by build results.

Layout is the file store's (``<root>/<sha1[:2]>/<sha1>``). Downloads stream
to a temporary file in the cache, are hashed as they come, and are renamed
into place only when the sha1 matches, so a reader never sees a partial or
wrong file. Concurrent requests for one sha1 share one download.
"""

import hashlib
import os
import tempfile
from base64 import b64encode
from pathlib import Path
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import (
    Agent, HTTPConnectionPool, PotentialDataLoss, RedirectAgent, ResponseDone)
from twisted.web.http_headers import Headers

from lp_services.protocol.names import content_path

__all__ = ["DownloadFailed", "FileCache", "INFO_CACHE", "INFO_DOWNLOAD",
           "INFO_NO_URL"]

INFO_NO_URL = "No URL"
INFO_CACHE = "Cache"
INFO_DOWNLOAD = "Download"

_CHUNK = 1 << 20


class DownloadFailed(Exception):
    """A download that did not give the wanted file; the message says why."""


class _BodyWriter(Protocol):
    """Streams a response body to an open file, hashing and counting."""

    def __init__(self, out, max_size: int, finished: defer.Deferred):
        self.out = out
        self.sha1 = hashlib.sha1()
        self.size = 0
        self.max_size = max_size
        self.finished = finished
        self.failed = None

    def dataReceived(self, data):
        if self.failed is not None:
            return
        self.size += len(data)
        if self.size > self.max_size:
            self.failed = DownloadFailed(
                "Download failed: file larger than %d bytes" % self.max_size)
            self.transport.stopProducing()
            return
        self.sha1.update(data)
        self.out.write(data)

    def connectionLost(self, reason):
        if self.finished.called:
            return
        if self.failed is not None:
            self.finished.errback(self.failed)
        elif reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(self.sha1.hexdigest())
        else:
            self.finished.errback(DownloadFailed(
                "Download failed: %s" % reason.getErrorMessage()))


class FileCache:
    """See the module docstring. Blocking helpers are marked as such."""

    log = Logger()

    def __init__(self, root: Path, reactor, max_file_size: int,
                 download_timeout: float):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._reactor = reactor
        self._max_file_size = max_file_size
        self._download_timeout = download_timeout
        self._inflight: dict[str, list[defer.Deferred]] = {}
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent = RedirectAgent(Agent(reactor, connectTimeout=60,
                                          pool=self._pool))

    def path_for(self, sha1: str) -> Path:
        """Where the content ``sha1`` lives (ValueError if not a sha1)."""
        return content_path(self.root, sha1)

    def has(self, sha1: str) -> bool:
        """Whether ``sha1`` is in the cache."""
        return self.path_for(sha1).exists()

    def remove(self, sha1: str) -> None:
        """Forget ``sha1`` (no error if it is not there)."""
        try:
            os.unlink(self.path_for(sha1))
        except FileNotFoundError:
            pass

    # -- ensurepresent ---------------------------------------------------

    def ensure_present(self, sha1: str, url: str | None,
                       username: str | None = None,
                       password: str | None = None) -> defer.Deferred:
        """Fire with ``[present, info]`` per the protocol; never errback."""
        if self.has(sha1):
            return defer.succeed([True, INFO_CACHE])
        if not url:
            return defer.succeed([False, INFO_NO_URL])
        waiter = defer.Deferred()
        waiters = self._inflight.get(sha1)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._inflight[sha1] = [waiter]
        d = self._download(sha1, url, username, password)
        d.addCallbacks(lambda _: [True, INFO_DOWNLOAD],
                       lambda f: [False, self._describe(f)])
        d.addCallback(self._release, sha1)
        return waiter

    def _describe(self, failure) -> str:
        if failure.check(DownloadFailed):
            return str(failure.value)
        reason = failure.getErrorMessage() or failure.type.__name__
        self.log.warn("download failed: {reason}", reason=reason)
        return "Download failed: %s" % reason

    def _release(self, result, sha1):
        for waiter in self._inflight.pop(sha1, []):
            waiter.callback(list(result))

    def _download(self, sha1, url, username, password) -> defer.Deferred:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return defer.fail(DownloadFailed(
                "Download failed: unsupported URL scheme %r" % parts.scheme))
        headers = Headers({b"User-Agent": [b"lp-services-buildslave"]})
        if username or password:
            token = b64encode(("%s:%s" % (username, password or ""))
                              .encode("utf-8")).decode("ascii")
            headers.addRawHeader(b"Authorization", "Basic " + token)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        out = os.fdopen(fd, "wb")
        state = {}

        def got_response(response):
            if response.code != 200:
                response.deliverBody(Protocol())
                raise DownloadFailed("Download failed: HTTP %d %s" % (
                    response.code,
                    response.phrase.decode("latin-1", "replace")))
            if isinstance(response.length, int) and \
                    response.length > self._max_file_size:
                response.deliverBody(Protocol())
                raise DownloadFailed("Download failed: file larger than "
                                     "%d bytes" % self._max_file_size)

            def cancel(_):
                writer.transport.stopProducing()

            finished = defer.Deferred(cancel)
            writer = _BodyWriter(out, self._max_file_size, finished)
            state["writer"] = writer
            response.deliverBody(writer)
            return finished

        def got_body(digest):
            out.close()
            if digest != sha1:
                raise DownloadFailed(
                    "Download failed: sha1 mismatch (expected %s, got %s)"
                    % (sha1, digest))
            final = self.path_for(sha1)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
            state["kept"] = True

        def cleanup(result):
            out.close()
            if not state.get("kept"):
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            return result

        try:
            d = self._agent.request(b"GET", url.encode("utf-8"), headers)
        except Exception as e:  # a URL the client cannot even parse
            out.close()
            os.unlink(tmp)
            return defer.fail(DownloadFailed("Download failed: %s" % e))
        d.addCallback(got_response)
        d.addCallback(got_body)
        d.addBoth(cleanup)
        d.addTimeout(self._download_timeout, self._reactor,
                     onTimeoutCancel=self._timed_out)
        return d

    def _timed_out(self, result, timeout):
        raise DownloadFailed("Download failed: no complete answer within "
                             "%g s" % timeout)

    # -- results ---------------------------------------------------------

    def add_fd(self, fd: int) -> tuple[str, int, bool]:
        """Copy the open file ``fd`` into the cache (blocking: call it in a
        thread). Return (sha1, size, whether it was new). Refuses files
        larger than the cache's file size cap (ValueError)."""
        sha1, size = hashlib.sha1(), 0
        tmp_fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".result-")
        try:
            with os.fdopen(tmp_fd, "wb") as out:
                while chunk := os.read(fd, _CHUNK):
                    size += len(chunk)
                    if size > self._max_file_size:
                        raise ValueError("result larger than %d bytes"
                                         % self._max_file_size)
                    sha1.update(chunk)
                    out.write(chunk)
            digest = sha1.hexdigest()
            final = self.path_for(digest)
            new = not final.exists()
            if new:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o644)
                os.replace(tmp, final)
                tmp = None
            return digest, size, new
        finally:
            if tmp is not None:
                os.unlink(tmp)

    def stop(self) -> defer.Deferred:
        """Close idle connections."""
        return self._pool.closeCachedConnections()
