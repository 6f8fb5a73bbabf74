-- What each builder's agent says it offers (its info() answer), read by
-- the buildmaster: a build is dispatched only to a builder that offers
-- its type (a launchpad-buildd builder offers no `script`).
ALTER TABLE builder
    ADD COLUMN arch_tag text,
    ADD COLUMN build_types text[],
    ADD COLUMN date_info_read timestamptz;
COMMENT ON COLUMN builder.arch_tag IS
    'The architecture the agent reports in info(); NULL until read.';
COMMENT ON COLUMN builder.build_types IS
    'The build types the agent reports in info(); NULL until read (nothing is dispatched to it until then).';
COMMENT ON COLUMN builder.date_info_read IS
    'When info() was last read; cleared when the agent version changes.';
