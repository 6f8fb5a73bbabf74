-- lp-services: the authoritative current schema.
--
-- A fresh database is created from this file alone. An existing database is
-- brought to the same state by baseline.sql plus patches/NNNN-*.sql in
-- order; tests/database/test_schema.py proves the two agree. Every change
-- therefore lands twice: as a new patch, and here.
--
-- Conventions: statuses are smallint columns mapped to Python IntEnums
-- (the CHECKs list the legal values); timestamps are timestamptz in UTC;
-- every build-related row is keyed by its job id (one id space).

CREATE TABLE schema_revision (
    patch integer PRIMARY KEY,
    name text NOT NULL,
    date_applied timestamptz NOT NULL DEFAULT now(),
    -- 'patch' when applied as a patch, 'current' when the database was
    -- created from current.sql and the patch was already contained in it.
    applied_by text NOT NULL CHECK (applied_by IN ('patch', 'current'))
);
COMMENT ON TABLE schema_revision IS
    'Schema patches applied to this database; patch 0 is the baseline.';

CREATE TABLE schema_views (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    sha1 text NOT NULL
);
COMMENT ON TABLE schema_views IS
    'The sha1 of the views.sql last applied; upgrade re-applies it on change.';

CREATE TABLE processor (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,31}$'),
    title text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE processor IS 'An architecture builds target (amd64, arm64, ...).';

-- JobStatus: 0 WAITING, 1 RUNNING, 2 COMPLETED, 3 FAILED, 4 SUSPENDED.
CREATE TABLE job (
    id bigserial PRIMARY KEY,
    job_type text NOT NULL CHECK (job_type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    status smallint NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 4),
    priority integer NOT NULL DEFAULT 0,
    requester text,
    reason text,
    date_created timestamptz NOT NULL DEFAULT now(),
    scheduled_start timestamptz NOT NULL DEFAULT now(),
    date_started timestamptz,
    date_finished timestamptz,
    lease_expires timestamptz,
    lease_holder text,
    attempt_count integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_retries integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    json_data jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_error text,
    prerequisite bigint REFERENCES job (id),
    private boolean NOT NULL DEFAULT false,
    CONSTRAINT job__lease__check
        CHECK ((lease_expires IS NULL) = (lease_holder IS NULL)),
    CONSTRAINT job__not_own_prerequisite__check CHECK (prerequisite <> id)
);
COMMENT ON TABLE job IS
    'Every unit of work: native jobs and package builds share this id space.';
COMMENT ON COLUMN job.prerequisite IS
    'A job that must COMPLETE before this one may start.';
COMMENT ON COLUMN job.lease_expires IS
    'While RUNNING: when the holder must have renewed, or lost, the job.';
COMMENT ON COLUMN job.private IS
    'Private work: shown, and its log and files served, only to its requester and to operators.';
COMMENT ON COLUMN job.requester IS
    'Who asked for it: an API token''s name, local:<user> from the command line, or recipe <name>.';

-- The native runners' claim: WAITING native jobs (builds are selected
-- through build_queue), highest priority, then oldest.
CREATE INDEX job__waiting__idx ON job (priority DESC, id)
    WHERE status = 0 AND job_type <> 'build';
-- Reclaiming jobs whose holder died.
CREATE INDEX job__running_lease__idx ON job (lease_expires)
    WHERE status = 1;
-- Dependents of a job (failing them, showing them).
CREATE INDEX job__prerequisite__idx ON job (prerequisite)
    WHERE prerequisite IS NOT NULL;
-- Ops views and reports: recent work by type.
CREATE INDEX job__type_finished__idx ON job (job_type, date_finished);

CREATE TABLE library_file (
    id bigserial PRIMARY KEY,
    sha1 char(40) NOT NULL CHECK (sha1 ~ '^[0-9a-f]{40}$'),
    sha256 char(64) CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size bigint NOT NULL CHECK (size >= 0),
    filename text NOT NULL CHECK (
        filename <> '' AND filename !~ '[/\x01-\x1f]'
        AND filename NOT IN ('.', '..') AND length(filename) <= 255),
    mimetype text NOT NULL DEFAULT 'application/octet-stream',
    date_created timestamptz NOT NULL DEFAULT now(),
    restricted boolean NOT NULL DEFAULT false,
    uploader text
);
COMMENT ON TABLE library_file IS
    'The content-addressed file store: content lives on disk under its sha1.';
COMMENT ON COLUMN library_file.restricted IS
    'Stored for private work or uploaded through the API: served to others only once public work references the content.';
COMMENT ON COLUMN library_file.uploader IS
    'The API token that uploaded it, if any (it may read it back).';
CREATE INDEX library_file__sha1__idx ON library_file (sha1);
CREATE INDEX library_file__date_created__idx ON library_file (date_created);

-- BuilderCleanStatus: 0 CLEAN, 1 DIRTY, 2 CLEANING.
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

CREATE TABLE builder (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    url text NOT NULL,
    virtualized boolean NOT NULL DEFAULT false,
    manual boolean NOT NULL DEFAULT false,
    active boolean NOT NULL DEFAULT true,
    builderok boolean NOT NULL DEFAULT true,
    failnotes text,
    failure_count integer NOT NULL DEFAULT 0,
    clean_status smallint NOT NULL DEFAULT 1 CHECK (clean_status BETWEEN 0 AND 2),
    date_clean_status_changed timestamptz NOT NULL DEFAULT now(),
    reset_command text,
    secret text,
    resources text[] NOT NULL DEFAULT '{}',
    version text,
    date_created timestamptz NOT NULL DEFAULT now(),
    date_state_changed timestamptz NOT NULL DEFAULT now(),
    disabled_by_operator boolean NOT NULL DEFAULT false,
    arch_tag text,
    build_types text[],
    date_info_read timestamptz,
    owner text REFERENCES buildmaster (name) ON DELETE SET NULL,
    lease_expires timestamptz,
    lease_epoch bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE builder IS 'A builder machine running an agent.';
COMMENT ON COLUMN builder.manual IS
    'Manual builders are never dispatched to automatically.';
COMMENT ON COLUMN builder.secret IS
    'The credential the master presents to this builder''s agent.';
COMMENT ON COLUMN builder.resources IS
    'Tags this builder offers; a build may require some of them.';
COMMENT ON COLUMN builder.date_state_changed IS
    'When builderok, active or manual last changed.';
COMMENT ON COLUMN builder.disabled_by_operator IS
    'builderok was cleared by an operator (builder disable), not by failures.';
COMMENT ON COLUMN builder.arch_tag IS
    'The architecture the agent reports in info(); NULL until read.';
COMMENT ON COLUMN builder.build_types IS
    'The build types the agent reports in info(); NULL until read (nothing is dispatched to it until then).';
COMMENT ON COLUMN builder.date_info_read IS
    'When info() was last read; cleared when the agent version changes.';
COMMENT ON COLUMN builder.owner IS
    'The buildmaster holding this builder''s lease, if any.';
COMMENT ON COLUMN builder.lease_expires IS
    'Until when the owner''s lease holds; past it another master may take the builder.';
COMMENT ON COLUMN builder.lease_epoch IS
    'Bumped each time a master takes the lease; sent with every call to the agent, which refuses state changes from an older epoch than it has seen.';

CREATE TABLE builder_processor (
    builder integer NOT NULL REFERENCES builder (id) ON DELETE CASCADE,
    processor integer NOT NULL REFERENCES processor (id),
    PRIMARY KEY (builder, processor)
);
CREATE INDEX builder_processor__processor__idx ON builder_processor (processor);

CREATE TABLE chroot (
    id serial PRIMARY KEY,
    processor integer NOT NULL REFERENCES processor (id),
    series text NOT NULL DEFAULT 'default',
    library_file bigint NOT NULL REFERENCES library_file (id),
    date_created timestamptz NOT NULL DEFAULT now(),
    UNIQUE (processor, series)
);
COMMENT ON TABLE chroot IS 'The chroot tarball builds for a processor and series unpack.';

-- BuildStatus: 0 NEEDSBUILD, 1 FULLYBUILT, 2 FAILEDTOBUILD, 3 MANUALDEPWAIT,
-- 4 CHROOTWAIT, 5 SUPERSEDED, 6 BUILDING, 7 FAILEDTOUPLOAD, 8 UPLOADING,
-- 9 CANCELLING, 10 CANCELLED, 11 GATHERING.
CREATE TABLE build_farm_job (
    job bigint PRIMARY KEY REFERENCES job (id),
    build_type text NOT NULL CHECK (build_type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    processor integer NOT NULL REFERENCES processor (id),
    virtualized boolean NOT NULL DEFAULT false,
    series text NOT NULL DEFAULT 'default',
    status smallint NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 11),
    builder integer REFERENCES builder (id),
    date_first_dispatched timestamptz,
    date_started timestamptz,
    date_finished timestamptz,
    log bigint REFERENCES library_file (id),
    dependencies text,
    failure_count integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE build_farm_job IS
    'A build''s history and final status; outlives its build_queue row.';
CREATE INDEX build_farm_job__status__idx ON build_farm_job (status);
CREATE INDEX build_farm_job__builder__idx ON build_farm_job (builder, date_finished);
CREATE INDEX build_farm_job__type_finished__idx
    ON build_farm_job (build_type, date_finished);
-- ops_hourly: the builds finished in the last day, or not yet (NULL).
CREATE INDEX build_farm_job__finished__idx ON build_farm_job (date_finished);

CREATE TABLE build_queue (
    job bigint PRIMARY KEY REFERENCES job (id),
    build_farm_job bigint NOT NULL UNIQUE REFERENCES build_farm_job (job),
    build_type text NOT NULL CHECK (build_type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    processor integer NOT NULL REFERENCES processor (id),
    virtualized boolean NOT NULL DEFAULT false,
    lastscore integer NOT NULL DEFAULT 0,
    manual boolean NOT NULL DEFAULT false,
    estimated_duration interval NOT NULL DEFAULT '5 minutes',
    builder integer REFERENCES builder (id),
    build_cookie text,
    date_dispatched timestamptz,
    logtail text,
    build_args jsonb NOT NULL DEFAULT '{}'::jsonb,
    filemap jsonb NOT NULL DEFAULT '{}'::jsonb,
    required_resources text[] NOT NULL DEFAULT '{}',
    cancel_deadline timestamptz,
    CONSTRAINT build_queue__cookie__check
        CHECK ((builder IS NULL) OR (build_cookie IS NOT NULL))
);
COMMENT ON TABLE build_queue IS
    'One row per pending or running build; deleted when the build ends.';
COMMENT ON COLUMN build_queue.manual IS
    'True when an operator pinned lastscore; scoring leaves it alone.';
COMMENT ON COLUMN build_queue.filemap IS
    'Files the build needs on the agent: {name: library_file sha1}.';
COMMENT ON COLUMN build_queue.cancel_deadline IS
    'Set when the master first asks the builder to abort a CANCELLING build; past it the build is forced CANCELLED.';
-- The real guard against double dispatch: a builder holds one build.
CREATE UNIQUE INDEX build_queue__builder__key ON build_queue (builder)
    WHERE builder IS NOT NULL;
-- The buildmaster's candidate query: pending builds per processor and
-- virtualization, best score first.
CREATE INDEX build_queue__candidate__idx
    ON build_queue (processor, virtualized, lastscore DESC, job)
    WHERE builder IS NULL;

CREATE TABLE build_file (
    id bigserial PRIMARY KEY,
    build bigint NOT NULL REFERENCES build_farm_job (job),
    library_file bigint NOT NULL REFERENCES library_file (id),
    filename text NOT NULL CHECK (
        filename <> '' AND filename !~ '[/\x01-\x1f]'
        AND filename NOT IN ('.', '..') AND length(filename) <= 255),
    UNIQUE (build, filename)
);
COMMENT ON TABLE build_file IS 'Result files a build produced.';
CREATE INDEX build_file__library_file__idx ON build_file (library_file);

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

CREATE TABLE change_log (
    id bigserial PRIMARY KEY,
    date timestamptz NOT NULL,
    actor text NOT NULL CHECK (actor <> ''),
    action text NOT NULL CHECK (action ~ '^[a-z][a-z_-]{0,31}$'),
    job bigint REFERENCES job (id),
    builder integer REFERENCES builder (id),
    detail text,
    CONSTRAINT change_log__one_subject__check
        CHECK ((job IS NULL) <> (builder IS NULL))
);
COMMENT ON TABLE change_log IS
    'Every change made through the API or the command line: who (a token''s name or local:<user>), what, to which job or builder.';
CREATE INDEX change_log__job__idx ON change_log (job, id) WHERE job IS NOT NULL;
CREATE INDEX change_log__builder__idx ON change_log (builder, id)
    WHERE builder IS NOT NULL;
