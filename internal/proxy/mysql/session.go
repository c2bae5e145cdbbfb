package mysql

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/mysql/protocol"
)

// maxAuthMessage bounds handshake-phase messages (connection attributes are at most 64 KiB).
const maxAuthMessage = 1 << 17

// endReason says why a live session was ended by the sidecar.
type endReason int

const (
	endNone endReason = iota
	endShutdown
	endExpired
	endRevoked
)

func (r endReason) String() string {
	switch r {
	case endShutdown:
		return "shutdown"
	case endExpired:
		return "token_expired"
	case endRevoked:
		return "token_revoked"
	}
	return "client_or_server"
}

// MySQL error numbers and SQLSTATEs the engine sends.
const (
	errAccessDenied     = mysql.ER_ACCESS_DENIED_ERROR      // 1045, 28000
	errTableAccess      = mysql.ER_TABLEACCESS_DENIED_ERROR // 1142, 42000
	errHandshake        = mysql.ER_HANDSHAKE_ERROR          // 1043, 08S01
	errUnknown          = mysql.ER_UNKNOWN_ERROR            // 1105
	errNotSupported     = mysql.ER_NOT_SUPPORTED_YET        // 1235, 42000
	errServerShutdown   = mysql.ER_SERVER_SHUTDOWN          // 1053, 08S01
	errNoSuchThread     = mysql.ER_NO_SUCH_THREAD           // 1094
	errKillDenied       = mysql.ER_KILL_DENIED_ERROR        // 1095
	errConnectionKilled = 1927                              // MariaDB ER_CONNECTION_KILLED, 70100

	stateAccessDenied = "28000"
	stateSyntaxAccess = "42000"
	stateConnection   = "08S01"
	stateCannotConn   = "08001"
	stateGeneral      = "HY000"
	stateKilled       = "70100"

	messageShuttingDown       = "server is shutting down"
	messageTLSRequiredForAuth = "Gatehouse accepts access tokens only over TLS: connect with TLS " +
		"(mysql --ssl-mode=REQUIRED, mariadb --ssl, go-sql-driver tls=true or tls=skip-verify, JDBC sslMode=REQUIRED)"
)

// Capabilities offered to clients. Only flags every supported server (MySQL 5.7+, 8.x; MariaDB
// 10.2+) also has, because everything after authentication is relayed as is and both sides must
// agree on the packet formats; compression and query attributes are not offered.
const offeredCapabilities = mysql.CLIENT_LONG_PASSWORD | mysql.CLIENT_FOUND_ROWS | mysql.CLIENT_LONG_FLAG |
	mysql.CLIENT_CONNECT_WITH_DB | mysql.CLIENT_IGNORE_SPACE | mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_INTERACTIVE |
	mysql.CLIENT_IGNORE_SIGPIPE | mysql.CLIENT_TRANSACTIONS | mysql.CLIENT_SECURE_CONNECTION |
	mysql.CLIENT_MULTI_STATEMENTS | mysql.CLIENT_MULTI_RESULTS | mysql.CLIENT_PS_MULTI_RESULTS |
	mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_CONNECT_ATTRS | mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
	mysql.CLIENT_DEPRECATE_EOF

// formatCapabilities change the layout of packets after authentication; a client that negotiated
// one needs a repository that has it.
const formatCapabilities = mysql.CLIENT_DEPRECATE_EOF | mysql.CLIENT_SESSION_TRACK | mysql.CLIENT_PROTOCOL_41 |
	mysql.CLIENT_QUERY_ATTRIBUTES | mysql.CLIENT_OPTIONAL_RESULTSET_METADATA

// session is one client connection: handshake, then relay.
type session struct {
	e          *Engine
	id         uint32 // our connection id, given to the client
	client     net.Conn
	clientAddr string
	logger     *slog.Logger

	// Client side after the handshake. cw is written by the upstream→client relay, by refusals
	// of statements and by end; wmu serialises them so nothing lands inside another packet.
	cr     *bufio.Reader
	wmu    sync.Mutex
	cw     *bufio.Writer
	broken bool

	secure   bool
	caps     uint32 // negotiated with the client
	hello    *protocol.HandshakeResponse
	grant    *proxy.Grant
	upstream *upstreamConn

	// Statement governance (govern.go): nil aud without an Auditor. q holds the answers the
	// repository owes the client; prepared the text of each statement id it gave (under q.mu).
	aud      proxy.StatementAuditor
	q        respQueue
	prepared map[uint32]string
	st       proxy.Statement // the statement govern asks about

	relaying  atomic.Bool
	reasonMu  sync.Mutex
	reason    endReason
	stop      chan struct{}
	stopOnce  sync.Once
	cancel    context.CancelFunc
	bytesUp   atomic.Int64
	bytesDown atomic.Int64
}

func newSession(e *Engine, conn net.Conn, cancel context.CancelFunc) *session {
	return &session{
		e:          e,
		client:     conn,
		clientAddr: conn.RemoteAddr().String(),
		logger:     e.logger.With("client_addr", conn.RemoteAddr().String()),
		cancel:     cancel,
		stop:       make(chan struct{}),
		prepared:   map[uint32]string{},
	}
}

// end asks the session to stop with a reason; the first reason wins.
func (s *session) end(r endReason) {
	s.reasonMu.Lock()
	if s.reason == endNone {
		s.reason = r
	}
	s.reasonMu.Unlock()
	s.stopOnce.Do(func() {
		close(s.stop)
		s.cancel()
	})
}

func (s *session) endReason() endReason {
	s.reasonMu.Lock()
	defer s.reasonMu.Unlock()
	return s.reason
}

// refuseShutdown answers a connection that arrives while the engine drains.
func (s *session) refuseShutdown() {
	s.client.SetDeadline(time.Now().Add(2 * time.Second))
	protocol.WriteMessage(s.client, 0, (&protocol.Error{Code: errServerShutdown, State: stateConnection, Message: messageShuttingDown}).Encode())
}

func (s *session) run(ctx context.Context) {
	stopWatch := context.AfterFunc(ctx, func() {
		s.end(endShutdown)
		if !s.relaying.Load() {
			s.client.SetDeadline(time.Now())
		}
	})
	defer stopWatch()

	hctx, cancel := context.WithTimeout(ctx, s.e.cfg.HandshakeTimeout)
	defer cancel()
	s.client.SetDeadline(time.Now().Add(s.e.cfg.HandshakeTimeout))
	if !s.handshake(hctx) {
		if s.upstream != nil {
			s.upstream.conn.Close()
		}
		return
	}
	defer s.upstream.conn.Close()

	id, t := s.grant.Identity, s.grant.Target
	s.logger = s.logger.With("user", id.User, "token_id", id.TokenID, "repository", t.Repository.Name,
		"repository_user", t.User.Username, "session_id", s.id, "upstream_connection_id", s.upstream.connectionID)
	s.logger.Info("session started", "database", s.upstream.database, "upstream_tls", s.upstream.tls)
	start := time.Now()
	reason, err := s.relay(ctx)
	dur := time.Since(start)
	if s.aud != nil {
		s.drain()
		end := proxy.SessionEnd{Duration: dur, BytesFromClient: s.bytesUp.Load(), BytesToClient: s.bytesDown.Load()}
		switch {
		case reason != endNone:
			end.Reason = reason.String()
		case err != nil:
			end.Reason = err.Error()
		}
		s.aud.Close(context.WithoutCancel(ctx), end)
	}
	attrs := []any{"duration", dur.Round(time.Millisecond), "bytes_from_client", s.bytesUp.Load(), "bytes_to_client", s.bytesDown.Load()}
	switch {
	case reason != endNone:
		attrs = append(attrs, "ended_by", reason.String())
	case err != nil:
		attrs = append(attrs, "error", err)
	}
	s.logger.Info("session ended", attrs...)
}

// authConn is the client connection during the handshake: unbuffered until TLS is up, so no byte
// sent before the TLS handshake can be read as if it came from inside it.
type authConn struct {
	rw  io.ReadWriter
	seq byte // sequence id of the last packet read or written
}

func (a *authConn) read() ([]byte, error) {
	p, seq, err := protocol.ReadMessage(a.rw, maxAuthMessage)
	if err != nil {
		return nil, err
	}
	if seq != a.seq+1 {
		return nil, fmt.Errorf("packet out of order: sequence id %d, want %d", seq, a.seq+1)
	}
	a.seq = seq
	return p, nil
}

func (a *authConn) write(p []byte) error {
	last, err := protocol.WriteMessage(a.rw, a.seq+1, p)
	a.seq = last
	return err
}

func (a *authConn) writeError(code uint16, state, format string, args ...any) {
	a.write((&protocol.Error{Code: code, State: state, Message: fmt.Sprintf(format, args...)}).Encode())
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// scramble returns 20 random bytes without NUL (clients treat the scramble as a C string).
func scramble() ([]byte, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	for i := range b {
		b[i] = b[i]&0x7f | 0x01
	}
	return b, nil
}

// handshake runs the client handshake, authorization and upstream connection. It reports whether
// the session is ready to relay; on false the client has been told why (when it can be).
func (s *session) handshake(ctx context.Context) bool {
	salt, err := scramble()
	if err != nil {
		return false
	}
	caps := offeredCapabilities
	if s.e.cfg.TLS != nil {
		caps |= mysql.CLIENT_SSL
	}
	if s.e.cfg.AllowLocalInfile {
		caps |= mysql.CLIENT_LOCAL_FILES
	}
	hs := &protocol.Handshake{
		ServerVersion: s.e.serverVersion,
		ConnectionID:  s.id,
		AuthData:      salt,
		Capabilities:  caps,
		Charset:       45, // utf8mb4_general_ci
		Status:        mysql.SERVER_STATUS_AUTOCOMMIT,
		AuthPlugin:    mysql.AUTH_CACHING_SHA2_PASSWORD,
	}
	ac := &authConn{rw: s.client, seq: 255}
	if err := ac.write(hs.Encode()); err != nil {
		return false
	}
	p, err := ac.read()
	if err != nil {
		if !isEOF(err) && !isTimeout(err) {
			s.logger.Debug("bad handshake response", "error", err)
		}
		return false
	}
	resp, err := protocol.DecodeHandshakeResponse(p)
	if err != nil {
		ac.writeError(errHandshake, stateConnection, "%v", err)
		return false
	}
	if resp.SSLRequest {
		if s.e.cfg.TLS == nil {
			ac.writeError(errHandshake, stateConnection, "this listener has no TLS configured")
			return false
		}
		tc := tls.Server(s.client, s.e.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			s.logger.Debug("client TLS handshake failed", "error", err)
			return false
		}
		s.client = tc
		s.secure = true
		ac.rw = tc
		if p, err = ac.read(); err != nil {
			return false
		}
		if resp, err = protocol.DecodeHandshakeResponse(p); err != nil || resp.SSLRequest {
			ac.writeError(errHandshake, stateConnection, "bad handshake response after TLS")
			return false
		}
	}
	s.hello = resp
	s.caps = resp.Capabilities & caps
	if s.caps&mysql.CLIENT_SSL != 0 && !s.secure {
		ac.writeError(errHandshake, stateConnection, "client set CLIENT_SSL without an SSLRequest")
		return false
	}
	if resp.User == "" {
		ac.writeError(errAccessDenied, stateAccessDenied, "no user name given: connect as the repository user (user or user@repository)")
		return false
	}
	if !s.secure && !s.e.cfg.AllowPlaintextPasswords {
		s.logger.Info("login refused: no TLS", "username", resp.User)
		ac.writeError(errAccessDenied, stateAccessDenied, messageTLSRequiredForAuth)
		return false
	}
	token, ok := s.readToken(ac, resp, salt)
	if !ok {
		return false
	}

	grant, err := s.e.cfg.Authorizer.Authorize(ctx, proxy.Login{
		Port: s.e.cfg.Port, Username: resp.User, Token: token, ClientAddr: s.clientAddr,
	})
	if err != nil {
		var ae *proxy.AuthError
		if errors.As(err, &ae) {
			s.logger.Info("login refused", "username", resp.User, "reason", int(ae.Reason), "message", ae.Message)
		} else {
			s.logger.Error("authorization failed", "username", resp.User, "error", err)
		}
		s.audit(ctx, proxy.LoginEvent{Err: err})
		ac.write(authError(err).Encode())
		return false
	}
	s.grant = grant

	up, errPkt := s.connectUpstream(ctx)
	if errPkt != nil {
		s.audit(ctx, proxy.LoginEvent{Grant: grant, Err: fmt.Errorf("%d: %s", errPkt.Code, errPkt.Message)})
		ac.write(errPkt.Encode())
		return false
	}
	s.upstream = up
	// The session's start is on the record before the client is told it is in.
	if s.e.cfg.Auditor != nil {
		aud, err := s.audit(ctx, proxy.LoginEvent{Grant: grant})
		if err != nil {
			s.logger.Error("session start not recorded; login refused", "error", err)
			ac.writeError(errOutOfResources, stateGeneral, "Gatehouse cannot record this session (%v); try again later", err)
			return false
		}
		if s.aud = aud; aud != nil {
			aud.SetSchema(up.database)
		}
	}
	// The repository's own OK, so the client sees its status flags and session state.
	if err := ac.write(up.ok); err != nil {
		return false
	}
	s.cr = bufio.NewReaderSize(s.client, 16<<10)
	s.cw = bufio.NewWriterSize(s.client, 16<<10)
	return true
}

// audit records a login attempt, filling in what the session knows.
func (s *session) audit(ctx context.Context, ev proxy.LoginEvent) (proxy.StatementAuditor, error) {
	a := s.e.cfg.Auditor
	if a == nil {
		return nil, nil
	}
	ev.Login = proxy.Login{Port: s.e.cfg.Port, Username: s.hello.User, ClientAddr: s.clientAddr}
	for _, at := range s.hello.Attrs {
		if at.Key == "program_name" {
			ev.Application = at.Value
		}
	}
	ev.TLS = s.secure
	aud, err := a.Login(ctx, ev)
	if err != nil && ev.Err != nil {
		s.logger.Error("refused login not recorded", "error", err)
	}
	return aud, err
}

// readToken gets the access token in clear from the client: caching_sha2_password always asks for
// full authentication (the client then sends the password inside TLS), mysql_clear_password
// carries it directly, and any other plugin is switched to caching_sha2_password.
func (s *session) readToken(ac *authConn, resp *protocol.HandshakeResponse, salt []byte) (string, bool) {
	plugin, data := resp.AuthPlugin, resp.AuthResponse
	if resp.Capabilities&mysql.CLIENT_PLUGIN_AUTH == 0 {
		plugin = mysql.AUTH_NATIVE_PASSWORD
	}
	switched := false
	if !s.secure && plugin != mysql.AUTH_CLEAR_PASSWORD {
		// Development listener without TLS: caching_sha2_password clients would ask for an RSA key
		// here; mysql_clear_password is what AllowPlaintextPasswords means.
		switched = true
		if err := ac.write((&protocol.AuthSwitchRequest{Plugin: mysql.AUTH_CLEAR_PASSWORD}).Encode()); err != nil {
			return "", false
		}
		p, err := ac.read()
		if err != nil {
			return "", false
		}
		plugin, data = mysql.AUTH_CLEAR_PASSWORD, p
	}
	for {
		switch plugin {
		case mysql.AUTH_CLEAR_PASSWORD:
			return s.tokenOrRefuse(ac, bytes.TrimSuffix(data, []byte{0}))
		case mysql.AUTH_CACHING_SHA2_PASSWORD:
			if len(data) == 0 || (len(data) == 1 && data[0] == 0) {
				return s.tokenOrRefuse(ac, nil)
			}
			if err := ac.write(protocol.AuthMoreData(mysql.CACHE_SHA2_FULL_AUTH)); err != nil {
				return "", false
			}
			p, err := ac.read()
			if err != nil {
				return "", false
			}
			if len(p) == 1 && p[0] == 2 {
				// The client has no TLS and asks for our RSA key; only reachable with
				// AllowPlaintextPasswords, and then the client may as well send it in clear.
				ac.writeError(errAccessDenied, stateAccessDenied, messageTLSRequiredForAuth)
				return "", false
			}
			return s.tokenOrRefuse(ac, bytes.TrimSuffix(p, []byte{0}))
		}
		if switched {
			ac.writeError(errAccessDenied, stateAccessDenied,
				"this client cannot use caching_sha2_password; enable mysql_clear_password over TLS "+
					"(mysql --enable-cleartext-plugin, go-sql-driver allowCleartextPasswords=true) or upgrade the client")
			return "", false
		}
		switched = true
		if err := ac.write((&protocol.AuthSwitchRequest{Plugin: mysql.AUTH_CACHING_SHA2_PASSWORD, Data: salt}).Encode()); err != nil {
			return "", false
		}
		p, err := ac.read()
		if err != nil {
			if isEOF(err) {
				s.logger.Info("client closed the connection when asked to switch to caching_sha2_password", "username", resp.User, "client_plugin", plugin)
			}
			return "", false
		}
		plugin, data = mysql.AUTH_CACHING_SHA2_PASSWORD, p
	}
}

func (s *session) tokenOrRefuse(ac *authConn, token []byte) (string, bool) {
	if len(token) == 0 {
		ac.writeError(errAccessDenied, stateAccessDenied, "no password given: use your Gatehouse access token as the password (gatehouse token create)")
		return "", false
	}
	return string(token), true
}

// authError maps a refused login to the ERR packet the client sees.
func authError(err error) *protocol.Error {
	var ae *proxy.AuthError
	if !errors.As(err, &ae) {
		return &protocol.Error{Code: errAccessDenied, State: stateAccessDenied,
			Message: "Gatehouse could not check this login; try again, and tell an administrator if it persists"}
	}
	if ae.Reason == proxy.ControlPlaneDown {
		return &protocol.Error{Code: errHandshake, State: stateConnection, Message: ae.Message}
	}
	return &protocol.Error{Code: errAccessDenied, State: stateAccessDenied, Message: ae.Message}
}
