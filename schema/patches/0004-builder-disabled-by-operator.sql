-- Whether an operator disabled the builder (`lp-services builder disable`),
-- as opposed to the buildmaster failing it after repeated errors: both
-- clear builderok, but ops_builders, `builder list` and the farm page must
-- tell "disabled" from "failed".
ALTER TABLE builder
    ADD COLUMN disabled_by_operator boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN builder.disabled_by_operator IS
    'builderok was cleared by an operator (builder disable), not by failures.';
