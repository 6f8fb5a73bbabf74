"""The auth room's SQL, by name: ``api_token`` rows. Tokens themselves
never reach the database: only their SHA-256 does."""

__all__ = ["ADD_TOKEN", "FIND_TOKEN", "LIST_TOKENS", "REVOKE_TOKEN",
           "TOKEN_USED"]

#: A new token %(name)s with %(role)s; returns its id.
ADD_TOKEN = """
INSERT INTO api_token (name, role, token_sha256, date_created, expires)
VALUES (%(name)s, %(role)s, %(sha256)s, %(now)s, %(expires)s)
RETURNING id"""

#: The token whose SHA-256 is %(sha256)s, if any (revoked and expired
#: ones too: the caller says why it refuses them).
FIND_TOKEN = """
SELECT id, name, role, expires, revoked FROM api_token
WHERE token_sha256 = %(sha256)s"""

#: Record that token %(id)s was used at %(now)s.
#: At most once a minute: a busy token must not make every request a
#: write to one hot row.
TOKEN_USED = """
UPDATE api_token SET last_used = %(now)s
WHERE id = %(id)s
  AND (last_used IS NULL OR last_used < %(now)s - interval '1 minute')"""

#: Every token by name, without its hash.
LIST_TOKENS = """
SELECT name, role, date_created, expires, revoked, last_used
FROM api_token ORDER BY name"""

#: Revoke token %(name)s at %(now)s (once); returns its id.
REVOKE_TOKEN = """
UPDATE api_token SET revoked = coalesce(revoked, %(now)s)
WHERE name = %(name)s
RETURNING id"""
