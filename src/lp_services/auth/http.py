"""Who an HTTP request comes from: its ``Authorization: Bearer`` token,
looked up in the database (the API, the status pages and the file store
share this)."""

from __future__ import annotations

from twisted.internet import defer

from lp_services.auth.tokens import Principal, TokenError, authenticate, has_role
from lp_services.database.sql import raw_cursor
from lp_services.job.admin import EVERYONE

__all__ = ["bearer_token", "principal_of", "viewer_of"]


def bearer_token(request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None without an
    Authorization header.

    :raises TokenError: an Authorization header of another kind.
    """
    header = request.getHeader(b"authorization")
    if header is None:
        return None
    header = header.decode("latin-1")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise TokenError("Authorization must be: Bearer <token>")
    return value.strip()


def principal_of(transactor, request, now) -> defer.Deferred:
    """A Deferred firing with the request's principal (None: anonymous),
    or failing with :class:`TokenError` (a bad, revoked or expired
    token)."""
    try:
        token = bearer_token(request)
    except TokenError as error:
        return defer.fail(error)
    if token is None:
        return defer.succeed(None)
    return transactor.run(
        lambda store: authenticate(raw_cursor(store), token, now))


def viewer_of(principal: Principal | None):
    """What the read model takes as ``viewer``: everyone's work for
    operators, the token's own private work for others, none for
    anonymous."""
    if principal is None:
        return None
    return EVERYONE if has_role(principal, "operator") else principal.name
