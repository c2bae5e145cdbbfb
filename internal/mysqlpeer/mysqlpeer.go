package mysqlpeer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	gms "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/dolthub/go-mysql-server/sql/mysql_db"
	vitess "github.com/dolthub/vitess/go/mysql"
	"github.com/go-sql-driver/mysql"
)

// Version is what the peer reports, in its greeting and as @@version.
const Version = "8.0.31"

// Config says how to start a peer.
type Config struct {
	// TLS is the server's certificate. Required: caching_sha2_password works only inside TLS.
	TLS *tls.Config
}

// Server is a running peer. Its only account at first is root@localhost without a password
// (reachable from 127.0.0.1); create others with Exec.
type Server struct {
	srv   *server.Server
	ln    *trackingListener
	cache *sha2Cache
	done  chan struct{}
}

// Start listens on a free loopback port and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.TLS == nil {
		return nil, errors.New("mysqlpeer: Config.TLS is required")
	}
	pro := memory.NewDBProvider()
	engine := gms.NewDefault(pro)
	db := engine.Analyzer.Catalog.MySQLDb
	db.SetPersister(&mysql_db.NoopPersister{})
	db.AddRootAccount()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ln := &trackingListener{Listener: l, conns: map[net.Conn]struct{}{}}
	cache := &sha2Cache{db: db, hashes: map[string]cached{}}
	srv, err := server.NewServer(server.Config{
		Protocol:  "tcp",
		Listener:  ln,
		Version:   Version,
		TLSConfig: cfg.TLS,
		ProtocolListenerFactory: func(c server.Config, lc vitess.ListenerConfig, sel server.ServerEventListener) (server.ProtocolListener, error) {
			lc.AuthServer = &cachingAuthServer{AuthServer: lc.AuthServer, cache: cache}
			return server.MySQLProtocolListenerFactory(c, lc, sel)
		},
	}, engine, gmssql.NewContext, memory.NewSessionBuilder(pro), nil)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("mysqlpeer: %w", err)
	}
	s := &Server{srv: srv, ln: ln, cache: cache, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		srv.Start()
	}()
	return s, nil
}

// Host is the address the peer listens on.
func (s *Server) Host() string { return "127.0.0.1" }

// Port is the peer's TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Exec runs statements (several, separated by ";") as root, over TLS.
func (s *Server) Exec(ctx context.Context, sqlText string) error {
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr = "root", "tcp", net.JoinHostPort(s.Host(), strconv.Itoa(s.Port()))
	c.TLS = &tls.Config{InsecureSkipVerify: true} // our own listener, just started
	c.MultiStatements = true
	c.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	_, err = db.ExecContext(ctx, sqlText)
	return err
}

// Logins counts the caching_sha2_password logins the peer accepted, by path.
func (s *Server) Logins() (full, fast int) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.full, s.cache.fast
}

// Close stops listening, closes every connection and waits for the accept loop to end.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.ln.closeConns()
	<-s.done
	return err
}

// trackingListener remembers accepted connections so that Close can end them; Vitess's listener
// leaves them open.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		c.(*trackedConn).Conn.Close()
	}
	clear(l.conns)
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// cachingAuthServer is GMS's authentication with its caching_sha2_password method replaced by one
// that has a cache. Which accounts the method handles is still GMS's decision.
type cachingAuthServer struct {
	vitess.AuthServer
	cache *sha2Cache
}

func (a *cachingAuthServer) AuthMethods() []vitess.AuthMethod {
	methods := append([]vitess.AuthMethod(nil), a.AuthServer.AuthMethods()...)
	for i, m := range methods {
		if m.Name() == vitess.CachingSha2Password {
			methods[i] = sha2Method{
				AuthMethod: vitess.NewSha2CachingAuthMethod(a.cache, a.cache, anyUser{}),
				gms:        m,
			}
		}
	}
	return methods
}

// sha2Method is Vitess's caching_sha2_password server side; GMS's method decides HandleUser
// (TLS, and the account's plugin).
type sha2Method struct {
	vitess.AuthMethod
	gms vitess.AuthMethod
}

func (m sha2Method) HandleUser(c *vitess.Conn, user string) bool { return m.gms.HandleUser(c, user) }

type anyUser struct{}

func (anyUser) HandleUser(string, net.Addr) bool { return true }

// sha2Cache is MySQL's caching_sha2_password cache: SHA256(SHA256(password)) per account,
// filled by a successful full authentication.
type sha2Cache struct {
	db *mysql_db.MySQLDb

	mu         sync.Mutex
	hashes     map[string]cached // "user@host" of the account
	full, fast int
}

type cached struct {
	authString string // the account's stored hash when cached; a new password invalidates
	hash       []byte
}

// account looks up the account GMS would authenticate, as GMS's own storage does.
func (c *sha2Cache) account(user string, addr net.Addr) (*mysql_db.User, error) {
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		host = addr.String()
	}
	rd := c.db.Reader()
	defer rd.Close()
	u := c.db.GetUser(rd, user, host, false)
	if u == nil || u.Locked {
		return nil, vitess.NewSQLError(vitess.ERAccessDeniedError, vitess.SSAccessDeniedError, "Access denied for user '%v'", user)
	}
	return u, nil
}

// UserEntryWithCacheHash is the fast path: accept a scramble matching the cached hash.
func (c *sha2Cache) UserEntryWithCacheHash(_ []*x509.Certificate, salt []byte, user string, authResponse []byte, addr net.Addr) (vitess.Getter, vitess.CacheState, error) {
	u, err := c.account(user, addr)
	if err != nil {
		return nil, vitess.AuthRejected, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.hashes[u.User+"@"+u.Host]
	if !ok || e.authString != u.AuthString || !vitess.VerifyHashedCachingSha2Password(authResponse, salt, e.hash) {
		return nil, vitess.AuthNeedMoreData, nil
	}
	c.fast++
	return gmssql.MysqlConnectionUser{User: u.User, Host: u.Host}, vitess.AuthAccepted, nil
}

// UserEntryWithPassword is the full path: check the password against the stored hash, as GMS
// does, and cache it.
func (c *sha2Cache) UserEntryWithPassword(_ []*x509.Certificate, user string, password string, addr net.Addr) (vitess.Getter, error) {
	u, err := c.account(user, addr)
	if err != nil {
		return nil, err
	}
	denied := vitess.NewSQLError(vitess.ERAccessDeniedError, vitess.SSAccessDeniedError, "Access denied for user '%v'", user)
	if u.AuthString == "" {
		if password != "" {
			return nil, denied
		}
	} else {
		digest, iterations, salt, _, err := vitess.DeserializeCachingSha2PasswordAuthString([]byte(u.AuthString))
		if err != nil {
			return nil, err
		}
		if digest != "SHA256" {
			return nil, denied
		}
		want, err := vitess.SerializeCachingSha2PasswordAuthString(password, salt, iterations)
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare(want, []byte(u.AuthString)) != 1 {
			return nil, denied
		}
	}
	h1 := sha256.Sum256([]byte(password))
	h2 := sha256.Sum256(h1[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hashes[u.User+"@"+u.Host] = cached{authString: u.AuthString, hash: h2[:]}
	c.full++
	return gmssql.MysqlConnectionUser{User: u.User, Host: u.Host}, nil
}
