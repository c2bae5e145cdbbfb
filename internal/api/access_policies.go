package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/policy"
)

// Classifier turns statement text into classified statements for one SQL dialect; the control
// plane wires the real ones (internal/sqlparse/...) in through Config.Classifiers.
type Classifier func(sql string) ([]policy.Statement, error)

// accessPolicyRoutes are the access management policy routes.
func (a *API) accessPolicyRoutes() []route {
	return []route{
		{Method: "POST", Path: "/api/v1/access-policies", Access: adminOnly, Summary: "Create an access management policy (statement-level rules for a repository)", Request: gatehouse.AccessPolicy{}, Response: gatehouse.AccessPolicy{}, Status: 201, handle: a.createAccessPolicy},
		{Method: "GET", Path: "/api/v1/access-policies", Access: adminOnly, Summary: "List access management policies", Query: map[string]string{"repository": "only the policies of this repository"}, Response: []gatehouse.AccessPolicy{}, Status: 200, handle: a.listAccessPolicies},
		{Method: "GET", Path: "/api/v1/access-policies/{name}", Access: adminOnly, Summary: "Get an access management policy", Response: gatehouse.AccessPolicy{}, Status: 200, handle: a.getAccessPolicy},
		{Method: "PUT", Path: "/api/v1/access-policies/{name}", Access: adminOnly, Summary: "Replace an access management policy", Request: gatehouse.AccessPolicy{}, Response: gatehouse.AccessPolicy{}, Status: 200, handle: a.updateAccessPolicy},
		{Method: "PATCH", Path: "/api/v1/access-policies/{name}", Access: adminOnly, Summary: "Change some fields of an access management policy", Request: gatehouse.AccessPolicy{}, Response: gatehouse.AccessPolicy{}, Status: 200, handle: a.updateAccessPolicy},
		{Method: "DELETE", Path: "/api/v1/access-policies/{name}", Access: adminOnly, Summary: "Delete an access management policy", Status: 204, handle: a.deleteAccessPolicy},
		{Method: "POST", Path: "/api/v1/access-policies/test", Access: adminOnly, Summary: "Show the decision the repository's access policies make for a statement run by a user", Request: policyTestRequest{}, Response: policyTestResult{}, Status: 200, handle: a.testAccessPolicy},
	}
}

func (a *API) createAccessPolicy(w http.ResponseWriter, r *http.Request) {
	var in gatehouse.AccessPolicy
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	in.CreatedAt, in.UpdatedAt = time.Time{}, time.Time{}
	if err := a.store.CreateAccessPolicy(r.Context(), &in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetAccessPolicy(r.Context(), in.Name)
	a.answer(w, r, http.StatusCreated, out, err)
}

func (a *API) listAccessPolicies(w http.ResponseWriter, r *http.Request) {
	repo := r.URL.Query().Get("repository")
	if repo != "" {
		if _, err := a.store.GetRepository(r.Context(), repo); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	out, err := a.store.ListAccessPolicies(r.Context(), repo)
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) getAccessPolicy(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.GetAccessPolicy(r.Context(), r.PathValue("name"))
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) updateAccessPolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	in, err := decodeUpdate(w, r, func() (*gatehouse.AccessPolicy, error) {
		return a.store.GetAccessPolicy(r.Context(), name)
	})
	if err == nil {
		err = checkKey("name", in.Name, name)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in.Name = name
	if err := a.store.UpdateAccessPolicy(r.Context(), in); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.store.GetAccessPolicy(r.Context(), name)
	a.answer(w, r, http.StatusOK, out, err)
}

func (a *API) deleteAccessPolicy(w http.ResponseWriter, r *http.Request) {
	a.answer(w, r, http.StatusNoContent, nil, a.store.DeleteAccessPolicy(r.Context(), r.PathValue("name")))
}

type policyTestRequest struct {
	Repository string   `json:"repository"`
	User       string   `json:"user"`
	Groups     []string `json:"groups,omitempty"` // in addition to the user's groups in Gatehouse
	SQL        string   `json:"sql"`
	// Schema resolves unqualified names; "public" when empty.
	Schema                  string `json:"schema,omitempty"`
	AllowUnsupportedQueries bool   `json:"allow_unsupported_queries,omitempty"`
}

type policyTestResult struct {
	// Decision is "allow" when the statement would run (monitor-mode denials included), "deny"
	// when it would be refused.
	Decision   string                `json:"decision"`
	Statements []policyTestStatement `json:"statements"`
}

type policyTestStatement struct {
	Statement string   `json:"statement"`
	Kind      string   `json:"kind"`
	Objects   []string `json:"objects,omitempty"`
	Decision  string   `json:"decision"` // allow or deny
	Enforced  bool     `json:"enforced"`
	Rule      string   `json:"rule,omitempty"`
	Mode      string   `json:"mode,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

func (a *API) testAccessPolicy(w http.ResponseWriter, r *http.Request) {
	var in policyTestRequest
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	ctx := r.Context()
	switch {
	case in.Repository == "":
		a.fail(w, r, gatehouse.Invalid("repository", "is required"))
		return
	case in.User == "":
		a.fail(w, r, gatehouse.Invalid("user", "is required"))
		return
	case strings.TrimSpace(in.SQL) == "":
		a.fail(w, r, gatehouse.Invalid("sql", "is required"))
		return
	}
	repo, err := a.store.GetRepository(ctx, in.Repository)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	classify := a.cfg.Classifiers[repo.Type]
	if classify == nil {
		a.fail(w, r, gatehouse.Invalid("repository", "statements of %s repositories cannot be classified by this control plane", repo.Type))
		return
	}
	groups := append([]string(nil), in.Groups...)
	if u, err := a.store.GetUser(ctx, in.User); err == nil {
		groups = append(groups, u.Groups...)
	} else if gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
		a.fail(w, r, err)
		return
	}
	policies, err := a.store.ListAccessPolicies(ctx, repo.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	set, err := policy.Compile(policies)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sts, err := classify(in.SQL)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	schema := in.Schema
	if schema == "" {
		schema = "public"
	}
	out := policyTestResult{Decision: "allow", Statements: []policyTestStatement{}}
	sub := policy.Subject{User: in.User, Groups: groups}
	for _, st := range sts {
		st = policy.Qualify(st, schema)
		d := set.Evaluate(sub, st, in.AllowUnsupportedQueries)
		ts := policyTestStatement{Statement: st.Text, Kind: st.Kind, Objects: st.ObjectNames(), Decision: "allow",
			Enforced: d.Enforced, Rule: d.Rule, Mode: d.Mode, Reason: d.Reason}
		if !d.Allowed {
			ts.Decision = "deny"
		}
		if d.Blocks() {
			out.Decision = "deny"
		}
		out.Statements = append(out.Statements, ts)
	}
	writeJSON(w, http.StatusOK, out)
}
