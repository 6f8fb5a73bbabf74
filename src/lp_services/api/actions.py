"""The farm's operations as one function each, with the caller's rights
checked: the API serves them over HTTP and the command line's direct
database mode calls them with the local administrator as principal, so
both check, record and answer alike.

Every function takes a cursor (its transaction is the caller's: the API
rolls back on any refusal, so a refused request writes nothing), the
principal (``lp_services.auth.tokens.Principal``, or None for anonymous)
and the time, and returns JSON values. Refusals are
:mod:`lp_services.api.errors`.

Rights: anonymous reads public work and builders; a *submitter* also
submits work and sees, cancels and retries its own (private included);
an *operator* does anything to any work and to builders; an *admin* also
manages tokens. Private work is unknown (404) to whoever may not see it.
Every change is recorded with its actor (``change_log``).
"""

from __future__ import annotations

import codecs
from datetime import datetime

from lp_services.api.errors import (
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized)
from lp_services.auth.http import viewer_of
from lp_services.auth.tokens import Principal, has_role
from lp_services.job.changes import record_change

__all__ = [
    "LOCAL_ADMIN", "build_log", "cancel_work", "create_token", "get_work",
    "list_builders", "list_jobs", "list_tokens", "list_work", "local_admin",
    "request_build", "request_job", "request_recipe", "rescore_build",
    "retry_work", "revoke_token", "set_builder_mode", "store_upload",
    "viewer_of",
]

#: The role of the command line's direct database mode: whoever holds the
#: database's credentials already has full power over the farm.
LOCAL_ADMIN = "admin"

#: Largest piece of a stored log one answer carries.
LOG_CHUNK = 1 << 20


def local_admin() -> Principal:
    """The principal of the command line in direct database mode."""
    from lp_services.job.changes import local_actor

    return Principal(local_actor(), LOCAL_ADMIN)


def require(principal: Principal | None, role: str) -> Principal:
    """``principal``, if it has ``role``. :raises Unauthorized, Forbidden:"""
    if principal is None:
        raise Unauthorized("this needs a token (Authorization: Bearer)")
    if not has_role(principal, role):
        raise Forbidden("token %s is a %s; this needs a %s"
                        % (principal.name, principal.role, role))
    return principal


def _subject(cursor, principal, job_id) -> str:
    """The type of job ``job_id``, which ``principal`` may change: an
    operator any, a submitter its own.

    :raises NotFound: no such job, or private work it may not see.
    :raises Forbidden: someone else's public work.
    """
    from lp_services.job.admin import job_owners
    from lp_services.ops.work import may_see

    require(principal, "submitter")
    owner = job_owners(cursor, [job_id]).get(job_id)
    if owner is None or not may_see(viewer_of(principal), owner.private,
                                    owner.requester):
        raise NotFound("no job or build with id %d" % job_id)
    if not has_role(principal, "operator") and \
            owner.requester != principal.name:
        raise Forbidden("job %d is not yours (it was requested by %s)"
                        % (job_id, owner.requester))
    return owner.job_type


# -- reading -----------------------------------------------------------------

def get_work(cursor, principal, job_id: int, file_url=None) -> dict:
    """Any work by id, as ``show`` prints it. :raises NotFound:"""
    from lp_services.ops.work import UnknownWork, describe_work, work_to_json

    try:
        details = describe_work(cursor, job_id, file_url=file_url,
                                viewer=viewer_of(principal))
    except UnknownWork as error:
        raise NotFound(str(error)) from None
    return work_to_json(details)


def list_work(cursor, principal, *, kind=None, status=None, outcome=None,
              type=None, before: int | None = None, limit: int = 50) -> list:
    """Work newest first (``ops_work``), ``before`` an id for the next
    page; private work only to whoever may see it."""
    from lp_services.ops.reports import WORK_CHOICES, fetch_report

    viewer = viewer_of(principal)
    filters = {"kind": kind, "status": status, "outcome": outcome,
               "type": type}
    for name, allowed in WORK_CHOICES.items():
        if filters[name] is not None and filters[name] not in allowed:
            raise BadRequest("%s must be one of %s" % (name, ", ".join(
                allowed)), field="query.%s" % name)
    if not 1 <= limit <= 500:
        raise BadRequest("limit must be from 1 to 500", field="query.limit")
    # Paging by id: a page never repeats or skips work that arrives
    # meanwhile (new work has higher ids).
    _, rows = fetch_report(cursor, "work", limit=limit, viewer=viewer,
                           before=before, **filters)
    return rows


def list_jobs(cursor, principal, *, status=None, job_type=None,
              limit: int = 50) -> list:
    """Native and build jobs as ``job list`` shows them."""
    from lp_services.job.admin import list_jobs as rows_of
    from lp_services.job.status import JobStatus

    try:
        wanted = None if status is None else JobStatus[status.upper()]
    except KeyError:
        raise BadRequest("status must be one of %s" % ", ".join(
            s.name for s in JobStatus), field="query.status") from None
    if not 1 <= limit <= 500:
        raise BadRequest("limit must be from 1 to 500", field="query.limit")
    return [r.as_json() for r in rows_of(cursor, wanted, job_type, limit,
                                         viewer=viewer_of(principal))]


def list_builders(cursor, principal, now) -> list:
    """Every builder; the id of a private build it runs only to whoever
    may see that build."""
    from lp_services.buildmaster.builders import list_builders as rows_of
    from lp_services.job.admin import job_owners
    from lp_services.ops.work import may_see

    viewer = viewer_of(principal)
    rows = rows_of(cursor, now)
    owners = job_owners(cursor, [r["current_build"] for r in rows
                                 if r["current_build"]])
    for row in rows:
        owner = owners.get(row["current_build"])
        private = owner is not None and owner.private
        row["current_build_private"] = private
        if private and not may_see(viewer, True, owner.requester):
            row["current_build"] = None
    return rows


def build_log(cursor, principal, job_id: int, file_store,
              offset: int = 0) -> dict:
    """A piece of build ``job_id``'s log: from ``offset`` of the stored log
    once it ended, else the agent's live tail.

    :raises NotFound: no such build (or not one the caller may see).
    """
    from lp_services.ops.work import UnknownWork, describe_work

    try:
        d = describe_work(cursor, job_id, viewer=viewer_of(principal))
    except UnknownWork as error:
        raise NotFound(str(error)) from None
    if d.build is None:
        raise NotFound("job %d is not a build" % job_id)
    b = d.build
    finished = d.date_finished is not None and d.status in (
        "COMPLETED", "FAILED")
    answer = {"id": job_id, "build_status": b.build_status,
              "finished": finished, "live": False, "offset": None,
              "next_offset": None, "size": None, "text": ""}
    if b.log is not None:
        path = file_store.path_for(b.log.sha1)
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                start = min(max(offset, 0), size)
                f.seek(start)
                data = f.read(LOG_CHUNK)
        except OSError:
            raise NotFound("build %d's log is not in this file store"
                           % job_id) from None
        # Stop before a character the piece cuts in two (the next piece
        # starts with it), so pieces join cleanly; the end is the end.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(data, final=start + len(data) >= size)
        used = len(data) - len(decoder.getstate()[0])
        answer.update(offset=start, next_offset=start + used, size=size,
                      text=text)
    elif b.logtail:
        answer.update(live=True, text=b.logtail)
    return answer


# -- submitting --------------------------------------------------------------

def _check_files(cursor, principal, files: dict) -> None:
    from lp_services.filestore.access import may_read
    from lp_services.protocol.names import InvalidFileName, check_filename

    for name, sha1 in files.items():
        try:
            check_filename(name)
        except InvalidFileName as error:
            raise BadRequest(str(error), field="body.files") from None
        if not isinstance(sha1, str) or len(sha1) != 40 or any(
                c not in "0123456789abcdef" for c in sha1):
            raise BadRequest("files[%r] is not a sha1" % name,
                             field="body.files")
        if not may_read(cursor, sha1, viewer_of(principal)):
            raise BadRequest("files[%r]: no file %s was uploaded (PUT "
                             "/api/v1/files/%s first)" % (name, sha1, sha1),
                             field="body.files")


def _check_after(cursor, principal, after):
    if after is None:
        return
    from lp_services.job.admin import job_owners
    from lp_services.ops.work import may_see

    owner = job_owners(cursor, [after]).get(after)
    if owner is None or not may_see(viewer_of(principal), owner.private,
                                    owner.requester):
        raise BadRequest("unknown prerequisite job %d" % after,
                         field="body.after")


def request_build(cursor, principal, request, now: datetime) -> int:
    """Queue the build ``request`` (a ``models.BuildRequest``); its id."""
    from lp_services.buildmaster import queue

    require(principal, "submitter")
    files = dict(request.files)
    _check_files(cursor, principal, files)
    _check_after(cursor, principal, request.after)
    args = dict(request.args)
    if request.build_type == "script":
        if request.script is None or request.script not in files:
            raise BadRequest("a script build names its script, one of its "
                             "files", field="body.script")
        args["script"] = request.script
    elif request.script is not None:
        raise BadRequest("script is for script builds", field="body.script")
    try:
        job_id = queue.request_build(
            cursor, build_type=request.build_type,
            processor=request.processor, now=now,
            virtualized=request.virtualized, series=request.series,
            build_args=args, filemap=files, urgency=request.urgency,
            prerequisite=request.after,
            required_resources=list(request.resources),
            max_retries=request.max_retries, private=request.private,
            pocket=request.pocket, component=request.component,
            requester=principal.name)
    except queue.BuildRequestError as error:
        raise BadRequest(str(error)) from None
    record_change(cursor, principal.name, "request", now, job=job_id,
                  detail="%s build%s" % (request.build_type,
                                         " (private)" if request.private
                                         else ""))
    return job_id


def request_recipe(cursor, principal, request, now: datetime) -> int:
    """Queue the recipe job of ``request`` (a ``models.RecipeRequest``)."""
    from lp_services.job.enqueue import enqueue
    from lp_services.recipes.recipe import (
        RECIPE_JOB_TYPE, RecipeError, parse_recipe)

    require(principal, "submitter")
    try:
        recipe = parse_recipe(request.recipe)
    except RecipeError as error:
        raise BadRequest(str(error), field="body.recipe") from None
    job_id = enqueue(cursor, RECIPE_JOB_TYPE, request.recipe,
                     priority=request.priority,
                     max_retries=request.max_retries,
                     requester=principal.name, private=request.private,
                     reason="recipe %s" % recipe.name)
    record_change(cursor, principal.name, "request", now, job=job_id,
                  detail="recipe %s" % recipe.name)
    return job_id


def request_job(cursor, principal, request, now: datetime) -> int:
    """Queue the native job ``request`` (a ``models.JobRequest``):
    submitters only of submittable types, operators of any."""
    from lp_services.job.enqueue import enqueue
    from lp_services.job.registry import (
        InvalidJobData, UnknownJobType, job_types, load_modules)

    require(principal, "submitter")
    load_modules()
    if request.type == "build" or request.type not in job_types:
        raise BadRequest("unknown job type %r" % request.type,
                         field="body.type")
    kind = job_types.get(request.type)
    if not getattr(kind, "submittable", False) and not has_role(
            principal, "operator"):
        raise Forbidden("job type %s is not submittable; only operators "
                        "queue it" % request.type)
    _check_after(cursor, principal, request.after)
    try:
        job_id = enqueue(cursor, request.type, request.data,
                         priority=request.priority,
                         max_retries=request.max_retries,
                         prerequisite=request.after,
                         requester=principal.name, private=request.private)
    except (InvalidJobData, UnknownJobType) as error:
        raise BadRequest(str(error), field="body.data") from None
    record_change(cursor, principal.name, "request", now, job=job_id,
                  detail=request.type)
    return job_id


# -- changing ----------------------------------------------------------------

def cancel_work(cursor, principal, job_id: int, now: datetime) -> dict:
    """Cancel a build or a native job (its requester or an operator)."""
    from lp_services.buildmaster import queue
    from lp_services.job.admin import cancel_job
    from lp_services.job.status import InvalidTransition

    job_type = _subject(cursor, principal, job_id)
    if job_type == "build":
        try:
            status = queue.cancel_build(cursor, job_id, now).name
        except queue.BuildRequestError as error:
            raise Conflict(str(error)) from None
        kind = "build"
    else:
        try:
            status = cancel_job(cursor, job_id, now, reason="cancelled by %s"
                                % principal.name).status.name
        except InvalidTransition as error:
            raise Conflict("job %d cannot be cancelled: %s"
                           % (job_id, error)) from None
        kind = "native"
    record_change(cursor, principal.name, "cancel", now, job=job_id)
    return {"id": job_id, "kind": kind, "status": status}


def retry_work(cursor, principal, job_id: int, now: datetime) -> dict:
    """Queue a failed native job again (its requester or an operator)."""
    from lp_services.job.admin import retry_job
    from lp_services.job.status import InvalidTransition

    job_type = _subject(cursor, principal, job_id)
    if job_type == "build":
        raise Conflict("build %d cannot be retried: request it again"
                       % job_id)
    try:
        record = retry_job(cursor, job_id, now)
    except InvalidTransition as error:
        raise Conflict("job %d cannot be retried: %s" % (job_id, error)) \
            from None
    record_change(cursor, principal.name, "retry", now, job=job_id)
    return record.as_json()


def rescore_build(cursor, principal, job_id: int, score: int,
                  now: datetime) -> dict:
    """Pin a waiting build's score (operators)."""
    from lp_services.buildmaster import queue

    require(principal, "operator")
    job_type = _subject(cursor, principal, job_id)
    if job_type != "build":
        raise Conflict("job %d is not a build; only builds have scores"
                       % job_id)
    try:
        queue.rescore_build(cursor, job_id, score, now)
    except queue.BuildRequestError as error:
        raise Conflict(str(error)) from None
    record_change(cursor, principal.name, "rescore", now, job=job_id,
                  detail=str(score))
    return {"id": job_id, "score": score, "score_pinned": True}


def set_builder_mode(cursor, principal, name: str, mode: str,
                     reason: str | None, now: datetime) -> dict:
    """Enable, disable or make builder ``name`` manual (operators)."""
    from lp_services.buildmaster.builders import BuilderError
    from lp_services.buildmaster.builders import set_builder_mode as set_mode

    require(principal, "operator")
    try:
        set_mode(cursor, name, mode, reason)
    except BuilderError as error:
        raise NotFound(str(error)) from None
    record_change(cursor, principal.name, mode, now, builder=name,
                  detail=reason)
    return {"name": name, "state": {"enable": "enabled",
                                    "disable": "disabled",
                                    "manual": "manual"}[mode]}


# -- files -------------------------------------------------------------------

def store_upload(cursor, principal, sha1: str, sha256: str, size: int,
                 filename: str) -> bool:
    """Record an upload of content already in the store (the web layer
    checked its sha1); whether a row was added. Idempotent: uploading the
    same content again by the same token adds nothing."""
    from lp_services.filestore.store import add_file_row, uploaded_by

    require(principal, "submitter")
    if uploaded_by(cursor, sha1, principal.name):
        return False
    add_file_row(cursor, sha1, sha256, size, filename, restricted=True,
                 uploader=principal.name)
    return True


# -- tokens ------------------------------------------------------------------

def list_tokens(cursor, principal) -> list:
    from lp_services.auth.tokens import list_tokens as rows_of

    require(principal, "admin")
    return rows_of(cursor)


def create_token(cursor, principal, request, now: datetime) -> dict:
    from lp_services.auth.tokens import TokenError
    from lp_services.auth.tokens import create_token as create

    require(principal, "admin")
    try:
        token = create(cursor, request.name, request.role, now,
                       request.expires)
    except TokenError as error:
        raise BadRequest(str(error), field="body.name") from None
    return {"name": request.name, "role": request.role, "token": token}


def revoke_token(cursor, principal, name: str, now: datetime) -> None:
    from lp_services.auth.tokens import TokenError
    from lp_services.auth.tokens import revoke_token as revoke

    require(principal, "admin")
    try:
        revoke(cursor, name, now)
    except TokenError as error:
        raise NotFound(str(error)) from None
