package sidecar

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	keyOnce sync.Once
	keyDir  string
	keyErr  error
)

// keyFile returns a private key file shared by the package's tests (RSA generation is slow).
func keyFile(t *testing.T) string {
	t.Helper()
	keyOnce.Do(func() {
		keyDir, keyErr = os.MkdirTemp("", "sidecar-test-key")
		if keyErr == nil {
			_, _, keyErr = syncapi.WriteKeyPair(keyDir)
		}
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return filepath.Join(keyDir, syncapi.PrivateKeyFile)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// syncBuffer is a log sink safe for concurrent writes.
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

// startSidecar runs a sidecar against cp until the test ends.
func startSidecar(t *testing.T, cp *fakeControlPlane, mod func(*Config)) (*Sidecar, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		ControlPlane:   cp.url(),
		SidecarID:      "sc1",
		PrivateKeyFile: keyFile(t),
		ListenHost:     "127.0.0.1",
		ReportInterval: 100 * time.Millisecond,
		PollWait:       2 * time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DataDir:        t.TempDir(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s, logs
}

const (
	aliceToken = "gh1_aliceAliceAliceAliceAlice01"
	bobToken   = "gh1_bobBobBobBobBobBobBobBob0001"
)

// baseSnapshot: port bound to repository "sales" with repository users reader and writer; group
// eng may be reader; alice (in eng) and bob (in no group) have tokens.
func baseSnapshot(port int) func(s *syncapi.Snapshot) {
	return func(s *syncapi.Snapshot) {
		exp := time.Now().Add(time.Hour)
		*s = syncapi.Snapshot{
			Version:  s.Version,
			Sidecar:  syncapi.Settings{ID: "sc1"},
			Ports:    []gatehouse.ListenerPort{{SidecarID: "sc1", Port: port, Type: gatehouse.PostgreSQL, Version: "15"}},
			Bindings: []gatehouse.Binding{{SidecarID: "sc1", Port: port, Repository: "sales"}},
			Repositories: []gatehouse.Repository{
				{Name: "sales", Type: gatehouse.PostgreSQL, Version: "15", Hostname: "db.internal", Port: 5432, TLSMode: gatehouse.TLSPrefer},
			},
			RepositoryUsers: []gatehouse.RepositoryUser{
				{Repository: "sales", Username: "reader", Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: "READER_PW"}},
				{Repository: "sales", Username: "writer", Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: "WRITER_PW"}},
			},
			ImpersonationPolicies: []gatehouse.ImpersonationPolicy{{
				Name: "eng-read", Repository: "sales",
				Rules: []gatehouse.ImpersonationRule{{Groups: []string{"eng"}, RepositoryUsers: []string{"reader"}}},
			}},
			Tokens: []syncapi.TokenVerifier{
				{ID: "t-alice", Hash: syncapi.HashToken(aliceToken), Owner: "alice@example.com", ExpiresAt: exp},
				{ID: "t-bob", Hash: syncapi.HashToken(bobToken), Owner: "bob@example.com", ExpiresAt: exp},
			},
			Users: []syncapi.User{
				{Name: "alice@example.com", Active: true, Groups: []string{"eng"}},
				{Name: "bob@example.com", Active: true},
			},
		}
	}
}

func authReason(err error) proxy.AuthReason {
	var ae *proxy.AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return 0
}

func TestListenersFollowSnapshot(t *testing.T) {
	cp := newFakeControlPlane(t)
	p1, p2 := freePort(t), freePort(t)
	cp.update(baseSnapshot(p1))
	s, _ := startSidecar(t, cp, nil)

	eventually(t, 2*time.Second, "first port opens", func() bool { return portOpen(p1) })
	cp.update(func(sn *syncapi.Snapshot) {
		sn.Ports = append(sn.Ports, gatehouse.ListenerPort{SidecarID: "sc1", Port: p2, Type: gatehouse.MySQL, Version: "8.0"})
	})
	eventually(t, 2*time.Second, "second port opens", func() bool { return portOpen(p2) })
	eventually(t, 2*time.Second, "report lists both ports", func() bool {
		r, ok := cp.lastReport()
		return ok && cmp.Equal(r.Ports, sortedInts(p1, p2)) && r.ConfigVersion == 2 && r.InstanceID == s.InstanceID()
	})

	cp.update(func(sn *syncapi.Snapshot) { sn.Ports = sn.Ports[1:] })
	eventually(t, 2*time.Second, "first port closes", func() bool { return !portOpen(p1) })
	if !portOpen(p2) {
		t.Error("second port closed too")
	}
}

func sortedInts(a, b int) []int {
	if a > b {
		a, b = b, a
	}
	return []int{a, b}
}

func TestBindErrorReported(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := busy.Addr().(*net.TCPAddr).Port
	cp := newFakeControlPlane(t)
	cp.update(baseSnapshot(port))
	startSidecar(t, cp, nil)

	eventually(t, 2*time.Second, "report names the port it could not bind", func() bool {
		r, ok := cp.lastReport()
		return ok && len(r.Errors) == 1 && strings.Contains(r.Errors[0], "port "+strconv.Itoa(port)) && len(r.Ports) == 0
	})
	busy.Close()
	eventually(t, 2*time.Second, "port bound once it is free", func() bool {
		r, ok := cp.lastReport()
		return ok && len(r.Errors) == 0 && cmp.Equal(r.Ports, []int{port})
	})
}

// echoEngine writes the authorizer's decision to the client and holds the session until it is
// revoked or its context ends.
type echoEngine struct {
	p EngineParams
}

func (e *echoEngine) Serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	line, err := readLine(c)
	if err != nil {
		return
	}
	user, token, _ := strings.Cut(line, " ")
	g, err := e.p.Authorizer.Authorize(ctx, proxy.Login{Port: e.p.Port.Port, Username: user, Token: token})
	if err != nil {
		io.WriteString(c, "refused: "+err.Error()+"\n")
		return
	}
	io.WriteString(c, "ok "+g.Identity.User+" as "+g.Target.User.Username+"@"+g.Target.Repository.Name+"\n")
	select {
	case <-g.Revoked.Done():
		io.WriteString(c, "revoked\n")
	case <-ctx.Done():
		io.WriteString(c, "closing\n")
	}
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := r.Read(one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

func TestEngineSessionRevokedBySnapshot(t *testing.T) {
	cp := newFakeControlPlane(t)
	port := freePort(t)
	cp.update(baseSnapshot(port))
	startSidecar(t, cp, func(c *Config) {
		c.Engines = map[gatehouse.DatabaseType]EngineFactory{
			gatehouse.PostgreSQL: func(p EngineParams) (proxy.Engine, error) {
				if p.TLS == nil || p.Credentials == nil || p.Authorizer == nil {
					t.Errorf("engine params incomplete: %+v", p)
				}
				return &echoEngine{p: p}, nil
			},
		}
	})
	eventually(t, 2*time.Second, "port opens", func() bool { return portOpen(port) })

	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "reader "+aliceToken+"\n")
	if got, _ := readLine(c); got != "ok alice@example.com as reader@sales" {
		t.Fatalf("login answer = %q", got)
	}
	start := time.Now()
	cp.update(func(sn *syncapi.Snapshot) { sn.Tokens = sn.Tokens[1:] }) // revoke alice's token
	if got, _ := readLine(c); got != "revoked" {
		t.Fatalf("after revocation = %q; want revoked", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("revocation took %s", d)
	}
}

func TestAuthorize(t *testing.T) {
	port := 15432
	snap := &syncapi.Snapshot{Version: 1}
	baseSnapshot(port)(snap)
	// A second repository on the same port, and one on another port.
	snap.Ports = append(snap.Ports, gatehouse.ListenerPort{Port: 15433, Type: gatehouse.PostgreSQL, Version: "15"})
	snap.Bindings = append(snap.Bindings, gatehouse.Binding{Port: 15433, Repository: "hr"}, gatehouse.Binding{Port: 15433, Repository: "ops"})
	snap.Repositories = append(snap.Repositories, gatehouse.Repository{Name: "hr", Type: gatehouse.PostgreSQL, Version: "15"}, gatehouse.Repository{Name: "ops", Type: gatehouse.PostgreSQL, Version: "15"})
	snap.RepositoryUsers = append(snap.RepositoryUsers, gatehouse.RepositoryUser{Repository: "hr", Username: "reader"})
	snap.ImpersonationPolicies = append(snap.ImpersonationPolicies, gatehouse.ImpersonationPolicy{
		Name: "bob-hr", Repository: "hr",
		Rules: []gatehouse.ImpersonationRule{{Users: []string{"BOB@example.com"}, RepositoryUsers: []string{"reader"}}},
	})
	exp := time.Now().Add(-time.Minute)
	snap.Tokens = append(snap.Tokens,
		syncapi.TokenVerifier{ID: "t-old", Hash: syncapi.HashToken("gh1_old"), Owner: "alice@example.com", ExpiresAt: exp},
		syncapi.TokenVerifier{ID: "t-carol", Hash: syncapi.HashToken("gh1_carol"), Owner: "carol@example.com", ExpiresAt: time.Now().Add(time.Hour)},
		syncapi.TokenVerifier{ID: "t-scoped", Hash: syncapi.HashToken("gh1_scoped"), Owner: "alice@example.com", ExpiresAt: time.Now().Add(time.Hour), Scope: &syncapi.TokenScope{Repositories: []string{"ops"}}},
	)
	snap.Users = append(snap.Users, syncapi.User{Name: "carol@example.com", Active: false, Groups: []string{"eng"}})

	s := &Sidecar{now: time.Now, logger: slog.New(slog.DiscardHandler), lookups: notFoundLookups{}, authz: authz{
		lookups: map[string]lookupEntry{}, watches: map[watchKey]*grantWatch{}, flights: map[string]*flight{},
	}}
	if _, err := s.Authorize(context.Background(), proxy.Login{Port: port, Username: "reader", Token: aliceToken}); authReason(err) != proxy.ControlPlaneDown {
		t.Errorf("before any snapshot: %v; want ControlPlaneDown", err)
	}
	s.state.Store(newState(snap))

	tests := []struct {
		name     string
		login    proxy.Login
		want     proxy.AuthReason // 0: granted
		wantRepo string
	}{
		{"group allows", proxy.Login{Port: port, Username: "reader", Token: aliceToken}, 0, "sales"},
		{"explicit repository", proxy.Login{Port: port, Username: "reader@sales", Token: aliceToken}, 0, "sales"},
		{"user rule is case-insensitive", proxy.Login{Port: 15433, Username: "reader@hr", Token: bobToken}, 0, "hr"},
		{"no rule for user", proxy.Login{Port: port, Username: "writer", Token: aliceToken}, proxy.NotPermitted, ""},
		{"not in group", proxy.Login{Port: port, Username: "reader", Token: bobToken}, proxy.NotPermitted, ""},
		{"unknown repository user", proxy.Login{Port: port, Username: "admin", Token: aliceToken}, proxy.UnknownUser, ""},
		{"repository not on port", proxy.Login{Port: port, Username: "reader@hr", Token: bobToken}, proxy.UnknownUser, ""},
		{"ambiguous port", proxy.Login{Port: 15433, Username: "reader", Token: bobToken}, proxy.UnknownUser, ""},
		{"unknown port", proxy.Login{Port: 1, Username: "reader", Token: aliceToken}, proxy.UnknownUser, ""},
		{"expired token", proxy.Login{Port: port, Username: "reader", Token: "gh1_old"}, proxy.TokenExpired, ""},
		{"inactive owner", proxy.Login{Port: port, Username: "reader", Token: "gh1_carol"}, proxy.TokenRevoked, ""},
		{"out of scope", proxy.Login{Port: port, Username: "reader", Token: "gh1_scoped"}, proxy.NotPermitted, ""},
		{"unknown token", proxy.Login{Port: port, Username: "reader", Token: "gh1_nope"}, proxy.TokenInvalid, ""},
		{"unknown token, bad user", proxy.Login{Port: port, Username: "admin@nowhere", Token: "gh1_nope"}, proxy.TokenInvalid, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := s.Authorize(context.Background(), tc.login)
			if got := authReason(err); got != tc.want {
				t.Fatalf("Authorize = %v (reason %d); want reason %d", err, got, tc.want)
			}
			if err != nil && tc.want == 0 {
				t.Fatal(err)
			}
			if tc.want != 0 {
				if strings.Contains(err.Error(), "gh1_") {
					t.Errorf("refusal names the token: %v", err)
				}
				return
			}
			if g.Target.Repository.Name != tc.wantRepo || g.Revoked == nil || g.Identity.TokenID == "" {
				t.Errorf("grant = %+v", g)
			}
		})
	}
}

type notFoundLookups struct{}

func (notFoundLookups) LookupToken(context.Context, string) (*syncapi.TokenLookup, error) {
	return nil, syncapi.ErrTokenNotFound
}

func TestRevocationOnSnapshot(t *testing.T) {
	port := 15432
	cases := []struct {
		name   string
		change func(s *syncapi.Snapshot)
		revoke bool
	}{
		{"unrelated change", func(s *syncapi.Snapshot) { s.Tokens = s.Tokens[:1] }, false},
		{"repository host changed", func(s *syncapi.Snapshot) { s.Repositories[0].Hostname = "db2.internal" }, false},
		{"token dropped", func(s *syncapi.Snapshot) { s.Tokens = s.Tokens[1:] }, true},
		{"owner deactivated", func(s *syncapi.Snapshot) { s.Users[0].Active = false }, true},
		{"owner left group", func(s *syncapi.Snapshot) { s.Users[0].Groups = nil }, true},
		{"policy removed", func(s *syncapi.Snapshot) { s.ImpersonationPolicies = nil }, true},
		{"binding removed", func(s *syncapi.Snapshot) { s.Bindings = nil }, true},
		{"port removed", func(s *syncapi.Snapshot) { s.Ports = nil }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sidecar{now: time.Now, logger: slog.New(slog.DiscardHandler), lookups: notFoundLookups{}, authz: authz{
				lookups: map[string]lookupEntry{}, watches: map[watchKey]*grantWatch{}, flights: map[string]*flight{},
			}}
			snap := &syncapi.Snapshot{Version: 1}
			baseSnapshot(port)(snap)
			s.state.Store(newState(snap))
			g, err := s.Authorize(context.Background(), proxy.Login{Port: port, Username: "reader", Token: aliceToken})
			if err != nil {
				t.Fatal(err)
			}
			next := &syncapi.Snapshot{Version: 2}
			baseSnapshot(port)(next)
			next.Version = 2
			tc.change(next)
			st := newState(next)
			s.state.Store(st)
			s.recheck(st, time.Now())
			select {
			case <-g.Revoked.Done():
				if !tc.revoke {
					t.Error("grant revoked")
				}
			default:
				if tc.revoke {
					t.Error("grant not revoked")
				}
			}
		})
	}
}

// Sessions granted on the same login share one watch: revoked together, and a pool of
// connections does not cost one context per connection. A grant after a revocation gets a new one.
func TestGrantsShareWatch(t *testing.T) {
	port := 15432
	s := &Sidecar{now: time.Now, logger: slog.New(slog.DiscardHandler), lookups: notFoundLookups{}, authz: authz{
		lookups: map[string]lookupEntry{}, watches: map[watchKey]*grantWatch{}, flights: map[string]*flight{},
	}}
	apply := func(version int64, change func(*syncapi.Snapshot)) {
		snap := &syncapi.Snapshot{}
		baseSnapshot(port)(snap)
		snap.Version = version
		change(snap)
		st := newState(snap)
		s.state.Store(st)
		s.recheck(st, time.Now())
	}
	apply(1, func(*syncapi.Snapshot) {})
	login := proxy.Login{Port: port, Username: "reader", Token: aliceToken}
	g1, err := s.Authorize(context.Background(), login)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := s.Authorize(context.Background(), login)
	if err != nil {
		t.Fatal(err)
	}
	if g1.Revoked != g2.Revoked || len(s.authz.watches) != 1 {
		t.Fatalf("two grants of one login: shared context %v, %d watches; want shared, 1", g1.Revoked == g2.Revoked, len(s.authz.watches))
	}
	if g1 != g2 {
		t.Error("two logins decided on one snapshot got different grants")
	}
	for _, w := range s.authz.watches {
		if w.login.Token != "" {
			t.Error("the watch keeps the access token")
		}
	}
	// A snapshot that changes the target but still allows the login: the next grant is decided
	// on it, in the same watch.
	apply(2, func(sn *syncapi.Snapshot) { sn.Repositories[0].Hostname = "db2.internal" })
	g4, err := s.Authorize(context.Background(), login)
	if err != nil {
		t.Fatal(err)
	}
	if g4.Target.Repository.Hostname != "db2.internal" || g1.Target.Repository.Hostname == "db2.internal" || g4.Revoked != g1.Revoked {
		t.Errorf("after a host change: new grant's host %q, old grant's %q, same watch %v; want db2.internal, the old one, true",
			g4.Target.Repository.Hostname, g1.Target.Repository.Hostname, g4.Revoked == g1.Revoked)
	}
	apply(3, func(sn *syncapi.Snapshot) { sn.Tokens = sn.Tokens[1:] }) // alice's token revoked
	if g1.Revoked.Err() == nil || g2.Revoked.Err() == nil || len(s.authz.watches) != 0 {
		t.Fatalf("after revocation: revoked %v and %v, %d watches; want both revoked, none left",
			g1.Revoked.Err() != nil, g2.Revoked.Err() != nil, len(s.authz.watches))
	}
	apply(4, func(*syncapi.Snapshot) {}) // the token is back
	g3, err := s.Authorize(context.Background(), login)
	if err != nil {
		t.Fatal(err)
	}
	if g3.Revoked.Err() != nil {
		t.Fatal("a grant made after a revocation starts revoked")
	}
}

func TestTokenLookupOnMiss(t *testing.T) {
	cp := newFakeControlPlane(t)
	port := freePort(t)
	cp.update(baseSnapshot(port))
	s, _ := startSidecar(t, cp, nil)
	eventually(t, 2*time.Second, "snapshot applied", func() bool { return s.state.Load() != nil })

	const fresh = "gh1_freshFreshFreshFreshFresh01"
	cp.mu.Lock()
	cp.lookup[syncapi.HashToken(fresh)] = syncapi.TokenLookup{
		Token:         syncapi.TokenVerifier{ID: "t-fresh", Hash: syncapi.HashToken(fresh), Owner: "alice@example.com", ExpiresAt: time.Now().Add(time.Hour)},
		User:          syncapi.User{Name: "alice@example.com", Active: true, Groups: []string{"eng"}},
		ConfigVersion: 2,
	}
	cp.mu.Unlock()
	ctx := context.Background()
	login := proxy.Login{Port: port, Username: "reader", Token: fresh}
	g, err := s.Authorize(ctx, login)
	if err != nil {
		t.Fatalf("token known only to the control plane: %v", err)
	}
	if _, err := s.Authorize(ctx, login); err != nil {
		t.Fatal(err)
	}
	if n := cp.lookupCount(); n != 1 {
		t.Errorf("control plane asked %d times; want once", n)
	}

	// Unknown tokens are asked about once, then refused from the negative cache.
	for range 3 {
		if _, err := s.Authorize(ctx, proxy.Login{Port: port, Username: "reader", Token: "gh1_unknownUnknownUnknown0001"}); authReason(err) != proxy.TokenInvalid {
			t.Fatalf("unknown token: %v", err)
		}
	}
	if n := cp.lookupCount(); n != 2 {
		t.Errorf("control plane asked %d times; want 2", n)
	}

	// A snapshot of the lookup's version that does not carry the token (revoked since) ends the
	// session that was granted from the lookup.
	cp.update(func(sn *syncapi.Snapshot) { sn.Users[1].Groups = []string{"x"} }) // version 2, no fresh token
	select {
	case <-g.Revoked.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("session granted from a lookup not revoked by a newer snapshot without the token")
	}

	// With the control plane down, an unknown token gets the outage message; known ones work.
	cp.stop()
	_, err = s.Authorize(ctx, proxy.Login{Port: port, Username: "reader", Token: "gh1_createdDuringTheOutage01"})
	if authReason(err) != proxy.ControlPlaneDown || !strings.Contains(err.Error(), "control plane is unreachable") {
		t.Errorf("unknown token during outage: %v", err)
	}
	if _, err := s.Authorize(ctx, proxy.Login{Port: port, Username: "reader", Token: aliceToken}); err != nil {
		t.Errorf("known token during outage: %v", err)
	}
}

func TestOutage(t *testing.T) {
	cp := newFakeControlPlane(t)
	port, port2 := freePort(t), freePort(t)
	cp.update(baseSnapshot(port))
	cp.stop()

	s, logs := startSidecar(t, cp, nil)
	eventually(t, 2*time.Second, "outage logged", func() bool {
		return strings.Contains(logs.String(), "control plane unreachable, retrying in ")
	})
	if s.state.Load() != nil {
		t.Fatal("state without a control plane")
	}
	cp.start()
	eventually(t, 3*time.Second, "port opens once the control plane is up", func() bool { return portOpen(port) })

	cp.stop()
	time.Sleep(300 * time.Millisecond) // several failed polls
	if !portOpen(port) {
		t.Error("listener closed during the outage")
	}
	if _, err := s.Authorize(context.Background(), proxy.Login{Port: port, Username: "reader", Token: aliceToken}); err != nil {
		t.Errorf("synced token refused during the outage: %v", err)
	}

	cp.update(func(sn *syncapi.Snapshot) {
		sn.Ports = append(sn.Ports, gatehouse.ListenerPort{SidecarID: "sc1", Port: port2, Type: gatehouse.PostgreSQL, Version: "15"})
	})
	cp.start()
	eventually(t, 3*time.Second, "change made during the outage picked up", func() bool { return portOpen(port2) })
	if !strings.Contains(logs.String(), "control plane reachable again") {
		t.Error("reconnection not logged")
	}
}

func TestBackoff(t *testing.T) {
	var nominal time.Duration
	var got []time.Duration
	for range 10 {
		var sleep time.Duration
		nominal, sleep = nextBackoff(nominal, 250*time.Millisecond, 30*time.Second)
		if sleep < nominal/2 || sleep > nominal {
			t.Errorf("sleep %s outside [%s, %s]", sleep, nominal/2, nominal)
		}
		got = append(got, nominal)
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nominal delays (-want +got):\n%s", diff)
	}
}

func TestNewErrors(t *testing.T) {
	key := keyFile(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no control plane", Config{SidecarID: "a", PrivateKeyFile: key}, "control-plane URL is required"},
		{"no sidecar id", Config{ControlPlane: "http://x", PrivateKeyFile: key}, "sidecar ID is required"},
		{"no key", Config{ControlPlane: "http://x", SidecarID: "a"}, "private key file is required"},
		{"missing key", Config{ControlPlane: "http://x", SidecarID: "a", PrivateKeyFile: "/nonexistent"}, "read private key"},
		{"bad url", Config{ControlPlane: "x.example.com", SidecarID: "a", PrivateKeyFile: key}, "must be an http(s) URL"},
		{"half tls", Config{ControlPlane: "http://x", SidecarID: "a", PrivateKeyFile: key, TLSCertFile: "c"}, "both a TLS certificate and key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAccessPolicies(t *testing.T) {
	s := &Sidecar{}
	if ps, allow := s.AccessPolicies("sales"); ps != nil || allow {
		t.Errorf("before any snapshot: %v, %v", ps, allow)
	}
	ap := gatehouse.AccessPolicy{Name: "ro", Repository: "sales", Mode: gatehouse.AccessEnforce}
	s.state.Store(newState(&syncapi.Snapshot{
		Sidecar:        syncapi.Settings{ID: "sc1", AllowUnsupportedQueries: true},
		AccessPolicies: []gatehouse.AccessPolicy{ap, {Name: "other", Repository: "hr"}},
	}))
	ps, allow := s.AccessPolicies("sales")
	if diff := cmp.Diff([]gatehouse.AccessPolicy{ap}, ps); diff != "" || !allow {
		t.Errorf("AccessPolicies(sales) = %v (-want +got):\n%s", allow, diff)
	}
}

// credEngine fetches the credential of reader@sales (an env reference to an unset variable) for
// every connection.
type credEngine struct{ p EngineParams }

func (e *credEngine) Serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	e.p.Credentials.Credential(ctx, proxy.Target{
		Repository: gatehouse.Repository{Name: "sales"},
		User:       gatehouse.RepositoryUser{Repository: "sales", Username: "reader", Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: "GATEHOUSE_TEST_NEVER_SET"}},
	})
}

func TestCredentialErrorsReported(t *testing.T) {
	cp := newFakeControlPlane(t)
	port := freePort(t)
	cp.update(baseSnapshot(port))
	startSidecar(t, cp, func(c *Config) {
		c.Engines = map[gatehouse.DatabaseType]EngineFactory{
			gatehouse.PostgreSQL: func(p EngineParams) (proxy.Engine, error) { return &credEngine{p: p}, nil },
		}
	})
	eventually(t, 2*time.Second, "port opens", func() bool { return portOpen(port) })
	eventually(t, 2*time.Second, "report names the failed credential", func() bool {
		portOpen(port)
		r, ok := cp.lastReport()
		return ok && len(r.Errors) == 1 && strings.Contains(r.Errors[0], "credential for reader@sales") && strings.Contains(r.Errors[0], "GATEHOUSE_TEST_NEVER_SET")
	})
}

type flakyCredentials struct{ fail bool }

func (f *flakyCredentials) Credential(context.Context, proxy.Target) (gatehouse.Credential, error) {
	if f.fail {
		return gatehouse.Credential{}, errors.New("source unreachable")
	}
	return gatehouse.NewCredential("s3cret"), nil
}
func (f *flakyCredentials) Invalidate(proxy.Target) {}

func TestCredentialErrorsClear(t *testing.T) {
	now := time.Now()
	src := &flakyCredentials{fail: true}
	c := &credentialErrors{next: src, now: func() time.Time { return now }, errs: map[string]credentialError{}}
	tgt := proxy.Target{Repository: gatehouse.Repository{Name: "r"}, User: gatehouse.RepositoryUser{Username: "u"}}
	c.Credential(context.Background(), tgt)
	if diff := cmp.Diff([]string{"credential for u@r: source unreachable"}, c.recent()); diff != "" {
		t.Errorf("after a failure (-want +got):\n%s", diff)
	}
	src.fail = false
	c.Credential(context.Background(), tgt)
	if got := c.recent(); len(got) != 0 {
		t.Errorf("after a success: %v", got)
	}
	src.fail = true
	c.Credential(context.Background(), tgt)
	now = now.Add(credentialErrorTTL + time.Second)
	if got := c.recent(); len(got) != 0 {
		t.Errorf("after the TTL: %v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Credential(ctx, tgt)
	if got := c.recent(); len(got) != 0 {
		t.Errorf("a cancelled fetch was recorded: %v", got)
	}
}

type fixedLookup struct{ l syncapi.TokenLookup }

func (f fixedLookup) LookupToken(_ context.Context, hash string) (*syncapi.TokenLookup, error) {
	if hash != f.l.Token.Hash {
		return nil, syncapi.ErrTokenNotFound
	}
	l := f.l
	return &l, nil
}

// A session granted from a lookup answer lasts like one granted from the snapshot: through an
// outage, until a snapshot at least as new as the answer drops the token.
func TestLookupGrantOutlivesOutage(t *testing.T) {
	const fresh = "gh1_freshFreshFreshFreshFresh01"
	port := 15432
	snap := &syncapi.Snapshot{Version: 1}
	baseSnapshot(port)(snap)
	snap.Version = 1
	s := &Sidecar{now: time.Now, logger: slog.New(slog.DiscardHandler), authz: authz{
		lookups: map[string]lookupEntry{}, watches: map[watchKey]*grantWatch{}, flights: map[string]*flight{},
	}, lookups: fixedLookup{syncapi.TokenLookup{
		Token:         syncapi.TokenVerifier{ID: "t-fresh", Hash: syncapi.HashToken(fresh), Owner: "alice@example.com", ExpiresAt: time.Now().Add(time.Hour)},
		User:          syncapi.User{Name: "alice@example.com", Active: true, Groups: []string{"eng"}},
		ConfigVersion: 5,
	}}}
	st := newState(snap)
	s.state.Store(st)
	g, err := s.Authorize(context.Background(), proxy.Login{Port: port, Username: "reader", Token: fresh})
	if err != nil {
		t.Fatal(err)
	}
	s.recheck(st, time.Now().Add(30*time.Minute)) // a long outage: no newer snapshot
	select {
	case <-g.Revoked.Done():
		t.Fatal("session granted from a lookup revoked without a newer snapshot")
	default:
	}
	snap.Version = 5 // the snapshot that should have carried the token does not: it was revoked
	st = newState(snap)
	s.state.Store(st)
	s.recheck(st, time.Now())
	select {
	case <-g.Revoked.Done():
	default:
		t.Fatal("session not revoked by a snapshot as new as the lookup without the token")
	}
}
