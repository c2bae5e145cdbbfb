package mysql_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
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
	"github.com/gatehousedb/gatehouse/internal/mysqlserver"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/mysql"
	"github.com/gatehousedb/gatehouse/internal/secret"
	"github.com/gatehousedb/gatehouse/internal/secret/env"
)

// The repository: one MariaDB 10.11 with TLS (certificate from a test CA) and performance_schema,
// with one account per case.
var (
	srv       *mysqlserver.Server
	caPEM     string
	passwords = map[string]string{} // repository user -> password; also in env GH_TEST_MY_PW_<user>
)

var repoUsers = []struct{ name, extra string }{
	{"app", ""},
	{"ssl_user", "REQUIRE SSL"},
	{"rot_user", ""},
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "gatehouse-myproxy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	certFile, keyFile, ca, err := writeServerCert(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test certificates:", err)
		return 1
	}
	caPEM = ca
	srv, err = mysqlserver.Start(ctx, mysqlserver.Config{
		Dir: filepath.Join(dir, "db"),
		Settings: map[string]string{
			"ssl-cert": certFile, "ssl-key": keyFile,
			"performance-schema": "ON", "max-allowed-packet": "64M",
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start MariaDB:", err)
		return 1
	}
	defer srv.Stop()
	var sql strings.Builder
	sql.WriteString("CREATE DATABASE app; CREATE DATABASE other; ")
	for _, u := range repoUsers {
		pw := randomHex(12)
		passwords[u.name] = pw
		os.Setenv(envName(u.name), pw)
		fmt.Fprintf(&sql, "CREATE USER '%s'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s') %s; GRANT ALL ON app.* TO '%s'@'127.0.0.1'; GRANT ALL ON other.* TO '%s'@'127.0.0.1'; ",
			u.name, pw, u.extra, u.name, u.name)
	}
	sql.WriteString("GRANT SELECT ON performance_schema.* TO 'app'@'127.0.0.1'; GRANT PROCESS ON *.* TO 'app'@'127.0.0.1'; ")
	sql.WriteString("CREATE TABLE app.t (id int primary key, name varchar(20)); INSERT INTO app.t VALUES (1,'one'),(2,'two'); ")
	sql.WriteString("CREATE TABLE app.blobs (id int primary key, b longblob)")
	if err := srv.Exec(ctx, sql.String()); err != nil {
		fmt.Fprintln(os.Stderr, "create accounts:", err)
		return 1
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

func envName(user string) string { return "GH_TEST_MY_PW_" + strings.ToUpper(user) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// repo is the repository as the sidecar knows it.
func repo(mode gatehouse.TLSMode) gatehouse.Repository {
	return gatehouse.Repository{Name: "app", Type: gatehouse.MySQL, Version: "10.11", Hostname: "127.0.0.1",
		Port: srv.Port(), Database: "app", TLSMode: mode, CABundle: caPEM}
}

func repoUser(name string) gatehouse.RepositoryUser {
	return gatehouse.RepositoryUser{Repository: "app", Username: name,
		Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: envName(name)}}
}

// fakeAuth grants each known token its target; anything else is refused like the real authorizer.
type fakeAuth struct {
	mu     sync.Mutex
	grants map[string]*proxy.Grant
}

func (a *fakeAuth) add(token string, g *proxy.Grant) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.grants == nil {
		a.grants = map[string]*proxy.Grant{}
	}
	a.grants[token] = g
}

func (a *fakeAuth) Authorize(ctx context.Context, l proxy.Login) (*proxy.Grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.grants[l.Token]
	if !ok {
		return nil, proxy.Refuse(proxy.TokenInvalid, "access token not recognised")
	}
	user, _, _ := strings.Cut(l.Username, "@")
	if user != g.Target.User.Username {
		return nil, proxy.Refuse(proxy.NotPermitted, "%s may not connect as %s", g.Identity.User, user)
	}
	if !g.Identity.TokenExpiresAt.IsZero() && time.Now().After(g.Identity.TokenExpiresAt) {
		return nil, proxy.Refuse(proxy.TokenExpired, "access token expired")
	}
	cp := *g
	return &cp, nil
}

// grant is a live grant for alice as repository user u.
func grant(u string, mode gatehouse.TLSMode) *proxy.Grant {
	return &proxy.Grant{
		Identity: proxy.Identity{User: "alice@example.com", TokenID: "tok1", TokenExpiresAt: time.Now().Add(time.Hour)},
		Target:   proxy.Target{Repository: repo(mode), User: repoUser(u)},
	}
}

type harness struct {
	addr   string
	auth   *fakeAuth
	engine *mysql.Engine
	creds  *secret.Resolver
	audit  *fakeAuditor
}

func (h *harness) statements() []proxy.Statement { return h.audit.statements() }

// fakeAuditor records what the engine tells a proxy.Auditor. Statements containing "forbidden" are
// refused like an access rule named no-forbidden would; each statement of a text (split at ";")
// gets a record reference.
type fakeAuditor struct {
	mu      sync.Mutex
	logins  []proxy.LoginEvent
	stmts   []proxy.Statement
	schemas []string
	done    map[uint64]proxy.Completion
	next    uint64
	closed  int
}

func (a *fakeAuditor) Login(ctx context.Context, ev proxy.LoginEvent) (proxy.StatementAuditor, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logins = append(a.logins, ev)
	if ev.Err != nil {
		return nil, nil
	}
	return a, nil
}

func (a *fakeAuditor) Statement(ctx context.Context, st *proxy.Statement) proxy.Verdict {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stmts = append(a.stmts, *st)
	if strings.Contains(st.SQL, "forbidden") {
		return proxy.Verdict{Refusal: proxy.RefusedByPolicy, Message: "permission denied by Gatehouse access rule no-forbidden: statement names a forbidden object"}
	}
	var v proxy.Verdict
	for _, part := range strings.Split(st.SQL, ";") {
		if strings.TrimSpace(part) != "" {
			a.next++
			v.Refs = append(v.Refs, a.next)
		}
	}
	return v
}

func (a *fakeAuditor) Complete(ref uint64, c proxy.Completion) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		a.done = map[uint64]proxy.Completion{}
	}
	a.done[ref] = c
}

func (a *fakeAuditor) SetSchema(schema string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.schemas = append(a.schemas, schema)
}

func (a *fakeAuditor) RecordParams() bool { return false }

func (a *fakeAuditor) Close(ctx context.Context, end proxy.SessionEnd) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed++
}

func (a *fakeAuditor) statements() []proxy.Statement {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]proxy.Statement(nil), a.stmts...)
}

func (a *fakeAuditor) completion(ref uint64) (proxy.Completion, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.done[ref]
	return c, ok
}

// startEngine serves an engine on a loopback listener until the test ends, governed by a
// fakeAuditor.
func startEngine(t *testing.T, mod func(*mysql.Config)) *harness {
	t.Helper()
	creds, err := secret.New(secret.Config{Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: env.Source{}}})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, _, err := proxy.SelfSignedTLS([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{auth: &fakeAuth{}, creds: creds, audit: &fakeAuditor{}}
	cfg := mysql.Config{
		Port: 3306, Version: "10.11", Authorizer: h.auth, Credentials: creds, TLS: serverTLS,
		Auditor: h.audit,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := mysql.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.engine = e
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.Serve(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		e.Shutdown(sctx)
		scancel()
		cancel()
		wg.Wait()
	})
	return h
}

func writeServerCert(dir string) (certFile, keyFile, caPEM string, err error) {
	caKey, caCert, caPEM, err := newCA("Gatehouse test CA")
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
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", "", err
	}
	return certFile, keyFile, caPEM, nil
}

func newCA(name string) (*ecdsa.PrivateKey, *x509.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, "", err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, "", err
	}
	return key, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

var _ = tls.VersionTLS12

type proxyGrant = proxy.Grant

func itoa(n uint32) string { return fmt.Sprint(n) }
