"""``/api/v1/openapi.json``: the API's OpenAPI 3.1 description, built from
the pydantic models (:mod:`lp_services.api.models`) and the table of
operations below. The tests check every answer against it."""

from __future__ import annotations

import functools

from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from lp_services.api import models as M
from lp_services.ops.work import WorkDetails

__all__ = ["OPERATIONS", "description"]

_ID = {"name": "job_id", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 0}}
_NAME = {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string"}}
_SHA1 = {"name": "sha1", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{40}$"}}


def _query(name, kind="string", **schema):
    return {"name": name, "in": "query", "required": False,
            "schema": dict(type=kind, **schema)}


#: (method, path, summary, least role or None, parameters, request model,
#: {status: answer model or None}) of every operation.
OPERATIONS = [
    ("get", "/", "Who you are, and links", None, [], None, {200: M.Index}),
    ("get", "/openapi.json", "This description", None, [], None,
     {200: None}),
    ("get", "/work", "Builds and jobs, newest first", None,
     [_query("kind", enum=["build", "native"]),
      _query("status"), _query("outcome"), _query("type"),
      _query("limit", "integer", minimum=1, maximum=500),
      _query("before", "integer", minimum=1)], None, {200: M.WorkList}),
    ("get", "/work/{job_id}", "Any work by id", None, [_ID], None,
     {200: WorkDetails}),
    ("post", "/work/{job_id}/cancel", "Cancel a build or a job (its "
     "requester, operators)", "submitter", [_ID], None, {200: M.Cancelled}),
    ("post", "/work/{job_id}/retry", "Queue a failed job again (its "
     "requester, operators)", "submitter", [_ID], None, {200: M.Job}),
    ("post", "/work/{job_id}/rescore", "Pin a waiting build's score",
     "operator", [_ID], M.RescoreRequest, {200: M.Rescored}),
    ("get", "/work/{job_id}/log", "A build's log from offset, or its live "
     "tail; waits up to `wait` seconds for news", None,
     [_ID, _query("offset", "integer", minimum=0),
      _query("wait", "integer", minimum=0, maximum=30)], None,
     {200: M.Log}),
    ("post", "/builds", "Request a build", "submitter", [], M.BuildRequest,
     {201: M.Created}),
    ("post", "/recipes", "Request a recipe", "submitter", [],
     M.RecipeRequest, {201: M.Created}),
    ("post", "/jobs", "Queue a native job of a submittable type",
     "submitter", [], M.JobRequest, {201: M.Created}),
    ("get", "/jobs", "Jobs as `job list` shows them", None,
     [_query("status"), _query("type"),
      _query("limit", "integer", minimum=1, maximum=500)], None,
     {200: M.JobList}),
    ("get", "/builders", "Builders and what they do", None, [], None,
     {200: M.BuilderList}),
    ("post", "/builders/{name}/mode", "Enable, disable or make manual",
     "operator", [_NAME], M.BuilderModeRequest, {200: M.BuilderMode}),
    ("put", "/files/{sha1}", "Upload a file by its sha1 (idempotent)",
     "submitter", [_SHA1, _query("name")], "octets",
     {200: M.StoredFile, 201: M.StoredFile}),
    ("get", "/tokens", "Tokens (never their secret)", "admin", [], None,
     {200: M.TokenList}),
    ("post", "/tokens", "Create a token, shown once", "admin", [],
     M.TokenRequest, {201: M.TokenCreated}),
    ("delete", "/tokens/{name}", "Revoke a token", "admin", [_NAME], None,
     {204: None}),
]

_REFUSALS = {400: "bad JSON, field or argument", 401: "no or bad token",
             403: "the token's role does not allow it",
             404: "no such thing (or private work you may not see)",
             405: "method not allowed", 409: "not in a state for this",
             413: "the body is too large",
             503: "the database is unavailable: nothing was done, try "
                  "again (Retry-After)"}


def _ref(model) -> dict:
    return {"$ref": "#/components/schemas/%s" % model.__name__}


@functools.cache
def description() -> dict:
    """The OpenAPI document (built once)."""
    template = "#/components/schemas/{model}"
    _, schemas = models_json_schema(
        [(m, "validation") for m in M.REQUEST_MODELS]
        + [(m, "serialization") for m in M.ANSWER_MODELS],
        ref_template=template)
    schemas = schemas["$defs"]
    # The work answer: described from the read model's dataclasses.
    work = TypeAdapter(WorkDetails).json_schema(mode="serialization",
                                                ref_template=template)
    schemas.update(work.pop("$defs"))
    schemas[WorkDetails.__name__] = work
    paths: dict = {}
    for method, path, summary, role, params, body, answers in OPERATIONS:
        responses = {}
        for code, model in answers.items():
            answer = {"description": "OK"}
            if model is not None:
                answer["content"] = {"application/json": {
                    "schema": _ref(model)}}
            responses[str(code)] = answer
        for code, why in _REFUSALS.items():
            responses[str(code)] = {"description": why, "content": {
                "application/json": {"schema": _ref(M.Error)}}}
        operation = {"summary": summary, "parameters": params,
                     "responses": responses,
                     "x-least-role": role or "anonymous"}
        if role is not None:
            operation["security"] = [{"token": []}]
        if body == "octets":
            operation["requestBody"] = {"required": True, "content": {
                "application/octet-stream": {"schema": {
                    "type": "string", "format": "binary"}}}}
        elif body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _ref(body)}}}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "lp-services build farm API", "version": "1",
                 "description": "See docs/api.md."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {
                "type": "http", "scheme": "bearer",
                "description": "lp-services token create NAME --role ROLE"}},
        },
    }
