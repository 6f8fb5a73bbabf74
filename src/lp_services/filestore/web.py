"""The file store over HTTP (twisted.web).

``GET /files/<sha1>`` and ``GET /files/<sha1>/<name>`` serve the content
stored under that sha1 (agents fetch chroots and sources this way with
``ensurepresent``; people fetch logs and results). The optional name only
sets the download's file name.

Everything here was written by a build or fetched from wherever a recipe
pointed, and it is served from the buildmaster's own origin. So every
file, logs included and whatever its name, is served as a download that
no browser renders: ``application/octet-stream``, ``Content-Disposition:
attachment``, ``X-Content-Type-Options: nosniff`` and a ``sandbox`` CSP
(should a browser render it anyway, it runs no script and has no origin).

Who may read what is decided by ``reader(request, sha1)``, a Deferred
of True or False given by whoever mounts the store (the buildmaster
checks tokens and agents' build credentials against
:mod:`lp_services.filestore.access`); a file the asker may not read is
answered exactly as one the store does not have: 404.

Reading is done by ``twisted.web.static.File`` (a producer: the reactor
never blocks on a large file; HEAD works), after
:mod:`lp_services.filestore.ranges` has bounded and merged the request's
``Range`` (its own multi-range path would repeat overlapping bytes and
leaks the file when no range is satisfiable). Content is addressed by
sha1, so it is immutable and cacheable forever.
"""

import re
from urllib.parse import quote

from twisted.logger import Logger
from twisted.web import http, resource, server, static

from lp_services.filestore.ranges import (
    RangeNotSatisfiable, plan_ranges, range_header)
from lp_services.protocol.names import InvalidFileName, check_filename, is_sha1

_log = Logger()

__all__ = ["DOWNLOAD_HEADERS", "FileStoreResource", "content_disposition"]

# What a plain `filename=` may hold; anything else becomes "_" there (the
# exact name travels in `filename*`).
_PLAIN = re.compile(r"[^A-Za-z0-9._+-]")

#: Headers on every answer of the file store (files and errors alike).
DOWNLOAD_HEADERS = {
    b"x-content-type-options": b"nosniff",
    # Rendered anyway (a browser ignoring the disposition, a viewer),
    # a file is a sandboxed, script-less, origin-less document.
    b"content-security-policy": b"sandbox; default-src 'none'; "
                                b"frame-ancestors 'none'",
    b"referrer-policy": b"no-referrer",
}


def content_disposition(name: str | None) -> bytes:
    """``attachment`` with ``name`` as the file name (RFC 6266: a plain
    ASCII fallback, and the exact name percent-encoded in ``filename*``)."""
    if not name:
        return b"attachment"
    plain = _PLAIN.sub("_", name)
    return ('attachment; filename="%s"; filename*=UTF-8\'\'%s'
            % (plain, quote(name, safe=""))).encode("ascii")


def _security_headers(request):
    for header, value in DOWNLOAD_HEADERS.items():
        request.setHeader(header, value)


class _Missing(resource.Resource):
    isLeaf = True

    def __init__(self, code, message):
        super().__init__()
        self.code, self.message = code, message

    def render(self, request):
        request.setResponseCode(self.code)
        _security_headers(request)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return self.message.encode("utf-8") + b"\n"


class _StoredFile(resource.Resource):
    isLeaf = True

    def __init__(self, path, sha1=None, reader=None):
        super().__init__()
        self.path = path
        self.sha1 = sha1
        self.reader = reader

    def render_GET(self, request):
        _security_headers(request)
        if self.reader is None:
            return self._serve(request)
        d = self.reader(request, self.sha1)

        def answer(allowed):
            body = (self._serve(request) if allowed else
                    _Missing(404, "no such file").render(request))
            if body is not server.NOT_DONE_YET and not request.finished:
                request.write(body)
                request.finish()

        def failed(failure):
            code, message = getattr(failure.value, "http_status", None), None
            if code is None:
                _log.failure("checking who may read a file failed", failure)
                code, message = 500, "internal error"
            else:
                message = str(failure.value)
            if not request.finished:
                request.write(_Missing(code, message).render(request))
                request.finish()
        d.addCallback(answer)
        d.addErrback(failed)
        return server.NOT_DONE_YET

    def _serve(self, request):
        if request.postpath and request.postpath != [b""]:
            if len(request.postpath) > 1:
                return _Missing(404, "no such file").render(request)
            try:
                name = check_filename(request.postpath[0].decode("utf-8"))
            except (InvalidFileName, UnicodeDecodeError):
                return _Missing(404, "bad file name").render(request)
        else:
            name = None
        served = static.File(str(self.path),
                             defaultType="application/octet-stream")
        served.type, served.encoding = "application/octet-stream", None
        served.isLeaf = True
        if request.method == b"GET":
            try:
                ranges = plan_ranges(request.getHeader(b"range"),
                                     served.getFileSize())
            except RangeNotSatisfiable as error:
                request.setResponseCode(http.REQUESTED_RANGE_NOT_SATISFIABLE)
                request.setHeader(b"content-range",
                                  b"bytes */%d" % served.getFileSize())
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return ("%s\n" % error).encode("utf-8")
            if ranges is None:
                request.requestHeaders.removeHeader(b"range")
            else:
                request.requestHeaders.setRawHeaders(
                    b"range", [range_header(ranges)])
        drop_unreadable_date(request, b"if-modified-since")
        request.setHeader(b"content-disposition", content_disposition(name))
        request.setHeader(b"cache-control",
                          b"public, max-age=31536000, immutable")
        return served.render(request)

    render_HEAD = render_GET


def drop_unreadable_date(request, header: bytes) -> None:
    """Remove a date header Twisted cannot parse: its own parser raises on
    some malformed values (``If-Modified-Since: ;`` gave a 500), and a
    conditional request with an unreadable date is an unconditional one
    (RFC 9110, 13.1.3)."""
    value = request.getHeader(header)
    if value is None:
        return
    try:
        http.stringToDatetime(value.split(b";", 1)[0])
    except Exception:
        request.requestHeaders.removeHeader(header)


class FileStoreResource(resource.Resource):
    """``/files/``: see the module docstring."""

    def __init__(self, file_store, reader=None):
        """:param reader: ``reader(request, sha1)`` -> Deferred of whether
            the asker may read ``sha1`` (None: anybody may read anything,
            for a store behind a trusted network only). It may fail with
            an exception carrying ``http_status`` (a bad token: 401)."""
        super().__init__()
        self.file_store = file_store
        self.reader = reader

    def getChild(self, name, request):
        sha1 = name.decode("ascii", "replace")
        if not is_sha1(sha1):
            return _Missing(404, "not a sha1")
        path = self.file_store.path_for(sha1)
        if not path.is_file():
            return _Missing(404, "no such file")
        return _StoredFile(path, sha1, self.reader)

    def render_GET(self, request):
        _security_headers(request)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"GET /files/<sha1>[/<name>]\n"
