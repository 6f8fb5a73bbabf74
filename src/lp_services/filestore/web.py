"""The file store over HTTP (twisted.web).

``GET /files/<sha1>`` and ``GET /files/<sha1>/<name>`` serve the content
stored under that sha1 (agents fetch chroots and sources this way with
``ensurepresent``; people fetch logs and results). The optional name only
sets the download's file name and type. Reading is done by
``twisted.web.static.File`` (a producer: the reactor never blocks on a
large file; Range and HEAD work). Content is addressed by sha1, so it is
immutable and cacheable forever.
"""

import mimetypes
import re

from twisted.web import resource, static

from lp_services.filestore.store import InvalidFileName, check_filename

__all__ = ["FileStoreResource"]

_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class _Missing(resource.Resource):
    isLeaf = True

    def __init__(self, code, message):
        super().__init__()
        self.code, self.message = code, message

    def render(self, request):
        request.setResponseCode(self.code)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return self.message.encode("utf-8") + b"\n"


class _StoredFile(resource.Resource):
    isLeaf = True

    def __init__(self, path, name):
        super().__init__()
        self.path, self.name = path, name

    def render(self, request):
        if request.postpath and request.postpath != [b""]:
            try:
                name = check_filename(request.postpath[0].decode("utf-8"))
            except (InvalidFileName, UnicodeDecodeError):
                return _Missing(404, "bad file name").render(request)
            if len(request.postpath) > 1:
                return _Missing(404, "no such file").render(request)
        else:
            name = None
        content_type = "application/octet-stream"
        if name:
            guessed, encoding = mimetypes.guess_type(name)
            if guessed and not encoding:
                content_type = guessed
            if content_type.startswith("text/"):
                content_type += "; charset=utf-8"
        request.setHeader(b"Cache-Control", b"public, max-age=31536000, "
                          b"immutable")
        served = static.File(str(self.path), defaultType=content_type)
        served.type = content_type
        served.encoding = None
        served.isLeaf = True
        return served.render(request)


class FileStoreResource(resource.Resource):
    """``/files/``: see the module docstring."""

    def __init__(self, file_store):
        super().__init__()
        self.file_store = file_store

    def getChild(self, name, request):
        sha1 = name.decode("ascii", "replace")
        if not _SHA1.match(sha1):
            return _Missing(404, "not a sha1")
        path = self.file_store.path_for(sha1)
        if not path.is_file():
            return _Missing(404, "no such file")
        return _StoredFile(path, None)

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"GET /files/<sha1>[/<name>]\n"
