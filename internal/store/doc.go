// Package store persists the control plane's objects — repositories and their users, sidecars,
// listener ports, bindings, impersonation policies, users, groups, access tokens, API sessions,
// settings, sidecar instances and used JWT IDs — in SQLite (the embedded default, pure Go) or
// PostgreSQL (for several control-plane replicas).
//
// It is an adapter: *Store implements the Store interface that internal/api defines, and
// internal/controlplane wires the two together. It imports the root package for the domain types
// and error kinds, and no other Gatehouse package.
//
// Design:
//   - One schema for both dialects, in embedded, numbered migrations (migrations/NNNN_name.sql),
//     recorded in schema_migrations and applied in one transaction at Open; on PostgreSQL under an
//     advisory lock so replicas starting together do not race.
//   - Every change runs in one transaction. Changes a sidecar syncs bump the single-row
//     config_version counter in that same transaction, so a sidecar that sees version N sees every
//     change up to N.
//   - Uniqueness is decided by the database (INSERT ... ON CONFLICT DO NOTHING, then "no row
//     inserted" is a Conflict), so duplicates and replayed JWT IDs are caught across replicas.
//   - Times are stored as fixed-width UTC text, booleans as 0/1, and lists nothing joins on
//     (impersonation rules, secret references, instance ports and errors) as JSON text. Secret
//     references are where to fetch a credential, never the credential.
//   - SQLite: WAL, busy_timeout, foreign keys on; one writer connection whose transactions take the
//     write lock at BEGIN, and a small pool of read-only connections for reads.
//   - Lists are sorted in Go by byte order, so both dialects return the same order whatever the
//     PostgreSQL collation.
package store
