-- Access management policies and the activity trail (issue 6).

-- rules is the JSON of []gatehouse.AccessRule, in order (rules[0] is "name#0").
CREATE TABLE access_policies (
    name       TEXT PRIMARY KEY,
    repository TEXT NOT NULL REFERENCES repositories (name),
    mode       TEXT NOT NULL,
    rules      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX access_policies_repository ON access_policies (repository);

-- One row per activity record. record is the record's JSON exactly as the sidecar sent it, so that
-- its hash chain verifies; the other columns are copies of its fields for searching. A record sent
-- again (same instance and seq) is ignored.
CREATE TABLE activity (
    instance_id     TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    sidecar_id      TEXT   NOT NULL,
    type            TEXT   NOT NULL,
    time            TEXT   NOT NULL,
    session_id      TEXT   NOT NULL,
    ref             BIGINT NOT NULL,
    user_name       TEXT   NOT NULL,
    repository      TEXT   NOT NULL,
    repository_user TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    decision        TEXT   NOT NULL,
    statement       TEXT   NOT NULL,
    objects         TEXT   NOT NULL,
    record          TEXT   NOT NULL,
    received_at     TEXT   NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE INDEX activity_time ON activity (time, instance_id, seq);
CREATE INDEX activity_user ON activity (user_name, time);
CREATE INDEX activity_repository ON activity (repository, time);
CREATE INDEX activity_ref ON activity (instance_id, ref);
