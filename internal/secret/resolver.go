package secret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// DefaultTTL is how long a fetched credential is reused when Config.TTL is zero.
const DefaultTTL = 5 * time.Minute

// defaultFetchTimeout bounds one fetch. A fetch is shared by every session waiting for the same
// credential, so it does not run on any one caller's context.
const defaultFetchTimeout = 30 * time.Second

// Source fetches a credential from one kind of secret store. The target tells sources that mint
// credentials (RDS IAM, Entra) which host, port and user the credential is for.
type Source interface {
	Fetch(ctx context.Context, ref gatehouse.SecretRef, t proxy.Target) (gatehouse.Credential, error)
}

// ErrNoSource is returned for a reference whose source the sidecar has not been given.
var ErrNoSource = errors.New("secret source not configured on this sidecar")

// Config configures a Resolver. The zero value of every field but Sources is usable.
type Config struct {
	// Sources maps each secret source to its implementation. References to a source not in the
	// map fail with ErrNoSource.
	Sources map[gatehouse.SecretSource]Source
	// TTL is how long a credential is cached; zero means DefaultTTL, negative disables caching.
	TTL time.Duration
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
	fetchTimeout time.Duration
	now          func() time.Time
	logger       *slog.Logger

	group singleflight.Group

	mu      sync.Mutex
	entries map[cacheKey]entry
	gen     map[cacheKey]uint64 // bumped by Invalidate so a fetch started before it is not cached
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
	cred    gatehouse.Credential
	expires time.Time
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
		fetchTimeout: cfg.FetchTimeout,
		now:          cfg.Now,
		logger:       cfg.Logger,
		entries:      map[cacheKey]entry{},
		gen:          map[cacheKey]uint64{},
	}
	if r.ttl == 0 {
		r.ttl = DefaultTTL
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
// all concurrent callers.
func (r *Resolver) Credential(ctx context.Context, t proxy.Target) (gatehouse.Credential, error) {
	k := keyFor(t)
	r.mu.Lock()
	e, ok := r.entries[k]
	gen := r.gen[k]
	r.mu.Unlock()
	if ok && r.now().Before(e.expires) {
		return e.cred, nil
	}
	src, ok := r.sources[k.ref.Source]
	if !ok {
		return gatehouse.Credential{}, fmt.Errorf("secret %s: %w", k.ref, ErrNoSource)
	}

	ch := r.group.DoChan(k.flightKey(), func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.fetchTimeout)
		defer cancel()
		start := r.now()
		cred, err := src.Fetch(fctx, k.ref, t)
		if err == nil && cred.IsZero() {
			err = errors.New("the secret is empty")
		}
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", k.ref, err)
		}
		r.logger.Debug("secret fetched", "secret_ref", k.ref.String(), "repository", t.Repository.Name,
			"repository_user", t.User.Username, "duration", r.now().Sub(start))
		if r.ttl > 0 {
			r.mu.Lock()
			if r.gen[k] == gen {
				r.entries[k] = entry{cred: cred, expires: r.now().Add(r.ttl)}
			}
			r.mu.Unlock()
		}
		return cred, nil
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

// Invalidate drops t's cached credential; the next Credential call fetches it again, even if a
// fetch is in flight now.
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
