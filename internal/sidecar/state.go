package sidecar

import (
	"slices"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// state is one applied snapshot, indexed for the hot path. It is never modified after newState
// returns; a new snapshot makes a new state.
type state struct {
	version  int64
	settings syncapi.Settings
	ports    map[int]gatehouse.ListenerPort
	bindings map[int][]string // port -> repository names, sorted
	repos    map[string]gatehouse.Repository
	repoUser map[string]map[string]gatehouse.RepositoryUser // repository -> username -> user
	policies map[string][]gatehouse.ImpersonationPolicy     // repository -> policies
	access   map[string][]gatehouse.AccessPolicy            // repository -> access policies
	tokens   map[string]syncapi.TokenVerifier               // hash -> verifier
	users    map[string]syncapi.User
}

func newState(s *syncapi.Snapshot) *state {
	st := &state{
		version:  s.Version,
		settings: s.Sidecar,
		ports:    make(map[int]gatehouse.ListenerPort, len(s.Ports)),
		bindings: make(map[int][]string),
		repos:    make(map[string]gatehouse.Repository, len(s.Repositories)),
		repoUser: make(map[string]map[string]gatehouse.RepositoryUser),
		policies: make(map[string][]gatehouse.ImpersonationPolicy),
		access:   make(map[string][]gatehouse.AccessPolicy),
		tokens:   make(map[string]syncapi.TokenVerifier, len(s.Tokens)),
		users:    make(map[string]syncapi.User, len(s.Users)),
	}
	for _, p := range s.Ports {
		st.ports[p.Port] = p
	}
	for _, b := range s.Bindings {
		st.bindings[b.Port] = append(st.bindings[b.Port], b.Repository)
	}
	for _, rs := range st.bindings {
		slices.Sort(rs)
	}
	for _, r := range s.Repositories {
		st.repos[r.Name] = r
	}
	for _, u := range s.RepositoryUsers {
		if st.repoUser[u.Repository] == nil {
			st.repoUser[u.Repository] = make(map[string]gatehouse.RepositoryUser)
		}
		st.repoUser[u.Repository][u.Username] = u
	}
	for _, p := range s.ImpersonationPolicies {
		st.policies[p.Repository] = append(st.policies[p.Repository], p)
	}
	for _, p := range s.AccessPolicies {
		st.access[p.Repository] = append(st.access[p.Repository], p)
	}
	for _, t := range s.Tokens {
		st.tokens[t.Hash] = t
	}
	for _, u := range s.Users {
		st.users[u.Name] = u
	}
	return st
}

// decide applies the impersonation rules of st to a login whose token has already been found.
// It is pure, so the same call re-checks live sessions against every new snapshot.
func (st *state) decide(now time.Time, l proxy.Login, tok syncapi.TokenVerifier, owner syncapi.User) (*proxy.Target, error) {
	if !now.Before(tok.ExpiresAt) {
		return nil, proxy.Refuse(proxy.TokenExpired, "access token expired at %s; create a new one", tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !owner.Active || owner.Name != tok.Owner {
		return nil, proxy.Refuse(proxy.TokenRevoked, "access token is no longer valid: its owner is deactivated")
	}
	if _, ok := st.ports[l.Port]; !ok {
		return nil, proxy.Refuse(proxy.UnknownUser, "port %d is not a listener port of this sidecar", l.Port)
	}
	user, repo, hasRepo := strings.Cut(l.Username, "@")
	bound := st.bindings[l.Port]
	if !hasRepo {
		switch len(bound) {
		case 0:
			return nil, proxy.Refuse(proxy.UnknownUser, "port %d is not bound to any repository", l.Port)
		case 1:
			repo = bound[0]
		default:
			return nil, proxy.Refuse(proxy.UnknownUser, "port %d serves several repositories; connect as %s@REPOSITORY", l.Port, user)
		}
	} else if !slices.Contains(bound, repo) {
		return nil, proxy.Refuse(proxy.UnknownUser, "repository %q is not bound to port %d", repo, l.Port)
	}
	if user == "" {
		return nil, proxy.Refuse(proxy.UnknownUser, "no repository user given; connect as USER or USER@REPOSITORY")
	}
	if sc := tok.Scope; sc != nil && len(sc.Repositories) > 0 && !slices.Contains(sc.Repositories, repo) {
		return nil, proxy.Refuse(proxy.NotPermitted, "access token is not valid for repository %q", repo)
	}
	r, ok := st.repos[repo]
	if !ok {
		return nil, proxy.Refuse(proxy.UnknownUser, "repository %q is not bound to port %d", repo, l.Port)
	}
	ru, ok := st.repoUser[repo][user]
	if !ok {
		return nil, proxy.Refuse(proxy.UnknownUser, "%q is not a registered repository user of %q", user, repo)
	}
	for _, p := range st.policies[repo] {
		for _, rule := range p.Rules {
			if rule.Allows(owner.Name, owner.Groups, user) {
				return &proxy.Target{Repository: r, User: ru}, nil
			}
		}
	}
	return nil, proxy.Refuse(proxy.NotPermitted, "%s may not connect to %q as %q: no impersonation policy allows it", owner.Name, repo, user)
}
