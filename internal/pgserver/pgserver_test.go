package pgserver_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehousedb/gatehouse/internal/pgserver"
)

func TestStartExecStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	dir := filepath.Dir(srv.DataDir())

	if srv.Host() != "127.0.0.1" || srv.Port() == 0 || srv.Password() == "" {
		t.Fatalf("host %q port %d password set %v", srv.Host(), srv.Port(), srv.Password() != "")
	}
	if err := srv.Exec(ctx, "CREATE DATABASE app"); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, srv.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	var db, usr string
	if err := conn.QueryRow(ctx, "SELECT current_database(), current_user").Scan(&db, &usr); err != nil {
		t.Fatal(err)
	}
	if db != "app" || usr != "postgres" {
		t.Errorf("connected to %s as %s, want app as postgres", db, usr)
	}
	conn.Close(ctx)

	// A wrong password is refused: host connections use scram-sha-256.
	bad := strings.Replace(srv.DSN("app"), srv.Password(), "wrong", 1)
	if c, err := pgx.Connect(ctx, bad); err == nil {
		c.Close(ctx)
		t.Error("connected with a wrong password")
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())), time.Second); err == nil {
		c.Close()
		t.Error("port still open after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s not removed: %v", dir, err)
	}
}

func TestHBAReloadAndSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv, err := pgserver.Start(ctx, pgserver.Config{
		Dir:      dir,
		Password: "s3cret'pw",
		Settings: map[string]string{"application_name": "it's gatehouse"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if srv.Password() != "s3cret'pw" {
		t.Errorf("Password() = %q", srv.Password())
	}

	conn, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if err := conn.QueryRow(ctx, "SHOW application_name").Scan(&name); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	// The client sets application_name itself only when asked, so the server default shows.
	if name != "it's gatehouse" {
		t.Errorf("application_name = %q, want the configured setting", name)
	}

	// Reject every TCP connection, reload, and check it took effect.
	hba := "local all all trust\nhost all all 127.0.0.1/32 reject\n"
	if err := os.WriteFile(filepath.Join(srv.DataDir(), "pg_hba.conf"), []byte(hba), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, srv.DSN("postgres")); err == nil {
		c.Close(ctx)
		t.Error("connected after pg_hba.conf rejected TCP and the server reloaded")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// A caller-provided directory is kept, with the log in it.
	if _, err := os.Stat(filepath.Join(dir, "postgres.log")); err != nil {
		t.Errorf("log file: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	_, err := pgserver.Start(ctx, pgserver.Config{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("missing binaries: got %v, want an install hint", err)
	}

	_, err = pgserver.Start(ctx, pgserver.Config{Settings: map[string]string{"no_such_setting": "1"}})
	if err == nil || !strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("bad setting: got %v, want the server log naming it", err)
	}
}

// TestServerDiesWithParent runs a child process (this test binary) that starts a server and is
// then killed with SIGKILL: the server must go away too.
func TestServerDiesWithParent(t *testing.T) {
	if os.Getenv("PGSERVER_TEST_CHILD") == "1" {
		srv, err := pgserver.Start(context.Background(), pgserver.Config{Dir: os.Getenv("PGSERVER_TEST_DIR")})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("PORT", srv.Port())
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithParent$")
	cmd.Env = append(os.Environ(), "PGSERVER_TEST_CHILD=1", "PGSERVER_TEST_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read child: %v", err)
	}
	var port int
	if _, err := fmt.Sscanf(line, "PORT %d", &port); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("child said %q", line)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		t.Fatalf("server not listening: %v", err)
	} else {
		c.Close()
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still listening 20s after its parent was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRestartKeepsData starts a server twice on the same directory, as `gatehouse quickstart`
// does across runs: the second start reuses the cluster.
func TestRestartKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := pgserver.Config{Dir: t.TempDir(), Password: "pw"}
	srv, err := pgserver.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ctx, "CREATE DATABASE kept"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	if _, err := pgserver.Start(ctx, pgserver.Config{Dir: cfg.Dir}); err == nil || !strings.Contains(err.Error(), "Password") {
		t.Errorf("restart without the password: got %v, want an error asking for it", err)
	}
	srv, err = pgserver.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	conn, err := pgx.Connect(ctx, srv.DSN("kept"))
	if err != nil {
		t.Fatalf("database from the first run: %v", err)
	}
	conn.Close(ctx)
}

// TestTLSSettings turns TLS on with a key and certificate made by the test, which is what the proxy
// tests do to give the upstream a certificate to verify.
func TestTLSSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{certPath, keyPath} {
		if err := pgserver.ChownForServer(p); err != nil {
			t.Fatal(err)
		}
	}

	srv, err := pgserver.Start(ctx, pgserver.Config{
		Settings: map[string]string{"ssl": "on", "ssl_cert_file": certPath, "ssl_key_file": keyPath},
		HBA:      []string{"hostssl all all 127.0.0.1/32 scram-sha-256"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	if c, err := pgx.Connect(ctx, srv.DSN("postgres")); err == nil {
		c.Close(ctx)
		t.Error("connected without TLS although pg_hba.conf allows only hostssl")
	}
	conn, err := pgx.Connect(ctx, strings.Replace(srv.DSN("postgres"), "sslmode=disable", "sslmode=require", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Error("session is not encrypted")
	}
}
