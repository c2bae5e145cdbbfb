package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/pgserver"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// sidecarProc is a running `gatehouse sidecar` process.
type sidecarProc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

// startSidecar runs `gatehouse sidecar` against cp's URL with the given key and more flags, and
// stops it (SIGTERM, expecting exit 0) when the test ends.
func startSidecar(t *testing.T, cpURL, sidecarID, keyFile string, env []string, args ...string) *sidecarProc {
	t.Helper()
	full := append([]string{"sidecar", "--control-plane", cpURL, "--sidecar-id", sidecarID, "--private-key", keyFile,
		"--listen-host", "127.0.0.1", "--report-interval", "500ms", "--drain-timeout", "5s", "--data-dir", t.TempDir()}, args...)
	cmd := exec.Command(Binary, full...)
	cmd.Env = append(baseEnv(), env...)
	p := &sidecarProc{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gatehouse sidecar: %v", err)
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("gatehouse sidecar exited %d after SIGTERM:\n%s", code, p.out)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-p.exited
			t.Errorf("gatehouse sidecar did not stop within 15s of SIGTERM:\n%s", p.out)
		}
	})
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *sidecarProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("gatehouse sidecar exited %d after SIGTERM:\n%s", code, p.out)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("gatehouse sidecar did not stop within 15s of SIGTERM:\n%s", p.out)
	}
}

func (p *sidecarProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

func (p *sidecarProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func listening(host string, port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func registerSidecar(t *testing.T, admin *CLI, pub string) string {
	t.Helper()
	var sc struct {
		ID string `json:"id"`
	}
	admin.MustRunJSON(&sc, "sidecar", "register", "--display-name", "e2e", "--hostname", "sidecar.example.com", "--public-key-file", pub)
	if sc.ID == "" {
		t.Fatal("sidecar register returned no id")
	}
	return sc.ID
}

func instances(t *testing.T, admin *CLI, id string) map[string]gatehouse.SidecarInstance {
	t.Helper()
	var list []gatehouse.SidecarInstance
	admin.MustRunJSON(&list, "sidecar", "instances", id)
	out := map[string]gatehouse.SidecarInstance{}
	for _, in := range list {
		out[in.Hostname+"/"+in.InstanceID] = in
	}
	return out
}

// sign makes a sidecar JWT with chosen claims, as a sidecar (or an attacker) would.
func sign(t *testing.T, keyFile string, c jwt.RegisteredClaims) string {
	t.Helper()
	key, err := syncapi.LoadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSidecarAuthentication(t *testing.T) {
	t.Parallel()
	cp := StartControlPlane(t, ServerOptions{})
	admin := cp.Admin(t)
	priv, pub := GenerateRSAKey(t, 2048)
	strangerPriv, _ := GenerateRSAKey(t, 2048)
	id := registerSidecar(t, admin, pub)

	now := time.Now()
	claims := func(mod func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{
			Issuer: id, Subject: "e2e-instance", Audience: jwt.ClaimStrings{cp.URL},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(30 * time.Second)), ID: rand.Text(),
		}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	call := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", cp.URL+syncapi.ConfigPath+"?since=0&wait=0s", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	good := sign(t, priv, claims(nil))
	if code, body := call(good); code != http.StatusOK {
		t.Fatalf("valid sidecar token: %d %s", code, body)
	}
	cases := []struct {
		name, token, logReason string
	}{
		{"replayed token", good, "replayed jti"},
		{"wrong key", sign(t, strangerPriv, claims(nil)), "signature does not match"},
		{"expired token", sign(t, priv, claims(func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-2 * time.Minute))
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-90 * time.Second))
		})), "token is expired"},
		{"future-dated token", sign(t, priv, claims(func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(40 * time.Second))
			c.ExpiresAt = jwt.NewNumericDate(now.Add(60 * time.Second))
		})), "token used before issued"},
		{"lifetime over 60s", sign(t, priv, claims(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(5 * time.Minute))
		})), "exceeds 1m0s"},
		{"wrong audience", sign(t, priv, claims(func(c *jwt.RegisteredClaims) {
			c.Audience = jwt.ClaimStrings{"https://elsewhere.example.com"}
		})), "invalid audience"},
		{"unknown sidecar", sign(t, priv, claims(func(c *jwt.RegisteredClaims) { c.Issuer = "no-such-sidecar" })), `unknown sidecar \"no-such-sidecar\"`},
	}
	for _, tc := range cases {
		code, body := call(tc.token)
		if code != http.StatusUnauthorized {
			t.Errorf("%s: status %d; want 401", tc.name, code)
		}
		if !strings.Contains(body, "sidecar authentication failed") || strings.Contains(body, tc.logReason) {
			t.Errorf("%s: body %s; want the generic message only", tc.name, body)
		}
	}
	waitUntil(t, 20*time.Second, "refusal reasons in the control plane's log", func() bool {
		out := cp.Output()
		for _, tc := range cases {
			if !strings.Contains(out, tc.logReason) {
				return false
			}
		}
		return true
	})

	// The real sidecar with the wrong key: refused, says so, keeps retrying instead of exiting.
	sc := startSidecar(t, cp.URL, id, strangerPriv, nil)
	waitUntil(t, 10*time.Second, "sidecar logs its refusal", func() bool {
		return strings.Contains(sc.out.String(), "control plane refused this sidecar's credentials")
	})
	time.Sleep(time.Second)
	if !sc.running() {
		t.Fatalf("sidecar exited after being refused:\n%s", sc.out)
	}
	if got := instances(t, admin, id); len(got) != 0 {
		t.Errorf("refused sidecar listed as an instance: %+v", got)
	}
}

func TestSidecarInstancesAndListeners(t *testing.T) {
	t.Parallel()
	cp := StartControlPlane(t, ServerOptions{Env: []string{
		"GATEHOUSE_SIDECAR_STALE_AFTER=2s", "GATEHOUSE_SIDECAR_DISCONNECTED_AFTER=5s",
	}})
	admin := cp.Admin(t)
	priv, pub := GenerateRSAKey(t, 2048)
	id := registerSidecar(t, admin, pub)

	// Two instances of one sidecar on one machine: each binds its own loopback address.
	a := startSidecar(t, cp.URL, id, priv, nil, "--listen-host", "127.0.0.1")
	b := startSidecar(t, cp.URL, id, priv, nil, "--listen-host", "127.0.0.2")
	waitUntil(t, 10*time.Second, "two healthy instances", func() bool {
		got := instances(t, admin, id)
		n := 0
		for _, in := range got {
			if in.Status == "healthy" {
				n++
			}
		}
		return n == 2
	})
	table := admin.MustRun("sidecar", "instances", id)
	for _, col := range []string{"INSTANCE ID", "HOSTNAME", "VERSION", "STATUS", "PORTS", "CONFIG VERSION", "LAST SEEN", "ERRORS", "healthy"} {
		if !strings.Contains(table, col) {
			t.Errorf("instances table lacks %q:\n%s", col, table)
		}
	}

	port := freeTCPPort(t)
	admin.MustRun("repository", "create", "--name", "sales", "--type", "postgresql", "--version", "15", "--hostname", "db.example.com")
	admin.MustRun("sidecar", "port", "create", id, "--port", strconv.Itoa(port), "--type", "postgresql", "--version", "15")
	admin.MustRun("sidecar", "binding", "create", id, "--port", strconv.Itoa(port), "--repository", "sales")
	start := time.Now()
	waitUntil(t, 2*time.Second, "port opens on both instances", func() bool {
		return listening("127.0.0.1", port) && listening("127.0.0.2", port)
	})
	t.Logf("port open on both instances after %s", time.Since(start).Round(time.Millisecond))
	waitUntil(t, 20*time.Second, "instances report the port", func() bool {
		for _, in := range instances(t, admin, id) {
			if len(in.Ports) != 1 || in.Ports[0] != port || in.ConfigVersion == 0 {
				return false
			}
		}
		return true
	})

	admin.MustRun("sidecar", "port", "delete", id, "--port", strconv.Itoa(port), "--cascade")
	start = time.Now()
	waitUntil(t, 2*time.Second, "port closes on both instances", func() bool {
		return !listening("127.0.0.1", port) && !listening("127.0.0.2", port)
	})
	t.Logf("port closed on both instances after %s", time.Since(start).Round(time.Millisecond))

	// A killed instance goes stale, then disconnected; the other stays healthy.
	b.kill()
	status := func() (healthy, stale, disconnected int) {
		for _, in := range instances(t, admin, id) {
			switch in.Status {
			case "healthy":
				healthy++
			case "stale":
				stale++
			case "disconnected":
				disconnected++
			}
		}
		return
	}
	waitUntil(t, 20*time.Second, "killed instance stale", func() bool { h, s, _ := status(); return h == 1 && s == 1 })
	waitUntil(t, 20*time.Second, "killed instance disconnected", func() bool { h, _, d := status(); return h == 1 && d == 1 })
	if !a.running() {
		t.Fatalf("instance a exited:\n%s", a.out)
	}
}

// pgFixture is a real PostgreSQL behind a sidecar: repository "app" bound to a listener port,
// repository user "postgres" whose password the sidecar reads from $APP_DB_PASSWORD, and alice
// allowed to impersonate it.
type pgFixture struct {
	cp       *ControlPlane
	admin    *CLI
	alice    *CLI
	id       string
	priv     string
	port     int
	pg       *pgserver.Server
	cpArgs   []string
	sidecars []*sidecarProc
}

func newPGFixture(t *testing.T) *pgFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	f := &pgFixture{pg: pg}
	// A fixed address and data directory, so the control plane can be restarted as the same one.
	dataDir := t.TempDir()
	f.cpArgs = []string{"--data-dir", dataDir, "--listen", "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))}
	f.cp = StartControlPlane(t, ServerOptions{Args: f.cpArgs})
	f.admin = f.cp.Admin(t)
	var pub string
	f.priv, pub = GenerateRSAKey(t, 2048)
	f.id = registerSidecar(t, f.admin, pub)
	f.port = freeTCPPort(t)
	f.admin.MustRun("repository", "create", "--name", "app", "--type", "postgresql", "--version", "15",
		"--hostname", "127.0.0.1", "--port", strconv.Itoa(pg.Port()), "--database", "postgres", "--tls-mode", "disable")
	f.admin.MustRun("repository", "user", "create", "--repository", "app", "--username", "postgres", "--secret-source", "env", "--env-name", "APP_DB_PASSWORD")
	f.admin.MustRun("sidecar", "port", "create", f.id, "--port", strconv.Itoa(f.port), "--type", "postgresql", "--version", "15")
	f.admin.MustRun("sidecar", "binding", "create", f.id, "--port", strconv.Itoa(f.port), "--repository", "app")
	f.admin.MustRunStdin("alice-Passw0rd!\n", "user", "create", "alice@example.com", "--role", "DATA_CONSUMER", "--password-stdin")
	f.admin.MustRun("policy", "impersonation", "create", "--name", "alice-app", "--repository", "app",
		"--rule", "users=alice@example.com;repository_users=postgres")
	f.alice = f.cp.NewCLI(t)
	f.alice.Login("alice@example.com", "alice-Passw0rd!")
	return f
}

func (f *pgFixture) startSidecar(t *testing.T, keyFile string, args ...string) *sidecarProc {
	p := startSidecar(t, f.cp.URL, f.id, keyFile, []string{"APP_DB_PASSWORD=" + f.pg.Password()}, args...)
	f.sidecars = append(f.sidecars, p)
	return p
}

type createdToken struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

func (f *pgFixture) token(t *testing.T) createdToken {
	t.Helper()
	var tok createdToken
	f.alice.MustRunJSON(&tok, "token", "create", "--ttl", "30m")
	return tok
}

// connect logs in through the sidecar with pgx over TLS (the sidecar's self-signed certificate).
func (f *pgFixture) connect(ctx context.Context, token string) (*pgx.Conn, error) {
	return f.connectTo(ctx, "127.0.0.1", token)
}

func (f *pgFixture) connectTo(ctx context.Context, host, token string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("postgres://postgres:%s@%s:%d/postgres?sslmode=require&connect_timeout=5", token, host, f.port))
}

// query runs one statement in a new session through the sidecar at host.
func (f *pgFixture) query(host, token string) error {
	ctx := context.Background()
	conn, err := f.connectTo(ctx, host, token)
	if err != nil {
		return fmt.Errorf("connect through the sidecar at %s: %w", host, err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		return fmt.Errorf("query through the sidecar at %s: %d, %v", host, n, err)
	}
	return nil
}

func (f *pgFixture) mustQuery(t *testing.T, token string) {
	t.Helper()
	if err := f.query("127.0.0.1", token); err != nil {
		t.Fatal(err)
	}
}

func TestSidecarRevocation(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	f.startSidecar(t, f.priv)
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })

	tok := f.token(t)
	f.mustQuery(t, tok.Token) // fresh token: synced or looked up on the miss

	ctx := context.Background()
	live, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(ctx)
	f.alice.MustRun("token", "revoke", tok.ID)
	start := time.Now()
	waitUntil(t, 2*time.Second, "revoked token refused", func() bool {
		c, err := f.connect(ctx, tok.Token)
		if err == nil {
			c.Close(ctx)
			return false
		}
		return true
	})
	t.Logf("revoked token refused after %s", time.Since(start).Round(time.Millisecond))
	waitUntil(t, 20*time.Second, "live session of the revoked token ended", func() bool {
		var n int
		return live.QueryRow(ctx, "SELECT 1").Scan(&n) != nil
	})
}

func TestSidecarOutage(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	sc := f.startSidecar(t, f.priv)
	tok := f.token(t)
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })
	waitUntil(t, 20*time.Second, "token synced", func() bool {
		for _, in := range instances(t, f.admin, f.id) {
			if in.ConfigVersion > 0 {
				return true
			}
		}
		return false
	})
	f.mustQuery(t, tok.Token)

	// Control plane down: the listener and the synced token keep working; an unknown token gets
	// the outage message.
	f.cp.cmd.Process.Kill()
	<-f.cp.exited
	waitUntil(t, 10*time.Second, "sidecar notices the outage", func() bool {
		return strings.Contains(sc.out.String(), "control plane unreachable, retrying in")
	})
	f.mustQuery(t, tok.Token)
	_, err := f.connect(context.Background(), gatehouse.TokenPrefix+strings.Repeat("x", 43))
	if err == nil || !strings.Contains(err.Error(), "control plane is unreachable") {
		t.Errorf("unknown token during the outage: %v; want the outage message", err)
	}
	if !sc.running() {
		t.Fatalf("sidecar exited during the outage:\n%s", sc.out)
	}

	// The same control plane comes back; a change made after that reaches the sidecar.
	f.cp = StartControlPlane(t, ServerOptions{Args: f.cpArgs})
	f.admin = f.cp.Admin(t)
	port2 := freeTCPPort(t)
	f.admin.MustRun("sidecar", "port", "create", f.id, "--port", strconv.Itoa(port2), "--type", "postgresql", "--version", "15")
	waitUntil(t, 40*time.Second, "port added after the restart opens", func() bool { return listening("127.0.0.1", port2) })
	f.mustQuery(t, tok.Token)
	if !strings.Contains(sc.out.String(), "control plane reachable again") {
		t.Errorf("sidecar did not log the reconnection:\n%s", sc.out)
	}
	// Stop the sidecar before the restarted control plane (registered after it, so cleaned up
	// first): the control plane's graceful stop waits for open long-polls.
	sc.stop(t)
}

// TestSidecarKeyRotation rotates the key the way an operator does behind a load balancer: register
// the new key as the second one, start an instance on it next to the old one, stop the old one,
// make the new key the only one. A client keeps querying throughout (through whichever instance the
// "load balancer" points at) and no request, the client's or the sidecars', is refused.
func TestSidecarKeyRotation(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	old := f.startSidecar(t, f.priv, "--listen-host", "127.0.0.1")
	tok := f.token(t)
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", f.port) })
	f.mustQuery(t, tok.Token)

	// The client: one query every 100 ms through the address in target.
	target := make(chan string, 1)
	target <- "127.0.0.1"
	stop := make(chan struct{})
	clientDone := make(chan []error)
	go func() {
		var errs []error
		host := <-target
		for {
			select {
			case h := <-target:
				host = h
			case <-stop:
				clientDone <- errs
				return
			case <-time.After(100 * time.Millisecond):
			}
			if err := f.query(host, tok.Token); err != nil {
				errs = append(errs, err)
			}
		}
	}()

	newPriv, newPub := GenerateRSAKey(t, 2048)
	f.admin.MustRun("sidecar", "update", f.id, "--second-public-key-file", newPub)
	next := f.startSidecar(t, newPriv, "--listen-host", "127.0.0.2")
	waitUntil(t, 10*time.Second, "instance on the new key serves", func() bool { return listening("127.0.0.2", f.port) })
	target <- "127.0.0.2" // the load balancer drains the old instance
	time.Sleep(300 * time.Millisecond)
	old.stop(t)
	f.admin.MustRun("sidecar", "update", f.id, "--public-key-file", newPub, "--clear-second-public-key")
	rotated := time.Now()
	time.Sleep(2 * time.Second) // several reports and polls on the new key alone
	close(stop)
	if errs := <-clientDone; len(errs) > 0 {
		t.Errorf("%d client requests failed during the rotation, first: %v", len(errs), errs[0])
	}

	if strings.Contains(f.cp.Output(), "sidecar request refused") {
		t.Errorf("the control plane refused a sidecar request during the rotation:\n%s", f.cp.Output())
	}
	for _, p := range []*sidecarProc{old, next} {
		if strings.Contains(p.out.String(), "refused this sidecar's credentials") {
			t.Errorf("a sidecar was refused during the rotation:\n%s", p.out)
		}
	}
	fresh := 0
	for _, in := range instances(t, f.admin, f.id) {
		if in.Status == "healthy" && in.LastSeen.After(rotated) {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d instances reported after the old key was removed; want 1 (the one on the new key)", fresh)
	}
}
