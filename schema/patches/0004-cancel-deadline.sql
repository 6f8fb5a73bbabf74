-- When a cancelled build is forced CANCELLED if its builder has not
-- finished aborting: stored, so a restarted buildmaster keeps the same
-- deadline instead of starting a new one (launchpad-buildd takes about
-- two minutes to abort).
ALTER TABLE build_queue ADD COLUMN cancel_deadline timestamptz;
COMMENT ON COLUMN build_queue.cancel_deadline IS
    'Set when the master first asks the builder to abort a CANCELLING build; past it the build is forced CANCELLED.';
