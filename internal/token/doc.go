// Package token mints and checks the secrets Gatehouse hands out: access tokens (the database
// password a data consumer types, "gh1_" + base62) and the random strings behind login sessions,
// IDs and generated passwords.
//
// Only the hex SHA-256 of an access token is ever stored; the secret is shown once, at creation.
// Secrets travel in a Secret, which redacts itself in fmt, log/slog and JSON, so a secret that
// reaches a log line or a response by accident shows as "[REDACTED]". The package imports only the
// standard library and the root package; it sits in the core layer.
package token
