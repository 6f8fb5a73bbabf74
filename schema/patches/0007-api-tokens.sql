-- API tokens (the authenticated API, issue 16): the database holds each
-- token's SHA-256, never the token; a token has one role, may expire and
-- may be revoked.
CREATE TABLE api_token (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.@-]{0,63}$'),
    role text NOT NULL CHECK (role IN ('submitter', 'operator', 'admin')),
    token_sha256 text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    date_created timestamptz NOT NULL,
    expires timestamptz,
    revoked timestamptz,
    last_used timestamptz
);
COMMENT ON TABLE api_token IS
    'API tokens by name and role; only their SHA-256 is stored.';
COMMENT ON COLUMN api_token.token_sha256 IS
    'SHA-256 (hex) of the token: a token is 256 random bits, so a fast hash is enough and a lookup by it leaks nothing by timing.';
