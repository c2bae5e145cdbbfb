package mysql

import (
	"bufio"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/mysql/protocol"
	"github.com/gatehousedb/gatehouse/internal/rawio"
)

// maxProgramName keeps program_name within performance_schema's default attribute sizes.
const maxProgramName = 128

// upstreamConn is an authenticated connection to the repository.
type upstreamConn struct {
	conn         net.Conn
	r            *bufio.Reader
	w            *bufio.Writer
	tls          bool
	database     string
	connectionID uint32 // the repository's thread id; KILL is rewritten to it
	ok           []byte // the repository's final OK payload, forwarded to the client
}

// serverError is an ERR packet the repository sent during the handshake.
type serverError struct{ err *protocol.Error }

func (e *serverError) Error() string {
	return fmt.Sprintf("repository refused the connection: %s", e.err.Error())
}

// credentialError is a failure to fetch the repository user's credential.
type credentialError struct{ err error }

func (e *credentialError) Error() string { return e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

// connectUpstream dials the target repository and authenticates as the repository user. When the
// repository rejects the credential (1045) it drops the cached credential and tries once more with
// a fresh one: the password may have been rotated. On failure it returns the ERR to give the client.
func (s *session) connectUpstream(ctx context.Context) (*upstreamConn, *protocol.Error) {
	t := s.grant.Target
	for retried := false; ; retried = true {
		up, cred, err := s.attemptUpstream(ctx)
		if err == nil {
			return up, nil
		}
		var se *serverError
		if errors.As(err, &se) && se.err.Code == errAccessDenied && !cred.IsZero() && !retried {
			s.logger.Warn("repository rejected the credential; fetching it again", "repository", t.Repository.Name,
				"repository_user", t.User.Username, "secret_ref", t.User.Secret.String())
			s.e.cfg.Credentials.Invalidate(t)
			continue
		}
		return nil, s.upstreamError(err, cred)
	}
}

// upstreamError turns a failed connect into what the client sees, and logs it for the operator.
// Neither contains the credential.
func (s *session) upstreamError(err error, cred gatehouse.Credential) *protocol.Error {
	t := s.grant.Target
	log := s.logger.With("repository", t.Repository.Name, "repository_user", t.User.Username)
	var se *serverError
	var ce *credentialError
	switch {
	case errors.As(err, &se):
		msg := redact(se.err.Message, cred)
		log.Warn("repository refused the connection", "error_code", se.err.Code, "message", msg)
		return &protocol.Error{Code: se.err.Code, State: se.err.State, Message: msg}
	case errors.As(err, &ce):
		log.Error("cannot fetch the repository user's credential", "error", err)
		return &protocol.Error{Code: errUnknown, State: stateCannotConn, Message: fmt.Sprintf(
			"Gatehouse cannot fetch the credential of repository user %s; an administrator can find why in the sidecar's log", t.User.Username)}
	default:
		msg := redact(fmt.Sprintf("repository %s: %v", t.Repository.Name, err), cred)
		log.Warn("cannot connect to the repository", "error", msg)
		return &protocol.Error{Code: errUnknown, State: stateCannotConn, Message: msg}
	}
}

func redact(s string, cred gatehouse.Credential) string {
	if cred.IsZero() || cred.Reveal() == "" {
		return s
	}
	return strings.ReplaceAll(s, cred.Reveal(), "[REDACTED]")
}

// tlsWant is how one connection attempt uses TLS.
type tlsWant int

const (
	tlsNo       tlsWant = iota // plain
	tlsIfOffer                 // TLS when the server offers CLIENT_SSL
	tlsRequired                // TLS; fail if the server does not offer it
)

// attemptUpstream makes one connection per the repository's TLS mode.
func (s *session) attemptUpstream(ctx context.Context) (*upstreamConn, gatehouse.Credential, error) {
	repo := s.grant.Target.Repository
	mode := repo.TLSMode
	if mode == "" {
		mode = gatehouse.TLSPrefer
	}
	switch mode {
	case gatehouse.TLSDisable:
		return s.tryUpstream(ctx, tlsNo)
	case gatehouse.TLSAllow:
		up, cred, err := s.tryUpstream(ctx, tlsNo)
		var se *serverError
		if errors.As(err, &se) && se.err.Code == errAccessDenied {
			// An account that REQUIRE SSL is refused in plain; try again inside TLS.
			if up2, cred2, err2 := s.tryUpstream(ctx, tlsRequired); err2 == nil {
				return up2, cred2, nil
			}
		}
		return up, cred, err
	case gatehouse.TLSPrefer:
		return s.tryUpstream(ctx, tlsIfOffer)
	case gatehouse.TLSRequire, gatehouse.TLSVerifyCA, gatehouse.TLSVerifyFull:
		return s.tryUpstream(ctx, tlsRequired)
	}
	return nil, gatehouse.Credential{}, fmt.Errorf("unknown TLS mode %q", mode)
}

func (s *session) tryUpstream(ctx context.Context, want tlsWant) (*upstreamConn, gatehouse.Credential, error) {
	repo := s.grant.Target.Repository
	addr := net.JoinHostPort(repo.Hostname, strconv.Itoa(repo.Port))
	conn, err := s.e.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, gatehouse.Credential{}, fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	conn = rawio.WrapConn(conn) // see internal/rawio: no scheduler hand-offs around each read and write
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	up, cred, err := s.authenticateUpstream(ctx, conn, addr, want)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		if up != nil {
			up.conn.Close()
		} else {
			conn.Close()
		}
		return nil, cred, err
	}
	up.conn.SetDeadline(time.Time{})
	up.r = bufio.NewReaderSize(up.conn, 16<<10)
	up.w = bufio.NewWriterSize(up.conn, 16<<10)
	return up, cred, nil
}

// authenticateUpstream reads the repository's handshake, negotiates TLS, logs in as the repository
// user with the client's capabilities, and reads up to the final OK.
func (s *session) authenticateUpstream(ctx context.Context, conn net.Conn, addr string, want tlsWant) (*upstreamConn, gatehouse.Credential, error) {
	repo := s.grant.Target.Repository
	var cred gatehouse.Credential
	ac := &authConn{rw: conn, seq: 255}
	p, err := ac.read()
	if err != nil {
		return nil, cred, fmt.Errorf("read handshake from %s: %w", addr, err)
	}
	hs, err := protocol.DecodeHandshake(p)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			return nil, cred, &serverError{pe}
		}
		return nil, cred, fmt.Errorf("%s: %w; is it a MySQL server?", addr, err)
	}
	up := &upstreamConn{conn: conn, connectionID: hs.ConnectionID}
	useTLS := want == tlsRequired || (want == tlsIfOffer && hs.Capabilities&mysql.CLIENT_SSL != 0)
	if want == tlsRequired && hs.Capabilities&mysql.CLIENT_SSL == 0 {
		return nil, cred, fmt.Errorf("%s does not accept TLS connections, but the repository's tls_mode is %s", addr, repo.TLSMode)
	}
	if missing := s.caps & formatCapabilities &^ hs.Capabilities; missing != 0 {
		return nil, cred, fmt.Errorf("%s (version %s) lacks protocol capabilities the client negotiated (0x%x); check the listener port's version", addr, hs.ServerVersion, missing)
	}

	caps := s.caps&^(mysql.CLIENT_SSL|mysql.CLIENT_CONNECT_WITH_DB|mysql.CLIENT_CONNECT_ATTRS|mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA|mysql.CLIENT_COMPRESS|mysql.CLIENT_ZSTD_COMPRESSION_ALGORITHM) |
		mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_LONG_PASSWORD
	if !s.e.cfg.AllowLocalInfile {
		caps &^= mysql.CLIENT_LOCAL_FILES
	}
	caps |= hs.Capabilities & (mysql.CLIENT_CONNECT_ATTRS | mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
	resp := &protocol.HandshakeResponse{
		MaxPacketSize: s.hello.MaxPacketSize,
		Charset:       s.hello.Charset,
		User:          s.grant.Target.User.Username,
	}
	if resp.MaxPacketSize == 0 {
		resp.MaxPacketSize = protocol.MaxPayload
	}
	up.database = s.hello.Database
	if up.database == "" {
		up.database = repo.Database
	}
	if up.database != "" {
		caps |= mysql.CLIENT_CONNECT_WITH_DB
		resp.Database = up.database
	}
	if useTLS {
		caps |= mysql.CLIENT_SSL
	}
	resp.Capabilities = caps & (hs.Capabilities | mysql.CLIENT_LONG_PASSWORD)
	resp.Attrs = upstreamAttrs(s.hello.Attrs, s.grant.Identity)

	if useTLS {
		req := *resp
		req.SSLRequest = true
		if err := ac.write(req.Encode()); err != nil {
			return nil, cred, fmt.Errorf("send SSLRequest: %w", err)
		}
		cfg, err := proxy.UpstreamTLS(repo)
		if err != nil {
			return nil, cred, err
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, cred, fmt.Errorf("TLS handshake with %s (tls_mode %s): %w", addr, repo.TLSMode, err)
		}
		up.conn, up.tls = tc, true
		ac.rw = tc
	}

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
	pw, err := credential()
	if err != nil {
		return up, cred, err
	}
	password := pw.Reveal()
	plugin, salt := hs.AuthPlugin, hs.AuthData
	switch plugin {
	case mysql.AUTH_NATIVE_PASSWORD, mysql.AUTH_CACHING_SHA2_PASSWORD, mysql.AUTH_SHA256_PASSWORD, mysql.AUTH_CLEAR_PASSWORD:
	default:
		// The server switches us to the account's plugin if it is another.
		plugin = mysql.AUTH_NATIVE_PASSWORD
	}
	data, err := authResponse(plugin, salt, password, up.tls)
	if err != nil {
		return up, cred, err
	}
	resp.AuthPlugin, resp.AuthResponse = plugin, data
	if len(data) > 250 {
		resp.Capabilities |= mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
	}
	if err := ac.write(resp.Encode()); err != nil {
		return up, cred, fmt.Errorf("send handshake response: %w", err)
	}
	awaitingKey := false
	for switches := 0; ; {
		p, err := ac.read()
		if err != nil {
			return up, cred, fmt.Errorf("read from repository: %w", err)
		}
		if len(p) == 0 {
			return up, cred, errors.New("empty packet from repository during authentication")
		}
		switch p[0] {
		case protocol.OKHeader:
			up.ok = p
			return up, cred, nil
		case protocol.ErrHeader:
			e, err := protocol.DecodeError(p, true)
			if err != nil {
				return up, cred, err
			}
			return up, cred, &serverError{e}
		case protocol.EOFHeader:
			if switches++; switches > 2 {
				return up, cred, errors.New("repository asked to switch authentication plugins too often")
			}
			sw, err := protocol.DecodeAuthSwitchRequest(p)
			if err != nil {
				return up, cred, err
			}
			plugin, salt = sw.Plugin, sw.Data
			data, err := authResponse(plugin, salt, password, up.tls)
			if err != nil {
				return up, cred, err
			}
			if err := ac.write(data); err != nil {
				return up, cred, err
			}
		case protocol.AuthMoreDataHeader:
			more := p[1:]
			switch {
			case awaitingKey || plugin == mysql.AUTH_SHA256_PASSWORD:
				pub, err := parsePublicKey(more)
				if err != nil {
					return up, cred, err
				}
				enc, err := mysql.EncryptPassword(password, salt, pub)
				if err != nil {
					return up, cred, fmt.Errorf("encrypt password with the repository's key: %w", err)
				}
				awaitingKey = false
				if err := ac.write(enc); err != nil {
					return up, cred, err
				}
			case plugin == mysql.AUTH_CACHING_SHA2_PASSWORD && len(more) == 1 && more[0] == mysql.CACHE_SHA2_FAST_AUTH:
				// Fast path succeeded; the OK follows.
			case plugin == mysql.AUTH_CACHING_SHA2_PASSWORD && len(more) == 1 && more[0] == mysql.CACHE_SHA2_FULL_AUTH:
				if up.tls {
					err = ac.write(append([]byte(password), 0))
				} else {
					awaitingKey = true
					err = ac.write([]byte{2}) // request the server's public key
				}
				if err != nil {
					return up, cred, err
				}
			default:
				return up, cred, fmt.Errorf("unexpected authentication data from repository for plugin %s", plugin)
			}
		default:
			return up, cred, fmt.Errorf("unexpected packet 0x%02x from repository during authentication", p[0])
		}
	}
}

// authResponse computes the first answer for an authentication plugin.
func authResponse(plugin string, salt []byte, password string, secure bool) ([]byte, error) {
	if len(salt) > 20 {
		salt = salt[:20]
	}
	switch plugin {
	case mysql.AUTH_NATIVE_PASSWORD:
		return mysql.CalcNativePassword(salt, []byte(password)), nil
	case mysql.AUTH_CACHING_SHA2_PASSWORD:
		return mysql.CalcCachingSha2Password(salt, []byte(password)), nil
	case mysql.AUTH_CLEAR_PASSWORD:
		if !secure {
			return nil, errors.New("repository asks for mysql_clear_password without TLS; set the repository's tls_mode to require or stricter")
		}
		return append([]byte(password), 0), nil
	case mysql.AUTH_SHA256_PASSWORD:
		if secure {
			return append([]byte(password), 0), nil
		}
		return []byte{1}, nil // request the server's public key
	}
	return nil, fmt.Errorf("repository asks for authentication plugin %s; Gatehouse supports mysql_native_password, caching_sha2_password, sha256_password and mysql_clear_password", plugin)
}

func parsePublicKey(b []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("repository sent a public key that is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse repository's public key: %w", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("repository's public key is not RSA")
	}
	return pub, nil
}

// upstreamAttrs passes the client's connection attributes on, with program_name naming the person
// ("<client program> (gatehouse:<user>)" or "gatehouse:<user>") and gatehouse_user, so that
// performance_schema.session_connect_attrs and the processlist tools show who is connected.
func upstreamAttrs(client []protocol.Attr, id proxy.Identity) []protocol.Attr {
	var out []protocol.Attr
	program := ""
	for _, a := range client {
		switch a.Key {
		case "program_name":
			program = a.Value
			continue
		case "gatehouse_user":
			continue
		}
		out = append(out, a)
	}
	return append(out, protocol.Attr{Key: "program_name", Value: programName(program, id.User)},
		protocol.Attr{Key: "gatehouse_user", Value: id.User})
}

func programName(clientProgram, user string) string {
	own := "gatehouse:" + user
	if clientProgram == "" {
		return truncate(own, maxProgramName)
	}
	suffix := " (" + own + ")"
	room := maxProgramName - len(suffix)
	if room < 1 {
		return truncate(own, maxProgramName)
	}
	return truncate(clientProgram, room) + suffix
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
