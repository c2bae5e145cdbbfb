// Package postgres is the PostgreSQL engine of the sidecar: it speaks the v3 frontend/backend
// protocol to stock clients (psql, libpq, pgx, JDBC, ...), takes the access token as the password,
// asks the proxy.Authorizer who the person is and which repository user they become, fetches that
// user's credential through proxy.Credentials, logs in to the repository as it, and relays the
// session.
//
// Specifications:
//   - Message flow: https://www.postgresql.org/docs/current/protocol-flow.html
//   - Message formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
//   - SSL/GSSAPI session encryption: https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL
//   - Canceling requests: https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS
//   - SCRAM-SHA-256: https://www.postgresql.org/docs/current/sasl-authentication.html, RFC 5802, RFC 7677
//   - TLS modes: https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION
//
// Framing and message encoding use jackc/pgx's pgproto3. Startup packets are read byte-exactly
// (nothing is buffered ahead of a TLS handshake, so plaintext sent before it cannot be taken as
// encrypted — CVE-2021-23222 and CVE-2021-23214 are that mistake on each side).
//
// A session:
//
//	client                         sidecar (Engine)                          repository
//	  │── SSLRequest ─────────────▶│
//	  │◀─ 'S', TLS handshake ──────│  (GSSENCRequest → 'N'; no TLS configured → 'N')
//	  │── StartupMessage ─────────▶│  user = repo_user[@repository], database, options
//	  │◀─ AuthCleartextPassword ───│  only inside TLS (or AllowPlaintextPasswords)
//	  │── PasswordMessage(token) ─▶│── Authorizer.Authorize(Login) ─▶ Grant{Identity, Target}
//	  │                            │── dial Target.Repository; SSLRequest per TLSMode ───────────▶│
//	  │                            │── StartupMessage(user = repository user, database,          │
//	  │                            │     application_name = "<app> (gatehouse:<person>)") ───────▶│
//	  │                            │◀─ AuthenticationSASL / MD5 / Cleartext / Ok ─────────────────│
//	  │                            │── Credentials.Credential(Target) → SCRAM / MD5 / password ──▶│
//	  │                            │   (28P01: Invalidate, fetch again, retry once)               │
//	  │                            │◀─ AuthenticationOk, ParameterStatus*, BackendKeyData, Z ─────│
//	  │◀─ AuthenticationOk, ParameterStatus*, BackendKeyData(ours), ReadyForQuery ────────────────│
//	  │◀══════ relay: whole messages; statements governed by the Auditor (govern.go) ══════════▶│
//	  │◀─ FATAL 57P01 "access token expired at ..." / "access token revoked" /
//	  │   "server is shutting down", then both connections close
//
// The relay runs one direction on the session's goroutine and the other on a goroutine of its own,
// and borrows 16 KiB buffers from the engine only while data moves (buffer.go). A session quiet for
// Config.ParkAfter parks: both goroutines return, and the engine's idler (one epoll set) starts a
// direction again when its socket turns readable (park.go). An idle session is then its TLS state,
// its structs and two 512-byte read buffers, and no goroutine.
//
// A CancelRequest arrives on a new connection (plain or after an SSLRequest). Its key is the one
// this engine issued (random per session); it is compared in constant time and, when it matches,
// the upstream backend's real key is sent to the repository on a new connection. A forged key
// cancels nothing and, as with PostgreSQL, gets no answer.
//
// With Config.Pool, the upstream connection of a session that ended cleanly (Terminate after a
// whole request, outside a transaction) is reset with DISCARD ALL and kept for the next session of
// the same repository user, database and startup parameters, which skips the dial and the
// authentication above and gets the connection's parameters and a key of its own (pool.go).
//
// Refusals are FATAL ErrorResponses: token invalid/expired/revoked → 28P01; not permitted, unknown
// repository user, token over plain TCP → 28000; control plane unreachable → 08006; repository
// unreachable or TLS verification failure → 08001 with the reason; errors from the repository are
// passed on as it sent them (with the credential redacted should it ever appear). The credential is
// never logged nor sent to the client.
package postgres
