"""The API's refusals, each with its HTTP status and one line saying why.

Raised by :mod:`lp_services.api.actions` before anything is written (or
with the transaction rolled back), so a refused request changes nothing.
"""

__all__ = ["ApiError", "BadRequest", "Conflict", "Forbidden", "NotFound",
           "TooLarge", "Unauthorized"]


class ApiError(Exception):
    """A refused request: ``status`` and a message for the client."""

    status = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        #: The request field at fault (400 only), e.g. ``body.processor``.
        self.field = field

    def as_json(self) -> dict:
        answer = {"error": self.message, "status": self.status}
        if self.field is not None:
            answer["field"] = self.field
        return answer


class BadRequest(ApiError):
    """Bad JSON, a bad field, or a bad query argument (400)."""

    status = 400


class Unauthorized(ApiError):
    """No token, or one that is unknown, revoked or expired (401)."""

    status = 401


class Forbidden(ApiError):
    """A token whose role does not allow this (403)."""

    status = 403


class NotFound(ApiError):
    """No such thing, or one the caller may not see (404: the existence of
    private work does not leak)."""

    status = 404


class Conflict(ApiError):
    """The thing exists but is in no state for this (409): cancelling a
    finished build, retrying a job that did not fail."""

    status = 409


class TooLarge(ApiError):
    """A body over the limit (413)."""

    status = 413
