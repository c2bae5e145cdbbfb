package secret

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// Defaults for Config's zero values.
const (
	// DefaultTTL is how long a fetched credential is reused.
	DefaultTTL = 5 * time.Minute
	// DefaultGracePeriod is how long after its TTL a credential is still used while its source
	// cannot be reached.
	DefaultGracePeriod = 15 * time.Minute
	// DefaultExpiryMargin is how long before a source-given expiry (an IAM or Entra token) a
	// credential stops being reused, so a session never starts with a token about to lapse.
	DefaultExpiryMargin = time.Minute
)

// defaultFetchTimeout bounds one fetch. A fetch is shared by every session waiting for the same
// credential, so it does not run on any one caller's context.
const defaultFetchTimeout = 30 * time.Second

// Source fetches a credential from one kind of secret store. The target tells sources that mint
// credentials (RDS IAM, Entra) which host, port and user the credential is for.
type Source interface {
	Fetch(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, error)
}

// ExpiringSource is a Source whose credentials expire (tokens). The resolver prefers
// FetchWithExpiry when a source has it, and never reuses a credential past its expiry.
type ExpiringSource interface {
	FetchWithExpiry(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, time.Time, error)
}

// ErrNoSource is returned for a reference whose source the sidecar has not been given.
var ErrNoSource = errors.New("secret source not configured on this sidecar")

// Config configures a Resolver. The zero value of every field but Sources is usable.
type Config struct {
	// Sources maps each secret source to its implementation. References to a source not in the
	// map fail with ErrNoSource.
	Sources map[gatehouse.SecretSource]Source
	// TTL is how long a credential is cached; zero means DefaultTTL, negative disables caching
	// (and so the grace period).
	TTL time.Duration
	// GracePeriod is how long after its TTL the last good credential is still used when its
	// source is unreachable (a network error, a timeout, an HTTP 5xx or 429 — not a refusal such
	// as access denied or not found). Zero means DefaultGracePeriod, negative disables it. A
	// credential the database rejected (Invalidate) is never used again.
	GracePeriod time.Duration
	// ExpiryMargin is how long before an ExpiringSource's expiry a credential stops being
	// reused; zero means DefaultExpiryMargin.
	ExpiryMargin time.Duration
	// FetchTimeout bounds one fetch; zero means 30 seconds.
	FetchTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Resolver implements proxy.Credentials over a set of sources.
type Resolver struct {
	sources      map[gatehouse.SecretSource]Source
	ttl          time.Duration
	grace        time.Duration
	margin       time.Duration
	fetchTimeout time.Duration
	now          func() time.Time
	logger       *slog.Logger

	group singleflight.Group

	mu      sync.Mutex
	entries map[cacheKey]entry
	gen     map[cacheKey]uint64 // bumped by Invalidate so a fetch started before it is not cached
	health  map[string]Health   // SecretRef.String() -> last failure
}

var _ proxy.Credentials = (*Resolver)(nil)

// cacheKey identifies a credential: the same reference used for another host, port or user (an
// IAM token is minted for one of each) is a different credential.
type cacheKey struct {
	ref  gatehouse.SecretRef
	host string
	port int
	user string
}

func keyFor(t proxy.Target) cacheKey {
	return cacheKey{ref: t.User.Secret, host: t.Repository.Hostname, port: t.Repository.Port, user: t.User.Username}
}

// flightKey is the singleflight key; fields are separated by NUL, which none of them may contain
// in a meaningful way.
func (k cacheKey) flightKey() string {
	r := k.ref
	return string(r.Source) + "\x00" + r.ARN + "\x00" + r.JSONPath + "\x00" + r.VersionStage + "\x00" +
		r.VaultURI + "\x00" + r.SecretName + "\x00" + r.Version + "\x00" + r.Name + "\x00" + r.Path + "\x00" +
		r.Region + "\x00" + k.host + "\x00" + strconv.Itoa(k.port) + "\x00" + k.user
}

type entry struct {
	cred       gatehouse.Credential
	fetched    time.Time
	fresh      time.Time // reused without a fetch until then
	graceUntil time.Time // used when the source is unreachable until then
}

// Health is the state of one reference whose last fetch failed. It names the reference and the
// cause, never a value.
type Health struct {
	Source gatehouse.SecretSource
	Ref    string // SecretRef.String()
	Err    string
	Since  time.Time // first failure of the current run of failures
	Last   time.Time // latest failure
	// Unreachable says the failure was a network error, timeout or server error rather than a
	// refusal.
	Unreachable bool
	// ServingUntil, when set, is until when the last good value (fetched at LastGood) is still
	// used instead.
	ServingUntil time.Time
	LastGood     time.Time
}

// String is one line for an instance report or a log.
func (h Health) String() string {
	s := fmt.Sprintf("secret source %s unreachable for %s since %s: %s", h.Source, h.Ref, h.Since.UTC().Format(time.RFC3339), h.Err)
	if !h.Unreachable {
		s = fmt.Sprintf("secret source %s refused %s: %s", h.Source, h.Ref, h.Err)
	}
	if !h.ServingUntil.IsZero() {
		s += fmt.Sprintf(" (using the value fetched at %s until %s)", h.LastGood.UTC().Format(time.RFC3339), h.ServingUntil.UTC().Format(time.RFC3339))
	}
	return s
}

// New returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	if len(cfg.Sources) == 0 {
		return nil, errors.New("secret resolver: no sources configured")
	}
	for s, src := range cfg.Sources {
		if src == nil {
			return nil, fmt.Errorf("secret resolver: source %s is nil", s)
		}
	}
	r := &Resolver{
		sources:      cfg.Sources,
		ttl:          cfg.TTL,
		grace:        cfg.GracePeriod,
		margin:       cfg.ExpiryMargin,
		fetchTimeout: cfg.FetchTimeout,
		now:          cfg.Now,
		logger:       cfg.Logger,
		entries:      map[cacheKey]entry{},
		gen:          map[cacheKey]uint64{},
		health:       map[string]Health{},
	}
	if r.ttl == 0 {
		r.ttl = DefaultTTL
	}
	if r.grace == 0 {
		r.grace = DefaultGracePeriod
	}
	if r.margin <= 0 {
		r.margin = DefaultExpiryMargin
	}
	if r.fetchTimeout <= 0 {
		r.fetchTimeout = defaultFetchTimeout
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	r.logger = r.logger.With("component", "secret")
	return r, nil
}

// Credential returns the credential for t's repository user, from the cache or fetched once for
// all concurrent callers. When the fetch fails because the source is unreachable, the last good
// value is returned while it is within its grace period.
func (r *Resolver) Credential(ctx context.Context, t proxy.Target) (gatehouse.Credential, error) {
	k := keyFor(t)
	r.mu.Lock()
	e, ok := r.entries[k]
	r.mu.Unlock()
	if ok && r.now().Before(e.fresh) {
		return e.cred, nil
	}
	return r.fetch(ctx, k, t)
}

// Fetch fetches t's credential from its source now, bypassing (and refreshing) the cache and
// without the grace period: for check-secrets, which must say whether the source works.
func (r *Resolver) Fetch(ctx context.Context, t proxy.Target) (gatehouse.Credential, error) {
	ctx, cancel := context.WithTimeout(ctx, r.fetchTimeout)
	defer cancel()
	return r.fetchOnce(ctx, keyFor(t), t, false)
}

func (r *Resolver) fetch(ctx context.Context, k cacheKey, t proxy.Target) (gatehouse.Credential, error) {
	if _, ok := r.sources[k.ref.Source]; !ok {
		return gatehouse.Credential{}, fmt.Errorf("secret %s: %w", k.ref, ErrNoSource)
	}
	ch := r.group.DoChan(k.flightKey(), func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.fetchTimeout)
		defer cancel()
		return r.fetchOnce(fctx, k, t, true)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return gatehouse.Credential{}, res.Err
		}
		return res.Val.(gatehouse.Credential), nil
	case <-ctx.Done():
		return gatehouse.Credential{}, fmt.Errorf("secret %s: %w", k.ref, ctx.Err())
	}
}

// fetchOnce calls the source, caches a good value, records the reference's health, and (when
// useGrace) falls back to the last good value for a transient failure.
func (r *Resolver) fetchOnce(ctx context.Context, k cacheKey, t proxy.Target, useGrace bool) (gatehouse.Credential, error) {
	src, ok := r.sources[k.ref.Source]
	if !ok {
		return gatehouse.Credential{}, fmt.Errorf("secret %s: %w", k.ref, ErrNoSource)
	}
	r.mu.Lock()
	gen := r.gen[k]
	r.mu.Unlock()
	start := r.now()
	var (
		cred   gatehouse.Credential
		expiry time.Time
		err    error
	)
	if es, ok := src.(ExpiringSource); ok {
		cred, expiry, err = es.FetchWithExpiry(ctx, k.ref, t)
	} else {
		cred, err = src.Fetch(ctx, k.ref, t)
	}
	if err == nil && cred.IsZero() {
		err = errors.New("the secret is empty")
	}
	now := r.now()
	refName := k.ref.String()
	if err != nil {
		err = fmt.Errorf("secret %s: %w", k.ref, err)
		unreachable := Transient(err)
		r.mu.Lock()
		defer r.mu.Unlock()
		h := r.health[refName]
		if h.Since.IsZero() {
			h.Since = now
		}
		h.Source, h.Ref, h.Err, h.Last, h.Unreachable = k.ref.Source, refName, err.Error(), now, unreachable
		h.ServingUntil, h.LastGood = time.Time{}, time.Time{}
		e, ok := r.entries[k]
		if useGrace && unreachable && ok && r.gen[k] == gen && now.Before(e.graceUntil) {
			h.ServingUntil, h.LastGood = e.graceUntil, e.fetched
			r.health[refName] = h
			r.logger.Warn("secret source unreachable; using the last good value", "secret_ref", refName,
				"repository", t.Repository.Name, "repository_user", t.User.Username, "fetched_at", e.fetched,
				"until", e.graceUntil, "err", err)
			return e.cred, nil
		}
		r.health[refName] = h
		return gatehouse.Credential{}, err
	}
	r.logger.Debug("secret fetched", "secret_ref", refName, "repository", t.Repository.Name,
		"repository_user", t.User.Username, "duration", now.Sub(start))
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.health, refName)
	if r.ttl > 0 && r.gen[k] == gen {
		e := entry{cred: cred, fetched: now, fresh: now.Add(r.ttl)}
		e.graceUntil = e.fresh
		if r.grace > 0 {
			e.graceUntil = e.fresh.Add(r.grace)
		}
		if !expiry.IsZero() {
			e.fresh = minTime(e.fresh, expiry.Add(-r.margin))
			e.graceUntil = minTime(e.graceUntil, expiry.Add(-r.margin))
		}
		if now.Before(e.fresh) || now.Before(e.graceUntil) {
			r.entries[k] = e
		}
	}
	return cred, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Invalidate drops t's cached credential; the next Credential call fetches it again, even if a
// fetch is in flight now, and the dropped value is not used during a grace period.
func (r *Resolver) Invalidate(t proxy.Target) {
	k := keyFor(t)
	r.mu.Lock()
	delete(r.entries, k)
	r.gen[k]++
	r.mu.Unlock()
	r.group.Forget(k.flightKey())
	r.logger.Info("secret invalidated", "secret_ref", k.ref.String(), "repository", t.Repository.Name,
		"repository_user", t.User.Username)
}

// Health returns the references whose last fetch failed, sorted by reference. A reference
// leaves the list when a fetch of it succeeds.
func (r *Resolver) Health() []Health {
	r.mu.Lock()
	out := make([]Health, 0, len(r.health))
	for _, h := range r.health {
		out = append(out, h)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Health) int {
		if a.Ref < b.Ref {
			return -1
		}
		if a.Ref > b.Ref {
			return 1
		}
		return 0
	})
	return out
}

// Transient reports whether err means the source could not be reached or answered with a server
// error (a network error, a timeout, HTTP 5xx or 429), as opposed to a refusal (access denied, not
// found, a malformed secret), which the grace period must not hide.
func Transient(err error) bool {
	var sc interface{ HTTPStatusCode() int }
	if errors.As(err, &sc) && sc.HTTPStatusCode() > 0 { // 0: no response came back
		code := sc.HTTPStatusCode()
		return code >= 500 || code == 429
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	}
	return false
}
