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
	"github.com/gatehousedb/gatehouse/internal/rawio"
)

// Default timeouts; MySQL's connect_timeout is 10 s, but a person may be typing a password.
const (
	defaultHandshakeTimeout = time.Minute
	// forcedCloseGrace is how long Shutdown waits for sessions it told to end to close.
	forcedCloseGrace = 5 * time.Second
	defaultVersion   = "8.0"
)

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
	// Auditor, when set, records every login attempt and governs every statement: each one of a
	// COM_QUERY (several with multi-statements), each COM_STMT_EXECUTE (with the text it was
	// prepared from) and each COM_INIT_DB is classified, evaluated against access policy and
	// recorded before it is forwarded; a refused one is answered with ERR 1142 (SQLSTATE 42000)
	// naming the rule and the session goes on. Nil relays untouched.
	Auditor proxy.Auditor
	// Quiet, when set, counts this engine's sessions with the other engines' running ones, so
	// that the sidecar knows when none is running.
	Quiet *proxy.Quiet
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
	conn = rawio.WrapConn(conn) // see internal/rawio: no scheduler hand-offs around each read and write
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := newSession(e, conn, cancel)
	if !e.add(s) {
		s.refuseShutdown()
		return
	}
	defer e.remove(s)
	e.cfg.Quiet.Start() // MySQL sessions do not park: running until they end
	defer e.cfg.Quiet.Stop()
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
