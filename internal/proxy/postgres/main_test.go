package postgres_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/pgserver"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/postgres"
	"github.com/gatehousedb/gatehouse/internal/secret"
	"github.com/gatehousedb/gatehouse/internal/secret/env"
)

// The repository: one PostgreSQL 15 with TLS (certificate from a test CA) and one user per
// authentication method.
var (
	srv       *pgserver.Server
	caPEM     string                // the CA that signed the server's certificate
	otherCA   string                // a CA that did not
	passwords = map[string]string{} // repository user -> password; also in env GH_TEST_PW_<user>
)

// repository users and their pg_hba method.
var repoUsers = []struct{ name, method string }{
	{"scram_user", "scram-sha-256"},
	{"md5_user", "md5"},
	{"clear_user", "password"},
	{"trust_user", "trust"},
	{"rot_user", "scram-sha-256"},
	{"ssl_user", "scram-sha-256"}, // hostssl only
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(idleClientsEnv) != "" {
		return idleClients() // a child process of BenchmarkIdleSessionMemory
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "gatehouse-pgproxy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)

	certFile, keyFile, ca, err := writeServerCert(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test certificates:", err)
		return 1
	}
	caPEM = ca
	if _, _, otherCA, err = newCA("Some other CA"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var hba []string
	for _, u := range repoUsers {
		kind := "host"
		if u.name == "ssl_user" {
			kind = "hostssl"
		}
		hba = append(hba, fmt.Sprintf("%s all %s 127.0.0.1/32 %s", kind, u.name, u.method))
	}
	hba = append(hba, "host all postgres 127.0.0.1/32 scram-sha-256")
	srv, err = pgserver.Start(ctx, pgserver.Config{
		Dir: filepath.Join(dir, "pg"),
		HBA: hba,
		Settings: map[string]string{
			"ssl": "on", "ssl_cert_file": certFile, "ssl_key_file": keyFile,
			// BenchmarkIdleSessionMemory holds idleBenchConns sessions open at once.
			"max_connections": "260",
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL:", err)
		return 1
	}
	defer srv.Stop()

	var sql strings.Builder
	for _, u := range repoUsers {
		pw := randomHex(12)
		passwords[u.name] = pw
		os.Setenv(envName(u.name), pw)
		enc := "scram-sha-256"
		if u.method == "md5" {
			enc = "md5"
		}
		fmt.Fprintf(&sql, "SET password_encryption = '%s'; CREATE ROLE %s LOGIN PASSWORD '%s'; ", enc, u.name, pw)
	}
	if err := srv.Exec(ctx, sql.String()); err != nil {
		fmt.Fprintln(os.Stderr, "create roles:", err)
		return 1
	}
	for _, q := range []string{
		"CREATE DATABASE app OWNER scram_user",
		"CREATE DATABASE bench OWNER scram_user",
		"GRANT pg_read_all_stats TO scram_user",
	} {
		if err := srv.Exec(ctx, q); err != nil {
			fmt.Fprintln(os.Stderr, q+":", err)
			return 1
		}
	}
	code := m.Run()
	srv.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			return 1
		}
	}
	return code
}

func envName(user string) string { return "GH_TEST_PW_" + strings.ToUpper(user) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newCA makes a self-signed CA.
func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, "", err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, "", err
	}
	return cert, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// writeServerCert writes a server certificate for localhost/127.0.0.1 signed by a new CA, owned by
// the server's user, and returns the paths and the CA's PEM.
func writeServerCert(dir string) (certFile, keyFile, ca string, err error) {
	caCert, caKey, ca, err := newCA("Gatehouse test CA")
	if err != nil {
		return "", "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", "", err
	}
	for _, f := range []string{certFile, keyFile} {
		if err := pgserver.ChownForServer(f); err != nil {
			return "", "", "", err
		}
	}
	return certFile, keyFile, ca, nil
}

// ---- the test Authorizer ----

const (
	aliceToken = "gh1_aliceTokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	bobToken   = "gh1_bobTokenBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	aliceUser  = "alice@example.com"
	// carol may do what alice may; the pooling tests need a second person.
	carolToken = "gh1_carolTokenCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
	carolUser  = "carol@example.com"
)

// authorizer knows two tokens: alice may impersonate every repository user, bob none.
type authorizer struct {
	repo gatehouse.Repository

	mu        sync.Mutex
	expiresAt time.Time       // alice's token expiry; zero = an hour from now
	revoked   context.Context // handed out in alice's grants
	logins    []proxy.Login
}

func (a *authorizer) lastLogin() proxy.Login {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logins[len(a.logins)-1]
}

func (a *authorizer) set(f func(a *authorizer)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

func (a *authorizer) Authorize(_ context.Context, l proxy.Login) (*proxy.Grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logins = append(a.logins, l)
	user, repo, _ := strings.Cut(l.Username, "@")
	if repo != "" && repo != a.repo.Name {
		return nil, proxy.Refuse(proxy.UnknownUser, "no repository %s on this port", repo)
	}
	known := false
	for _, u := range repoUsers {
		known = known || u.name == user
	}
	if !known {
		return nil, proxy.Refuse(proxy.UnknownUser, "repository %s has no user %s", a.repo.Name, user)
	}
	var who string
	switch l.Token {
	case aliceToken:
		who = aliceUser
	case carolToken:
		who = carolUser
	case bobToken:
		return nil, proxy.Refuse(proxy.NotPermitted, "bob@example.com may not impersonate %s on repository %s", user, a.repo.Name)
	default:
		return nil, proxy.Refuse(proxy.TokenInvalid, "the access token is not valid: create one with gatehouse token create")
	}
	exp := a.expiresAt
	if exp.IsZero() {
		exp = time.Now().Add(time.Hour)
	}
	return &proxy.Grant{
		Identity: proxy.Identity{User: who, Groups: []string{"eng"}, TokenID: "tok_alice", TokenExpiresAt: exp},
		Target: proxy.Target{
			Repository: a.repo,
			User: gatehouse.RepositoryUser{Repository: a.repo.Name, Username: user,
				Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: envName(user)}},
		},
		Revoked: a.revoked,
	}, nil
}

// ---- the sidecar under test ----

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type proxyOptions struct {
	tlsMode   gatehouse.TLSMode
	caBundle  string
	hostname  string
	database  string
	plaintext bool // AllowPlaintextPasswords
	noTLS     bool // no client-side TLS at all
	auditor   proxy.Auditor
	// pool configures upstream session pooling; the zero value means poolDefault, so every
	// test runs with pooling on unless it says otherwise (Idle < 0 turns it off).
	pool postgres.PoolConfig
	// logger replaces the test log collector (which keeps every line in memory).
	logger *slog.Logger
	// parkAfter is Config.ParkAfter; zero means parkDefault, so that every test's sessions park
	// whenever they pause (park.go). Negative turns parking off.
	parkAfter time.Duration
}

// poolDefault is the pooling the engine tests run with.
var poolDefault = postgres.PoolConfig{Idle: 4}

// parkDefault is how long the engine tests' sessions are quiet before they park: short, so that
// parking and resuming happen all through the tests, between a client's messages too.
const parkDefault = 2 * time.Millisecond

type sidecar struct {
	engine *postgres.Engine
	quiet  *proxy.Quiet // the engine's count of running sessions
	auth   *authorizer
	port   int
	logs   *syncBuffer
}

// startProxy runs an engine on a loopback listener for the test, in front of srv.
func startProxy(t testing.TB, o proxyOptions) *sidecar {
	t.Helper()
	if o.tlsMode == "" {
		o.tlsMode = gatehouse.TLSVerifyFull
		o.caBundle = caPEM
	}
	if o.hostname == "" {
		o.hostname = "localhost"
	}
	if o.database == "" {
		o.database = "app"
	}
	if o.pool == (postgres.PoolConfig{}) {
		o.pool = poolDefault
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.logger != nil {
		logger = o.logger
	}
	res, err := secret.New(secret.Config{
		Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: env.Source{}},
		Logger:  logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	auth := &authorizer{repo: gatehouse.Repository{
		Name: "sales", Type: gatehouse.PostgreSQL, Version: "15", Hostname: o.hostname, Port: srv.Port(),
		Database: o.database, TLSMode: o.tlsMode, CABundle: o.caBundle,
	}}
	if o.parkAfter == 0 {
		o.parkAfter = parkDefault
	}
	cfg := postgres.Config{
		Port: port, Authorizer: auth, Credentials: res, Logger: logger,
		AllowPlaintextPasswords: o.plaintext, Auditor: o.auditor, Pool: o.pool, ParkAfter: o.parkAfter,
		Quiet: new(proxy.Quiet),
		// Every repository host name resolves to the test server, so names not in its
		// certificate can be tried.
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
	}
	if !o.noTLS {
		tlsCfg, fp, err := proxy.SelfSignedTLS([]string{"localhost", "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(fp) != 95 {
			t.Fatalf("fingerprint %q is not 32 colon-separated bytes", fp)
		}
		cfg.TLS = tlsCfg
	}
	eng, err := postgres.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { eng.Serve(ctx, c) })
		}
	})
	sc := &sidecar{engine: eng, quiet: cfg.Quiet, auth: auth, port: port, logs: logs}
	t.Cleanup(func() {
		ln.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		eng.Shutdown(sctx)
		scancel()
		cancel()
		wg.Wait()
		// Whatever happened, no upstream password reaches the log.
		out := logs.String()
		for u, pw := range passwords {
			if strings.Contains(out, pw) {
				t.Errorf("log output contains the password of %s", u)
			}
		}
		if t.Failed() {
			t.Logf("sidecar log:\n%s", out)
		}
	})
	return sc
}
