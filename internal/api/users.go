package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/auth"
)

// userRequest is the body of POST/PUT/PATCH /api/v1/users: a user, with "active" defaulting to
// true and a write-only "password" for local sign-in.
type userRequest struct {
	gatehouse.User
	Active   *bool   `json:"active,omitempty"`   // default true
	Password *string `json:"password,omitempty"` // write-only; never returned
}

// prepare checks the request and returns the user to store and the bcrypt hash of a new password
// ("" when the request sets none). groupsBefore are the user's memberships, which the request may
// repeat but not change.
func (in *userRequest) prepare(groupsBefore []string) (*gatehouse.User, string, error) {
	u := in.User
	u.CreatedAt, u.UpdatedAt = time.Time{}, time.Time{}
	u.Active = in.Active == nil || *in.Active
	if u.Role == "" {
		u.Role = gatehouse.RoleDataConsumer
	}
	if len(u.Groups) > 0 && !slices.Equal(slices.Sorted(slices.Values(u.Groups)), slices.Sorted(slices.Values(groupsBefore))) {
		return nil, "", gatehouse.Invalid("groups", "is read-only here: change memberships through /api/v1/groups")
	}
	u.Groups = nil
	if err := u.Validate(); err != nil {
		return nil, "", err
	}
	var hash string
	if in.Password != nil {
		if err := auth.ValidatePassword("password", *in.Password); err != nil {
			return nil, "", err
		}
		h, err := auth.HashPassword(*in.Password)
		if err != nil {
			return nil, "", err
		}
		hash = h
	}
	return &u, hash, nil
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var in userRequest
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	u, hash, err := in.prepare(nil)
	if err == nil {
		err = a.store.CreateUser(ctx, u)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if hash != "" {
		if err := a.store.SetUserPassword(ctx, u.Name, hash); err != nil {
			// Undo the half-made user so that a retry starts clean.
			if derr := a.store.DeleteUser(ctx, u.Name); derr != nil {
				a.logger.ErrorContext(ctx, "undo user creation", "user", u.Name, "err", derr)
			}
			a.fail(w, r, err)
			return
		}
	}
	out, err := a.store.GetUser(ctx, u.Name)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.ListUsers(r.Context())
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.GetUser(r.Context(), r.PathValue("name"))
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) {
	ctx, name := r.Context(), r.PathValue("name")
	cur, err := a.store.GetUser(ctx, name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in, err := decodeUpdate(w, r, func() (*userRequest, error) {
		active := cur.Active
		return &userRequest{User: *cur, Active: &active}, nil
	})
	if err == nil {
		err = checkKey("name", in.Name, name)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.Name = name
	u, hash, err := in.prepare(cur.Groups)
	if err == nil && name == caller(ctx).Name && (u.Role != gatehouse.RoleAdmin && cur.Role == gatehouse.RoleAdmin || !u.Active) {
		err = gatehouse.Conflict("you cannot take away your own admin role or deactivate yourself; ask another admin")
	}
	if err == nil {
		err = a.store.UpdateUser(ctx, u)
	}
	if err == nil && hash != "" {
		err = a.store.SetUserPassword(ctx, name, hash)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetUser(ctx, name)
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == caller(r.Context()).Name {
		a.fail(w, r, gatehouse.Conflict("you cannot delete the user you are signed in as"))
		return
	}
	a.answer(w, r, http.StatusNoContent, nil, a.store.DeleteUser(r.Context(), name))
}

// ---- sessions

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var in loginRequest
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if in.Username == "" {
		a.fail(w, r, gatehouse.Invalid("username", "is required"))
		return
	}
	if in.Password == "" {
		a.fail(w, r, gatehouse.Invalid("password", "is required"))
		return
	}
	secret, exp, err := a.auth.Login(r.Context(), in.Username, in.Password)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, loginResponse{Token: secret.Reveal(), ExpiresAt: exp})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	a.endSession(w, r) // sso.go: also ends the session's refresh tokens and cookies
}

func (a *API) me(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, caller(r.Context()))
}
