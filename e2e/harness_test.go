// Package e2e runs the real gatehouse binary as users run it: `gatehouse server` as a process on
// loopback, and every CLI command as a subprocess with its own config directory. TestMain builds the
// binary once.
//
// Helpers for every e2e test live in this file:
//
//	cp := StartControlPlane(t, ServerOptions{})          // SQLite in a temp dir
//	cp := StartControlPlane(t, ServerOptions{Store: StartPostgres(t)})
//	admin := cp.Admin(t)                                  // a CLI logged in as "admin"
//	out := admin.MustRun("repository", "list")
//	var repos []gatehouse.Repository; admin.MustRunJSON(&repos, "repository", "list")
//	alice := cp.NewCLI(t); alice.Login("alice@example.com", "password")
//	res := alice.Run("repository", "list")               // res.Code, res.Stdout, res.Stderr
//	priv, pub := GenerateRSAKey(t, 2048)
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/pgserver"
)

// Binary is the gatehouse binary TestMain built.
var Binary string

// AdminPassword is the bootstrap admin's password every control plane here starts with.
const AdminPassword = "e2e-admin-Passw0rd!"

// listeningPrefix is what `gatehouse server` prints, followed by its URL, once it serves.
const listeningPrefix = "gatehouse: control plane listening on "

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	Binary = filepath.Join(dir, "gatehouse")
	build := exec.Command("go", "build", "-o", Binary, "./cmd/gatehouse")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build gatehouse:", err)
		return 1
	}
	return m.Run()
}

// baseEnv is the test process's environment without any GATEHOUSE_ variable, so a developer's own
// settings cannot leak into a test.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEHOUSE_") {
			out = append(out, kv)
		}
	}
	return out
}

// ServerOptions say how to start a control plane.
type ServerOptions struct {
	Store string   // --store; "" = SQLite in the data directory
	Args  []string // more flags for `gatehouse server`
	Env   []string // more environment variables, KEY=VALUE
}

// ControlPlane is a running `gatehouse server` process.
type ControlPlane struct {
	URL     string
	DataDir string

	cmd    *exec.Cmd
	output *syncBuffer
	exited chan struct{}
}

// StartControlPlane starts `gatehouse server` on a free loopback port with the admin password
// AdminPassword, waits until it prints its URL, and stops it (SIGTERM) when the test ends.
func StartControlPlane(t testing.TB, opts ServerOptions) *ControlPlane {
	t.Helper()
	cp := &ControlPlane{DataDir: t.TempDir(), output: &syncBuffer{}, exited: make(chan struct{})}
	args := []string{"server", "--data-dir", cp.DataDir, "--listen", "127.0.0.1:0"}
	if opts.Store != "" {
		args = append(args, "--store", opts.Store)
	}
	args = append(args, opts.Args...)
	cmd := exec.Command(Binary, args...)
	cmd.Env = append(append(baseEnv(), "GATEHOUSE_ADMIN_PASSWORD="+AdminPassword), opts.Env...)
	urlc := make(chan string, 1)
	cmd.Stdout = io.MultiWriter(cp.output, &urlWatcher{found: urlc})
	cmd.Stderr = cp.output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gatehouse server: %v", err)
	}
	cp.cmd = cmd
	go func() {
		cmd.Wait()
		close(cp.exited)
	}()
	t.Cleanup(func() { cp.stop(t) })

	select {
	case cp.URL = <-urlc:
	case <-cp.exited:
		t.Fatalf("gatehouse server exited before serving (%v):\n%s", cmd.ProcessState, cp.output)
	case <-time.After(60 * time.Second):
		t.Fatalf("gatehouse server did not print %q within 60s:\n%s", listeningPrefix, cp.output)
	}
	return cp
}

// Output is everything the server printed so far (stdout and stderr).
func (cp *ControlPlane) Output() string { return cp.output.String() }

func (cp *ControlPlane) stop(t testing.TB) {
	select {
	case <-cp.exited:
		return
	default:
	}
	cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.exited:
		if code := cp.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("gatehouse server exited with code %d after SIGTERM:\n%s", code, cp.output)
		}
	case <-time.After(15 * time.Second):
		cp.cmd.Process.Kill()
		<-cp.exited
		t.Errorf("gatehouse server did not stop within 15s of SIGTERM:\n%s", cp.output)
	}
}

// StartPostgres starts a throwaway PostgreSQL server for the test, creates database "gatehouse" and
// returns a DSN for --store.
func StartPostgres(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	if err := srv.Exec(ctx, "CREATE DATABASE gatehouse"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return srv.DSN("gatehouse")
}

// CLI runs gatehouse commands as one user: its own GATEHOUSE_CONFIG_DIR (so its own login
// session), pointed at one control plane.
type CLI struct {
	t         testing.TB
	ConfigDir string
	Server    string
	Env       []string // more environment variables, KEY=VALUE
}

// NewCLI returns a CLI with an empty config directory (not logged in).
func (cp *ControlPlane) NewCLI(t testing.TB) *CLI {
	return &CLI{t: t, ConfigDir: t.TempDir(), Server: cp.URL}
}

// Admin returns a CLI logged in as the bootstrap admin.
func (cp *ControlPlane) Admin(t testing.TB) *CLI {
	t.Helper()
	c := cp.NewCLI(t)
	c.Login("admin", AdminPassword)
	return c
}

// WithT returns the same user's CLI reporting to t, for use inside subtests.
func (c *CLI) WithT(t testing.TB) *CLI {
	c2 := *c
	c2.t = t
	return &c2
}

// Login runs `gatehouse login --server URL --username user --password-stdin`.
func (c *CLI) Login(user, password string) {
	c.t.Helper()
	res := c.RunStdin(password+"\n", "login", "--server", c.Server, "--username", user, "--password-stdin")
	if res.Code != 0 {
		c.t.Fatalf("login as %s: %s", user, res)
	}
}

// Result is what a command did.
type Result struct {
	Args           []string
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("gatehouse %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

// Run runs gatehouse with args and no standard input.
func (c *CLI) Run(args ...string) Result {
	c.t.Helper()
	return c.RunStdin("", args...)
}

// RunStdin runs gatehouse with args and stdin as standard input.
func (c *CLI) RunStdin(stdin string, args ...string) Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary, args...)
	cmd.Env = append(append(baseEnv(), "GATEHOUSE_CONFIG_DIR="+c.ConfigDir), c.Env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Args: args, Stdout: out.String(), Stderr: errb.String()}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			res.Code = ee.ExitCode()
		} else {
			c.t.Fatalf("run gatehouse %s: %v", strings.Join(args, " "), err)
		}
	}
	return res
}

// MustRun runs gatehouse and fails the test unless it exits 0; it returns stdout.
func (c *CLI) MustRun(args ...string) string {
	c.t.Helper()
	res := c.Run(args...)
	if res.Code != 0 {
		c.t.Fatalf("%s", res)
	}
	return res.Stdout
}

// MustRunStdin is MustRun with standard input.
func (c *CLI) MustRunStdin(stdin string, args ...string) string {
	c.t.Helper()
	res := c.RunStdin(stdin, args...)
	if res.Code != 0 {
		c.t.Fatalf("%s", res)
	}
	return res.Stdout
}

// MustRunJSON runs gatehouse with --output json and decodes stdout into v.
func (c *CLI) MustRunJSON(v any, args ...string) {
	c.t.Helper()
	out := c.MustRun(append(args, "--output", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("gatehouse %s --output json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Fails runs gatehouse, requires exit code code, and requires stderr to contain every want.
func (c *CLI) Fails(code int, wants []string, args ...string) Result {
	c.t.Helper()
	res := c.Run(args...)
	if res.Code != code {
		c.t.Errorf("want exit %d; %s", code, res)
		return res
	}
	for _, w := range wants {
		if !strings.Contains(res.Stderr, w) {
			c.t.Errorf("stderr lacks %q; %s", w, res)
		}
	}
	return res
}

// GenerateRSAKey makes an RSA key pair with openssl, as the reference guide does, and returns the
// paths of the private and public key PEM files.
func GenerateRSAKey(t testing.TB, bits int) (private, public string) {
	t.Helper()
	dir := t.TempDir()
	private, public = filepath.Join(dir, "private.pem"), filepath.Join(dir, "public.pem")
	openssl(t, "genpkey", "-out", private, "-algorithm", "RSA", "-pkeyopt", fmt.Sprintf("rsa_keygen_bits:%d", bits))
	openssl(t, "rsa", "-in", private, "-pubout", "-out", public)
	return private, public
}

// GenerateECKey makes a P-256 key pair with openssl (which sidecars must refuse).
func GenerateECKey(t testing.TB) (private, public string) {
	t.Helper()
	dir := t.TempDir()
	private, public = filepath.Join(dir, "ec-private.pem"), filepath.Join(dir, "ec-public.pem")
	openssl(t, "genpkey", "-out", private, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
	openssl(t, "pkey", "-in", private, "-pubout", "-out", public)
	return private, public
}

func openssl(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// urlWatcher sends the URL of the first "listening" line written to it.
type urlWatcher struct {
	line  []byte
	found chan<- string
	sent  bool
}

func (w *urlWatcher) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\n' {
			w.line = append(w.line, c)
			continue
		}
		if u, ok := strings.CutPrefix(string(w.line), listeningPrefix); ok && !w.sent {
			w.found <- strings.TrimSpace(u)
			w.sent = true
		}
		w.line = w.line[:0]
	}
	return len(p), nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
