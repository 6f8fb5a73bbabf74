"""The API's request and answer shapes, as pydantic models.

pydantic (v2) checks every request body, naming the field at fault, and
gives each model's JSON Schema, from which :mod:`lp_services.api.openapi`
builds ``/api/v1/openapi.json``. Answer models forbid extra fields, so
the description is exact: the tests check every answer against it. The
work answer is described from the read model itself
(``lp_services.ops.work.WorkDetails``, what ``show`` prints), so the two
cannot drift apart.
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lp_services.buildmaster.scoring import COMPONENT, POCKET, URGENCY

__all__ = [
    "ANSWER_MODELS", "REQUEST_MODELS", "BuildRequest", "BuilderModeRequest",
    "JobRequest", "RecipeRequest", "RescoreRequest", "TokenRequest",
]

_NAME = r"^[a-z][a-z0-9_.-]{0,63}$"
_SHA1 = r"^[0-9a-f]{40}$"
_FILE = r"^[^/\x00-\x1f]{1,255}$"


class _Request(BaseModel):
    # Unknown fields are refused: a misspelt option must not be ignored.
    model_config = ConfigDict(extra="forbid", strict=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ----------------------------------------------------------------

class BuildRequest(_Request):
    """Queue a build. Its files are uploaded first (``PUT /files/<sha1>``)
    and named here by sha1."""

    build_type: str = Field(pattern=_NAME, examples=["script"])
    processor: str = Field(min_length=1, max_length=64, examples=["amd64"])
    files: dict[str, str] = Field(
        default_factory=dict, max_length=1000,
        description="{name the build sees: sha1 of an uploaded file}")
    script: str | None = Field(None, pattern=_FILE, description=(
        "script builds: the file (among ``files``) the build runs"))
    args: dict[str, Any] = Field(default_factory=dict, description=(
        "more build arguments (binarypackage: dsc, archives, "
        "trusted_keys, suite, archive_purpose, arch_indep, distribution)"))
    series: str = Field("default", min_length=1, max_length=64)
    virtualized: bool = False
    urgency: Literal[tuple(URGENCY)] = "medium"
    after: int | None = Field(None, ge=1, description="a job that must "
                              "complete first")
    resources: list[str] = Field(default_factory=list, max_length=64)
    max_retries: int = Field(5, ge=0, le=100)
    private: bool = False
    pocket: Literal[tuple(POCKET)] | None = None
    component: Literal[tuple(COMPONENT)] | None = None


class RecipeRequest(_Request):
    """Queue a recipe: the recipe's own JSON (see docs/recipes.md)."""

    recipe: dict[str, Any]
    priority: int = Field(0, ge=-1000, le=1000)
    max_retries: int | None = Field(None, ge=0, le=100)
    private: bool = False


class JobRequest(_Request):
    """Queue a native job of a submittable type (operators: any type)."""

    type: str = Field(pattern=_NAME)
    data: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-1000, le=1000)
    max_retries: int | None = Field(None, ge=0, le=100)
    after: int | None = Field(None, ge=1)
    private: bool = False


class RescoreRequest(_Request):
    """Pin a waiting build's score."""

    score: int = Field(ge=-1_000_000, le=1_000_000)


class BuilderModeRequest(_Request):
    """Enable, disable or make a builder manual."""

    mode: Literal["enable", "disable", "manual"]
    reason: str | None = Field(None, max_length=500)


class TokenRequest(_Request):
    """Create a token (admins)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
    role: Literal["submitter", "operator", "admin"]
    expires: datetime | None = None


# -- answers -----------------------------------------------------------------

class Error(_Answer):
    error: str
    status: int
    field: str | None = None


class Created(_Answer):
    id: int
    url: str


class WorkRow(_Answer):
    """One line of the work list (the ``ops_work`` view)."""

    id: int
    kind: Literal["build", "native"]
    type: str
    status: str
    build_status: str | None
    outcome: str | None
    priority: int
    processor: str | None
    builder: str | None
    date_created: datetime
    scheduled_start: datetime
    date_started: datetime | None
    date_finished: datetime | None
    duration: float | None
    attempts: int
    max_retries: int
    prerequisite: int | None
    last_error: str | None
    private: bool
    requester: str | None


class WorkList(_Answer):
    items: list[WorkRow]
    next: str | None = Field(description="the next page, if any")


class Job(_Answer):
    """A native job row (``lp-services job list``)."""

    id: int
    job_type: str
    status: str
    priority: int
    requester: str | None
    reason: str | None
    date_created: datetime
    scheduled_start: datetime
    date_started: datetime | None
    date_finished: datetime | None
    lease_expires: datetime | None
    lease_holder: str | None
    attempt_count: int
    max_retries: int
    json_data: Any
    last_error: str | None
    prerequisite: int | None
    private: bool


class JobList(_Answer):
    items: list[Job]


class Cancelled(_Answer):
    id: int
    kind: Literal["build", "native"]
    status: str


class Rescored(_Answer):
    id: int
    score: int
    score_pinned: bool


class Builder(_Answer):
    name: str
    url: str
    virtualized: bool
    manual: bool
    active: bool
    builderok: bool
    failnotes: str | None
    disabled_by_operator: bool
    failure_count: int
    clean_status: str
    resources: list[str]
    version: str | None
    processors: list[str]
    current_build: int | None
    current_build_status: str | None
    current_build_private: bool
    master: str | None


class BuilderList(_Answer):
    items: list[Builder]


class BuilderMode(_Answer):
    name: str
    state: Literal["enabled", "disabled", "manual"]


class Log(_Answer):
    """A piece of a build's log. A finished build's stored log is read from
    ``offset``; while the build runs only the agent's tail is known
    (``live``: true, ``text`` the tail, no offsets)."""

    id: int
    build_status: str
    finished: bool
    live: bool
    offset: int | None
    next_offset: int | None
    size: int | None
    text: str


class StoredFile(_Answer):
    sha1: str
    size: int
    created: bool


class Token(_Answer):
    name: str
    role: str
    date_created: datetime
    expires: datetime | None
    revoked: datetime | None
    last_used: datetime | None


class TokenList(_Answer):
    items: list[Token]


class TokenCreated(_Answer):
    name: str
    role: str
    token: str = Field(description="shown once; only its SHA-256 is kept")


class Index(_Answer):
    version: str
    principal: str | None
    role: str | None
    links: dict[str, str]


REQUEST_MODELS = (BuildRequest, RecipeRequest, JobRequest, RescoreRequest,
                  BuilderModeRequest, TokenRequest)
ANSWER_MODELS = (Error, Created, WorkList, JobList, Cancelled,
                 Rescored, BuilderList, BuilderMode, Log, StoredFile,
                 TokenList, TokenCreated, Index)
