package mysql

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// Default timeouts; MySQL's connect_timeout is 10 s, but a person may be typing a password.
const (
	defaultHandshakeTimeout = time.Minute
	// forcedCloseGrace is how long Shutdown waits for sessions it told to end to close.
	forcedCloseGrace = 5 * time.Second
	defaultVersion   = "8.0"
)

// Statement is one statement a client sent, passed to Config.OnStatement before it is forwarded.
type Statement struct {
	Grant *proxy.Grant
	// Command is the MySQL command byte: COM_QUERY (0x03; the text may hold several statements
	// when the client enabled multi-statements), COM_STMT_PREPARE (0x16), COM_STMT_EXECUTE (0x17)
	// or COM_INIT_DB (0x02, SQL is "USE `db`").
	Command byte
	// StatementID is the prepared statement an execution runs (COM_STMT_EXECUTE only).
	StatementID uint32
	// SQL is the text: for COM_STMT_EXECUTE, the text the statement was prepared from ("" if the
	// preparation was not seen, which the hook should treat as unsupported).
	SQL string
}

// Config configures an Engine.
type Config struct {
	// Port is the listener port this engine serves; it goes into proxy.Login.
	Port int
	// Version is the listener port's registered version ("8.0", "10.11"); the initial handshake
	// announces it (see ServerVersion). Empty means "8.0".
	Version string
	// Authorizer decides who may connect as whom. Required.
	Authorizer proxy.Authorizer
	// Credentials supplies repository users' credentials. Required.
	Credentials proxy.Credentials
	// TLS is the client-side TLS configuration (the sidecar's certificate). Required unless
	// AllowPlaintextPasswords.
	TLS *tls.Config
	// AllowPlaintextPasswords accepts the access token over plain TCP. Development only.
	AllowPlaintextPasswords bool
	// AllowLocalInfile lets clients use LOAD DATA LOCAL INFILE. Off, CLIENT_LOCAL_FILES is neither
	// offered to clients nor asked of the repository, so the statement is refused.
	AllowLocalInfile bool
	// Logger receives session start and end; nil discards.
	Logger *slog.Logger
	// Dialer opens upstream connections; nil means a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds the client handshake plus upstream connect and authentication;
	// zero means one minute.
	HandshakeTimeout time.Duration
	// OnStatement, when set, is called with each statement before it is forwarded: the one place
	// where statements are classified, checked against policy and recorded. A non-nil error
	// refuses the statement: the client gets ERR 1142 (SQLSTATE 42000) with the error's text and
	// the session goes on.
	OnStatement func(ctx context.Context, st Statement) error
}

// Engine serves MySQL and MariaDB clients on one listener port.
type Engine struct {
	cfg           Config
	logger        *slog.Logger
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	serverVersion string

	mu       sync.Mutex
	sessions map[*session]struct{}
	byID     map[uint32]*session
	nextID   uint32
	closing  bool
	idle     chan struct{} // closed when closing and the last session has gone
}

var _ proxy.Engine = (*Engine)(nil)

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Authorizer == nil {
		return nil, errors.New("mysql engine: Authorizer is required")
	}
	if cfg.Credentials == nil {
		return nil, errors.New("mysql engine: Credentials is required")
	}
	if cfg.TLS == nil && !cfg.AllowPlaintextPasswords {
		return nil, errors.New("mysql engine: a TLS configuration is required unless plaintext passwords are allowed for development")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.Version == "" {
		cfg.Version = defaultVersion
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dial := cfg.Dialer
	if dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	return &Engine{
		cfg:           cfg,
		logger:        logger.With("component", "proxy/mysql", "listener_port", cfg.Port),
		dial:          dial,
		serverVersion: ServerVersion(cfg.Version),
		sessions:      map[*session]struct{}{},
		byID:          map[uint32]*session{},
		nextID:        1,
	}, nil
}

// ServerVersion is the version string the initial handshake announces for a listener version:
// "8.0" → "8.0.0-gatehouse"; MariaDB versions (10 and later) get MariaDB's "5.5.5-" prefix, which
// MariaDB clients strip and older MySQL clients need: "10.11" → "5.5.5-10.11.0-MariaDB-gatehouse".
func ServerVersion(v string) string {
	parts := strings.Split(v, ".")
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	full := strings.Join(parts[:3], ".")
	if major, err := strconv.Atoi(parts[0]); err == nil && major >= 10 {
		return "5.5.5-" + full + "-MariaDB-gatehouse"
	}
	return full + "-gatehouse"
}

// Serve handles one client connection until the session ends, and closes conn.
func (e *Engine) Serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := newSession(e, conn, cancel)
	if !e.add(s) {
		s.refuseShutdown()
		return
	}
	defer e.remove(s)
	s.run(ctx)
}

// Shutdown drains the engine: new connections are refused, live sessions run until they end or
// ctx is done; then the remaining ones are ended with ERR 1053 "server is shutting down". It
// returns ctx.Err() if it had to end sessions.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	if e.idle == nil {
		e.idle = make(chan struct{})
		if len(e.sessions) == 0 {
			close(e.idle)
		}
	}
	idle := e.idle
	e.mu.Unlock()

	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	e.mu.Lock()
	n := len(e.sessions)
	for s := range e.sessions {
		s.end(endShutdown)
	}
	e.mu.Unlock()
	e.logger.Info("shutdown deadline reached, ending sessions", "sessions", n)
	t := time.NewTimer(forcedCloseGrace)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
	return ctx.Err()
}

// add registers s and gives it a connection id, unique among this engine's live sessions.
func (e *Engine) add(s *session) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return false
	}
	for e.nextID == 0 || e.byID[e.nextID] != nil {
		e.nextID++
	}
	s.id = e.nextID
	e.nextID++
	e.sessions[s] = struct{}{}
	e.byID[s.id] = s
	return true
}

func (e *Engine) remove(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.sessions, s)
	if e.byID[s.id] == s {
		delete(e.byID, s.id)
	}
	if e.closing && len(e.sessions) == 0 && e.idle != nil {
		select {
		case <-e.idle:
		default:
			close(e.idle)
		}
	}
}

// lookup returns the live session with our connection id.
func (e *Engine) lookup(id uint32) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byID[id]
}
