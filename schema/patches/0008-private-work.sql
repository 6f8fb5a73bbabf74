-- The authenticated API (issue 16): private work, who uploaded a file,
-- and a log of who changed what.
ALTER TABLE job ADD COLUMN private boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN job.private IS
    'Private work: shown, and its log and files served, only to its requester and to operators.';
COMMENT ON COLUMN job.requester IS
    'Who asked for it: an API token''s name, local:<user> from the command line, or recipe <name>.';

ALTER TABLE library_file
    ADD COLUMN restricted boolean NOT NULL DEFAULT false,
    ADD COLUMN uploader text;
COMMENT ON COLUMN library_file.restricted IS
    'Stored for private work or uploaded through the API: served to others only once public work references the content.';
COMMENT ON COLUMN library_file.uploader IS
    'The API token that uploaded it, if any (it may read it back).';

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
