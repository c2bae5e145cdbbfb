package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
	"github.com/gatehousedb/gatehouse/internal/token"
)

// syncStore is an in-memory Store with just what the sidecar routes and admin sessions use; any
// other method panics through the nil embedded interface.
type syncStore struct {
	Store
	mu        sync.Mutex
	version   int64
	sidecars  map[string]*gatehouse.Sidecar
	ports     []gatehouse.ListenerPort
	bindings  []gatehouse.Binding
	repos     []gatehouse.Repository
	repoUsers []gatehouse.RepositoryUser
	policies  []gatehouse.ImpersonationPolicy
	access    []gatehouse.AccessPolicy
	users     []gatehouse.User
	tokens    []gatehouse.AccessToken
	instances []gatehouse.SidecarInstance
	jtis      map[string]bool
}

func (s *syncStore) bump() { s.mu.Lock(); s.version++; s.mu.Unlock() }

func (s *syncStore) ConfigVersion(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

func (s *syncStore) GetSidecar(_ context.Context, id string) (*gatehouse.Sidecar, error) {
	if sc, ok := s.sidecars[id]; ok {
		c := *sc
		return &c, nil
	}
	return nil, gatehouse.NotFound("sidecar", id)
}

func (s *syncStore) UseJTI(_ context.Context, jti string, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jtis[jti] {
		return gatehouse.Conflict("jti used")
	}
	s.jtis[jti] = true
	return nil
}

func (s *syncStore) ListListenerPorts(_ context.Context, id string) ([]gatehouse.ListenerPort, error) {
	var out []gatehouse.ListenerPort
	for _, p := range s.ports {
		if p.SidecarID == id {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *syncStore) ListBindings(_ context.Context, id string) ([]gatehouse.Binding, error) {
	var out []gatehouse.Binding
	for _, b := range s.bindings {
		if id == "" || b.SidecarID == id {
			out = append(out, b)
		}
	}
	return out, nil
}

func (s *syncStore) ListRepositories(context.Context) ([]gatehouse.Repository, error) {
	return s.repos, nil
}

func (s *syncStore) ListRepositoryUsers(_ context.Context, repo string) ([]gatehouse.RepositoryUser, error) {
	var out []gatehouse.RepositoryUser
	for _, u := range s.repoUsers {
		if u.Repository == repo {
			out = append(out, u)
		}
	}
	return out, nil
}

func (s *syncStore) ListImpersonationPolicies(context.Context, string) ([]gatehouse.ImpersonationPolicy, error) {
	return s.policies, nil
}

func (s *syncStore) ListAccessPolicies(context.Context, string) ([]gatehouse.AccessPolicy, error) {
	return s.access, nil
}

func (s *syncStore) ListUsers(context.Context) ([]gatehouse.User, error) { return s.users, nil }

func (s *syncStore) GetUser(_ context.Context, name string) (*gatehouse.User, error) {
	for _, u := range s.users {
		if u.Name == name {
			return &u, nil
		}
	}
	return nil, gatehouse.NotFound("user", name)
}

func (s *syncStore) GetGroup(_ context.Context, name string) (*gatehouse.Group, error) {
	return nil, gatehouse.NotFound("group", name)
}

func (s *syncStore) ListTokens(context.Context, string) ([]gatehouse.AccessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gatehouse.AccessToken(nil), s.tokens...), nil
}

func (s *syncStore) TokenByHash(_ context.Context, hash string) (*gatehouse.AccessToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t.Hash == hash {
			return &t, nil
		}
	}
	return nil, gatehouse.NotFound("token", "")
}

func (s *syncStore) UpsertInstance(_ context.Context, in *gatehouse.SidecarInstance) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.instances {
		if s.instances[i].SidecarID == in.SidecarID && s.instances[i].InstanceID == in.InstanceID {
			s.instances[i] = *in
			return nil
		}
	}
	s.instances = append(s.instances, *in)
	return nil
}

func (s *syncStore) ListInstances(_ context.Context, id string) ([]gatehouse.SidecarInstance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gatehouse.SidecarInstance
	for _, in := range s.instances {
		if in.SidecarID == id {
			out = append(out, in)
		}
	}
	return out, nil
}

const adminSession = "admin-session-secret"

func (s *syncStore) SessionByHash(_ context.Context, hash string) (*gatehouse.LoginSession, error) {
	if hash == token.Hash(adminSession) {
		return &gatehouse.LoginSession{Hash: hash, User: "admin", ExpiresAt: time.Now().Add(time.Hour)}, nil
	}
	return nil, gatehouse.NotFound("session", "")
}

func genKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := syncapi.EncodePublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(pub)
}

type syncFixture struct {
	store *syncStore
	url   string
	key   *rsa.PrivateKey
	logs  *bytes.Buffer
	logMu *sync.Mutex
}

func newSyncFixture(t *testing.T) *syncFixture {
	t.Helper()
	key, pub := genKey(t)
	_, otherPub := genKey(t)
	now := time.Now()
	st := &syncStore{
		version: 3,
		sidecars: map[string]*gatehouse.Sidecar{
			"sc1": {ID: "sc1", PublicKey: pub, AllowUnsupportedQueries: true},
			"sc2": {ID: "sc2", PublicKey: otherPub},
		},
		ports: []gatehouse.ListenerPort{
			{SidecarID: "sc1", Port: 15432, Type: gatehouse.PostgreSQL, Version: "15"},
			{SidecarID: "sc2", Port: 15433, Type: gatehouse.PostgreSQL, Version: "15"},
		},
		bindings: []gatehouse.Binding{
			{SidecarID: "sc1", Port: 15432, Repository: "sales"},
			{SidecarID: "sc2", Port: 15433, Repository: "hr"},
		},
		repos: []gatehouse.Repository{
			{Name: "hr", Type: gatehouse.PostgreSQL, Version: "15"},
			{Name: "sales", Type: gatehouse.PostgreSQL, Version: "15"},
		},
		repoUsers: []gatehouse.RepositoryUser{
			{Repository: "hr", Username: "hr_reader", Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: "HR"}},
			{Repository: "sales", Username: "reader", Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: "SALES"}},
		},
		policies: []gatehouse.ImpersonationPolicy{
			{Name: "hr", Repository: "hr", Rules: []gatehouse.ImpersonationRule{{Groups: []string{"hr"}, RepositoryUsers: []string{"hr_reader"}}}},
			{Name: "sales", Repository: "sales", Rules: []gatehouse.ImpersonationRule{{Groups: []string{"eng"}, RepositoryUsers: []string{"reader"}}}},
		},
		access: []gatehouse.AccessPolicy{
			{Name: "hr-ro", Repository: "hr", Mode: gatehouse.AccessEnforce, Rules: []gatehouse.AccessRule{{Effect: gatehouse.EffectAllow, Objects: []string{"*"}, Operations: []string{gatehouse.OpSelect}}}},
			{Name: "sales-ro", Repository: "sales", Mode: gatehouse.AccessMonitor, Rules: []gatehouse.AccessRule{{Effect: gatehouse.EffectDeny, Objects: []string{"*"}, Operations: []string{gatehouse.OpDDL}}}},
		},
		users: []gatehouse.User{
			{Name: "admin", Role: gatehouse.RoleAdmin, Active: true},
			{Name: "alice", Active: true, Groups: []string{"eng"}, Role: gatehouse.RoleDataConsumer},
			{Name: "carol", Active: false, Role: gatehouse.RoleDataConsumer},
		},
		tokens: []gatehouse.AccessToken{
			{ID: "t1", Owner: "alice", Hash: token.Hash("gh1_alice"), ExpiresAt: now.Add(time.Hour)},
			{ID: "t2", Owner: "alice", Hash: token.Hash("gh1_expired"), ExpiresAt: now.Add(-time.Minute)},
			{ID: "t3", Owner: "alice", Hash: token.Hash("gh1_revoked"), ExpiresAt: now.Add(time.Hour), RevokedAt: &now},
			{ID: "t4", Owner: "carol", Hash: token.Hash("gh1_carol"), ExpiresAt: now.Add(time.Hour)},
		},
		jtis: map[string]bool{},
	}
	srv := httptest.NewUnstartedServer(nil)
	url := "http://" + srv.Listener.Addr().String()
	f := &syncFixture{store: st, url: url, key: key, logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	a, err := New(Config{Store: st, PublicURL: url + "/", Logger: slog.New(slog.NewTextHandler(lockedWriter{f.logMu, f.logs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (f *syncFixture) client(t *testing.T, sidecarID, instance string, key *rsa.PrivateKey) *syncapi.Client {
	t.Helper()
	c, err := syncapi.NewClient(f.url, &syncapi.Signer{Key: key, SidecarID: sidecarID, InstanceID: instance, Audience: f.url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSidecarConfig(t *testing.T) {
	f := newSyncFixture(t)
	c := f.client(t, "sc1", "i1", f.key)
	ctx := context.Background()
	snap, err := c.Config(ctx, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hash := token.Hash("gh1_alice")
	if hash != syncapi.HashToken("gh1_alice") {
		t.Fatal("syncapi and token hash tokens differently")
	}
	want := &syncapi.Snapshot{
		Version:               3,
		Sidecar:               syncapi.Settings{ID: "sc1", AllowUnsupportedQueries: true},
		Ports:                 []gatehouse.ListenerPort{f.store.ports[0]},
		Bindings:              []gatehouse.Binding{f.store.bindings[0]},
		Repositories:          []gatehouse.Repository{f.store.repos[1]},
		RepositoryUsers:       []gatehouse.RepositoryUser{f.store.repoUsers[1]},
		ImpersonationPolicies: []gatehouse.ImpersonationPolicy{f.store.policies[1]},
		AccessPolicies:        []gatehouse.AccessPolicy{f.store.access[1]},
		Tokens:                []syncapi.TokenVerifier{{ID: "t1", Hash: hash, Owner: "alice", ExpiresAt: f.store.tokens[0].ExpiresAt}},
		Users:                 []syncapi.User{{Name: "alice", Active: true, Groups: []string{"eng"}}},
	}
	if diff := cmp.Diff(want, snap); diff != "" {
		t.Errorf("snapshot of sc1 (-want +got):\n%s", diff)
	}

	// Nothing newer: 304 once the wait runs out.
	start := time.Now()
	if snap, err := c.Config(ctx, 3, 500*time.Millisecond); snap != nil || err != nil {
		t.Fatalf("Config(since=3) = %v, %v; want 304", snap, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("304 after %s; want after the wait", d)
	}

	// A sidecar ahead of the store (restored from a backup) gets the store's version at once.
	start = time.Now()
	if snap, err := c.Config(ctx, 99, 5*time.Second); err != nil || snap == nil || snap.Version != 3 || time.Since(start) > time.Second {
		t.Errorf("Config(since=99) = %v, %v after %s; want version 3 at once", snap, err, time.Since(start))
	}

	// A change during the wait answers the poll promptly.
	go func() {
		time.Sleep(200 * time.Millisecond)
		f.store.mu.Lock()
		f.store.tokens[0].RevokedAt = &start
		f.store.mu.Unlock()
		f.store.bump()
	}()
	start = time.Now()
	snap, err = c.Config(ctx, 3, 10*time.Second)
	if err != nil || snap == nil {
		t.Fatalf("Config during a change = %v, %v", snap, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("change answered after %s", d)
	}
	if snap.Version != 4 || len(snap.Tokens) != 0 || len(snap.Users) != 0 {
		t.Errorf("after revocation: version %d, tokens %v, users %v", snap.Version, snap.Tokens, snap.Users)
	}
}

func TestSidecarTokenLookup(t *testing.T) {
	f := newSyncFixture(t)
	c := f.client(t, "sc1", "i1", f.key)
	ctx := context.Background()
	l, err := c.LookupToken(ctx, token.Hash("gh1_alice"))
	if err != nil {
		t.Fatal(err)
	}
	want := &syncapi.TokenLookup{
		Token:         syncapi.TokenVerifier{ID: "t1", Hash: token.Hash("gh1_alice"), Owner: "alice", ExpiresAt: f.store.tokens[0].ExpiresAt},
		User:          syncapi.User{Name: "alice", Active: true, Groups: []string{"eng"}},
		ConfigVersion: 3,
	}
	if diff := cmp.Diff(want, l); diff != "" {
		t.Errorf("lookup (-want +got):\n%s", diff)
	}
	for _, secret := range []string{"gh1_expired", "gh1_revoked", "gh1_carol", "gh1_unknown"} {
		if _, err := c.LookupToken(ctx, token.Hash(secret)); !errors.Is(err, syncapi.ErrTokenNotFound) {
			t.Errorf("lookup of %s = %v; want not found", secret, err)
		}
	}
}

func TestSidecarRefused(t *testing.T) {
	f := newSyncFixture(t)
	stranger, _ := genKey(t)
	ctx := context.Background()
	for name, c := range map[string]*syncapi.Client{
		"wrong key":       f.client(t, "sc1", "i1", stranger),
		"unknown sidecar": f.client(t, "nope", "i1", f.key),
		"other's id":      f.client(t, "sc2", "i1", f.key),
	} {
		_, err := c.Config(ctx, 0, time.Second)
		var se *syncapi.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized || se.Message != "sidecar authentication failed" {
			t.Errorf("%s: %v; want a generic 401", name, err)
		}
	}
	// No token at all, and an admin session instead of a sidecar JWT.
	for _, auth := range []string{"", "Bearer " + adminSession} {
		req, _ := http.NewRequest("GET", f.url+syncapi.ConfigPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d; want 401", auth, resp.StatusCode)
		}
	}
	f.logMu.Lock()
	logs := f.logs.String()
	f.logMu.Unlock()
	for _, reason := range []string{"signature does not match", `unknown sidecar \"nope\"`, "no bearer token"} {
		if !strings.Contains(logs, reason) {
			t.Errorf("log lacks %q:\n%s", reason, logs)
		}
	}
}

func TestSidecarInstances(t *testing.T) {
	f := newSyncFixture(t)
	ctx := context.Background()
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for _, id := range []string{"i1", "i2", "i3"} {
		c := f.client(t, "sc1", id, f.key)
		if err := c.Report(ctx, &syncapi.Report{InstanceID: id, Hostname: "host-" + id, Version: "1.2.3", StartedAt: started, Ports: []int{15432}, ConfigVersion: 3, Errors: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	// A report signed for one instance cannot speak for another.
	if err := f.client(t, "sc1", "i1", f.key).Report(ctx, &syncapi.Report{InstanceID: "i2"}); err == nil {
		t.Error("report for another instance accepted")
	}
	f.store.mu.Lock()
	f.store.instances[1].LastSeen = time.Now().Add(-20 * time.Second)
	f.store.instances[2].LastSeen = time.Now().Add(-2 * time.Minute)
	f.store.mu.Unlock()

	get := func(auth string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", f.url+"/api/v1/sidecars/sc1/instances", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, _ := get(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("instances without a session: %d", resp.StatusCode)
	}
	resp, body := get(adminSession)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("instances: %d %s", resp.StatusCode, body)
	}
	var got []gatehouse.SidecarInstance
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID, Host, Status string
		Ports            []int
		Version          int64
		Started          time.Time
	}
	var rows []row
	for _, in := range got {
		rows = append(rows, row{in.InstanceID, in.Hostname, in.Status, in.Ports, in.ConfigVersion, in.StartedAt})
	}
	want := []row{
		{"i1", "host-i1", "healthy", []int{15432}, 3, started},
		{"i2", "host-i2", "stale", []int{15432}, 3, started},
		{"i3", "host-i3", "disconnected", []int{15432}, 3, started},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(body), `"errors": []`) {
		t.Errorf("errors not served as a list: %s", body)
	}
	if resp, _ := get(adminSession + "x"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("instances with a bad session: %d", resp.StatusCode)
	}
}

func TestInstanceStatus(t *testing.T) {
	for _, tc := range []struct {
		age  time.Duration
		want string
	}{{0, "healthy"}, {14 * time.Second, "healthy"}, {15 * time.Second, "stale"}, {59 * time.Second, "stale"}, {time.Minute, "disconnected"}} {
		if got := instanceStatus(tc.age, DefaultStaleAfter, DefaultDisconnectedAfter); got != tc.want {
			t.Errorf("instanceStatus(%s) = %s; want %s", tc.age, got, tc.want)
		}
	}
}
