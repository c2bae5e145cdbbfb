package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// Instance status, derived from how long ago an instance last reported. Sidecars report every
// 5 seconds (sidecar.DefaultReportInterval): an instance is healthy while it has missed fewer than
// three reports, stale after that, and disconnected after a minute (twelve missed reports). The
// thresholds can be lowered for tests with GATEHOUSE_SIDECAR_STALE_AFTER and
// GATEHOUSE_SIDECAR_DISCONNECTED_AFTER (Go durations).
const (
	DefaultStaleAfter        = 15 * time.Second
	DefaultDisconnectedAfter = 60 * time.Second
)

// Instance statuses.
const (
	InstanceHealthy      = "healthy"
	InstanceStale        = "stale"
	InstanceDisconnected = "disconnected"
)

// configPollInterval is how often a waiting long-poll checks the store's config version. Polling
// the store (rather than an in-process signal) lets any replica answer any sidecar.
const configPollInterval = 200 * time.Millisecond

// Bounds on what a report may carry.
const (
	maxReportPorts  = 1024
	maxReportErrors = 100
	maxReportString = 1000
)

// sidecarSync serves the sidecar routes.
type sidecarSync struct {
	a                 *API
	verifier          *auth.SidecarVerifier
	staleAfter        time.Duration
	disconnectedAfter time.Duration
}

// registerSidecarRoutes adds the routes sidecars call (package syncapi describes them) and the
// admin route GET /api/v1/sidecars/{id}/instances.
func (a *API) registerSidecarRoutes(mux *http.ServeMux) {
	s := &sidecarSync{
		a:                 a,
		verifier:          &auth.SidecarVerifier{Store: a.store, Audiences: []string{a.publicURL}, Now: func() time.Time { return a.now() }},
		staleAfter:        orDefault(a.cfg.StaleAfter, DefaultStaleAfter),
		disconnectedAfter: orDefault(a.cfg.DisconnectedAfter, DefaultDisconnectedAfter),
	}
	a.handle(mux, route{
		Method: "GET", Path: syncapi.ConfigPath, Access: sidecarAuth,
		Summary: "Sidecars: long-poll the calling sidecar's configuration snapshot; 304 when nothing newer than since arrives within wait",
		Query: map[string]string{
			"since": "the config version the sidecar runs; answered as soon as the control plane's differs",
			"wait":  "how long to wait for a newer version, like 25s (at most 30s)",
		},
		Response: syncapi.Snapshot{}, Status: 200, handle: s.sidecarOnly(s.config),
	})
	a.handle(mux, route{
		Method: "POST", Path: syncapi.ReportPath, Access: sidecarAuth,
		Summary: "Sidecars: report the calling instance's state (heartbeat)",
		Request: syncapi.Report{}, Status: 204, handle: s.sidecarOnly(s.report),
	})
	a.handle(mux, route{
		Method: "GET", Path: syncapi.TokenLookupPath + "{hash}", Access: sidecarAuth,
		Summary:  "Sidecars: look up an active access token the snapshot did not have, by the hex SHA-256 of its secret",
		Response: syncapi.TokenLookup{}, Status: 200, handle: s.sidecarOnly(s.token),
	})
	a.handle(mux, route{
		Method: "GET", Path: "/api/v1/sidecars/{id}/instances", Access: adminOnly,
		Summary:  "List a sidecar's instances with their status (healthy, stale, disconnected) from their last report",
		Response: []gatehouse.SidecarInstance{}, Status: 200, handle: s.instances,
	})
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

type sidecarKey struct{}

// sidecarOnly authenticates the sidecar's JWT. Refusals get a generic 401; the reason goes to the
// log, so a caller probing keys learns nothing.
func (s *sidecarSync) sidecarOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := *s.verifier
		if s.a.publicURL == "" {
			v.Audiences = []string{requestURL(r)}
		}
		p, err := v.VerifyRequest(r)
		if err != nil {
			var refused *auth.SidecarAuthError
			if !errors.As(err, &refused) {
				s.a.fail(w, r, err)
				return
			}
			s.a.logger.WarnContext(r.Context(), "sidecar request refused", "reason", refused.Reason, "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			s.a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "sidecar authentication failed"))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sidecarKey{}, p)))
	}
}

func requestURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func principal(r *http.Request) *auth.SidecarPrincipal {
	p, _ := r.Context().Value(sidecarKey{}).(*auth.SidecarPrincipal)
	return p
}

// config is the long-poll: 200 with a snapshot once the config version differs from since, 304
// when wait runs out first. The sidecar is the one that signed the request; there is no way to ask for
// another sidecar's configuration.
func (s *sidecarSync) config(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since int64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.a.fail(w, r, gatehouse.Invalid("since", "must be a config version (a non-negative integer)"))
			return
		}
		since = n
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.a.fail(w, r, gatehouse.Invalid("wait", "must be a duration like 25s"))
			return
		}
		wait = min(d, syncapi.MaxWait)
	}
	ctx := r.Context()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(configPollInterval)
	defer tick.Stop()
	for {
		v, err := s.a.store.ConfigVersion(ctx)
		if err != nil {
			s.a.fail(w, r, err)
			return
		}
		// A version below since means the store is not the one the sidecar synced from (restored
		// from a backup, or replaced): answer at once rather than wait for it to catch up.
		if v != since {
			snap, err := buildSnapshot(ctx, s.a.store, principal(r).Sidecar.ID, v, s.a.now())
			if err != nil {
				if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
					// The sidecar was deleted while it waited.
					err = gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "sidecar authentication failed")
				}
				s.a.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, snap)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotModified)
			return
		case <-tick.C:
		}
	}
}

// buildSnapshot assembles what sidecar id needs, labelled with version (read before the lists, so
// a change made while they are read is seen again by the next poll).
func buildSnapshot(ctx context.Context, st Store, id string, version int64, now time.Time) (*syncapi.Snapshot, error) {
	sc, err := st.GetSidecar(ctx, id)
	if err != nil {
		return nil, err
	}
	snap := &syncapi.Snapshot{
		Version:               version,
		Sidecar:               syncapi.Settings{ID: sc.ID, AllowUnsupportedQueries: sc.AllowUnsupportedQueries},
		Ports:                 []gatehouse.ListenerPort{},
		Bindings:              []gatehouse.Binding{},
		Repositories:          []gatehouse.Repository{},
		RepositoryUsers:       []gatehouse.RepositoryUser{},
		ImpersonationPolicies: []gatehouse.ImpersonationPolicy{},
		AccessPolicies:        []gatehouse.AccessPolicy{},
		Tokens:                []syncapi.TokenVerifier{},
		Users:                 []syncapi.User{},
	}
	if snap.Ports, err = st.ListListenerPorts(ctx, id); err != nil {
		return nil, err
	}
	if snap.Bindings, err = st.ListBindings(ctx, id); err != nil {
		return nil, err
	}
	bound := map[string]bool{}
	for _, b := range snap.Bindings {
		bound[b.Repository] = true
	}
	repos, err := st.ListRepositories(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range repos {
		if !bound[r.Name] {
			continue
		}
		snap.Repositories = append(snap.Repositories, r)
		users, err := st.ListRepositoryUsers(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		snap.RepositoryUsers = append(snap.RepositoryUsers, users...)
	}
	policies, err := st.ListImpersonationPolicies(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, p := range policies {
		if bound[p.Repository] {
			snap.ImpersonationPolicies = append(snap.ImpersonationPolicies, p)
		}
	}
	if al, ok := st.(accessPolicyLister); ok {
		aps, err := al.ListAccessPolicies(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, p := range aps {
			if bound[p.Repository] {
				snap.AccessPolicies = append(snap.AccessPolicies, p)
			}
		}
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	active := map[string]gatehouse.User{}
	for _, u := range users {
		if u.Active {
			active[u.Name] = u
		}
	}
	tokens, err := st.ListTokens(ctx, "")
	if err != nil {
		return nil, err
	}
	owners := map[string]bool{}
	for _, t := range tokens {
		if _, ok := active[t.Owner]; !ok || !t.Active(now) {
			continue
		}
		snap.Tokens = append(snap.Tokens, verifier(t))
		owners[t.Owner] = true
	}
	for _, u := range users {
		if owners[u.Name] {
			snap.Users = append(snap.Users, syncUser(u))
		}
	}
	snap.Ports, snap.Bindings = nonNil(snap.Ports), nonNil(snap.Bindings)
	return snap, nil
}

// accessPolicyLister is the store method access policies will be listed with; until the Store
// interface has it, a snapshot carries none.
type accessPolicyLister interface {
	ListAccessPolicies(ctx context.Context, repository string) ([]gatehouse.AccessPolicy, error) // "" = all
}

func verifier(t gatehouse.AccessToken) syncapi.TokenVerifier {
	return syncapi.TokenVerifier{ID: t.ID, Hash: t.Hash, Owner: t.Owner, ExpiresAt: t.ExpiresAt}
}

func syncUser(u gatehouse.User) syncapi.User {
	return syncapi.User{Name: u.Name, Active: u.Active, Groups: slices.Clone(u.Groups)}
}

// report records the calling instance's heartbeat.
func (s *sidecarSync) report(w http.ResponseWriter, r *http.Request) {
	// Decoded leniently, unlike admin input: a newer sidecar may report more than this control
	// plane knows about, and must not be refused for it.
	var in syncapi.Report
	body, err := readBody(w, r)
	if err == nil && json.Unmarshal(body, &in) != nil {
		err = gatehouse.Invalid("", "the report is not a JSON object of the expected shape")
	}
	if err != nil {
		s.a.fail(w, r, err)
		return
	}
	p := principal(r)
	if in.InstanceID != "" && in.InstanceID != p.InstanceID {
		s.a.fail(w, r, gatehouse.Invalid("instance_id", "must be the instance ID the request is signed for (the JWT's sub)"))
		return
	}
	if len(in.Ports) > maxReportPorts {
		s.a.fail(w, r, gatehouse.Invalid("ports", "must list at most %d ports", maxReportPorts))
		return
	}
	errs := make([]string, 0, min(len(in.Errors), maxReportErrors))
	for _, e := range in.Errors[:min(len(in.Errors), maxReportErrors)] {
		errs = append(errs, truncate(e))
	}
	inst := &gatehouse.SidecarInstance{
		SidecarID:     p.Sidecar.ID,
		InstanceID:    p.InstanceID,
		Hostname:      truncate(in.Hostname),
		Version:       truncate(in.Version),
		StartedAt:     in.StartedAt.UTC(),
		Ports:         nonNil(in.Ports),
		ConfigVersion: in.ConfigVersion,
		Errors:        errs,
		LastSeen:      s.a.now().UTC(),
	}
	if err := s.a.store.UpsertInstance(r.Context(), inst); err != nil {
		s.a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func truncate(s string) string {
	if len(s) > maxReportString {
		return s[:maxReportString]
	}
	return s
}

// token answers a sidecar's lookup of a token its snapshot did not have (propagation lag): 200
// with the verifier and the owner's groups for an active token of an active user, 404 otherwise.
func (s *sidecarSync) token(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	notFound := gatehouse.Errorf(gatehouse.ECodeNotFound, "no active access token with that hash")
	if !syncapi.ValidHash(hash) {
		s.a.fail(w, r, notFound)
		return
	}
	ctx := r.Context()
	t, err := s.a.store.TokenByHash(ctx, hash)
	if err != nil {
		if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
			err = notFound
		}
		s.a.fail(w, r, err)
		return
	}
	if !t.Active(s.a.now()) {
		s.a.fail(w, r, notFound)
		return
	}
	u, err := s.a.store.GetUser(ctx, t.Owner)
	if err != nil {
		if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
			err = notFound
		}
		s.a.fail(w, r, err)
		return
	}
	if !u.Active {
		s.a.fail(w, r, notFound)
		return
	}
	// Read after the token: a snapshot of at least this version already carries it.
	v, err := s.a.store.ConfigVersion(ctx)
	if err != nil {
		s.a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, syncapi.TokenLookup{Token: verifier(*t), User: syncUser(*u), ConfigVersion: v})
}

// instances lists a sidecar's instances with their status.
func (s *sidecarSync) instances(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.a.store.GetSidecar(r.Context(), id); err != nil {
		s.a.fail(w, r, err)
		return
	}
	list, err := s.a.store.ListInstances(r.Context(), id)
	if err != nil {
		s.a.fail(w, r, err)
		return
	}
	now := s.a.now()
	for i := range list {
		in := &list[i]
		in.Status = instanceStatus(now.Sub(in.LastSeen), s.staleAfter, s.disconnectedAfter)
		in.Ports, in.Errors = nonNil(in.Ports), nonNil(in.Errors)
	}
	writeJSON(w, http.StatusOK, nonNil(list))
}

func instanceStatus(age, staleAfter, disconnectedAfter time.Duration) string {
	switch {
	case age < staleAfter:
		return InstanceHealthy
	case age < disconnectedAfter:
		return InstanceStale
	}
	return InstanceDisconnected
}
