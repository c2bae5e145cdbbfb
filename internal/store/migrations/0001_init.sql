-- Gatehouse control-plane schema, version 1.
-- Portable between SQLite and PostgreSQL: TEXT, INTEGER and BIGINT columns only. Times are TEXT in
-- UTC with a fixed width ("2006-01-02T15:04:05.000000000Z") so they sort and compare as strings;
-- booleans are INTEGER 0/1; lists that nothing joins on are JSON text. Statements end with ";" at the
-- end of a line: the migrator splits on that.

CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE repositories (
    name       TEXT PRIMARY KEY,
    type       TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    hostname   TEXT    NOT NULL,
    port       INTEGER NOT NULL,
    database_name TEXT NOT NULL,
    tls_mode   TEXT    NOT NULL,
    ca_bundle  TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

-- secret is the JSON of a gatehouse.SecretRef: where to fetch the credential, never the credential.
CREATE TABLE repository_users (
    repository TEXT NOT NULL REFERENCES repositories (name) ON DELETE CASCADE,
    username   TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (repository, username)
);

CREATE TABLE sidecars (
    id                        TEXT PRIMARY KEY,
    display_name              TEXT    NOT NULL,
    hostname                  TEXT    NOT NULL,
    public_key                TEXT    NOT NULL,
    second_public_key         TEXT    NOT NULL,
    allow_unsupported_queries INTEGER NOT NULL,
    created_at                TEXT    NOT NULL,
    updated_at                TEXT    NOT NULL
);

CREATE TABLE listener_ports (
    sidecar_id TEXT    NOT NULL REFERENCES sidecars (id),
    port       INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (sidecar_id, port)
);

CREATE TABLE bindings (
    sidecar_id TEXT    NOT NULL,
    port       INTEGER NOT NULL,
    repository TEXT    NOT NULL REFERENCES repositories (name),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (sidecar_id, port, repository),
    FOREIGN KEY (sidecar_id, port) REFERENCES listener_ports (sidecar_id, port)
);
CREATE INDEX bindings_repository ON bindings (repository);

-- rules is the JSON of []gatehouse.ImpersonationRule.
CREATE TABLE impersonation_policies (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    repository   TEXT NOT NULL REFERENCES repositories (name),
    rules        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX impersonation_policies_repository ON impersonation_policies (repository);

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    display_name  TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    active        INTEGER NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);

CREATE TABLE user_groups (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES user_groups (name) ON DELETE CASCADE,
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    PRIMARY KEY (group_name, user_name)
);
CREATE INDEX group_members_user ON group_members (user_name);

-- Access tokens outlive their owner (revoked) so the audit trail can name them; no foreign key.
CREATE TABLE access_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX access_tokens_owner ON access_tokens (owner);

CREATE TABLE login_sessions (
    hash       TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- ports and errors are JSON arrays.
CREATE TABLE sidecar_instances (
    sidecar_id     TEXT   NOT NULL REFERENCES sidecars (id) ON DELETE CASCADE,
    instance_id    TEXT   NOT NULL,
    hostname       TEXT   NOT NULL,
    version        TEXT   NOT NULL,
    started_at     TEXT   NOT NULL,
    ports          TEXT   NOT NULL,
    config_version BIGINT NOT NULL,
    errors         TEXT   NOT NULL,
    first_seen     TEXT   NOT NULL,
    last_seen      TEXT   NOT NULL,
    PRIMARY KEY (sidecar_id, instance_id)
);

CREATE TABLE used_jtis (
    jti        TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX used_jtis_expires_at ON used_jtis (expires_at);
