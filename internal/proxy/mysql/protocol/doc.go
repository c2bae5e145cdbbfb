// Package protocol encodes and decodes the MySQL client/server protocol messages the Gatehouse
// MySQL engine has to understand itself: packet framing, the initial handshake (protocol 10), the
// client's SSLRequest and HandshakeResponse41, AuthSwitchRequest, AuthMoreData, OK and ERR. It is
// pure (no I/O beyond the io.Reader/io.Writer it is given) and every decoder takes untrusted bytes
// without panicking; see FuzzDecode*. Everything after authentication is relayed as opaque packets.
//
// go-mysql (github.com/go-mysql-org/go-mysql) provides the constants and the password scrambles
// used here; its client and server handshake code is tied to its own connection types, so the
// message layouts are written out here.
//
// Specifications:
//   - Packets: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html
//   - Handshake: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
//   - HandshakeResponse41: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_response.html
//   - MariaDB: https://mariadb.com/kb/en/connection/
package protocol
