package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/gatehousedb/gatehouse/internal/pgserver"
)

const adminPassword = "admin-password-for-tests"

// pg is the PostgreSQL server the PostgreSQL runs share, started by TestMain; each test gets its own
// database.
var pg *pgserver.Server

var pgDatabases atomic.Int64

func TestMain(m *testing.M) {
	ctx := context.Background()
	srv, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL for the store tests:", err)
		os.Exit(1)
	}
	pg = srv
	code := m.Run()
	if err := srv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
	}
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// backends runs f once on SQLite and once on PostgreSQL.
func backends(t *testing.T, f func(t *testing.T, storeURL string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, "") })
	t.Run("postgres", func(t *testing.T) {
		db := fmt.Sprintf("t%d", pgDatabases.Add(1))
		if err := pg.Exec(t.Context(), "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
		f(t, pg.DSN(db))
	})
}

// env is a running control plane and an HTTP client for it.
type env struct {
	t      *testing.T
	srv    *Server
	url    string
	stdout *bytes.Buffer
	logs   *bytes.Buffer
}

func start(t *testing.T, cfg Config) *env {
	t.Helper()
	if cfg.DataDir == "" && cfg.StoreURL == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	e := &env{t: t, stdout: &bytes.Buffer{}, logs: &bytes.Buffer{}}
	cfg.Stdout = e.stdout
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := runServer(t, cfg)
	e.srv, e.url = srv, srv.URL()
	return e
}

// runServer creates a control plane from cfg and runs it until the test ends.
func runServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	srv, err := New(tb.Context(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return srv
}

func startBackend(t *testing.T, storeURL string) *env {
	return start(t, Config{StoreURL: storeURL, AdminPassword: adminPassword})
}

// call sends body (a string is sent as is, anything else as JSON) and returns the status and body.
func (e *env) call(tok, method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// must calls and fails the test unless the answer has status want; it decodes the body into out.
func (e *env) must(tok, method, path string, body any, want int, out any) {
	e.t.Helper()
	status, b := e.call(tok, method, path, body)
	if status != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, status, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

type apiError struct {
	Code, Field, Message string
}

// fails calls and checks the error answer; it returns the message.
func (e *env) fails(tok, method, path string, body any, status int, code, field string) string {
	e.t.Helper()
	got, b := e.call(tok, method, path, body)
	var eb struct{ Error *apiError }
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == nil {
		e.t.Fatalf("%s %s = %d %s: not an error body", method, path, got, b)
	}
	if got != status || eb.Error.Code != code || eb.Error.Field != field {
		e.t.Errorf("%s %s = %d %s, want %d code %q field %q", method, path, got, b, status, code, field)
	}
	return eb.Error.Message
}

func (e *env) login(user, password string) string {
	e.t.Helper()
	var out struct{ Token string }
	e.must("", "POST", "/api/v1/login", map[string]string{"username": user, "password": password}, 200, &out)
	if !strings.HasPrefix(out.Token, "ghs_") {
		e.t.Fatalf("login token %q", out.Token)
	}
	return out.Token
}

func publicKeyPEM(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
