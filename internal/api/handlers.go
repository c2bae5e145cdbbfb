package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// decodeUpdate decodes a PUT body onto a zero T, or a PATCH body onto the current object (only the
// top-level fields the body carries change).
func decodeUpdate[T any](w http.ResponseWriter, r *http.Request, current func() (*T, error)) (*T, error) {
	in := new(T)
	present, err := decode(w, r, in)
	if err != nil {
		return nil, err
	}
	if r.Method != http.MethodPatch {
		return in, nil
	}
	cur, err := current()
	if err != nil {
		return nil, err
	}
	merge(cur, in, present)
	return cur, nil
}

// checkKey refuses a body whose key field names another object than the path.
func checkKey(field, got, want string) error {
	if got != "" && got != want {
		return gatehouse.Invalid(field, "cannot be changed: the path names %q (leave the field out or repeat it)", want)
	}
	return nil
}

func cascade(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("cascade"); v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, gatehouse.Invalid("cascade", "must be true or false, not %q", v)
	}
}

func pathPort(r *http.Request) (int, error) {
	p, err := strconv.Atoi(r.PathValue("port"))
	if err != nil {
		return 0, gatehouse.Invalid("port", "must be a TCP port number, not %q", r.PathValue("port"))
	}
	return p, nil
}

// answer writes v with status, or the error.
func (a *API) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, v)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ---- repositories

func (a *API) createRepository(w http.ResponseWriter, r *http.Request) {
	var in gatehouse.Repository
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	in.CreatedAt, in.UpdatedAt = time.Time{}, time.Time{}
	in.Normalize()
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.CreateRepository(r.Context(), &in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetRepository(r.Context(), in.Name)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) listRepositories(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.ListRepositories(r.Context())
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getRepository(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.GetRepository(r.Context(), r.PathValue("name"))
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) updateRepository(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	in, err := decodeUpdate(w, r, func() (*gatehouse.Repository, error) { return a.store.GetRepository(r.Context(), name) })
	if err == nil {
		err = checkKey("name", in.Name, name)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.Name = name
	in.Normalize()
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.UpdateRepository(r.Context(), in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetRepository(r.Context(), name)
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deleteRepository(w http.ResponseWriter, r *http.Request) {
	c, err := cascade(r)
	if err == nil {
		err = a.store.DeleteRepository(r.Context(), r.PathValue("name"), c)
	}
	a.answer(w, r, http.StatusNoContent, nil, err)
}

// ---- repository users

func (a *API) createRepositoryUser(w http.ResponseWriter, r *http.Request) {
	repo := r.PathValue("name")
	var in gatehouse.RepositoryUser
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.GetRepository(r.Context(), repo); err != nil {
		a.fail(w, r, err)
		return
	}
	in.Repository = repo
	in.CreatedAt, in.UpdatedAt = time.Time{}, time.Time{}
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.CreateRepositoryUser(r.Context(), &in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetRepositoryUser(r.Context(), repo, in.Username)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) listRepositoryUsers(w http.ResponseWriter, r *http.Request) {
	repo := r.PathValue("name")
	if _, err := a.store.GetRepository(r.Context(), repo); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.ListRepositoryUsers(r.Context(), repo)
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getRepositoryUser(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.GetRepositoryUser(r.Context(), r.PathValue("name"), r.PathValue("username"))
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) updateRepositoryUser(w http.ResponseWriter, r *http.Request) {
	repo, username := r.PathValue("name"), r.PathValue("username")
	in, err := decodeUpdate(w, r, func() (*gatehouse.RepositoryUser, error) {
		return a.store.GetRepositoryUser(r.Context(), repo, username)
	})
	if err == nil {
		err = checkKey("username", in.Username, username)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.Repository, in.Username = repo, username
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.UpdateRepositoryUser(r.Context(), in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetRepositoryUser(r.Context(), repo, username)
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deleteRepositoryUser(w http.ResponseWriter, r *http.Request) {
	c, err := cascade(r)
	if err == nil {
		err = a.store.DeleteRepositoryUser(r.Context(), r.PathValue("name"), r.PathValue("username"), c)
	}
	a.answer(w, r, http.StatusNoContent, nil, err)
}

// ---- sidecars

// sidecarResponse is a sidecar with what an operator needs to install it (the reference's step 9).
type sidecarResponse struct {
	gatehouse.Sidecar
	ControlPlaneURL string `json:"control_plane_url"`
}

func (a *API) sidecarOut(s *gatehouse.Sidecar) sidecarResponse {
	return sidecarResponse{Sidecar: *s, ControlPlaneURL: a.publicURL}
}

func (a *API) createSidecar(w http.ResponseWriter, r *http.Request) {
	var in gatehouse.Sidecar
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	in.ID, in.CreatedAt, in.UpdatedAt = "", time.Time{}, time.Time{}
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.CreateSidecar(r.Context(), &in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetSidecar(r.Context(), in.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a.sidecarOut(out))
}

func (a *API) listSidecars(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.ListSidecars(r.Context())
	out := make([]sidecarResponse, 0, len(list))
	for i := range list {
		out = append(out, a.sidecarOut(&list[i]))
	}
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) getSidecar(w http.ResponseWriter, r *http.Request) {
	s, err := a.store.GetSidecar(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.sidecarOut(s))
}

func (a *API) updateSidecar(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	in, err := decodeUpdate(w, r, func() (*gatehouse.Sidecar, error) { return a.store.GetSidecar(r.Context(), id) })
	if err == nil {
		err = checkKey("id", in.ID, id)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.ID = id
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.UpdateSidecar(r.Context(), in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetSidecar(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.sidecarOut(out))
}

func (a *API) deleteSidecar(w http.ResponseWriter, r *http.Request) {
	c, err := cascade(r)
	if err == nil {
		err = a.store.DeleteSidecar(r.Context(), r.PathValue("id"), c)
	}
	a.answer(w, r, http.StatusNoContent, nil, err)
}

// ---- listener ports

func (a *API) createPort(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in gatehouse.ListenerPort
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.GetSidecar(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	in.SidecarID, in.CreatedAt = id, time.Time{}
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.CreateListenerPort(r.Context(), &in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetListenerPort(r.Context(), id, in.Port)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) listPorts(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.store.GetSidecar(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.ListListenerPorts(r.Context(), id)
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getPort(w http.ResponseWriter, r *http.Request) {
	port, err := pathPort(r)
	var out *gatehouse.ListenerPort
	if err == nil {
		out, err = a.store.GetListenerPort(r.Context(), r.PathValue("id"), port)
	}
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) updatePort(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	port, err := pathPort(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in, err := decodeUpdate(w, r, func() (*gatehouse.ListenerPort, error) { return a.store.GetListenerPort(r.Context(), id, port) })
	if err == nil && in.Port != 0 && in.Port != port {
		err = gatehouse.Invalid("port", "cannot be changed: the path names port %d (register a new port and delete this one)", port)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.SidecarID, in.Port = id, port
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.UpdateListenerPort(r.Context(), in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetListenerPort(r.Context(), id, port)
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deletePort(w http.ResponseWriter, r *http.Request) {
	port, err := pathPort(r)
	var c bool
	if err == nil {
		c, err = cascade(r)
	}
	if err == nil {
		err = a.store.DeleteListenerPort(r.Context(), r.PathValue("id"), port, c)
	}
	a.answer(w, r, http.StatusNoContent, nil, err)
}

// ---- bindings

func (a *API) createBinding(w http.ResponseWriter, r *http.Request) {
	ctx, id := r.Context(), r.PathValue("id")
	var in gatehouse.Binding
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.GetSidecar(ctx, id); err != nil {
		a.fail(w, r, err)
		return
	}
	in.SidecarID, in.CreatedAt = id, time.Time{}
	if err := gatehouse.ValidatePort("port", in.Port); err != nil {
		a.fail(w, r, err)
		return
	}
	if in.Repository == "" {
		a.fail(w, r, gatehouse.Invalid("repository", "is required"))
		return
	}
	// The store checks all of this again inside its transaction; checking here too gives the
	// caller an error that names the field.
	port, err := a.store.GetListenerPort(ctx, id, in.Port)
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		err = gatehouse.Invalid("port", "sidecar %s has no listener port %d; register it first", id, in.Port)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	repo, err := a.store.GetRepository(ctx, in.Repository)
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		err = gatehouse.Invalid("repository", "repository %q does not exist", in.Repository)
	}
	if err == nil {
		err = gatehouse.CheckBinding(*port, *repo)
	}
	if err == nil {
		err = a.store.CreateBinding(ctx, &in)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.findBinding(r, id, in.Port, in.Repository)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) findBinding(r *http.Request, id string, port int, repo string) (*gatehouse.Binding, error) {
	list, err := a.store.ListBindings(r.Context(), id)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].Port == port && list[i].Repository == repo {
			return &list[i], nil
		}
	}
	return nil, gatehouse.NotFound("binding", strconv.Itoa(port)+" -> "+repo)
}

func (a *API) listBindings(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.store.GetSidecar(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.ListBindings(r.Context(), id)
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getBinding(w http.ResponseWriter, r *http.Request) {
	port, err := pathPort(r)
	var out *gatehouse.Binding
	if err == nil {
		out, err = a.findBinding(r, r.PathValue("id"), port, r.PathValue("repository"))
	}
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deleteBinding(w http.ResponseWriter, r *http.Request) {
	port, err := pathPort(r)
	if err == nil {
		err = a.store.DeleteBinding(r.Context(), r.PathValue("id"), port, r.PathValue("repository"))
	}
	a.answer(w, r, http.StatusNoContent, nil, err)
}

// ---- impersonation policies

func (a *API) createPolicy(w http.ResponseWriter, r *http.Request) {
	var in gatehouse.ImpersonationPolicy
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	in.CreatedAt, in.UpdatedAt = time.Time{}, time.Time{}
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.CreateImpersonationPolicy(r.Context(), &in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetImpersonationPolicy(r.Context(), in.Name)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) listPolicies(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.ListImpersonationPolicies(r.Context(), r.URL.Query().Get("repository"))
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.GetImpersonationPolicy(r.Context(), r.PathValue("name"))
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) updatePolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	in, err := decodeUpdate(w, r, func() (*gatehouse.ImpersonationPolicy, error) {
		return a.store.GetImpersonationPolicy(r.Context(), name)
	})
	if err == nil {
		err = checkKey("name", in.Name, name)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.Name = name
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.UpdateImpersonationPolicy(r.Context(), in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetImpersonationPolicy(r.Context(), name)
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deletePolicy(w http.ResponseWriter, r *http.Request) {
	a.answer(w, r, http.StatusNoContent, nil, a.store.DeleteImpersonationPolicy(r.Context(), r.PathValue("name")))
}

// ---- groups

func (a *API) createGroup(w http.ResponseWriter, r *http.Request) {
	var in gatehouse.Group
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	in.CreatedAt, in.UpdatedAt = time.Time{}, time.Time{}
	in.Members = nonNil(in.Members)
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.CreateGroup(r.Context(), &in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetGroup(r.Context(), in.Name)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.ListGroups(r.Context())
	for i := range out {
		out[i].Members = nonNil(out[i].Members)
	}
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.GetGroup(r.Context(), r.PathValue("name"))
	if err == nil {
		out.Members = nonNil(out.Members)
	}
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) updateGroup(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	in, err := decodeUpdate(w, r, func() (*gatehouse.Group, error) { return a.store.GetGroup(r.Context(), name) })
	if err == nil {
		err = checkKey("name", in.Name, name)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.Name = name
	in.Members = nonNil(in.Members)
	if err := in.Validate(); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.UpdateGroup(r.Context(), in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetGroup(r.Context(), name)
	if err == nil {
		out.Members = nonNil(out.Members)
	}
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) {
	a.answer(w, r, http.StatusNoContent, nil, a.store.DeleteGroup(r.Context(), r.PathValue("name")))
}
