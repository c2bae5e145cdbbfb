package postgres

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/rawio"
)

// Default timeouts; PostgreSQL's authentication_timeout is one minute.
const (
	defaultHandshakeTimeout = time.Minute
	// forcedCloseGrace is how long Shutdown waits for sessions it told to end to close.
	forcedCloseGrace = 5 * time.Second
)

// Config configures an Engine.
type Config struct {
	// Port is the listener port this engine serves; it goes into proxy.Login.
	Port int
	// Authorizer decides who may connect as whom. Required.
	Authorizer proxy.Authorizer
	// Credentials supplies repository users' credentials. Required.
	Credentials proxy.Credentials
	// TLS is the client-side TLS configuration (the sidecar's certificate). Required unless
	// AllowPlaintextPasswords.
	TLS *tls.Config
	// AllowPlaintextPasswords accepts the access token over plain TCP. Development only.
	AllowPlaintextPasswords bool
	// Logger receives session start and end; nil discards.
	Logger *slog.Logger
	// Dialer opens upstream connections; nil means a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds the client handshake plus upstream connect and authentication;
	// zero means one minute.
	HandshakeTimeout time.Duration
	// Auditor, when set, records every login attempt and governs every statement: each is
	// classified, evaluated against access policy and recorded before it is forwarded, and a
	// refused one is answered with SQLSTATE 42501 inside the protocol. Nil relays untouched.
	Auditor proxy.Auditor
	// Pool keeps upstream connections of cleanly ended sessions for the next session of the same
	// repository user, database and startup parameters (pool.go). The zero value disables it.
	Pool PoolConfig
	// ParkAfter is how long a session moves no byte before it gives up its goroutines until
	// either side sends something (park.go); zero means one second, negative never.
	ParkAfter time.Duration
	// Quiet, when set, counts this engine's running sessions with the other engines' (a parked
	// session is not running), so that the sidecar knows when none is.
	Quiet *proxy.Quiet
}

// Engine serves PostgreSQL clients on one listener port.
type Engine struct {
	cfg    Config
	logger *slog.Logger
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	pool   *pool      // nil: pooling off
	bufs   *sync.Pool // relay buffers (buffer.go)
	params paramTable // servers' parameters, shared between upstream connections (params.go)

	tlsMu      sync.Mutex
	tlsConfigs map[string]upstreamTLSConfig // by repository name

	mu       sync.Mutex
	sessions map[*session]struct{}
	byPID    map[uint32]*session
	closing  bool
	idle     chan struct{} // closed when closing and the last session has gone

	// Parking idle sessions (park.go), under mu.
	idler      *idler // nil while the engine has no sessions
	parkIDs    uint64 // last park id given out
	parkWarned bool   // told the log that sessions cannot park here
}

var _ proxy.Engine = (*Engine)(nil)

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Authorizer == nil {
		return nil, errors.New("postgres engine: Authorizer is required")
	}
	if cfg.Credentials == nil {
		return nil, errors.New("postgres engine: Credentials is required")
	}
	if cfg.TLS == nil && !cfg.AllowPlaintextPasswords {
		return nil, errors.New("postgres engine: a TLS configuration is required unless plaintext passwords are allowed for development")
	}
	if cfg.ParkAfter == 0 {
		cfg.ParkAfter = defaultParkAfter
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
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
	e := &Engine{
		cfg:      cfg,
		logger:   logger.With("component", "proxy/postgres", "listener_port", cfg.Port),
		dial:     dial,
		sessions: map[*session]struct{}{},
		byPID:    map[uint32]*session{},
		bufs:     newBufferPool(),

		tlsConfigs: map[string]upstreamTLSConfig{},
	}
	if cfg.Pool.Idle > 0 {
		e.pool = newPool(cfg.Pool)
	}
	return e, nil
}

// Serve handles one client connection until the session ends or parks (park.go), and closes conn
// when the session ends. A parked session goes on without a goroutine; Shutdown waits for it.
func (e *Engine) Serve(ctx context.Context, conn net.Conn) {
	conn = rawio.WrapConn(conn) // see internal/rawio: no scheduler hand-offs around each read and write
	s := newSession(e, conn)
	if !e.add(s) {
		conn.Close()
		return
	}
	e.cfg.Quiet.Start() // Stop: when it parks (park.go) and when it ends (close)
	s.run(ctx)
}

// Shutdown drains the engine: new connections are refused, live sessions run until they end or
// ctx is done; then the remaining ones are ended with FATAL "server is shutting down". It returns
// ctx.Err() if it had to end sessions.
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
	e.pool.close()

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

func (e *Engine) add(s *session) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return false
	}
	e.sessions[s] = struct{}{}
	return true
}

func (e *Engine) remove(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.sessions, s)
	if s.key.ProcessID != 0 && e.byPID[s.key.ProcessID] == s {
		delete(e.byPID, s.key.ProcessID)
	}
	if e.closing && len(e.sessions) == 0 && e.idle != nil {
		select {
		case <-e.idle:
		default:
			close(e.idle)
		}
	}
}

// issueKey gives s a fresh random BackendKeyData, unique among this engine's sessions. The
// upstream's own key never reaches the client.
func (e *Engine) issueKey(s *session) error {
	secret := make([]byte, backendKeySecretV3)
	var pid [4]byte
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if _, err := rand.Read(pid[:]); err != nil {
			return err
		}
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		p := binary.BigEndian.Uint32(pid[:])
		if p == 0 || e.byPID[p] != nil {
			continue
		}
		s.key = pgproto3.BackendKeyData{ProcessID: p, SecretKey: secret}
		e.byPID[p] = s
		return nil
	}
}

// retire takes s's cancel key out of use before its upstream connection goes back to the pool,
// and reports whether it may go back: not while a cancel request for s is being forwarded (it
// would reach the connection's next session), nor while the engine shuts down.
func (e *Engine) retire(s *session) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.key.ProcessID != 0 && e.byPID[s.key.ProcessID] == s {
		delete(e.byPID, s.key.ProcessID)
	}
	return s.cancels == 0 && !e.closing
}

// cancel forwards a CancelRequest to the upstream backend of the session the key belongs to.
// An unknown or forged key cancels nothing; like PostgreSQL, the client gets no answer either way.
func (e *Engine) cancel(ctx context.Context, req *pgproto3.CancelRequest, clientAddr string) {
	e.mu.Lock()
	s := e.byPID[req.ProcessID]
	if s != nil && subtle.ConstantTimeCompare(s.key.SecretKey, req.SecretKey) == 1 {
		s.cancels++
	} else {
		s = nil
	}
	e.mu.Unlock()
	if s == nil {
		e.logger.Warn("cancel request with an unknown key ignored", "client_addr", clientAddr)
		return
	}
	defer func() {
		e.mu.Lock()
		s.cancels--
		e.mu.Unlock()
	}()
	if err := s.cancelUpstream(ctx); err != nil {
		e.logger.Warn("cancel request not delivered", "client_addr", clientAddr, "session_id", s.key.ProcessID, "error", err)
		return
	}
	e.logger.Info("cancel request forwarded", "client_addr", clientAddr, "session_id", s.key.ProcessID)
}
