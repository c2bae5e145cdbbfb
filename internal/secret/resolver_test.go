package secret_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/secret"
	"github.com/gatehousedb/gatehouse/internal/secret/env"
)

// countingSource returns the current value of a variable and counts fetches.
type countingSource struct {
	mu    sync.Mutex
	value string
	err   error
	calls atomic.Int32
	gate  chan struct{} // when non-nil, Fetch waits for it
}

func (s *countingSource) Fetch(ctx context.Context, ref gatehouse.SecretRef, _ proxy.Target) (gatehouse.Credential, error) {
	s.calls.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return gatehouse.Credential{}, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return gatehouse.Credential{}, s.err
	}
	return gatehouse.NewCredential(s.value), nil
}

func (s *countingSource) set(v string) { s.mu.Lock(); s.value = v; s.mu.Unlock() }

func target(name string) proxy.Target {
	return proxy.Target{
		Repository: gatehouse.Repository{Name: "sales", Hostname: "db.internal", Port: 5432},
		User:       gatehouse.RepositoryUser{Repository: "sales", Username: "app", Secret: gatehouse.SecretRef{Source: gatehouse.SourceEnv, Name: name}},
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestResolverCachesUntilTTL(t *testing.T) {
	src := &countingSource{value: "s3cret-one"}
	clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	r, err := secret.New(secret.Config{Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: src}, TTL: time.Minute, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tg := target("PG_PASS")
	for range 3 {
		c, err := r.Credential(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		if c.Reveal() != "s3cret-one" {
			t.Fatalf("got a different value")
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Errorf("fetches within TTL = %d, want 1", got)
	}
	src.set("s3cret-two")
	clk.t = clk.t.Add(time.Minute + time.Second)
	c, err := r.Credential(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Reveal() != "s3cret-two" || src.calls.Load() != 2 {
		t.Errorf("after TTL: fetches = %d, value changed = %v", src.calls.Load(), c.Reveal() == "s3cret-two")
	}

	// Another host is another credential.
	other := tg
	other.Repository.Hostname = "db2.internal"
	if _, err := r.Credential(ctx, other); err != nil {
		t.Fatal(err)
	}
	if got := src.calls.Load(); got != 3 {
		t.Errorf("fetches after a second target = %d, want 3", got)
	}
}

func TestResolverInvalidate(t *testing.T) {
	src := &countingSource{value: "old-password"}
	r, err := secret.New(secret.Config{Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: src}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tg := target("PG_PASS")
	if _, err := r.Credential(ctx, tg); err != nil {
		t.Fatal(err)
	}
	src.set("new-password")
	r.Invalidate(tg)
	c, err := r.Credential(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Reveal() != "new-password" {
		t.Errorf("after Invalidate the old value was returned")
	}
	if got := src.calls.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
}

func TestResolverSingleflight(t *testing.T) {
	src := &countingSource{value: "v", gate: make(chan struct{})}
	r, err := secret.New(secret.Config{Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: src}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := r.Credential(ctx, target("PG_PASS"))
			errs <- err
		})
	}
	// Let every caller reach the flight before it is released.
	deadline := time.Now().Add(5 * time.Second)
	for src.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Errorf("concurrent misses fetched %d times, want 1", got)
	}
}

func TestResolverCallerCancelDoesNotBreakOthers(t *testing.T) {
	src := &countingSource{value: "v", gate: make(chan struct{})}
	r, err := secret.New(secret.Config{Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: src}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := r.Credential(cctx, target("PG_PASS")); first <- err }()
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { _, err := r.Credential(context.Background(), target("PG_PASS")); second <- err }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: err = %v, want context.Canceled", err)
	}
	close(src.gate)
	if err := <-second; err != nil {
		t.Errorf("second caller failed because the first one left: %v", err)
	}
}

func TestResolverErrorsNameReferenceNotValue(t *testing.T) {
	const value = "hunter2-very-secret"
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	vars := map[string]string{"PG_PASS": value, "EMPTY": ""}
	r, err := secret.New(secret.Config{
		Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: env.Source{Lookup: func(n string) (string, bool) {
			v, ok := vars[n]
			return v, ok
		}}},
		Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := r.Credential(ctx, target("PG_PASS"))
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("fetched", "credential", c)
	r.Invalidate(target("PG_PASS"))

	tests := []struct {
		name string
		tg   proxy.Target
		want string
	}{
		{"missing variable", target("NOPE"), "secret env:NOPE: environment variable NOPE is not set on the sidecar"},
		{"empty variable", target("EMPTY"), "secret env:EMPTY: environment variable EMPTY is empty"},
		{"source not configured", proxy.Target{User: gatehouse.RepositoryUser{Secret: gatehouse.SecretRef{Source: gatehouse.SourceFile, Path: "/run/secrets/pg"}}},
			"secret file:/run/secrets/pg: secret source not configured on this sidecar"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Credential(ctx, tc.tg)
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	if strings.Contains(logs.String(), value) {
		t.Errorf("log output contains the secret value:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "env:PG_PASS") {
		t.Errorf("log output does not name the reference:\n%s", logs.String())
	}
}

func TestNewRejectsEmptyConfig(t *testing.T) {
	if _, err := secret.New(secret.Config{}); err == nil {
		t.Error("New with no sources: no error")
	}
}

// expiringSource hands out tokens that expire at a set time.
type expiringSource struct {
	countingSource
	expiry time.Time
}

func (s *expiringSource) FetchWithExpiry(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, time.Time, error) {
	c, err := s.Fetch(ctx, ref, t)
	return c, s.expiry, err
}

// netDown is what a source returns when it cannot be reached.
var netDown = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

// httpStatusError is an API refusal carrying its HTTP status, as the AWS and Azure errors do.
type httpStatusError struct{ code int }

func (e httpStatusError) Error() string       { return "AccessDeniedException: not allowed" }
func (e httpStatusError) HTTPStatusCode() int { return e.code }

func TestResolverHonoursExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	src := &expiringSource{countingSource: countingSource{value: "tok-1"}, expiry: clk.t.Add(3 * time.Minute)}
	r, err := secret.New(secret.Config{Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: src},
		TTL: 10 * time.Minute, ExpiryMargin: time.Minute, GracePeriod: time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tg := target("TOKEN")
	if _, err := r.Credential(ctx, tg); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(119 * time.Second)
	if _, err := r.Credential(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("fetches before expiry-margin = %d, want 1", got)
	}
	clk.t = clk.t.Add(2 * time.Second) // past expiry - margin, well inside the TTL
	if _, err := r.Credential(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("fetches after expiry-margin = %d, want 2", got)
	}
	// An expiring credential is never used past its expiry, grace period or not.
	src.mu.Lock()
	src.err = netDown
	src.mu.Unlock()
	clk.t = clk.t.Add(3 * time.Minute)
	if _, err := r.Credential(ctx, tg); err == nil {
		t.Fatal("an expired token was served during the grace period")
	}
}

func TestResolverGracePeriod(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		advance    time.Duration
		invalidate bool
		wantStale  bool
	}{
		{name: "network error within grace", err: netDown, advance: 2 * time.Minute, wantStale: true},
		{name: "timeout within grace", err: context.DeadlineExceeded, advance: 2 * time.Minute, wantStale: true},
		{name: "server error within grace", err: httpStatusError{503}, advance: 2 * time.Minute, wantStale: true},
		{name: "network error after grace", err: netDown, advance: 12 * time.Minute},
		{name: "access denied", err: httpStatusError{400}, advance: 2 * time.Minute},
		{name: "not found", err: errors.New("ResourceNotFoundException: no such secret"), advance: 2 * time.Minute},
		{name: "after database rejection", err: netDown, advance: 2 * time.Minute, invalidate: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
			src := &countingSource{value: "last-g00d-value"}
			r, err := secret.New(secret.Config{Sources: map[gatehouse.SecretSource]secret.Source{gatehouse.SourceEnv: src},
				TTL: time.Minute, GracePeriod: 10 * time.Minute, Now: clk.now})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			tg := target("PG_PASS")
			if _, err := r.Credential(ctx, tg); err != nil {
				t.Fatal(err)
			}
			if tc.invalidate {
				r.Invalidate(tg)
			}
			src.mu.Lock()
			src.err = tc.err
			src.mu.Unlock()
			clk.t = clk.t.Add(tc.advance)
			c, err := r.Credential(ctx, tg)
			health := r.Health()
			if len(health) != 1 || health[0].Ref != "env:PG_PASS" {
				t.Fatalf("health = %+v, want one entry for env:PG_PASS", health)
			}
			h := health[0]
			if strings.Contains(h.String(), "last-g00d-value") {
				t.Errorf("health shows the value: %s", h)
			}
			if !tc.wantStale {
				if err == nil {
					t.Fatal("got the last good value; want the error")
				}
				if !h.ServingUntil.IsZero() {
					t.Errorf("health says the last good value is used: %s", h)
				}
				return
			}
			if err != nil {
				t.Fatalf("want the last good value, got %v", err)
			}
			if c.Reveal() != "last-g00d-value" {
				t.Errorf("got a different value")
			}
			if !h.Unreachable || h.ServingUntil.IsZero() || !strings.Contains(h.String(), "unreachable for env:PG_PASS") {
				t.Errorf("health = %s; want unreachable and serving the last good value", h)
			}
			// The source comes back: the health entry clears.
			src.mu.Lock()
			src.err = nil
			src.mu.Unlock()
			if _, err := r.Credential(ctx, tg); err != nil {
				t.Fatal(err)
			}
			if got := r.Health(); len(got) != 0 {
				t.Errorf("health after recovery = %+v, want none", got)
			}
		})
	}
}
