-- Operators' views (issue 17).
--
-- Whether an operator disabled the builder (`lp-services builder disable`),
-- as opposed to the buildmaster failing it after repeated errors: both
-- clear builderok, but ops_builders, `builder list` and the farm page must
-- tell "disabled" from "failed".
ALTER TABLE builder
    ADD COLUMN disabled_by_operator boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN builder.disabled_by_operator IS
    'builderok was cleared by an operator (builder disable), not by failures.';

-- ops_hourly (the farm page's charts) reads the builds finished in the
-- last day or not yet finished (NULL): an index probe, not a scan of
-- every build ever.
CREATE INDEX build_farm_job__finished__idx ON build_farm_job (date_finished);
