package sidecar

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// Answers of the control plane's token lookup are cached. A positive answer stands until a snapshot
// at least as new as the answer is applied (the snapshot then speaks for the token) or the token
// expires, so a session it granted survives an outage like one granted from the snapshot. A
// negative answer is kept briefly, so a client retrying a bad token does not turn into a stream
// of lookups.
const (
	lookupNegativeTTL = 5 * time.Second
	lookupTimeout     = 3 * time.Second
	maxLookupEntries  = 10000
)

// Messages for logins the sidecar cannot decide without the control plane.
const (
	msgNoConfig      = "this sidecar has not received its configuration from the control plane yet; try again shortly"
	msgControlPlane  = "access token not known to this sidecar and the control plane is unreachable; tokens created during an outage work once it is back"
	msgTokenNotKnown = "access token not recognised (unknown, expired or revoked); create a new one with: gatehouse token create"
)

var _ proxy.Authorizer = (*Sidecar)(nil)

// tokenLookuper is the part of syncapi.Client the authorizer uses.
type tokenLookuper interface {
	LookupToken(ctx context.Context, hash string) (*syncapi.TokenLookup, error)
}

type lookupEntry struct {
	found   bool
	token   syncapi.TokenVerifier
	user    syncapi.User
	version int64 // control-plane config version of the answer
	until   time.Time
}

// grantWatch is a permission the sidecar granted, re-checked on each new snapshot. Sessions
// granted the same (watchKey) share one: a decision depends on nothing else, so they are revoked
// together, and an application's pool of connections costs one watch, not one per connection.
type grantWatch struct {
	login   proxy.Login // Port and Username only
	hash    string
	expires time.Time
	revoked context.Context // handed out in the grants
	revoke  context.CancelFunc

	// The last grant made, and the snapshot it was decided on: the next login of the same key
	// decided on the same snapshot, with the same token and owner, gets the same grant (engines
	// do not modify grants). recheck forgets it.
	grant *proxy.Grant
	st    *state
}

// watchKey is what a grant was decided on: the listener port, the user name as the client
// typed it and the access token's hash.
type watchKey struct {
	port     int
	username string
	hash     string
}

// authz holds the authorizer's mutable parts besides the state pointer.
type authz struct {
	mu      sync.Mutex
	lookups map[string]lookupEntry // by token hash
	watches map[watchKey]*grantWatch
	flights map[string]*flight // in-progress lookups, by hash
}

type flight struct {
	done chan struct{}
	e    lookupEntry
	err  error
}

// Authorize decides a login from the last applied snapshot. It implements proxy.Authorizer.
func (s *Sidecar) Authorize(ctx context.Context, l proxy.Login) (*proxy.Grant, error) {
	st := s.state.Load()
	if st == nil {
		return nil, proxy.Refuse(proxy.ControlPlaneDown, msgNoConfig)
	}
	now := s.now()
	hash := syncapi.HashToken(l.Token)
	tok, owner, err := s.findToken(ctx, st, hash, now)
	if err != nil {
		return nil, err
	}
	target, err := st.decide(now, l, tok, owner)
	if err != nil {
		var ae *proxy.AuthError
		if errors.As(err, &ae) {
			withUser := *ae
			withUser.User = owner.Name
			return nil, &withUser
		}
		return nil, err
	}
	k := watchKey{port: l.Port, username: l.Username, hash: hash}
	s.authz.mu.Lock()
	w := s.authz.watches[k] // never revoked while in the map: recheck takes it out as it revokes
	if w == nil {
		w = &grantWatch{login: proxy.Login{Port: l.Port, Username: l.Username}, hash: hash, expires: tok.ExpiresAt}
		w.revoked, w.revoke = context.WithCancel(context.Background())
		s.authz.watches[k] = w
	}
	g := w.grant
	if g == nil || w.st != st || g.Identity.TokenID != tok.ID || g.Identity.User != owner.Name || !slices.Equal(g.Identity.Groups, owner.Groups) {
		g = &proxy.Grant{
			Identity: proxy.Identity{
				User:           owner.Name,
				Groups:         append([]string(nil), owner.Groups...),
				TokenID:        tok.ID,
				TokenExpiresAt: tok.ExpiresAt,
			},
			Target:  *target,
			Revoked: w.revoked,
		}
		w.grant, w.st = g, st
	}
	s.authz.mu.Unlock()
	// A snapshot applied between the decision and the registration would not have seen this
	// grant: check once more against whatever is current now.
	if cur := s.state.Load(); cur != st {
		s.recheck(cur, now)
	}
	return g, nil
}

// known returns the token and its owner as st (or a fresher lookup answer) knows them.
func (s *Sidecar) known(st *state, hash string, now time.Time) (syncapi.TokenVerifier, syncapi.User, bool) {
	if t, ok := st.tokens[hash]; ok {
		return t, st.users[t.Owner], true
	}
	s.authz.mu.Lock()
	e, ok := s.authz.lookups[hash]
	s.authz.mu.Unlock()
	if ok && e.found && now.Before(e.until) && e.version > st.version {
		return e.token, e.user, true
	}
	return syncapi.TokenVerifier{}, syncapi.User{}, false
}

func (s *Sidecar) findToken(ctx context.Context, st *state, hash string, now time.Time) (syncapi.TokenVerifier, syncapi.User, error) {
	if t, u, ok := s.known(st, hash, now); ok {
		return t, u, nil
	}
	s.authz.mu.Lock()
	if e, ok := s.authz.lookups[hash]; ok && !e.found && now.Before(e.until) {
		s.authz.mu.Unlock()
		return syncapi.TokenVerifier{}, syncapi.User{}, proxy.Refuse(proxy.TokenInvalid, msgTokenNotKnown)
	}
	f, inFlight := s.authz.flights[hash]
	if !inFlight {
		f = &flight{done: make(chan struct{})}
		s.authz.flights[hash] = f
	}
	s.authz.mu.Unlock()

	if !inFlight {
		f.e, f.err = s.lookup(hash)
		s.authz.mu.Lock()
		delete(s.authz.flights, hash)
		if f.err == nil {
			s.storeLookup(hash, f.e, now)
		}
		s.authz.mu.Unlock()
		close(f.done)
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return syncapi.TokenVerifier{}, syncapi.User{}, ctx.Err()
	}
	if f.err != nil {
		s.logger.Warn("token lookup failed", "err", f.err)
		return syncapi.TokenVerifier{}, syncapi.User{}, proxy.Refuse(proxy.ControlPlaneDown, msgControlPlane)
	}
	if !f.e.found {
		return syncapi.TokenVerifier{}, syncapi.User{}, proxy.Refuse(proxy.TokenInvalid, msgTokenNotKnown)
	}
	return f.e.token, f.e.user, nil
}

// lookup asks the control plane once. It does not run on the caller's context: other logins with
// the same token may be waiting for the answer.
func (s *Sidecar) lookup(hash string) (lookupEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	l, err := s.lookups.LookupToken(ctx, hash)
	if errors.Is(err, syncapi.ErrTokenNotFound) {
		return lookupEntry{found: false}, nil
	}
	if err != nil {
		return lookupEntry{}, err
	}
	if l.Token.Hash != hash {
		return lookupEntry{}, errors.New("control plane answered a token lookup with another token")
	}
	return lookupEntry{found: true, token: l.Token, user: l.User, version: l.ConfigVersion}, nil
}

// storeLookup caches an answer. Called with authz.mu held.
func (s *Sidecar) storeLookup(hash string, e lookupEntry, now time.Time) {
	if len(s.authz.lookups) >= maxLookupEntries {
		for h, old := range s.authz.lookups {
			if !now.Before(old.until) || !old.found {
				delete(s.authz.lookups, h) // expired, or negative: cheap to ask again
			}
		}
		if len(s.authz.lookups) >= maxLookupEntries && !e.found {
			return
		}
	}
	if e.found {
		e.until = e.token.ExpiresAt
	} else {
		e.until = now.Add(lookupNegativeTTL)
	}
	s.authz.lookups[hash] = e
}

// recheck re-decides every live grant against st and closes the Revoked channel of those it no
// longer allows. Grants past their token's expiry are forgotten (the engine ends those sessions
// at TokenExpiresAt).
func (s *Sidecar) recheck(st *state, now time.Time) {
	s.authz.mu.Lock()
	defer s.authz.mu.Unlock()
	for h, e := range s.authz.lookups {
		if !now.Before(e.until) || (e.found && e.version <= st.version) {
			delete(s.authz.lookups, h)
		}
	}
	for k, w := range s.authz.watches {
		if !now.Before(w.expires) {
			w.revoke() // releases the context; the sessions have ended at expiry already
			delete(s.authz.watches, k)
			continue
		}
		tok, owner, ok := st.tokens[w.hash], syncapi.User{}, false
		if _, ok = st.tokens[w.hash]; ok {
			owner = st.users[tok.Owner]
		} else if e, found := s.authz.lookups[w.hash]; found && e.found {
			tok, owner, ok = e.token, e.user, true
		}
		if ok {
			if _, err := st.decide(now, w.login, tok, owner); err == nil {
				w.grant, w.st = nil, nil // a grant decided on an older snapshot is not handed out again
				continue
			}
		}
		w.revoke()
		delete(s.authz.watches, k)
	}
}
