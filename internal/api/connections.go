package api

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/gatehousedb/gatehouse"
)

// connections answers GET /api/v1/connections: for every repository user the caller may
// impersonate (through an impersonation rule naming them or one of their groups), every sidecar
// port bound to that repository, with the username to type: the repository user, or
// "user@repository" when the port fronts several repositories.
func (a *API) connections(w http.ResponseWriter, r *http.Request) {
	ctx, me := r.Context(), caller(r.Context())
	user := me
	if name := r.URL.Query().Get("user"); name != "" && name != me.Name {
		if !isAdmin(me) {
			a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeForbidden, "only admins can see other users' connections"))
			return
		}
		u, err := a.store.GetUser(ctx, name)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		user = u
	}
	out, err := a.connectionsOf(ctx, user)
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) connectionsOf(ctx context.Context, u *gatehouse.User) ([]gatehouse.Connection, error) {
	out := []gatehouse.Connection{}
	if !u.Active {
		return out, nil
	}
	policies, err := a.store.ListImpersonationPolicies(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list impersonation policies: %w", err)
	}
	allowed := map[string]map[string]bool{} // repository -> repository users
	for _, p := range policies {
		for _, rule := range p.Rules {
			for _, ru := range rule.RepositoryUsers {
				if rule.Allows(u.Name, u.Groups, ru) {
					if allowed[p.Repository] == nil {
						allowed[p.Repository] = map[string]bool{}
					}
					allowed[p.Repository][ru] = true
				}
			}
		}
	}
	if len(allowed) == 0 {
		return out, nil
	}
	bindings, err := a.store.ListBindings(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	type portKey struct {
		sidecar string
		port    int
	}
	shared := map[portKey]int{}
	for _, b := range bindings {
		shared[portKey{b.SidecarID, b.Port}]++
	}
	repos := map[string]*gatehouse.Repository{}
	sidecars := map[string]*gatehouse.Sidecar{}
	for _, b := range bindings {
		users := allowed[b.Repository]
		if len(users) == 0 {
			continue
		}
		repo, ok := repos[b.Repository]
		if !ok {
			if repo, err = a.store.GetRepository(ctx, b.Repository); err != nil {
				return nil, fmt.Errorf("connections: %w", err)
			}
			repos[b.Repository] = repo
		}
		sc, ok := sidecars[b.SidecarID]
		if !ok {
			if sc, err = a.store.GetSidecar(ctx, b.SidecarID); err != nil {
				return nil, fmt.Errorf("connections: %w", err)
			}
			sidecars[b.SidecarID] = sc
		}
		for ru := range users {
			c := gatehouse.Connection{
				Repository: repo.Name, Type: repo.Type, Database: repo.Database, RepositoryUser: ru,
				SidecarID: sc.ID, SidecarHost: sc.Hostname, Port: b.Port, Username: ru,
			}
			if shared[portKey{b.SidecarID, b.Port}] > 1 {
				c.Username = ru + "@" + repo.Name
			}
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(x, y gatehouse.Connection) int {
		return cmp.Or(cmp.Compare(x.Repository, y.Repository), cmp.Compare(x.RepositoryUser, y.RepositoryUser),
			cmp.Compare(x.SidecarHost, y.SidecarHost), cmp.Compare(x.SidecarID, y.SidecarID), cmp.Compare(x.Port, y.Port))
	})
	return out, nil
}
