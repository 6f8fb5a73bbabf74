"""API tokens: created with a role, shown once, stored hashed, listed
without their secret, revoked, expiring.

A token is ``lp_`` followed by 43 URL-safe characters (256 random bits
from :mod:`secrets`). The database holds its SHA-256 only: with 256 bits
of entropy a slow password hash buys nothing, and looking a token up by
its hash compares no secret byte by byte, so the lookup leaks nothing by
timing. Roles, from least to most: ``submitter`` (submit work; see,
cancel and retry its own), ``operator`` (all work and builders),
``admin`` (also tokens).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from lp_services.auth import queries as Q

__all__ = ["ROLES", "Principal", "TokenError", "authenticate", "create_token",
           "has_role", "list_tokens", "revoke_token"]

#: Roles, least to most powerful.
ROLES = ("submitter", "operator", "admin")
_PREFIX = "lp_"


class TokenError(ValueError):
    """A token request that cannot be done, or a token that is refused
    (one line; never repeats the token)."""


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the token's name and role."""

    name: str
    role: str


def has_role(principal: Principal | None, role: str) -> bool:
    """Whether ``principal`` has ``role`` or a more powerful one."""
    return principal is not None and ROLES.index(principal.role) >= \
        ROLES.index(role)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(cursor, name: str, role: str, now: datetime,
                 expires: datetime | None = None) -> str:
    """Create token ``name`` with ``role``; return the token, which is
    never shown again.

    :raises TokenError: an unknown role, a bad or taken name, or an expiry
        in the past.
    """
    import re

    if role not in ROLES:
        raise TokenError("unknown role %r (one of %s)" % (role,
                                                          ", ".join(ROLES)))
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.@-]{0,63}", name or ""):
        raise TokenError("invalid token name %r (lower-case letters, "
                         "digits, '.', '_', '@' and '-')" % (name,))
    if expires is not None and expires <= now:
        raise TokenError("the expiry is not in the future")
    token = _PREFIX + secrets.token_urlsafe(32)
    cursor.execute("SAVEPOINT add_token")
    try:
        cursor.execute(Q.ADD_TOKEN, {"name": name, "role": role,
                                     "sha256": _sha256(token), "now": now,
                                     "expires": expires})
    except Exception as error:
        import psycopg2.errors

        cursor.execute("ROLLBACK TO SAVEPOINT add_token")
        if isinstance(error, psycopg2.errors.UniqueViolation):
            raise TokenError("a token named %r exists" % name) from None
        raise
    return token


def authenticate(cursor, token: str | None, now: datetime) -> Principal:
    """The principal of ``token``, its use recorded.

    :raises TokenError: missing, unknown, revoked or expired (the message
        says which, never the token).
    """
    if not token:
        raise TokenError("no token")
    if not token.startswith(_PREFIX) or len(token) > 200:
        raise TokenError("unknown token")
    cursor.execute(Q.FIND_TOKEN, {"sha256": _sha256(token)})
    row = cursor.fetchone()
    if row is None:
        raise TokenError("unknown token")
    token_id, name, role, expires, revoked = row
    if revoked is not None:
        raise TokenError("token %s was revoked" % name)
    if expires is not None and expires <= now:
        raise TokenError("token %s expired" % name)
    cursor.execute(Q.TOKEN_USED, {"id": token_id, "now": now})
    return Principal(name, role)


def list_tokens(cursor) -> list[dict]:
    """Every token's name, role and dates (never the token or its hash)."""
    cursor.execute(Q.LIST_TOKENS)
    columns = ("name", "role", "date_created", "expires", "revoked",
               "last_used")
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


def revoke_token(cursor, name: str, now: datetime) -> None:
    """Revoke token ``name`` (a second revocation changes nothing).

    :raises TokenError: no such token.
    """
    cursor.execute(Q.REVOKE_TOKEN, {"name": name, "now": now})
    if cursor.fetchone() is None:
        raise TokenError("no token named %r" % name)
