package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    gatehouse.ImpersonationRule
		wantErr string
	}{
		{"users groups and repository users", "users=a@x.com,b@x.com;groups=analysts;repository_users=admin_user",
			gatehouse.ImpersonationRule{Users: []string{"a@x.com", "b@x.com"}, Groups: []string{"analysts"}, RepositoryUsers: []string{"admin_user"}}, ""},
		{"spaces and dashes", " groups = Marketing team , finance ; repository-users = r1,r2 ;",
			gatehouse.ImpersonationRule{Groups: []string{"Marketing team", "finance"}, RepositoryUsers: []string{"r1", "r2"}}, ""},
		{"unknown key", "people=a;repository_users=r", gatehouse.ImpersonationRule{}, `unknown key "people"`},
		{"no equals", "users", gatehouse.ImpersonationRule{}, "is not key=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRule(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRule(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseRule(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// harness runs the command line in-process with its own config directory.
type harness struct {
	t           *testing.T
	env         map[string]string
	interactive bool
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, env: map[string]string{"GATEHOUSE_CONFIG_DIR": filepath.Join(t.TempDir(), "config")}}
}

func (h *harness) run(stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = Run(context.Background(), h.options(strings.NewReader(stdin), &out, &errb), args)
	return out.String(), errb.String(), code
}

func (h *harness) options(stdin *strings.Reader, stdout, stderr interface{ Write([]byte) (int, error) }) Options {
	return Options{
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Getenv:       func(k string) string { return h.env[k] },
		Interactive:  func() bool { return h.interactive },
		ReadPassword: func() (string, error) { return "", nil },
	}
}

func (h *harness) mustRun(stdin string, args ...string) string {
	h.t.Helper()
	out, errs, code := h.run(stdin, args...)
	if code != 0 {
		h.t.Fatalf("gatehouse %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// startServer runs `gatehouse server` in-process and returns its URL; it stops when the test ends.
func startServer(t *testing.T) string {
	h := newHarness(t)
	h.env["GATEHOUSE_ADMIN_PASSWORD"] = "in-process-Passw0rd!"
	h.env["GATEHOUSE_DATA_DIR"] = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan int)
	go func() {
		done <- Run(ctx, h.options(strings.NewReader(""), out, &lockedBuffer{}), []string{"server", "--listen", "127.0.0.1:0", "--log-level", "error"})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("server exited %d", code)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(out.String(), "\n") {
			if u, ok := strings.CutPrefix(line, ListeningPrefix); ok {
				return u
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server did not start:\n%s", out.String())
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestInProcess(t *testing.T) {
	url := startServer(t)
	h := newHarness(t)

	// Login stores the session readable only by its owner.
	h.mustRun("in-process-Passw0rd!\n", "login", "--server", url, "--username", "admin", "--password-stdin")
	dir := h.env["GATEHOUSE_CONFIG_DIR"]
	for name, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "session.json"): 0o600} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", name, got, want)
		}
	}
	var s session
	b, _ := os.ReadFile(filepath.Join(dir, "session.json"))
	if err := json.Unmarshal(b, &s); err != nil || s.Server != url || s.Token == "" || strings.Contains(string(b), "in-process-Passw0rd!") {
		t.Errorf("session.json = %s", b)
	}

	// Allow unsupported queries: typing anything but "yes" registers nothing; "yes" does.
	pub := writeRSAPublicKey(t)
	h.interactive = true
	register := []string{"sidecar", "register", "--display-name", "lab", "--hostname", "lab.example.com", "--public-key-file", pub, "--allow-unsupported-queries"}
	_, errs, code := h.run("no\n", register...)
	if code != ExitError || !strings.Contains(errs, "Type \"yes\" to continue") || !strings.Contains(errs, "not confirmed") {
		t.Errorf("answering no: exit %d\n%s", code, errs)
	}
	if out := h.mustRun("", "sidecar", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("answering no registered a sidecar: %s", out)
	}
	out := h.mustRun("yes\n", register...)
	if !strings.Contains(out, "Allow unsupported queries:  yes") || !strings.Contains(out, "--control-plane "+url) {
		t.Errorf("answering yes:\n%s", out)
	}

	// A token is printed once; the session is gone after logout.
	h.interactive = false
	out = h.mustRun("", "token", "create", "--ttl", "10m")
	if tok := strings.SplitN(out, "\n", 2)[0]; !gatehouse.LooksLikeToken(tok) {
		t.Errorf("token create: %q", out)
	}
	h.mustRun("", "logout")
	if _, err := os.Stat(filepath.Join(dir, "session.json")); !os.IsNotExist(err) {
		t.Errorf("session.json after logout: %v", err)
	}
	if _, errs, code := h.run("", "repository", "list"); code != ExitError || !strings.Contains(errs, "Error: not logged in") {
		t.Errorf("after logout: exit %d %s", code, errs)
	}
}

func TestExitCodes(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, ExitOK, ""},
		{"group without subcommand prints help", []string{"repository"}, ExitOK, ""},
		{"unknown command", []string{"nope"}, ExitUsage, `unknown command "nope" for "gatehouse"`},
		{"unknown subcommand", []string{"sidecar", "port", "nope"}, ExitUsage, `unknown command "nope"`},
		{"unknown flag", []string{"repository", "list", "--bogus"}, ExitUsage, "unknown flag: --bogus"},
		{"bad output", []string{"connections", "-o", "xml"}, ExitUsage, "--output must be table or json"},
		{"bad log level", []string{"connections", "--log-level", "loud"}, ExitUsage, "--log-level must be"},
		{"login without a password source", []string{"login", "--server", "http://127.0.0.1:1", "--username", "admin"}, ExitUsage, "--password-stdin"},
		{"login to nowhere", []string{"login", "--server", "http://127.0.0.1:1", "--username", "admin", "--password-stdin"}, ExitError, "cannot reach the control plane at http://127.0.0.1:1"},
		{"not logged in", []string{"connections"}, ExitError, "not logged in"},
		{"two names", []string{"repository", "get", "a", "--name", "b"}, ExitUsage, "the name is given twice"},
		{"too many args", []string{"sidecar", "get", "a", "b"}, ExitUsage, "needs 1 argument(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs, code := h.run("pw\n", tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, want %d; stderr:\n%s\nwant it to contain %q", code, tt.code, errs, tt.want)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	err := &gatehouse.Error{Code: "invalid", Field: "name", Message: "must be lowercase letters, digits, _ or -"}
	if got, want := errorText(err), "name: must be lowercase letters, digits, _ or - (invalid)"; got != want {
		t.Errorf("errorText = %q, want %q", got, want)
	}
}

func writeRSAPublicKey(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "public.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
