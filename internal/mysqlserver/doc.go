// Package mysqlserver starts throwaway MariaDB servers from the machine's own binaries
// (mariadb-install-db and mariadbd from Debian's mariadb-server package) in a temporary directory
// on loopback, for tests and for `gatehouse quickstart --mysql`. It is the MySQL sibling of
// internal/pgserver.
//
//	Start ──mariadb-install-db──▶ DIR/data ──mariadbd --port P --bind-address 127.0.0.1──▶ ping ──▶ *Server
//	        (root over the Unix socket gets Config.Password; root@127.0.0.1 is created with it)
//
// MariaDB runs as the calling user; when that is root it is started with --user=root, which
// mariadbd otherwise refuses. TLS is off unless Config.Settings names ssl_cert and ssl_key.
package mysqlserver
