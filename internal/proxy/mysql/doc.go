// Package mysql is the MySQL engine of the sidecar: it speaks the MySQL client/server protocol
// (4.1 handshake) to stock MySQL and MariaDB clients (mysql, mariadb, go-sql-driver/mysql, JDBC,
// mysql2, ...), takes the access token as the password, asks the proxy.Authorizer who the person is
// and which repository user they become, fetches that user's credential through proxy.Credentials,
// logs in to the repository (MySQL 5.7/8.x, MariaDB 10.x/11.x) as it, and relays the session.
//
// Specifications:
//   - Connection phase: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
//   - caching_sha2_password: https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html
//   - mysql_native_password: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html
//   - mysql_clear_password: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_clear_text_password.html
//   - Command phase: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html
//   - MariaDB: https://mariadb.com/kb/en/clientserver-protocol/
//
// Message layouts live in the pure child package protocol (fuzzed); go-mysql provides constants and
// the password scrambles. The handshake is read byte-exactly, unbuffered, so nothing sent before
// the TLS handshake can be taken as coming from inside it.
//
// A session:
//
//	client                          sidecar (Engine)                           repository
//	  │◀─ Handshake v10 ────────────│ version = the listener port's ("8.0.0-gatehouse",
//	  │                             │ "5.5.5-10.11.0-MariaDB-gatehouse"), our connection id,
//	  │                             │ CLIENT_SSL, plugin caching_sha2_password
//	  │── SSLRequest, TLS ─────────▶│ (no TLS: ERR 1045 naming --ssl-mode=REQUIRED / tls=true,
//	  │── HandshakeResponse41 ─────▶│  unless AllowPlaintextPasswords)
//	  │   user = repo_user[@repository], scramble (useless to us), db, attributes
//	  │◀─ AuthMoreData 0x04 ────────│ caching_sha2: always "perform full authentication"
//	  │── token + NUL (inside TLS) ▶│ (mysql_clear_password: the token came in the response;
//	  │                             │  other plugins: AuthSwitchRequest to caching_sha2_password)
//	  │                             │── Authorizer.Authorize(Login) ─▶ Grant{Identity, Target}
//	  │                             │── dial; Handshake v10 ◀──────────────────────────────────│
//	  │                             │── SSLRequest + TLS per tls_mode ─────────────────────────▶│
//	  │                             │── HandshakeResponse41: repository user, the client's
//	  │                             │   capabilities/charset/db, attributes + program_name
//	  │                             │   "<program> (gatehouse:<person>)", gatehouse_user ──────▶│
//	  │                             │◀─ AuthSwitch / AuthMoreData (native, caching_sha2 fast and
//	  │                             │   full, sha256, clear over TLS) ── credential ──────────▶│
//	  │                             │   (1045: Invalidate, fetch again, retry once)             │
//	  │◀─ the repository's OK ──────│◀─ OK ─────────────────────────────────────────────────────│
//	  │◀══════ relay: packets copied whole; each command's first packet (sequence id 0) ═══════▶│
//	  │        looked at: COM_QUERY / COM_STMT_EXECUTE / COM_INIT_DB go through the
//	  │        proxy.Auditor (classified, evaluated, recorded before forwarding; a refusal is
//	  │        ERR 1142 42000 naming the rule, the session goes on), COM_STMT_PREPARE texts are kept
//	  │        by statement id; answers are followed for rows/errors (govern.go); KILL [QUERY] <id>
//	  │        and COM_PROCESS_KILL are rewritten to the repository's thread id of our session
//	  │        <id> (same person, same repository only); COM_CHANGE_USER and replication refused
//	  │◀─ ERR 1927 "access token expired at ..." / "access token revoked" / ERR 1053
//	  │   "server is shutting down" (sequence id 0), then both connections close
//
// Capabilities offered to clients are the ones every supported server has, so the packet formats
// after authentication agree on both sides; compression, query attributes and session tracking
// are not offered, and CLIENT_LOCAL_FILES only with Config.AllowLocalInfile (off, LOAD DATA LOCAL
// INFILE is refused by the repository, which never gets to ask the client for a file).
//
// Refusals during login are ERR packets: token invalid/expired/revoked, not permitted, unknown
// repository user, no TLS → 1045 (28000) with the message; control plane unreachable → 1043
// (08S01); repository unreachable or TLS failure → 1105 (08001) with the reason; errors from the
// repository are passed on with the credential redacted. The credential is never logged nor sent
// to the client.
package mysql
