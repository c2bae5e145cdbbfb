package scim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

// group is a SCIM Group resource.
type group struct {
	Schemas     []string     `json:"schemas"`
	ID          string       `json:"id,omitempty"`
	ExternalID  string       `json:"externalId,omitempty"`
	DisplayName string       `json:"displayName"`
	Members     []multiValue `json:"members,omitempty"`
	Meta        *meta        `json:"meta,omitempty"`
}

func (s *Server) groupOut(g *gatehouse.Group, withMembers bool) group {
	out := group{
		Schemas: []string{SchemaGroup}, ID: g.Name, DisplayName: g.Name,
		Meta: &meta{ResourceType: "Group", Created: g.CreatedAt, LastModified: g.UpdatedAt, Location: s.base + "/Groups/" + url.PathEscape(g.Name)},
	}
	if withMembers {
		for _, m := range g.Members {
			out.Members = append(out.Members, multiValue{Value: m, Display: m, Ref: s.base + "/Users/" + url.PathEscape(m)})
		}
	}
	return out
}

// excludesMembers reports whether the client asked to leave members out (Entra and Okta do, for
// large groups).
func excludesMembers(r *http.Request) bool {
	for _, a := range strings.Split(r.URL.Query().Get("excludedAttributes"), ",") {
		if strings.EqualFold(strings.TrimSpace(a), "members") {
			return true
		}
	}
	return false
}

func memberNames(ms []multiValue) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Value != "" {
			out = append(out, m.Value)
		}
	}
	return out
}

// checkMembers refuses local users as members: provisioning may not grant them anything.
func (s *Server) checkMembers(ctx context.Context, members []string) error {
	for _, m := range members {
		local, err := s.local(ctx, m)
		if err != nil {
			return err
		}
		if local {
			return gatehouse.Invalid("members", "user %q does not exist", m)
		}
	}
	return nil
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	want, filtered, err := eqFilter(r, "displayName")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	all, err := s.store.ListGroups(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var groups []gatehouse.Group
	for _, g := range all {
		if !filtered || g.Name == want {
			groups = append(groups, g)
		}
	}
	start, end, startIndex, err := page(r, len(groups))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := listResponse{Schemas: []string{SchemaList}, TotalResults: len(groups), StartIndex: startIndex, Resources: []any{}}
	for i := start; i < end; i++ {
		out.Resources = append(out.Resources, s.groupOut(&groups[i], !excludesMembers(r)))
	}
	out.ItemsPerPage = len(out.Resources)
	write(w, http.StatusOK, out)
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var in group
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.DisplayName == "" {
		s.fail(w, r, badRequest("invalidValue", "displayName is required"))
		return
	}
	g := &gatehouse.Group{Name: in.DisplayName, Members: memberNames(in.Members)}
	if s.adminGroup(g.Name) {
		g.Role = gatehouse.RoleAdmin
	}
	err := s.checkMembers(ctx, g.Members)
	if err == nil {
		err = s.store.CreateGroup(ctx, g)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.logger.InfoContext(ctx, "scim: group created", "group", g.Name, "members", len(g.Members))
	w.Header().Set("Location", s.base+"/Groups/"+url.PathEscape(g.Name))
	write(w, http.StatusCreated, s.groupOut(g, true))
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	g, err := s.store.GetGroup(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	write(w, http.StatusOK, s.groupOut(g, !excludesMembers(r)))
}

func (s *Server) replaceGroup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	g, err := s.store.GetGroup(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in group
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.DisplayName != "" && in.DisplayName != g.Name {
		s.fail(w, r, badRequest("mutability", "a group's displayName cannot change in Gatehouse (%q to %q): impersonation policies name it", g.Name, in.DisplayName))
		return
	}
	g.Members = memberNames(in.Members)
	s.saveGroup(w, r, g)
}

func (s *Server) saveGroup(w http.ResponseWriter, r *http.Request, g *gatehouse.Group) {
	ctx := r.Context()
	err := s.checkMembers(ctx, g.Members)
	if err == nil {
		err = s.store.UpdateGroup(ctx, g)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.logger.InfoContext(ctx, "scim: group updated", "group", g.Name, "members", len(g.Members))
	got, err := s.store.GetGroup(ctx, g.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	write(w, http.StatusOK, s.groupOut(got, true))
}

func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	g, err := s.store.GetGroup(ctx, r.PathValue("id"))
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
		if err := applyGroupOp(g, op); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.saveGroup(w, r, g)
}

// applyGroupOp applies one PATCH operation to g: members add / remove / replace, in the shapes Okta
// (`members[value eq "id"]`) and Entra ID (remove with a value list) send.
func applyGroupOp(g *gatehouse.Group, op patchOp) error {
	kind := strings.ToLower(op.Op)
	path := strings.TrimSpace(op.Path)
	lower := strings.ToLower(path)
	var members []multiValue
	switch {
	case path == "":
		if kind == "remove" {
			return badRequest("noTarget", "remove needs a path")
		}
		var in group
		if err := json.Unmarshal(op.Value, &in); err != nil {
			return badRequest("invalidValue", "the value of a PATCH without a path must be an object of attributes: %v", err)
		}
		if in.DisplayName != "" && in.DisplayName != g.Name {
			return badRequest("mutability", "a group's displayName cannot change in Gatehouse: impersonation policies name it")
		}
		if in.Members == nil {
			return nil
		}
		members, lower = in.Members, "members"
	case lower == "displayname":
		if stringValue(op.Value) != g.Name {
			return badRequest("mutability", "a group's displayName cannot change in Gatehouse: impersonation policies name it")
		}
		return nil
	case lower == "members":
		if len(op.Value) > 0 && string(op.Value) != "null" {
			if err := json.Unmarshal(op.Value, &members); err != nil {
				return badRequest("invalidValue", "members must be a list of {\"value\": USER_ID}")
			}
		}
	case strings.HasPrefix(lower, "members[") && kind == "remove":
		v, err := memberFilter(path)
		if err != nil {
			return err
		}
		members = []multiValue{{Value: v}}
	default:
		return badRequest("invalidPath", "unsupported path %q for a group", op.Path)
	}
	names := memberNames(members)
	switch kind {
	case "add":
		for _, n := range names {
			if !slices.Contains(g.Members, n) {
				g.Members = append(g.Members, n)
			}
		}
	case "replace":
		g.Members = names
	case "remove":
		if lower == "members" && len(names) == 0 {
			g.Members = nil // remove all members
			return nil
		}
		g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return slices.Contains(names, m) })
	default:
		return badRequest("invalidSyntax", "op must be add, remove or replace, not %q", op.Op)
	}
	return nil
}

// memberFilter reads the value out of `members[value eq "ID"]`.
func memberFilter(path string) (string, error) {
	inner := strings.TrimSuffix(path[len("members["):], "]")
	attr, rest, _ := strings.Cut(strings.TrimSpace(inner), " ")
	op, val, _ := strings.Cut(strings.TrimSpace(rest), " ")
	var v string
	if !strings.EqualFold(attr, "value") || !strings.EqualFold(op, "eq") || json.Unmarshal([]byte(strings.TrimSpace(val)), &v) != nil {
		return "", badRequest("invalidFilter", "only members[value eq \"ID\"] is supported")
	}
	return v, nil
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.store.DeleteGroup(ctx, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	s.logger.InfoContext(ctx, "scim: group deleted", "group", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}
