package scim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

type name struct {
	Formatted  string `json:"formatted,omitempty"`
	GivenName  string `json:"givenName,omitempty"`
	FamilyName string `json:"familyName,omitempty"`
}

type multiValue struct {
	Value   string `json:"value"`
	Display string `json:"display,omitempty"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
	Ref     string `json:"$ref,omitempty"`
}

// user is a SCIM User resource.
type user struct {
	Schemas     []string     `json:"schemas"`
	ID          string       `json:"id,omitempty"`
	ExternalID  string       `json:"externalId,omitempty"`
	UserName    string       `json:"userName"`
	Name        *name        `json:"name,omitempty"`
	DisplayName string       `json:"displayName,omitempty"`
	Emails      []multiValue `json:"emails,omitempty"`
	Active      *bool        `json:"active,omitempty"`
	Groups      []multiValue `json:"groups,omitempty"`
	Meta        *meta        `json:"meta,omitempty"`
}

func (s *Server) userOut(u *gatehouse.User) user {
	active := u.Active
	out := user{
		Schemas: []string{SchemaUser}, ID: u.Name, UserName: u.Name, DisplayName: u.DisplayName, Active: &active,
		Meta: &meta{ResourceType: "User", Created: u.CreatedAt, LastModified: u.UpdatedAt, Location: s.base + "/Users/" + url.PathEscape(u.Name)},
	}
	if u.DisplayName != "" {
		out.Name = &name{Formatted: u.DisplayName}
	}
	if u.Email != "" {
		out.Emails = []multiValue{{Value: u.Email, Type: "work", Primary: true}}
	}
	for _, g := range u.Groups {
		out.Groups = append(out.Groups, multiValue{Value: g, Display: g, Ref: s.base + "/Groups/" + url.PathEscape(g)})
	}
	return out
}

// apply copies the SCIM resource's attributes onto u.
func (in *user) apply(u *gatehouse.User) {
	switch {
	case in.DisplayName != "":
		u.DisplayName = in.DisplayName
	case in.Name != nil && in.Name.Formatted != "":
		u.DisplayName = in.Name.Formatted
	case in.Name != nil && (in.Name.GivenName != "" || in.Name.FamilyName != ""):
		u.DisplayName = strings.TrimSpace(in.Name.GivenName + " " + in.Name.FamilyName)
	}
	if e := primaryEmail(in.Emails); e != "" {
		u.Email = e
	}
	if in.Active != nil {
		u.Active = *in.Active
	}
}

func primaryEmail(es []multiValue) string {
	for _, e := range es {
		if e.Primary {
			return e.Value
		}
	}
	if len(es) > 0 {
		return es[0].Value
	}
	return ""
}

// provisioned returns the named user unless it is missing or a local user, which SCIM must not see.
func (s *Server) provisioned(ctx context.Context, id string) (*gatehouse.User, error) {
	u, err := s.store.GetUser(ctx, id)
	if err != nil {
		return nil, err
	}
	if local, err := s.local(ctx, u.Name); err != nil {
		return nil, err
	} else if local {
		return nil, gatehouse.NotFound("user", id)
	}
	return u, nil
}

func (s *Server) local(ctx context.Context, name string) (bool, error) {
	h, err := s.store.UserPasswordHash(ctx, name)
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		return false, nil
	}
	return h != "", err
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	want, filtered, err := eqFilter(r, "userName")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	all, err := s.store.ListUsers(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var users []gatehouse.User
	for _, u := range all {
		if filtered && !strings.EqualFold(u.Name, want) {
			continue
		}
		local, err := s.local(ctx, u.Name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !local {
			users = append(users, u)
		}
	}
	start, end, startIndex, err := page(r, len(users))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := listResponse{Schemas: []string{SchemaList}, TotalResults: len(users), StartIndex: startIndex, Resources: []any{}}
	for i := start; i < end; i++ {
		out.Resources = append(out.Resources, s.userOut(&users[i]))
	}
	out.ItemsPerPage = len(out.Resources)
	write(w, http.StatusOK, out)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var in user
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.UserName == "" {
		s.fail(w, r, badRequest("invalidValue", "userName is required"))
		return
	}
	u := &gatehouse.User{Name: in.UserName, Role: gatehouse.RoleDataConsumer, Active: true}
	in.apply(u)
	if err := s.store.CreateUser(ctx, u); err != nil {
		s.fail(w, r, err)
		return
	}
	s.logger.InfoContext(ctx, "scim: user created", "user", u.Name, "active", u.Active)
	got, err := s.store.GetUser(ctx, u.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", s.base+"/Users/"+url.PathEscape(u.Name))
	write(w, http.StatusCreated, s.userOut(got))
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := s.provisioned(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	write(w, http.StatusOK, s.userOut(u))
}

func (s *Server) replaceUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, err := s.provisioned(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in user
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.UserName != "" && in.UserName != u.Name {
		s.fail(w, r, badRequest("mutability", "userName cannot change in Gatehouse (%q to %q); delete the user and create the new one", u.Name, in.UserName))
		return
	}
	// PUT replaces: attributes left out are cleared, except active, which stays as it is.
	u.DisplayName, u.Email = "", ""
	in.apply(u)
	s.saveUser(w, r, u)
}

// saveUser stores u and, when it was just deactivated, revokes everything the user holds.
func (s *Server) saveUser(w http.ResponseWriter, r *http.Request, u *gatehouse.User) {
	ctx := r.Context()
	before, err := s.store.GetUser(ctx, u.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.store.UpdateUser(ctx, u); err != nil {
		s.fail(w, r, err)
		return
	}
	if before.Active && !u.Active {
		if err := s.store.RevokeUserAccess(ctx, u.Name); err != nil {
			s.fail(w, r, err)
			return
		}
		s.logger.InfoContext(ctx, "scim: user deactivated; tokens revoked, sessions ended", "user", u.Name)
	}
	got, err := s.store.GetUser(ctx, u.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	write(w, http.StatusOK, s.userOut(got))
}

// patchRequest is a SCIM PatchOp.
type patchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []patchOp `json:"Operations"`
}

type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

// boolValue reads a boolean that Entra ID sends as a string ("False").
func boolValue(raw json.RawMessage) (bool, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return b, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		switch strings.ToLower(s) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, badRequest("invalidValue", "active must be true or false, not %s", raw)
}

func stringValue(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, err := s.provisioned(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in patchRequest
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(in.Operations) == 0 {
		s.fail(w, r, badRequest("invalidValue", "Operations is required"))
		return
	}
	for _, op := range in.Operations {
		if err := s.applyUserOp(u, op); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.saveUser(w, r, u)
}

// applyUserOp applies one PATCH operation. Attributes Gatehouse does not keep are accepted and
// ignored, as IdPs send many (name.honorificPrefix, phoneNumbers, ...).
func (s *Server) applyUserOp(u *gatehouse.User, op patchOp) error {
	kind := strings.ToLower(op.Op)
	if kind != "add" && kind != "replace" && kind != "remove" {
		return badRequest("invalidSyntax", "op must be add, remove or replace, not %q", op.Op)
	}
	if op.Path == "" {
		if kind == "remove" {
			return badRequest("noTarget", "remove needs a path")
		}
		var in user
		var typeErr *json.UnmarshalTypeError
		if err := json.Unmarshal(op.Value, &in); err != nil && !errors.As(err, &typeErr) {
			return badRequest("invalidValue", "the value of a PATCH without a path must be an object of attributes: %v", err)
		}
		var attrs map[string]json.RawMessage
		_ = json.Unmarshal(op.Value, &attrs)
		for k, v := range attrs { // Entra sends {"active": "False"}; the struct decode skips what it cannot read
			if strings.EqualFold(k, "active") {
				b, err := boolValue(v)
				if err != nil {
					return err
				}
				in.Active = &b
			}
		}
		if in.UserName != "" && in.UserName != u.Name {
			return badRequest("mutability", "userName cannot change in Gatehouse")
		}
		in.apply(u)
		return nil
	}
	path := strings.ToLower(op.Path)
	switch {
	case path == "active":
		if kind == "remove" {
			return badRequest("mutability", "active cannot be removed")
		}
		b, err := boolValue(op.Value)
		if err != nil {
			return err
		}
		u.Active = b
	case path == "displayname", path == "name.formatted":
		u.DisplayName = ""
		if kind != "remove" {
			u.DisplayName = stringValue(op.Value)
		}
	case path == "name.givenname", path == "name.familyname":
		if kind != "remove" && u.DisplayName == "" {
			u.DisplayName = stringValue(op.Value)
		}
	case path == "emails" || strings.HasPrefix(path, "emails["):
		if kind == "remove" {
			u.Email = ""
			return nil
		}
		if e := stringValue(op.Value); e != "" { // emails[type eq "work"].value
			u.Email = e
			return nil
		}
		var es []multiValue
		if err := json.Unmarshal(op.Value, &es); err != nil {
			return badRequest("invalidValue", "emails must be a list of {value, primary}")
		}
		u.Email = primaryEmail(es)
	case path == "username":
		if stringValue(op.Value) != u.Name {
			return badRequest("mutability", "userName cannot change in Gatehouse")
		}
	}
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, err := s.provisioned(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.store.RevokeUserAccess(ctx, u.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.store.DeleteUser(ctx, u.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.logger.InfoContext(ctx, "scim: user deleted", "user", u.Name)
	w.WriteHeader(http.StatusNoContent)
}
