package postgres

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/rawio"
)

// maxApplicationName is NAMEDATALEN-1: PostgreSQL truncates application_name to 63 bytes.
const maxApplicationName = 63

// upstreamConn is an authenticated connection to the repository.
type upstreamConn struct {
	conn     net.Conn
	r        *connReader
	w        *connWriter
	tls      bool
	database string
	key      pgproto3.BackendKeyData // the upstream's; used only to forward cancels
	initial  []interface{ Encode([]byte) ([]byte, error) }
	ready    *pgproto3.ReadyForQuery
}

// serverError is an ErrorResponse the repository sent during startup.
type serverError struct{ resp *pgproto3.ErrorResponse }

func (e *serverError) Error() string {
	return fmt.Sprintf("repository refused the connection: %s (SQLSTATE %s)", e.resp.Message, e.resp.Code)
}

// credentialError is a failure to fetch the repository user's credential.
type credentialError struct{ err error }

func (e *credentialError) Error() string { return e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

// connectUpstream gives the session a connection to the target repository, authenticated as the
// repository user: from the pool when pooling is on (pool.go), else a new one (connectNew). When the
// repository rejects the credential (28P01) it drops the cached credential (and the repository
// user's pooled connections) and tries once more with a fresh one: the password may have been
// rotated. On failure it returns the ErrorResponse to give the client.
func (s *session) connectUpstream(ctx context.Context) (*upstreamConn, *pgproto3.ErrorResponse) {
	params := upstreamParams(s.startup.Params, s.grant.Target, s.grant.Identity)
	if s.e.pool != nil {
		return s.connectPooled(ctx, params)
	}
	return s.connectNew(ctx, params)
}

// connectNew opens a new upstream connection with params, retrying once with a fresh credential.
func (s *session) connectNew(ctx context.Context, params map[string]string) (*upstreamConn, *pgproto3.ErrorResponse) {
	t := s.grant.Target
	for retried := false; ; retried = true {
		up, cred, err := s.attemptUpstream(ctx, params)
		if err == nil {
			return up, nil
		}
		var se *serverError
		if errors.As(err, &se) && se.resp.Code == codeInvalidPassword && !cred.IsZero() && !retried {
			s.log().Warn("repository rejected the credential; fetching it again", "repository", t.Repository.Name,
				"repository_user", t.User.Username, "secret_ref", t.User.Secret.String())
			s.e.cfg.Credentials.Invalidate(t)
			s.e.pool.drop(t)
			continue
		}
		return nil, s.upstreamErrorResponse(err, cred)
	}
}

// upstreamErrorResponse turns a failed connect into what the client sees, and logs it for the
// operator. Neither contains the credential.
func (s *session) upstreamErrorResponse(err error, cred gatehouse.Credential) *pgproto3.ErrorResponse {
	t := s.grant.Target
	log := s.log().With("repository", t.Repository.Name, "repository_user", t.User.Username)
	var se *serverError
	var ce *credentialError
	switch {
	case errors.As(err, &se):
		log.Warn("repository refused the connection", "sqlstate", se.resp.Code, "message", redact(se.resp.Message, cred))
		return sanitize(se.resp, cred)
	case errors.As(err, &ce):
		log.Error("cannot fetch the repository user's credential", "error", err)
		return fatalResponse(codeCannotConnect, fmt.Sprintf(
			"Gatehouse cannot fetch the credential of repository user %s; an administrator can find why in the sidecar's log", t.User.Username))
	default:
		log.Warn("cannot connect to the repository", "error", err)
		return fatalResponse(codeCannotConnect, redact(fmt.Sprintf("repository %s: %v", t.Repository.Name, err), cred))
	}
}

// sanitize copies a server error for the client with any occurrence of the credential redacted,
// in case a server or extension echoes it.
func sanitize(r *pgproto3.ErrorResponse, cred gatehouse.Credential) *pgproto3.ErrorResponse {
	c := *r
	c.Message = redact(c.Message, cred)
	c.Detail = redact(c.Detail, cred)
	c.Hint = redact(c.Hint, cred)
	c.Where = redact(c.Where, cred)
	c.InternalQuery = redact(c.InternalQuery, cred)
	c.UnknownFields = nil
	return &c
}

func redact(s string, cred gatehouse.Credential) string {
	if cred.IsZero() {
		return s
	}
	return strings.ReplaceAll(s, cred.Reveal(), "[REDACTED]")
}

// tlsWant is how one connection attempt uses TLS.
type tlsWant int

const (
	tlsNo       tlsWant = iota // plain
	tlsIfOffer                 // SSLRequest; plain if the server declines
	tlsRequired                // SSLRequest; fail if the server declines
)

// attemptUpstream makes one connection per the repository's TLS mode. It returns the credential it
// sent, if any, so a rejection can be retried and redacted.
func (s *session) attemptUpstream(ctx context.Context, params map[string]string) (*upstreamConn, gatehouse.Credential, error) {
	repo := s.grant.Target.Repository
	mode := repo.TLSMode
	if mode == "" {
		mode = gatehouse.TLSPrefer
	}
	switch mode {
	case gatehouse.TLSDisable:
		return s.tryUpstream(ctx, params, tlsNo)
	case gatehouse.TLSAllow:
		up, cred, err := s.tryUpstream(ctx, params, tlsNo)
		var se *serverError
		if errors.As(err, &se) && se.resp.Code == codeInvalidAuthorization {
			// libpq's allow: a server that refuses the plain connection (hostssl) gets a TLS one.
			return s.tryUpstream(ctx, params, tlsIfOffer)
		}
		return up, cred, err
	case gatehouse.TLSPrefer:
		return s.tryUpstream(ctx, params, tlsIfOffer)
	case gatehouse.TLSRequire, gatehouse.TLSVerifyCA, gatehouse.TLSVerifyFull:
		return s.tryUpstream(ctx, params, tlsRequired)
	}
	return nil, gatehouse.Credential{}, fmt.Errorf("unknown TLS mode %q", mode)
}

func (s *session) tryUpstream(ctx context.Context, params map[string]string, want tlsWant) (*upstreamConn, gatehouse.Credential, error) {
	conn, usedTLS, err := s.dialUpstream(ctx, want)
	if err != nil {
		return nil, gatehouse.Credential{}, err
	}
	up := &upstreamConn{
		conn:     conn,
		r:        newConnReader(conn, s.e.bufs),
		w:        newConnWriter(conn, s.e.bufs),
		tls:      usedTLS,
		database: params["database"],
	}
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	cred, err := s.startupUpstream(ctx, up, params)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, cred, err
	}
	conn.SetDeadline(time.Time{})
	return up, cred, nil
}

// dialUpstream opens a TCP connection to the repository and negotiates TLS.
func (s *session) dialUpstream(ctx context.Context, want tlsWant) (net.Conn, bool, error) {
	repo := s.grant.Target.Repository
	addr := net.JoinHostPort(repo.Hostname, strconv.Itoa(repo.Port))
	conn, err := s.e.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	conn = rawio.WrapConn(conn) // see internal/rawio: no scheduler hand-offs around each read and write
	if want == tlsNo {
		return conn, false, nil
	}
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	b, err := encode(&pgproto3.SSLRequest{})
	if err == nil {
		_, err = conn.Write(b)
	}
	var answer [1]byte
	if err == nil {
		// Read exactly one byte: anything after it would have been sent before the TLS handshake
		// and must not be taken as coming from inside it.
		_, err = io.ReadFull(conn, answer[:])
	}
	if err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("TLS negotiation with %s: %w", addr, err)
	}
	switch answer[0] {
	case 'S':
	case 'N':
		if want == tlsRequired {
			conn.Close()
			return nil, false, fmt.Errorf("%s does not accept TLS connections, but the repository's tls_mode is %s", addr, repo.TLSMode)
		}
		conn.SetDeadline(time.Time{})
		return conn, false, nil
	default:
		conn.Close()
		return nil, false, fmt.Errorf("%s answered the SSLRequest with %q: is it a PostgreSQL server?", addr, answer[0])
	}
	cfg, err := s.e.upstreamTLS(repo)
	if err != nil {
		conn.Close()
		return nil, false, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("TLS handshake with %s (tls_mode %s): %w", addr, repo.TLSMode, err)
	}
	tc.SetDeadline(time.Time{})
	return tc, true, nil
}

// upstreamTLSKey is what proxy.UpstreamTLS makes a repository's configuration of.
type upstreamTLSKey struct {
	hostname string
	mode     gatehouse.TLSMode
	caBundle string
}

// upstreamTLS returns the TLS configuration for connections to repo, made once per repository
// settings and shared by its connections. Made per connection, each would keep its own CA pool and
// the CA certificate parsed from it while verifying: some 4 KiB per idle session.
func (e *Engine) upstreamTLS(repo gatehouse.Repository) (*tls.Config, error) {
	k := upstreamTLSKey{repo.Hostname, repo.TLSMode, repo.CABundle}
	e.tlsMu.Lock()
	defer e.tlsMu.Unlock()
	if c, ok := e.tlsConfigs[repo.Name]; ok && c.key == k {
		return c.cfg, nil
	}
	cfg, err := proxy.UpstreamTLS(repo)
	if err != nil {
		return nil, err
	}
	e.tlsConfigs[repo.Name] = upstreamTLSConfig{k, cfg}
	return cfg, nil
}

type upstreamTLSConfig struct {
	key upstreamTLSKey
	cfg *tls.Config // shared: never modified
}

// upstreamParams builds the upstream StartupMessage parameters: the repository user, the database
// the client asked for (or the repository's), application_name naming the person, and every other
// parameter the client sent.
func upstreamParams(client map[string]string, t proxy.Target, id proxy.Identity) map[string]string {
	p := map[string]string{}
	for k, v := range client {
		switch k {
		case "user", "database", "application_name", "replication":
			continue
		}
		p[k] = v
	}
	p["user"] = t.User.Username
	db := client["database"]
	// libpq sends the user name as the database when none is given; the user name the client
	// typed ("app@sales") is not a database, so that means "the repository's default".
	if db == "" || db == client["user"] {
		db = t.Repository.Database
	}
	if db != "" {
		p["database"] = db
	}
	p["application_name"] = applicationName(client["application_name"], id.User)
	return p
}

// applicationName is "gatehouse:<user>", or "<client app> (gatehouse:<user>)", cut to 63 bytes by
// shortening the client's part first, so pg_stat_activity always shows who is connected.
func applicationName(clientApp, user string) string {
	own := "gatehouse:" + user
	if clientApp == "" {
		return truncate(own, maxApplicationName)
	}
	suffix := " (" + own + ")"
	room := maxApplicationName - len(suffix)
	if room < 1 {
		return truncate(own, maxApplicationName)
	}
	return truncate(clientApp, room) + suffix
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// startupUpstream sends the StartupMessage, authenticates as the server asks, and reads up to the
// first ReadyForQuery.
func (s *session) startupUpstream(ctx context.Context, up *upstreamConn, params map[string]string) (gatehouse.Credential, error) {
	var cred gatehouse.Credential
	credential := func() (gatehouse.Credential, error) {
		if !cred.IsZero() {
			return cred, nil
		}
		c, err := s.e.cfg.Credentials.Credential(ctx, s.grant.Target)
		if err != nil {
			return c, &credentialError{err}
		}
		cred = c
		return c, nil
	}
	send := func(m interface{ Encode([]byte) ([]byte, error) }) error {
		b, err := m.Encode(nil)
		if err != nil {
			return err
		}
		if _, err := up.w.Write(b); err != nil {
			return err
		}
		return up.w.Flush()
	}
	if err := send(&pgproto3.StartupMessage{ProtocolVersion: protocolVersion30, Parameters: params}); err != nil {
		return cred, fmt.Errorf("send startup message: %w", err)
	}

	var sc *scramClient
	authenticated := false
	for {
		typ, body, err := readMessage(up.r, maxAuthMessageLen)
		if err != nil {
			return cred, fmt.Errorf("read from repository: %w", err)
		}
		switch typ {
		case 'E':
			var m pgproto3.ErrorResponse
			if err := m.Decode(body); err != nil {
				return cred, fmt.Errorf("decode error from repository: %w", err)
			}
			return cred, &serverError{resp: &m}
		case 'N':
			var m pgproto3.NoticeResponse
			if err := m.Decode(body); err != nil {
				return cred, fmt.Errorf("decode notice from repository: %w", err)
			}
			up.initial = append(up.initial, &m)
		case 'v':
			// NegotiateProtocolVersion: we ask for 3.0 without options, so there is nothing to adjust.
		case 'S':
			m, err := s.e.params.get(body)
			if err != nil {
				return cred, fmt.Errorf("decode parameter status: %w", err)
			}
			up.initial = append(up.initial, m)
		case 'K':
			if err := up.key.Decode(body); err != nil {
				return cred, fmt.Errorf("decode backend key data: %w", err)
			}
		case 'Z':
			if !authenticated {
				return cred, errors.New("repository sent ReadyForQuery before authentication")
			}
			var m pgproto3.ReadyForQuery
			if err := m.Decode(body); err != nil {
				return cred, fmt.Errorf("decode ready for query: %w", err)
			}
			up.ready = &m
			return cred, nil
		case 'R':
			if authenticated {
				return cred, errors.New("repository asked to authenticate twice")
			}
			if len(body) < 4 {
				return cred, errors.New("short authentication request from repository")
			}
			switch binary.BigEndian.Uint32(body) {
			case pgproto3.AuthTypeOk:
				authenticated = true
			case pgproto3.AuthTypeCleartextPassword:
				c, err := credential()
				if err != nil {
					return cred, err
				}
				if err := send(&pgproto3.PasswordMessage{Password: c.Reveal()}); err != nil {
					return cred, fmt.Errorf("send password: %w", err)
				}
			case pgproto3.AuthTypeMD5Password:
				var m pgproto3.AuthenticationMD5Password
				if err := m.Decode(body); err != nil {
					return cred, fmt.Errorf("decode MD5 request: %w", err)
				}
				c, err := credential()
				if err != nil {
					return cred, err
				}
				if err := send(&pgproto3.PasswordMessage{Password: md5Password(s.grant.Target.User.Username, c.Reveal(), m.Salt)}); err != nil {
					return cred, fmt.Errorf("send MD5 password: %w", err)
				}
			case pgproto3.AuthTypeSASL:
				var m pgproto3.AuthenticationSASL
				if err := m.Decode(body); err != nil {
					return cred, fmt.Errorf("decode SASL request: %w", err)
				}
				if !slices.Contains(m.AuthMechanisms, scramMechanism) {
					return cred, fmt.Errorf("repository offers SASL mechanisms %v; Gatehouse supports %s", m.AuthMechanisms, scramMechanism)
				}
				c, err := credential()
				if err != nil {
					return cred, err
				}
				if sc, err = newSCRAMClient(c.Reveal()); err != nil {
					return cred, fmt.Errorf("start SCRAM: %w", err)
				}
				if err := send(&pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: sc.clientFirst()}); err != nil {
					return cred, fmt.Errorf("send SCRAM client-first: %w", err)
				}
			case pgproto3.AuthTypeSASLContinue:
				var m pgproto3.AuthenticationSASLContinue
				if err := m.Decode(body); err != nil || sc == nil {
					return cred, errors.New("unexpected SCRAM server-first-message")
				}
				final, err := sc.clientFinal(m.Data)
				if err != nil {
					return cred, err
				}
				if err := send(&pgproto3.SASLResponse{Data: final}); err != nil {
					return cred, fmt.Errorf("send SCRAM client-final: %w", err)
				}
			case pgproto3.AuthTypeSASLFinal:
				var m pgproto3.AuthenticationSASLFinal
				if err := m.Decode(body); err != nil || sc == nil {
					return cred, errors.New("unexpected SCRAM server-final-message")
				}
				if err := sc.verifyServerFinal(m.Data); err != nil {
					return cred, err
				}
			default:
				return cred, fmt.Errorf("repository asks for authentication method %d; Gatehouse supports SCRAM-SHA-256, MD5, password and trust",
					binary.BigEndian.Uint32(body))
			}
		default:
			return cred, fmt.Errorf("unexpected message %q from repository during startup", typ)
		}
	}
}

// md5Password is PostgreSQL's "md5" || md5(md5(password || user) || salt).
func md5Password(user, password string, salt [4]byte) string {
	inner := md5.Sum([]byte(password + user))
	h := hex.EncodeToString(inner[:])
	outer := md5.Sum(append([]byte(h), salt[:]...))
	return "md5" + hex.EncodeToString(outer[:])
}

// cancelUpstream sends the upstream backend's real cancel key to the repository, over a new
// connection negotiated the way the session's was.
func (s *session) cancelUpstream(ctx context.Context) error {
	up := s.upstream
	if up == nil {
		return errors.New("session has no upstream yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	want := tlsNo
	if up.tls {
		want = tlsRequired
	}
	conn, _, err := s.dialUpstream(ctx, want)
	if err != nil {
		return err
	}
	defer conn.Close()
	b, err := (&pgproto3.CancelRequest{ProcessID: up.key.ProcessID, SecretKey: up.key.SecretKey}).Encode(nil)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("send cancel request: %w", err)
	}
	// The server closes the connection once it has handled the request.
	io.Copy(io.Discard, conn)
	return nil
}
