"""The read-only status site: one resource tree the buildmaster mounts.

:func:`make_status_resource` returns the root. Under wherever it is mounted
(normally the site root) it serves::

    /                     the farm: builders, queue, latest work
    /builds/<id>          a build: status, timeline, live log, result files
    /builds/<id>/log.json the live log's poll: log tail and status
    /jobs/<id>            a native job: status, attempts, errors, relations
    /work?kind=&status=&outcome=&type=&limit=
                          builds and jobs together, newest first
    /metrics              Prometheus metrics (lp_services.metrics)
    /static/...           the stylesheet and the live log's script

Each page reads in one transaction through the transactor, is built and
flattened to bytes in the reactor's thread pool (neither blocks the
reactor), and is written once, so a failure gives a clean 500 page. Links are relative to the mount point,
which each request works out from its path. Other resources can be added
beside the pages with ``putChild`` (e.g. the file store at ``files``).
"""

import json
from dataclasses import dataclass
from importlib import resources
from urllib.parse import quote

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.template import flattenString

from lp_services.metrics import REGISTRY, MetricsResource
from lp_services.ops.gauges import OpsGauges
from lp_services.web import data, pages

__all__ = ["SECURITY_HEADERS", "make_status_resource"]

_log = Logger()

#: Headers on every answer under the status root: pages, redirects,
#: errors, /metrics, /static and whatever is mounted beside them (the file
#: store replaces the CSP with its stricter sandbox).
SECURITY_HEADERS = {
    # No inline script or style anywhere: even markup that escaped
    # escaping could not run. No framing: no clickjacking.
    b"content-security-policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'"),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
}


def make_status_resource(transactor, file_url=None, clock=None,
                         registries=None, file_store=None, reactor=None):
    """The status site's root resource.

    :param transactor: a started ``lp_services.database.transactor.Transactor``.
    :param file_url: ``f(sha1, filename) -> url`` of a file in the
        buildmaster's file store (download links for logs and results), or
        None to show names and hashes without links.
    :param clock: IReactorTime spacing the metrics' ops refreshes and the
        farm charts' reads (default the reactor).
    :param registries: what ``/metrics`` exposes besides the ops gauges
        (default ``[lp_services.metrics.REGISTRY]``).
    :param file_store: the buildmaster's ``FileStore``; when given, a
        finished build's page shows the end of its stored log.
    :param reactor: the reactor whose thread pool renders pages (default
        the global reactor).
    """
    if reactor is None:
        from twisted.internet import reactor
    if clock is None:
        clock = reactor
    gauges = OpsGauges(transactor, clock)
    metrics = MetricsResource(list(registries or [REGISTRY]) + [gauges],
                              refresh=gauges.refresh)
    return StatusRoot(_Context(transactor, file_url, file_store, reactor,
                               data.ChartRows(clock), clock), metrics)


class _Context:
    def __init__(self, transactor, file_url, file_store, reactor, charts,
                 clock):
        self.transactor = transactor
        self.file_url = file_url
        self.file_store = file_store
        self.reactor = reactor
        self.charts = charts
        self.clock = clock

    def viewer(self, request):
        """A Deferred of who asks (``Authorization: Bearer``; anonymous
        without): what the pages show of private work. Fails with
        ``TokenError`` for a bad token."""
        from lp_services.auth.http import principal_of, viewer_of
        from lp_services.clock import utcnow

        d = principal_of(self.transactor, request, utcnow(self.clock))
        d.addCallback(viewer_of)
        return d

    def in_thread(self, function, *args):
        """Run CPU-bound ``function`` (page building and flattening) in the
        reactor's thread pool: a farm page of hundreds of builders takes
        long enough to render that the scanners should not wait for it."""
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                 function, *args)


def _base(prepath: list, depth: int) -> str:
    """The mount point's URL path, ending in '/': ``prepath`` less the
    ``depth`` segments below the status root."""
    mount = prepath[:len(prepath) - depth]
    return "/" + "".join(quote(s.decode("utf-8", "replace")) + "/" for s in mount)


@dataclass(frozen=True)
class _Reply:
    """A response, complete before anything is written."""

    code: int
    body: bytes
    content_type: bytes = b"text/html; charset=utf-8"
    location: str | None = None


def _html(code: int, tag) -> _Reply:
    """Flatten ``tag`` (plain tags flatten synchronously) into a reply."""
    out = []
    flattenString(None, tag).addBoth(out.append)
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return _Reply(code, b"<!DOCTYPE html>\n" + out[0])


def _error(base: str, code: int, title: str, message: str) -> _Reply:
    return _html(code, pages.error_page(base, code, title, message))


class _Page(Resource):
    """A page: load in the transactor, build and flatten it in a thread,
    write it once.

    Subclasses set ``depth`` (path segments below the status root) and
    implement ``load(request, viewer)`` -> Deferred of data (it may raise
    ``BadFilter``; ``viewer`` is who asks, see
    ``lp_services.ops.work.may_see``) and ``reply(base, data)`` -> :class:`_Reply` or a
    ``(code, tag)`` pair; ``reply`` runs in a thread and must not touch
    the request.
    """

    isLeaf = True
    depth = 1

    def __init__(self, context):
        super().__init__()
        self.context = context

    def render_GET(self, request):
        base = _base(request.prepath, self.depth)
        gone = []
        request.notifyFinish().addErrback(gone.append)
        d = self.context.viewer(request)
        d.addCallback(lambda viewer: self.load(request, viewer))
        d.addCallback(lambda loaded: self.context.in_thread(
            self._reply, base, loaded))
        d.addErrback(self.failed, request, base)
        d.addCallback(self._write, request, gone)
        d.addErrback(self._last_resort, request, gone)
        return NOT_DONE_YET

    def _reply(self, base, loaded) -> _Reply:
        reply = self.reply(base, loaded)
        if isinstance(reply, _Reply):
            return reply
        return _html(*reply)

    def failed(self, failure, request, base) -> _Reply:
        """The reply when loading or rendering failed."""
        from lp_services.auth.tokens import TokenError
        from lp_services.ops.work import UnknownWork

        if failure.check(UnknownWork):
            return _error(base, 404, "Not found", str(failure.value))
        if failure.check(data.BadFilter):
            return _error(base, 400, "Bad request", str(failure.value))
        if failure.check(TokenError):
            return _error(base, 401, "Unauthorized", str(failure.value))
        _log.failure("rendering {path} failed", failure,
                     path=request.path.decode("utf-8", "replace"))
        return _error(base, 500, "Internal error",
                      "The page could not be read from the database; the "
                      "error is in the buildmaster's log.")

    @staticmethod
    def _write(reply, request, gone):
        if gone:
            return
        _start(request, reply)
        request.write(reply.body)
        request.finish()

    @staticmethod
    def _last_resort(failure, request, gone):
        """Even the error page failed: log it and answer in plain text."""
        _log.failure("writing a status page failed", failure)
        if gone or request.finished:
            return
        _Page._write(_Reply(500, b"internal error\n",
                            b"text/plain; charset=utf-8"), request, gone)


def _start(request, reply: _Reply):
    """Response code and headers of ``reply``."""
    request.setResponseCode(reply.code)
    if reply.location is not None:
        request.redirect(reply.location.encode("utf-8"))
    _headers(request, reply.content_type, len(reply.body))


def _headers(request, content_type, length):
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % length)
    request.setHeader(b"cache-control", b"no-store")


def _security_headers(request):
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


class _NotFound(Resource):
    """Any path the site does not have."""

    isLeaf = True

    def __init__(self, depth, what):
        super().__init__()
        self.depth = depth
        self.what = what

    def render_GET(self, request):
        reply = _error(_base(request.prepath, self.depth), 404, "Not found",
                       self.what)
        _start(request, reply)
        return reply.body


class _Redirect(Resource):
    isLeaf = True

    def __init__(self, location: str):
        super().__init__()
        self.location = location

    def render_GET(self, request):
        request.redirect(self.location.encode("utf-8"))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"see " + self.location.encode("utf-8") + b"\n"


class _Farm(_Page):
    def load(self, request, viewer):
        return self.context.transactor.run(data.load_farm,
                                           charts=self.context.charts,
                                           viewer=viewer)

    def reply(self, base, farm):
        return 200, pages.farm_page(base, farm)


class _WorkList(_Page):
    def load(self, request, viewer):
        filters, limit = data.parse_work_filters(request.args)
        self.filters, self.limit = filters, limit
        return self.context.transactor.run(data.load_work_list, filters, limit,
                                           viewer)

    def reply(self, base, rows):
        return 200, pages.work_page(base, rows, self.filters,
                                    data.WORK_CHOICES, self.limit)


class _Work(_Page):
    """``builds/<id>`` or ``jobs/<id>``; the other kind redirects."""

    depth = 2

    def __init__(self, context, kind, job_id):
        super().__init__(context)
        self.kind = kind
        self.job_id = job_id

    def load(self, request, viewer):
        return self.context.transactor.run(
            data.load_job_page, self.job_id, self.context.file_url,
            self.context.file_store, viewer)

    def reply(self, base, loaded):
        details, stored_log = loaded
        if details.kind != self.kind:
            where = base + ("builds/%d" if details.kind == "build"
                            else "jobs/%d") % details.id
            return _Reply(302, b"see " + where.encode("utf-8") + b"\n",
                          b"text/plain; charset=utf-8", location=where)
        if details.kind == "build":
            return 200, pages.build_page(base, details, stored_log)
        return 200, pages.job_page(base, details)


class _LogJSON(_Page):
    """``builds/<id>/log.json``: the live log's poll."""

    depth = 3

    def __init__(self, context, job_id):
        super().__init__(context)
        self.job_id = job_id

    def load(self, request, viewer):
        return self.context.transactor.run(data.load_work, self.job_id, None,
                                           viewer)

    def reply(self, base, details):
        if details.build is None:
            return self._json(404, {"error": "job %d is not a build" % details.id})
        return self._json(200, pages.log_json(details))

    def failed(self, failure, request, base):
        from lp_services.ops.work import UnknownWork

        from lp_services.auth.tokens import TokenError

        if failure.check(UnknownWork):
            return self._json(404, {"error": str(failure.value)})
        if failure.check(TokenError):
            return self._json(401, {"error": str(failure.value)})
        _log.failure("reading a build's log failed", failure)
        return self._json(500, {"error": "internal error"})

    @staticmethod
    def _json(code, body) -> _Reply:
        return _Reply(code, json.dumps(body).encode("utf-8"), b"application/json")


def _job_id(segment: bytes) -> int | None:
    """A path segment as a job id (digits only, in bigint range)."""
    if not segment.isdigit() or len(segment) > 18:
        return None
    return int(segment)


class _Collection(Resource):
    """``builds/`` or ``jobs/``: children are ids."""

    def __init__(self, context, kind):
        super().__init__()
        self.context = context
        self.kind = kind

    def getChild(self, name, request):
        job_id = _job_id(name)
        if job_id is None:
            if name == b"":
                return _Redirect("../work?kind=%s" % self.kind)
            return _NotFound(2, "no %s with id %s" % (
                self.kind, name.decode("utf-8", "replace")))
        return _WorkItem(self.context, self.kind, job_id)

    def render_GET(self, request):
        request.redirect(b"work?kind=" + self.kind.encode())
        return b""


class _WorkItem(_Work):
    """``builds/<id>`` and what lies below it (``log.json``)."""

    isLeaf = False

    def getChild(self, name, request):
        if name == b"log.json" and self.kind == "build":
            return _LogJSON(self.context, self.job_id)
        return _NotFound(3, "no such page")


class _Static(Resource):
    """The stylesheet and script, read once from the package."""

    isLeaf = True
    _TYPES = {"status.css": b"text/css; charset=utf-8",
              "status.js": b"text/javascript; charset=utf-8"}

    def __init__(self):
        super().__init__()
        self._cache = {}

    def render_GET(self, request):
        name = request.postpath[0].decode("ascii", "replace") \
            if len(request.postpath) == 1 else ""
        if name not in self._TYPES:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        if name not in self._cache:
            self._cache[name] = resources.files("lp_services.web").joinpath(
                "static", name).read_bytes()
        body = self._cache[name]
        _headers(request, self._TYPES[name], len(body))
        request.setHeader(b"cache-control", b"max-age=300")
        return body


_READ_METHODS = (b"GET", b"HEAD")


class _ReadOnly(Resource):
    """Any other method, anywhere: 405 (Twisted's default for a method it
    does not know is a 501, a server error for a client's mistake)."""

    isLeaf = True

    def render(self, request):
        request.setResponseCode(405)
        request.setHeader(b"allow", b"GET, HEAD")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"the site is read-only: GET or HEAD\n"


class StatusRoot(Resource):
    """The status site's root; see the module docstring."""

    def __init__(self, context, metrics):
        super().__init__()
        self.context = context
        self.metrics = metrics
        self.static = _Static()
        self.writable = set()

    def putWritableChild(self, path: bytes, child) -> None:
        """Mount ``child`` at ``path`` for every method (the API); the
        rest of the site stays read-only."""
        self.putChild(path, child)
        self.writable.add(path)

    def getChildWithDefault(self, name, request):
        # Every request below the root passes here first, so every answer
        # (children added with putChild and Twisted's own errors too)
        # carries the security headers.
        _security_headers(request)
        if request.method not in _READ_METHODS and name not in self.writable:
            return _ReadOnly()
        return super().getChildWithDefault(name, request)

    def render(self, request):
        _security_headers(request)
        if request.method not in _READ_METHODS:
            return _ReadOnly().render(request)
        return super().render(request)

    def getChild(self, name, request):
        context = self.context
        if name == b"":
            return _Farm(context)
        if name == b"builds":
            return _Collection(context, "build")
        if name == b"jobs":
            return _Collection(context, "native")
        if name == b"work":
            return _WorkList(context)
        if name == b"metrics":
            return self.metrics
        if name == b"static":
            return self.static
        return _NotFound(1, "no page %s" % name.decode("utf-8", "replace"))

    def render_GET(self, request):
        # Mounted below the site root and asked for without the trailing
        # slash: relative links need it.
        request.redirect(request.path + b"/")
        return b""
