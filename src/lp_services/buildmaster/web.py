"""The buildmaster's HTTP site: the status pages, the file store for agents
and people, and the API.

- ``/``, ``/builds/<id>``, ``/jobs/<id>``, ``/work``, ``/metrics``: the
  read-only status site (:mod:`lp_services.web.site`).
- ``/files/<sha1>[/<name>]``: stored files (chroots, sources, logs,
  results); see :mod:`lp_services.filestore.web`. Restricted files
  (private work, API uploads) only to whoever may read them
  (:mod:`lp_services.filestore.access`).
- ``/api/v1/``: the authenticated API (:mod:`lp_services.api.app`).

Private work is shown only to its requester and to operators, who say
who they are with ``Authorization: Bearer <token>`` on any of these.

Bodies are bounded while they arrive (:class:`LimitedRequest`): up to
``upload_limit`` bytes (an upload to ``/api/v1/files/``); the rest of a
larger body is read and dropped, never stored, and the API answers 413.
A JSON body over 1 MiB is refused (413) when the API reads it.
"""

import base64

from twisted.internet import defer
from twisted.web import resource, server

from lp_services.api.app import ApiApp
from lp_services.auth.http import principal_of, viewer_of
from lp_services.auth.tokens import TokenError
from lp_services.database.sql import raw_cursor
from lp_services.filestore.access import agent_may_read, may_read
from lp_services.filestore.web import FileStoreResource

__all__ = ["DEFAULT_UPLOAD_LIMIT", "LimitedRequest", "build_site"]

#: Largest upload through the API unless configured otherwise (a source
#: package's orig tarball is rarely over a few hundred MiB).
DEFAULT_UPLOAD_LIMIT = 2 << 30


class LimitedRequest(server.Request):
    """A request whose body may not exceed the site's ``upload_limit``:
    past it the content is dropped as it arrives and ``lp_too_large`` is
    set (the API answers 413), so a huge or endless body costs no disk.
    (The method and path are not known yet while the body arrives, so the
    one bound is the largest upload's; the API refuses JSON bodies over
    1 MiB when it reads them.)"""

    lp_too_large = False
    _received = 0

    def _limit(self) -> int:
        return getattr(self.channel.site, "upload_limit",
                       DEFAULT_UPLOAD_LIMIT)

    def gotLength(self, length):
        if length is not None and length > self._limit():
            self.lp_too_large = True
            length = 0  # a small in-memory buffer: nothing will be kept
        super().gotLength(length)

    def handleContentChunk(self, data):
        self._received += len(data)
        if self.lp_too_large or self._received > self._limit():
            if not self.lp_too_large:
                self.lp_too_large = True
                self.content.seek(0)
                self.content.truncate()
            return
        super().handleContentChunk(data)


class _Unauthorized(Exception):
    http_status = 401


def _file_reader(farm):
    """``reader(request, sha1)`` for the file store: Basic credentials are
    an agent's for one build; a Bearer token (or none) is a person's."""
    def reader(request, sha1):
        header = (request.getHeader(b"authorization") or b"").decode(
            "latin-1")
        if header[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(
                    header[6:].strip(), validate=True).decode(
                        "utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""

            def check(store):
                cursor = raw_cursor(store)
                return (agent_may_read(cursor, sha1, user, password)
                        or may_read(cursor, sha1, None))
            return farm.transactor.run(check)
        if header and header[:7].lower() != "bearer ":
            return defer.fail(_Unauthorized(
                "Authorization must be Bearer (people) or Basic (agents)"))
        d = principal_of(farm.transactor, request, farm.now())

        def decide(principal):
            viewer = viewer_of(principal)
            return farm.transactor.run(
                lambda store: may_read(raw_cursor(store), sha1, viewer))

        def refused(failure):
            failure.trap(TokenError)
            raise _Unauthorized(str(failure.value))
        d.addCallbacks(decide, refused)
        return d
    return reader


def build_site(farm, manager, upload_limit: int = DEFAULT_UPLOAD_LIMIT
               ) -> server.Site:
    """The buildmaster's site."""
    from urllib.parse import quote

    from lp_services.web.site import make_status_resource

    def file_url(sha1, filename):
        # Read per call: the base URL is settled when the port is bound.
        return "%s/files/%s/%s" % (farm.config.files_url.rstrip("/"), sha1,
                                   quote(filename))

    root = make_status_resource(farm.transactor, file_url=file_url,
                                clock=farm.clock, file_store=farm.file_store)
    root.putChild(b"files", FileStoreResource(farm.file_store,
                                              _file_reader(farm)))
    api = resource.Resource()
    api.putChild(b"v1", ApiApp(farm).resource())
    root.putWritableChild(b"api", api)
    site = server.Site(root)
    site.requestFactory = LimitedRequest
    site.displayTracebacks = False
    site.upload_limit = upload_limit
    return site
