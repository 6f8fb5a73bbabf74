-- When a builder's availability last changed (enabled, disabled, failed,
-- made manual), so ops_builders can say how long a disabled or failed
-- builder has been out of service.
ALTER TABLE builder
    ADD COLUMN date_state_changed timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN builder.date_state_changed IS
    'When builderok, active or manual last changed.';
