"""``/api/v1/``: the farm's operations over HTTP, as JSON, for tokens.

Routing is Klein's (the Twisted project's web micro-framework: routes with
typed path segments on top of twisted.web, handlers may return
Deferreds); request bodies are checked by the pydantic models of
:mod:`lp_services.api.models`; what each operation may do and to whom is
:mod:`lp_services.api.actions`. Every request is authenticated first
(``Authorization: Bearer lp_...``; none is anonymous), in its own
transaction; the operation then runs in one transaction, rolled back on
any refusal. Answers are JSON, errors too: ``{"error", "status",
"field"?}`` with 400 (bad JSON or field), 401 (no or bad token), 403
(role), 404 (unknown, or private work the caller may not see), 409
(wrong state), 413 (too large) and 503 (the database is unreachable:
nothing was done). The routes and their least roles are listed once, in
:data:`lp_services.api.openapi.OPERATIONS`; a test holds the two to
each other.
"""

from __future__ import annotations

import functools
import json

from klein import Klein
from pydantic import ValidationError
from twisted.internet import task
from twisted.logger import Logger
from werkzeug import exceptions as http_errors

from lp_services.api import actions, models
from lp_services.api.errors import ApiError, BadRequest, TooLarge, Unauthorized
from lp_services.auth.http import principal_of
from lp_services.auth.tokens import TokenError
from lp_services.database.sql import raw_cursor

__all__ = ["API_BODY_LIMIT", "ApiApp"]

_log = Logger()

#: Largest JSON body the API reads.
API_BODY_LIMIT = 1 << 20
#: Longest a log request waits for news (``?wait=``), in seconds.
LOG_WAIT_MAX = 30
#: How often a waiting log request looks again.
LOG_POLL = 1.0


@functools.cache
def _version() -> str:
    """The installed package's version (read from its metadata once)."""
    from importlib.metadata import version

    return version("lp-services")


def _json(request, code: int, value) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, indent=1, sort_keys=True,
                      default=str).encode("utf-8") + b"\n"


def _int_arg(request, name: str, default=None, low=None, high=None):
    values = request.args.get(name.encode())
    if not values:
        return default
    raw = values[-1].decode("ascii", "replace")
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest("%s must be a whole number" % name,
                         field="query.%s" % name)
    value = int(raw)
    too_low = low is not None and value < low
    if too_low or (high is not None and value > high):
        raise BadRequest("%s must be from %s to %s" % (name, low, high),
                         field="query.%s" % name)
    return value


def _str_arg(request, name: str):
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("%s is not UTF-8" % name,
                         field="query.%s" % name) from None


def _body(request, model):
    """The request body checked by ``model``. :raises BadRequest:"""
    raw = b""
    if request.content is not None:
        request.content.seek(0)
        raw = request.content.read(API_BODY_LIMIT + 1)
    if getattr(request, "lp_too_large", False) or len(raw) > API_BODY_LIMIT:
        raise TooLarge("the body is over %d bytes" % API_BODY_LIMIT)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "json_invalid":
            raise BadRequest("the body is not JSON: %s" % first["msg"],
                             field="body") from None
        raise BadRequest("%s: %s" % (where or "body", first["msg"]),
                         field="body" + ("." + where if where else "")) \
            from None


class ApiApp:
    """The API's routes, bound to a buildmaster's farm."""

    app = Klein()

    def __init__(self, farm):
        self.farm = farm

    def resource(self):
        return self.app.resource()

    # -- plumbing ------------------------------------------------------------

    def _now(self):
        return self.farm.now()

    def _file_url(self, sha1, filename):
        from urllib.parse import quote

        return "%s/files/%s/%s" % (self.farm.config.files_url.rstrip("/"),
                                   sha1, quote(filename))

    def _principal(self, request):
        """A Deferred of the request's principal (None: anonymous); a bad
        token fails it with Unauthorized."""
        def refused(failure):
            failure.trap(TokenError)
            raise Unauthorized(str(failure.value))
        return principal_of(self.farm.transactor, request,
                            self._now()).addErrback(refused)

    async def _run(self, request, function, *args):
        """``function(cursor, principal, *args)`` in one transaction."""
        principal = await self._principal(request)
        return await self.farm.transactor.run(
            lambda store: function(raw_cursor(store), principal, *args))

    # -- errors --------------------------------------------------------------

    @app.handle_errors(ApiError)
    def _api_error(self, request, failure):
        return _json(request, failure.value.status, failure.value.as_json())

    @app.handle_errors(http_errors.HTTPException)
    def _routing_error(self, request, failure):
        error = failure.value
        if isinstance(error, http_errors.MethodNotAllowed):
            request.setHeader(b"allow", ", ".join(
                error.valid_methods or ()).encode("ascii"))
        return _json(request, error.code or 404, {
            "error": error.description or error.name,
            "status": error.code or 404})

    @app.handle_errors(Exception)
    def _internal_error(self, request, failure):
        import psycopg2

        if failure.check(psycopg2.OperationalError, psycopg2.InterfaceError):
            # The database went away (the transactor's retries are spent):
            # nothing was done; the client may try again.
            _log.warn("API request {path}: database unavailable: {error}",
                      path=request.path.decode("utf-8", "replace"),
                      error=failure.getErrorMessage())
            request.setHeader(b"retry-after", b"10")
            return _json(request, 503, {
                "error": "the database is unavailable; nothing was done, "
                         "try again", "status": 503})
        _log.failure("API request {path} failed", failure,
                     path=request.path.decode("utf-8", "replace"))
        return _json(request, 500, {"error": "internal error; see the "
                                    "buildmaster's log", "status": 500})

    # -- the index and the description --------------------------------------

    @app.route("/", methods=["GET"])
    async def index(self, request):
        principal = await self._principal(request)
        return _json(request, 200, {
            "version": _version(),
            "principal": principal.name if principal else None,
            "role": principal.role if principal else None,
            "links": {"openapi": "openapi.json", "work": "work",
                      "builders": "builders", "jobs": "jobs"}})

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request):
        from lp_services.api.openapi import description

        return _json(request, 200, description())

    # -- work ----------------------------------------------------------------

    @app.route("/work", methods=["GET"])
    async def work_list(self, request):
        limit = _int_arg(request, "limit", 50, 1, 500)
        before = _int_arg(request, "before", None, 1)
        known = {b"kind", b"status", b"outcome", b"type", b"limit",
                 b"before"}
        for name in request.args:
            if name not in known:
                raise BadRequest("unknown query argument %r" % name.decode(
                    "utf-8", "replace"), field="query")
        filters = {name: _str_arg(request, name)
                   for name in ("kind", "status", "outcome", "type")}
        if filters["status"]:
            filters["status"] = filters["status"].upper()
        rows = await self._run(request, lambda c, p: actions.list_work(
            c, p, before=before, limit=limit, **filters))
        from lp_services.ops.reports import jsonable

        items = [{k: jsonable(v) for k, v in row.items()} for row in rows]
        next_page = None
        if len(items) == limit:
            from urllib.parse import urlencode

            query = {k: v for k, v in filters.items() if v}
            query.update(limit=limit, before=items[-1]["id"])
            next_page = "work?" + urlencode(query)
        return _json(request, 200, {"items": items, "next": next_page})

    @app.route("/work/<int:job_id>", methods=["GET"])
    async def work(self, request, job_id):
        return _json(request, 200, await self._run(
            request, actions.get_work, job_id, self._file_url))

    @app.route("/work/<int:job_id>/cancel", methods=["POST"])
    async def cancel(self, request, job_id):
        return _json(request, 200, await self._run(
            request, actions.cancel_work, job_id, self._now()))

    @app.route("/work/<int:job_id>/retry", methods=["POST"])
    async def retry(self, request, job_id):
        return _json(request, 200, await self._run(
            request, actions.retry_work, job_id, self._now()))

    @app.route("/work/<int:job_id>/rescore", methods=["POST"])
    async def rescore(self, request, job_id):
        body = _body(request, models.RescoreRequest)
        return _json(request, 200, await self._run(
            request, actions.rescore_build, job_id, body.score, self._now()))

    @app.route("/work/<int:job_id>/log", methods=["GET"])
    async def log(self, request, job_id):
        offset = _int_arg(request, "offset", 0, 0)
        wait = _int_arg(request, "wait", 0, 0, LOG_WAIT_MAX)
        store = self.farm.file_store
        principal = await self._principal(request)

        def read():
            return self.farm.transactor.run(lambda s: actions.build_log(
                raw_cursor(s), principal, job_id, store, offset))
        answer = await read()
        deadline = self.farm.clock.seconds() + wait
        first = answer
        # Long poll: answer at once when there is news (text past the
        # offset, a changed live tail, the end), else look again every
        # LOG_POLL seconds until ``wait`` has passed.
        while (not answer["finished"] and self.farm.clock.seconds() < deadline
               and (answer["text"] == "" or answer["live"])
               and answer == first):
            await task.deferLater(self.farm.clock, LOG_POLL, lambda: None)
            answer = await read()
        return _json(request, 200, answer)

    @app.route("/builds", methods=["POST"])
    async def request_build(self, request):
        body = _body(request, models.BuildRequest)
        job_id = await self._run(request, actions.request_build, body,
                                 self._now())
        return _json(request, 201, {"id": job_id, "url": "work/%d" % job_id})

    @app.route("/recipes", methods=["POST"])
    async def request_recipe(self, request):
        body = _body(request, models.RecipeRequest)
        job_id = await self._run(request, actions.request_recipe, body,
                                 self._now())
        return _json(request, 201, {"id": job_id, "url": "work/%d" % job_id})

    @app.route("/jobs", methods=["POST"])
    async def request_job(self, request):
        body = _body(request, models.JobRequest)
        job_id = await self._run(request, actions.request_job, body,
                                 self._now())
        return _json(request, 201, {"id": job_id, "url": "work/%d" % job_id})

    @app.route("/jobs", methods=["GET"])
    async def job_list(self, request):
        limit = _int_arg(request, "limit", 50, 1, 500)
        status, job_type = _str_arg(request, "status"), _str_arg(request,
                                                                 "type")
        items = await self._run(request, lambda c, p: actions.list_jobs(
            c, p, status=status, job_type=job_type, limit=limit))
        return _json(request, 200, {"items": items})

    # -- builders ------------------------------------------------------------

    @app.route("/builders", methods=["GET"])
    async def builders(self, request):
        rows = await self._run(request, actions.list_builders, self._now())
        return _json(request, 200, {"items": rows})

    @app.route("/builders/<string:name>/mode", methods=["POST"])
    async def builder_mode(self, request, name):
        body = _body(request, models.BuilderModeRequest)
        return _json(request, 200, await self._run(
            request, actions.set_builder_mode, name, body.mode, body.reason,
            self._now()))

    # -- files ---------------------------------------------------------------

    @app.route("/files/<string:sha1>", methods=["PUT"])
    async def upload(self, request, sha1):
        from lp_services.protocol.names import (
            InvalidFileName, check_filename, is_sha1)

        principal = await self._principal(request)
        actions.require(principal, "submitter")
        if not is_sha1(sha1):
            raise BadRequest("%r is not a sha1" % sha1, field="path.sha1")
        if getattr(request, "lp_too_large", False):
            raise TooLarge("the upload is over %d bytes"
                           % request.channel.site.upload_limit)
        name = _str_arg(request, "name") or sha1
        try:
            check_filename(name)
        except InvalidFileName as error:
            raise BadRequest(str(error), field="query.name") from None
        from lp_services.filestore.store import ContentMismatch

        store = self.farm.file_store

        def save(db):
            # In the transactor's thread: hashing and writing a large
            # upload would stall the reactor. From the start each time:
            # the transactor runs this again after a lost connection.
            request.content.seek(0)
            _, sha256, size = store.put_stream(request.content, sha1)
            return size, actions.store_upload(raw_cursor(db), principal,
                                              sha1, sha256, size, name)
        try:
            size, created = await self.farm.transactor.run(save)
        except ContentMismatch as error:
            raise BadRequest(str(error), field="path.sha1") from None
        return _json(request, 201 if created else 200,
                     {"sha1": sha1, "size": size, "created": created})

    # -- tokens --------------------------------------------------------------

    @app.route("/tokens", methods=["GET"])
    async def tokens(self, request):
        from lp_services.ops.reports import jsonable

        rows = await self._run(request, actions.list_tokens)
        return _json(request, 200, {"items": [
            {k: jsonable(v) for k, v in row.items()} for row in rows]})

    @app.route("/tokens", methods=["POST"])
    async def create_token(self, request):
        body = _body(request, models.TokenRequest)
        return _json(request, 201, await self._run(
            request, actions.create_token, body, self._now()))

    @app.route("/tokens/<string:name>", methods=["DELETE"])
    async def revoke_token(self, request, name):
        await self._run(request, actions.revoke_token, name, self._now())
        request.setResponseCode(204)
        return b""
