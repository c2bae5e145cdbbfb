package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// endReason says why a live session was ended by the sidecar.
type endReason int

const (
	endNone endReason = iota
	endShutdown
	endExpired
	endRevoked
)

// session is one client connection: handshake, then relay.
type session struct {
	e          *Engine
	client     net.Conn
	clientAddr string
	started    bool // the handshake is done: log lines name the person and the session

	// Client side. cw is written by the upstream→client relay and by end; wmu serialises them so
	// a FATAL never lands inside another message.
	cr     *connReader
	wmu    sync.Mutex
	cw     *connWriter
	broken bool // a message to the client was cut short; no more may be written

	secure   bool
	startup  *startup
	grant    *proxy.Grant
	key      pgproto3.BackendKeyData // ours, given to the client
	upstream *upstreamConn
	cancels  int // cancel requests being forwarded to upstream; guarded by e.mu

	raw           net.Conn // the accepted connection, under TLS
	relaying      atomic.Bool
	reasonMu      sync.Mutex
	reason        endReason
	firstErr      error // the error the relay stopped with first; under reasonMu
	errSet        bool
	hcancel       context.CancelFunc // cancels the handshake's context while it runs; under reasonMu
	stopWatch     func() bool        // stops run's callback on the listener's context
	interruptOnce sync.Once
	bytesUp       atomic.Int64
	bytesDown     atomic.Int64

	// The relay (relay.go): its context, start, timers, directions still running and end.
	ctx         context.Context
	relayStart  time.Time
	expiry      *time.Timer
	stopRevoked func() bool
	live        atomic.Int32
	done        chan struct{} // closed when the session has ended

	// Parking (park.go). pmu guards closing and parked; the sweep's fields are the engine's, under e.mu.
	idl        *idler
	parkID     uint64
	pmu        sync.Mutex
	closing    bool
	parked     [2]bool
	asleep     bool // both directions parked (or the session closed): not running for Config.Quiet
	sweepBytes int64
	quietSince time.Time
	parkAsked  bool

	// Statement governance (govern.go); nil without an Auditor.
	gov            *governor
	q              respQueue
	sbuf           []byte // short server message bodies read for governance (bodyBuffer)
	internalSchema string
}

func newSession(e *Engine, conn net.Conn) *session {
	return &session{
		e:          e,
		client:     conn,
		raw:        conn,
		clientAddr: conn.RemoteAddr().String(),
		cr:         newConnReader(conn, e.bufs),
		cw:         newConnWriter(conn, e.bufs),
	}
}

// log returns the engine's logger with what is known of the session. It is made when something is
// logged rather than kept: a session logs at its start and end, and a kept one would cost every
// idle session its preformatted attributes.
func (s *session) log() *slog.Logger {
	l := s.e.logger.With("client_addr", s.clientAddr)
	if s.started {
		id, t := s.grant.Identity, s.grant.Target
		l = l.With("user", id.User, "token_id", id.TokenID, "repository", t.Repository.Name,
			"repository_user", t.User.Username, "session_id", s.key.ProcessID)
	}
	return l
}

// end asks the session to stop with a reason; the first reason wins. It does not wait: the
// handshake's context is cancelled, and a goroutine interrupts the relay (or unblocks the
// client handshake).
func (s *session) end(r endReason) {
	s.reasonMu.Lock()
	first := s.reason == endNone
	if first {
		s.reason = r
	}
	hcancel := s.hcancel
	s.reasonMu.Unlock()
	if !first {
		return
	}
	if hcancel != nil {
		hcancel()
	}
	go func() {
		if s.relaying.Load() {
			s.interrupt()
		} else {
			// Unblock a client handshake in progress; the relay interrupts itself if it begins.
			s.client.SetDeadline(time.Now())
		}
	}()
}

func (s *session) endReason() endReason {
	s.reasonMu.Lock()
	defer s.reasonMu.Unlock()
	return s.reason
}

// run handshakes and relays. ctx is the listener's: when it is done, the session ends as at
// shutdown. The session has no context of its own (one would cost every idle session a few
// hundred bytes): end stops it.
func (s *session) run(ctx context.Context) {
	s.stopWatch = context.AfterFunc(ctx, func() { s.end(endShutdown) })

	s.client.SetDeadline(time.Now().Add(s.e.cfg.HandshakeTimeout))
	hctx, cancel := context.WithTimeout(ctx, s.e.cfg.HandshakeTimeout)
	s.reasonMu.Lock()
	ended := s.reason != endNone // before hcancel was set: end could not cancel the handshake
	s.hcancel = cancel
	s.reasonMu.Unlock()
	ok := !ended && s.handshake(hctx)
	s.reasonMu.Lock()
	s.hcancel = nil
	s.reasonMu.Unlock()
	cancel() // its timer is not to outlive the handshake
	if !ok {
		if s.upstream != nil {
			s.upstream.conn.Close()
		}
		s.close()
		return
	}
	s.startup = nil // its parameters are upstream's now; not to be kept while the session idles

	s.started = true
	s.log().Info("session started", "database", s.upstream.database, "upstream_tls", s.upstream.tls)
	s.relay(ctx)
}

// close is the last thing a session does: the engine forgets it and its connection is closed.
func (s *session) close() {
	s.pmu.Lock()
	if !s.asleep {
		s.e.cfg.Quiet.Stop()
	}
	s.asleep = true // not to be counted again
	s.pmu.Unlock()
	s.stopWatch()
	s.e.remove(s)
	s.raw.Close()
}

// finish records and logs the end of the session and hands its upstream connection back to the
// pool. The last relay direction to stop calls it (ended).
func (s *session) finish(ctx context.Context, dur time.Duration, reason endReason, err error) {
	if s.gov != nil {
		end := proxy.SessionEnd{Duration: dur, BytesFromClient: s.bytesUp.Load(), BytesToClient: s.bytesDown.Load()}
		switch {
		case reason != endNone:
			end.Reason = reason.String()
		case err != nil:
			end.Reason = err.Error()
		}
		s.gov.aud.Close(context.WithoutCancel(ctx), end)
	}
	attrs := []any{"duration", dur.Round(time.Millisecond), "bytes_from_client", s.bytesUp.Load(), "bytes_to_client", s.bytesDown.Load()}
	switch {
	case reason != endNone:
		attrs = append(attrs, "ended_by", reason.String())
	case err != nil:
		attrs = append(attrs, "error", err)
	}
	s.log().Info("session ended", attrs...)
	if s.e.pool != nil {
		s.releaseUpstream(ctx)
	}
}

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

// send writes messages to the client and flushes.
func (s *session) send(msgs ...interface{ Encode([]byte) ([]byte, error) }) error {
	b, err := encode(msgs...)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.broken {
		return errors.New("client stream broken")
	}
	if _, err := s.cw.Write(b); err != nil {
		s.broken = true
		return err
	}
	if err := s.cw.Flush(); err != nil {
		s.broken = true
		return err
	}
	return nil
}

// fatal sends a FATAL ErrorResponse to the client.
func (s *session) fatal(code, format string, args ...any) {
	s.send(fatalResponse(code, fmt.Sprintf(format, args...)))
}

func fatalResponse(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}
}

// SQLSTATEs used by the engine.
const (
	codeInvalidPassword       = "28P01"
	codeInvalidAuthorization  = "28000"
	codeConnectionFailure     = "08006"
	codeCannotConnect         = "08001"
	codeProtocolViolation     = "08P01"
	codeFeatureNotSupported   = "0A000"
	codeAdminShutdown         = "57P01"
	codeCannotConnectNow      = "57P03"
	codeInternalError         = "XX000"
	messageShuttingDown       = "server is shutting down"
	messageTLSRequiredForAuth = "Gatehouse accepts access tokens only over TLS: connect with sslmode=require (or verify-full)"
)

// authErrorResponse maps a refused login to the FATAL the client sees.
func authErrorResponse(err error) *pgproto3.ErrorResponse {
	var ae *proxy.AuthError
	if !errors.As(err, &ae) {
		return fatalResponse(codeInvalidAuthorization, "Gatehouse could not check this login; try again, and tell an administrator if it persists")
	}
	code := codeInvalidAuthorization
	switch ae.Reason {
	case proxy.TokenInvalid, proxy.TokenExpired, proxy.TokenRevoked:
		code = codeInvalidPassword
	case proxy.ControlPlaneDown:
		code = codeConnectionFailure
	}
	return fatalResponse(code, ae.Message)
}

// isEOF reports whether err is a connection that went away rather than a protocol problem.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// handshake runs the client startup, authorization and upstream connection. It reports whether
// the session is ready to relay; on false the client has been told why (when it can be).
func (s *session) handshake(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		msg, err := readStartup(s.client)
		if err != nil {
			var pe *protocolVersionError
			if errors.As(err, &pe) {
				s.send(fatalResponse(codeFeatureNotSupported, err.Error()))
			}
			if !isEOF(err) && !isTimeout(err) {
				s.log().Debug("bad startup packet", "error", err)
			}
			return false
		}
		if attempt > 2 {
			s.fatal(codeProtocolViolation, "too many startup negotiation packets")
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if s.secure {
				s.fatal(codeProtocolViolation, "SSLRequest inside TLS")
				return false
			}
			if s.e.cfg.TLS == nil {
				if _, err := s.client.Write([]byte{'N'}); err != nil {
					return false
				}
				continue
			}
			if _, err := s.client.Write([]byte{'S'}); err != nil {
				return false
			}
			tc := tls.Server(s.client, s.e.cfg.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				s.log().Debug("client TLS handshake failed", "error", err)
				return false
			}
			s.client = tc
			s.cr.Reset(tc)
			s.cw.Reset(tc)
			s.secure = true
		case *pgproto3.GSSEncRequest:
			if _, err := s.client.Write([]byte{'N'}); err != nil {
				return false
			}
		case *pgproto3.CancelRequest:
			s.e.cancel(ctx, m, s.clientAddr)
			return false
		case *startup:
			s.startup = m
			return s.login(ctx)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// login authenticates the client with its access token, authorizes it and connects upstream.
func (s *session) login(ctx context.Context) bool {
	p := s.startup.Params
	if p["replication"] != "" && p["replication"] != "false" && p["replication"] != "0" && p["replication"] != "off" && p["replication"] != "no" {
		s.fatal(codeFeatureNotSupported, "replication connections are not supported through Gatehouse")
		return false
	}
	if p["user"] == "" {
		s.fatal(codeInvalidAuthorization, "no user name given: connect as the repository user (user or user@repository)")
		return false
	}
	if !s.secure && !s.e.cfg.AllowPlaintextPasswords {
		s.fatal(codeInvalidAuthorization, messageTLSRequiredForAuth)
		return false
	}
	if s.startup.Minor != 0 || len(s.startup.Unsupported) > 0 {
		if err := s.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: s.startup.Unsupported}); err != nil {
			return false
		}
	}
	if err := s.send(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return false
	}
	typ, body, err := readMessage(s.cr, maxAuthMessageLen)
	if err != nil {
		// psql first connects without a password, then asks for one and reconnects.
		if !isEOF(err) && !isTimeout(err) {
			s.fatal(codeProtocolViolation, "%v", err)
		}
		return false
	}
	token, err := decodePassword(typ, body)
	if err != nil {
		s.fatal(codeProtocolViolation, "%v", err)
		return false
	}

	grant, err := s.e.cfg.Authorizer.Authorize(ctx, proxy.Login{
		Port: s.e.cfg.Port, Username: p["user"], Token: token, ClientAddr: s.clientAddr,
	})
	if err != nil {
		var ae *proxy.AuthError
		if errors.As(err, &ae) {
			s.log().Info("login refused", "username", p["user"], "reason", int(ae.Reason), "message", ae.Message)
		} else {
			s.log().Error("authorization failed", "username", p["user"], "error", err)
		}
		s.audit(ctx, proxy.LoginEvent{Err: err})
		s.send(authErrorResponse(err))
		return false
	}
	s.grant = grant

	up, errResp := s.connectUpstream(ctx)
	if errResp != nil {
		s.audit(ctx, proxy.LoginEvent{Grant: grant, Err: fmt.Errorf("%s: %s", errResp.Code, errResp.Message)})
		s.send(errResp)
		return false
	}
	s.upstream = up
	if err := s.e.issueKey(s); err != nil {
		s.fatal(codeInternalError, "cannot issue a cancel key")
		return false
	}
	// The session's start is on the record before the client is told it is in.
	if s.e.cfg.Auditor != nil {
		aud, err := s.audit(ctx, proxy.LoginEvent{Grant: grant})
		if err != nil {
			s.log().Error("session start not recorded; login refused", "error", err)
			s.fatal(codeInsufficientResources, "Gatehouse cannot record this session (%v); try again later", err)
			return false
		}
		if aud != nil {
			s.gov = newGovernor(aud)
		}
		s.q.status = 'I'
		if s.upstream.ready != nil {
			s.q.status = s.upstream.ready.TxStatus
		}
	}
	return s.startSession()
}

// audit records a login attempt, filling in what the session knows.
func (s *session) audit(ctx context.Context, ev proxy.LoginEvent) (proxy.StatementAuditor, error) {
	a := s.e.cfg.Auditor
	if a == nil {
		return nil, nil
	}
	p := s.startup.Params
	ev.Login = proxy.Login{Port: s.e.cfg.Port, Username: p["user"], ClientAddr: s.clientAddr}
	ev.Application = p["application_name"]
	ev.TLS = s.secure
	aud, err := a.Login(ctx, ev)
	if err != nil && ev.Err != nil {
		s.log().Error("refused login not recorded", "error", err)
	}
	return aud, err
}

// startSession tells the client it is in, forwarding the upstream's parameters and its
// ReadyForQuery, and giving it our BackendKeyData instead of the upstream's.
func (s *session) startSession() bool {
	out := []interface{ Encode([]byte) ([]byte, error) }{&pgproto3.AuthenticationOk{}}
	for _, m := range s.upstream.initial {
		if _, ok := m.(*pgproto3.BackendKeyData); ok {
			continue
		}
		out = append(out, m)
	}
	out = append(out, &s.key, s.upstream.ready)
	if err := s.send(out...); err != nil {
		return false
	}
	s.upstream.initial = nil
	return true
}
