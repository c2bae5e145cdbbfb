// Package mysqlpeer runs a MySQL 8 server in-process for tests: go-mysql-server
// (github.com/dolthub/go-mysql-server, "GMS") on an in-memory database, speaking the MySQL
// protocol through Dolt's fork of the Vitess server code. It reports itself as 8.0.31. It is the
// MySQL 8 sibling of internal/mysqlserver, which starts a real MariaDB; no MySQL 8 server can be
// installed on the machines Gatehouse is tested on.
//
// What it is good for: accounts with caching_sha2_password, which MariaDB lacks. The peer accepts
// that plugin only inside TLS (Vitess refuses it on plain TCP), so Config.TLS is required. The
// greeting offers mysql_native_password and the server switches a caching_sha2_password account
// to its plugin (AuthSwitchRequest), as MySQL 8 does for clients that guessed wrong:
//
//	client                                   peer
//	  │◀─ Handshake v10 (8.0.31, mysql_native_password, CLIENT_SSL)
//	  │── SSLRequest, TLS handshake ─────────▶│
//	  │── HandshakeResponse41 (native scramble)▶│
//	  │◀─ AuthSwitchRequest caching_sha2_password, new salt
//	  │── SHA256 scramble ───────────────────▶│
//	  │◀─ 0x01 0x04 (full authentication) ─────│  first login of the account
//	  │── password + NUL (inside TLS) ───────▶│
//	  │◀─ OK ──────────────────────────────────│
//	  │                                        │  later logins, once cached:
//	  │◀─ 0x01 0x03 (fast authentication), OK ─│
//
// GMS v0.20.0 itself never caches (its CachingStorage always answers "need more data"), so every
// login would take the full path. Start therefore puts MySQL's cache in front of it: after a
// successful full authentication the account's SHA256(SHA256(password)) is remembered, and a later
// scramble that Vitess's VerifyHashedCachingSha2Password accepts against it is answered with the
// fast-path packets by Vitess's own server code. The entry is keyed by the account's stored
// authentication string, so changing the password empties it. Server.Logins counts both paths.
//
// What it is not: MySQL. Its SQL dialect, performance_schema, processlist, KILL and error texts
// are GMS's; tests use it for the login and the wire protocol, and MariaDB for everything else.
package mysqlpeer
