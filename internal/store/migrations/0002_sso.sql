-- Single sign-on and SCIM provisioning (issue 8).

-- Single-use secrets of the SSO flows, by SHA-256: pending OIDC logins (state), one-time codes for a
-- CLI's loopback redirect, and CLI refresh tokens. data is JSON private to the flow.
CREATE TABLE sso_grants (
    hash         TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    session_hash TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX sso_grants_user ON sso_grants (user_name);
CREATE INDEX sso_grants_session ON sso_grants (session_hash);

-- Bearer tokens of identity providers' SCIM provisioning, by SHA-256.
CREATE TABLE scim_tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
