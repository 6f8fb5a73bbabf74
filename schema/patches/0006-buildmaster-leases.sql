-- Several buildmasters on one database: each registers and keeps a
-- heartbeat; a builder is scanned, dispatched to, collected from,
-- cancelled and reset only by the master holding its lease.
CREATE TABLE buildmaster (
    name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    host text NOT NULL,
    pid integer NOT NULL,
    date_started timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL
);
COMMENT ON TABLE buildmaster IS
    'A running buildmaster (its --identity); removed when it stops cleanly.';
COMMENT ON COLUMN buildmaster.heartbeat IS
    'Renewed with its builder leases; a master whose heartbeat is older than a lease is presumed dead.';
ALTER TABLE builder
    ADD COLUMN owner text REFERENCES buildmaster (name) ON DELETE SET NULL,
    ADD COLUMN lease_expires timestamptz,
    ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN builder.owner IS
    'The buildmaster holding this builder''s lease, if any.';
COMMENT ON COLUMN builder.lease_expires IS
    'Until when the owner''s lease holds; past it another master may take the builder.';
COMMENT ON COLUMN builder.lease_epoch IS
    'Bumped each time a master takes the lease; sent with every call to the agent, which refuses state changes from an older epoch than it has seen.';
