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

Each page reads in one transaction through the transactor (never on the
reactor thread) and is rendered to bytes before anything is written, so a
failure gives a clean 500 page. Links are relative to the mount point,
which each request works out from its path. Other resources can be added
beside the pages with ``putChild`` (e.g. the file store at ``files``).
"""

import json
from importlib import resources
from urllib.parse import quote

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.template import flattenString

from lp_services.metrics import REGISTRY, MetricsResource, OpsGauges
from lp_services.web import data, pages

__all__ = ["make_status_resource"]

_log = Logger()

_SECURITY_HEADERS = {
    # No inline script or style anywhere: even markup that escaped
    # escaping could not run.
    b"content-security-policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'"),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
}


def make_status_resource(transactor, file_url=None, clock=None,
                         registries=None, file_store=None):
    """The status site's root resource.

    :param transactor: a started ``lp_services.database.transactor.Transactor``.
    :param file_url: ``f(sha1, filename) -> url`` of a file in the
        buildmaster's file store (download links for logs and results), or
        None to show names and hashes without links.
    :param clock: IReactorTime spacing the metrics' ops refreshes (default
        the reactor).
    :param registries: what ``/metrics`` exposes besides the ops gauges
        (default ``[lp_services.metrics.REGISTRY]``).
    :param file_store: the buildmaster's ``FileStore``; when given, a
        finished build's page shows the end of its stored log.
    """
    if clock is None:
        from twisted.internet import reactor as clock
    gauges = OpsGauges(transactor, clock)
    metrics = MetricsResource(list(registries or [REGISTRY]) + [gauges],
                              refresh=gauges.refresh)
    return StatusRoot(_Context(transactor, file_url, file_store), metrics)


class _Context:
    def __init__(self, transactor, file_url, file_store):
        self.transactor = transactor
        self.file_url = file_url
        self.file_store = file_store


def _base(prepath: list, depth: int) -> str:
    """The mount point's URL path, ending in '/': ``prepath`` less the
    ``depth`` segments below the status root."""
    mount = prepath[:len(prepath) - depth]
    return "/" + "".join(quote(s.decode("utf-8", "replace")) + "/" for s in mount)


class _Page(Resource):
    """A page: load in the transactor, render to bytes, write once.

    Subclasses set ``depth`` (path segments below the status root) and
    implement ``load(request)`` -> Deferred of data and
    ``render_data(request, base, data)`` -> (code, tag or bytes).
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
        try:
            d = self.load(request)
        except data.BadFilter as error:
            return self._now(request, base, 400, "Bad request", str(error))
        d.addCallback(lambda loaded: self.render_data(request, base, loaded))
        d.addErrback(self._failed, request, base)
        d.addCallback(self._body)
        d.addCallback(self._write, request, gone)
        d.addErrback(self._last_resort, request, gone)
        return NOT_DONE_YET

    @staticmethod
    def _last_resort(failure, request, gone):
        """Even the error page failed: log it and answer in plain text."""
        _log.failure("writing a status page failed", failure)
        if gone or request.finished:
            return
        body = b"internal error\n"
        request.setResponseCode(500)
        _headers(request, b"text/plain; charset=utf-8", len(body))
        request.write(body)
        request.finish()

    def _failed(self, failure, request, base):
        from lp_services.work import UnknownWork

        if failure.check(UnknownWork):
            return 404, pages.error_page(base, 404, "Not found",
                                         str(failure.value))
        _log.failure("rendering {path} failed", failure,
                     path=request.path.decode("utf-8", "replace"))
        return 500, pages.error_page(
            base, 500, "Internal error",
            "The page could not be read from the database; the error is in "
            "the buildmaster's log.")

    @staticmethod
    def _body(result):
        code, body, *content_type = result
        if isinstance(body, bytes):
            return code, body, content_type[0]
        return flattenString(None, body).addCallback(
            lambda html: (code, b"<!DOCTYPE html>\n" + html,
                          b"text/html; charset=utf-8"))

    @staticmethod
    def _write(result, request, gone):
        code, body, content_type = result
        if gone:
            return
        request.setResponseCode(code)
        _headers(request, content_type, len(body))
        request.write(body)
        request.finish()

    def _now(self, request, base, code, title, message):
        """Render an error page synchronously."""
        html = []
        flattenString(None, pages.error_page(base, code, title, message)
                      ).addCallback(html.append)
        request.setResponseCode(code)
        body = b"<!DOCTYPE html>\n" + html[0]
        _headers(request, b"text/html; charset=utf-8", len(body))
        return body


def _headers(request, content_type, length):
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % length)
    request.setHeader(b"cache-control", b"no-store")
    for name, value in _SECURITY_HEADERS.items():
        request.setHeader(name, value)


class _NotFound(_Page):
    """Any path the site does not have."""

    def __init__(self, context, depth, what):
        super().__init__(context)
        self.depth = depth
        self.what = what

    def render_GET(self, request):
        base = _base(request.prepath, self.depth)
        return self._now(request, base, 404, "Not found", self.what)


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
    def load(self, request):
        return self.context.transactor.run(data.load_farm)

    def render_data(self, request, base, farm):
        return 200, pages.farm_page(base, farm)


class _WorkList(_Page):
    def load(self, request):
        filters, limit = data.parse_work_filters(request.args)
        self.filters, self.limit = filters, limit
        return self.context.transactor.run(data.load_work_list, filters, limit)

    def render_data(self, request, base, rows):
        return 200, pages.work_page(base, rows, self.filters,
                                    data.WORK_CHOICES, self.limit)


class _Work(_Page):
    """``builds/<id>`` or ``jobs/<id>``; the other kind redirects."""

    depth = 2

    def __init__(self, context, kind, job_id):
        super().__init__(context)
        self.kind = kind
        self.job_id = job_id

    def load(self, request):
        return self.context.transactor.run(
            data.load_job_page, self.job_id, self.context.file_url,
            self.context.file_store)

    def render_data(self, request, base, loaded):
        details, stored_log = loaded
        if details.kind != self.kind:
            where = base + ("builds/%d" if details.kind == "build"
                            else "jobs/%d") % details.id
            request.redirect(where.encode("utf-8"))
            return 302, b"see " + where.encode("utf-8") + b"\n", \
                b"text/plain; charset=utf-8"
        if details.kind == "build":
            return 200, pages.build_page(base, details, stored_log)
        return 200, pages.job_page(base, details)


class _LogJSON(_Page):
    """``builds/<id>/log.json``: the live log's poll."""

    depth = 3

    def __init__(self, context, job_id):
        super().__init__(context)
        self.job_id = job_id

    def load(self, request):
        return self.context.transactor.run(data.load_work, self.job_id)

    def render_data(self, request, base, details):
        if details.build is None:
            body = {"error": "job %d is not a build" % details.id}
            code = 404
        else:
            body, code = pages.log_json(details), 200
        return code, json.dumps(body).encode("utf-8"), \
            b"application/json"

    def _failed(self, failure, request, base):
        from lp_services.work import UnknownWork

        if failure.check(UnknownWork):
            message, code = str(failure.value), 404
        else:
            _log.failure("reading a build's log failed", failure)
            message, code = "internal error", 500
        return code, json.dumps({"error": message}).encode("utf-8"), \
            b"application/json"


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
            return _NotFound(self.context, 2, "no %s with id %s" % (
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
        return _NotFound(self.context, 3, "no such page")


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


class StatusRoot(Resource):
    """The status site's root; see the module docstring."""

    def __init__(self, context, metrics):
        super().__init__()
        self.context = context
        self.metrics = metrics
        self.static = _Static()

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
        return _NotFound(context, 1, "no page %s" % name.decode("utf-8", "replace"))

    def render_GET(self, request):
        # Mounted below the site root and asked for without the trailing
        # slash: relative links need it.
        request.redirect(request.path + b"/")
        return b""
