-- The native runners' claim index leaves builds out.
--
-- Builds are job rows too (job_type 'build') but are never claimed by a job
-- runner; the buildmaster selects them through build_queue. With builds in
-- job__waiting__idx, a runner's claim walks past every waiting build ranked
-- above the first native job: at a million waiting builds, a million rows
-- skipped per claim. Without them, the claim reads only native jobs.
DROP INDEX job__waiting__idx;
CREATE INDEX job__waiting__idx ON job (priority DESC, id)
    WHERE status = 0 AND job_type <> 'build';
