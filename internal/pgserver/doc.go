// Package pgserver starts and stops a throwaway PostgreSQL server: initdb into a directory, run the
// postmaster on a loopback port, hand out a DSN, and tear it all down again.
//
// It is used by tests (the store, end-to-end and proxy tests start their own server, never relying on
// one already running) and by `gatehouse quickstart`, so it is ordinary, non-test code.
//
// Layout of Config.Dir (a fresh temporary directory when Dir is empty):
//
//	DIR/data/          the data directory (initdb); DIR/data/gatehouse.conf holds our settings
//	DIR/postgres.log   initdb and server output; its tail is included in Start errors
//	DIR/s/             the Unix socket directory (or a short temporary directory when DIR is too long
//	                   for a socket path)
//
// PostgreSQL refuses to run as root. When the caller is root, the files are owned by, and the server
// runs as, the "postgres" system user; any file named in Config.Settings (TLS keys and certificates)
// must be readable by that user: see ChownForServer. A Unix-socket connection with "trust"
// authentication is always kept in pg_hba.conf so that Exec and Reload work whatever Config.HBA says.
//
// The postmaster is started with a parent-death signal (SIGQUIT, immediate shutdown), so a test
// binary that dies does not leak servers.
package pgserver
