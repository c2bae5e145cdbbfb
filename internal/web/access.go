package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

// The Access management tab and the Activity page are built on routes another part of the API
// provides; when a control plane lacks them (routeMissing), the pages say the feature is not
// available instead of failing.

type accessData struct {
	Available    bool
	Policies     []gatehouse.AccessPolicy
	Repositories []option
	Test         *policyTestResult // the answer of "Test a statement"
}

type policyTestResult struct {
	Decision   string `json:"decision"`
	Statements []struct {
		Statement string   `json:"statement"`
		Kind      string   `json:"kind"`
		Objects   []string `json:"objects"`
		Decision  string   `json:"decision"`
		Enforced  bool     `json:"enforced"`
		Rule      string   `json:"rule"`
		Mode      string   `json:"mode"`
	} `json:"statements"`
}

var testFields = []string{"test.repository", "test.user", "test.groups", "test.sql"}

func (c *Console) accessPolicies(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Policy", "policies")
	c.showAccessPolicies(w, r, s, pg, nil, http.StatusOK)
}

func (c *Console) showAccessPolicies(w http.ResponseWriter, r *http.Request, s *session, pg *page, test *policyTestResult, status int) {
	// An admin-only call first: the API answers a route it lacks with 404 to anyone.
	var repos []gatehouse.Repository
	if err := c.call(r, s, "GET", "/api/v1/repositories", nil, &repos); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	d := accessData{Available: true, Test: test}
	for _, rp := range repos {
		d.Repositories = append(d.Repositories, option{Value: rp.Name, Label: rp.Name})
	}
	err := c.call(r, s, "GET", "/api/v1/access-policies", nil, &d.Policies)
	switch {
	case routeMissing(err):
		d.Available = false
	case err != nil:
		c.apiFailed(w, r, s, err)
		return
	}
	pg.Data = d
	c.render(w, r, status, "access_policies", pg)
}

// testStatement is "Test a statement": the decision the repository's access policies make.
func (c *Console) testStatement(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	in := map[string]any{"repository": f.Get("test.repository"), "user": f.Get("test.user"), "sql": f.Get("test.sql")}
	if g := list(f.Get("test.groups")); len(g) > 0 {
		in["groups"] = g
	}
	pg := c.newPage(w, r, s, "Policy", "policies")
	pg.Form = f
	var out policyTestResult
	if err := c.call(r, s, "POST", "/api/v1/access-policies/test", in, &out); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg.setError(err, testFields, map[string]string{"repository": "test.repository", "user": "test.user", "groups": "test.groups", "sql": "test.sql"})
		c.showAccessPolicies(w, r, s, pg, nil, errStatus(err))
		return
	}
	c.showAccessPolicies(w, r, s, pg, &out, http.StatusOK)
}

// accessRows is how many rule rows the access policy form offers.
const accessRows = 3

type accessFormData struct {
	Repositories []option
	Modes        []option
	Effects      []option
	Rows         []int
	Operations   string
	// Edit is the policy being edited (its name and data source stay); nil on Create Policy.
	Edit *gatehouse.AccessPolicy
}

// accessFields are the form fields of an access policy form with rows rule rows.
func accessFields(rows int) []string {
	f := []string{"name", "repository", "mode"}
	for i := range rows {
		row := "rules[" + strconv.Itoa(i) + "]"
		f = append(f, row+".effect", row+".users", row+".groups", row+".objects", row+".operations")
	}
	return f
}

func (c *Console) accessPolicyForm(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Create Access Management Policy", "policies")
	pg.Form.Set("mode", gatehouse.AccessEnforce)
	pg.Form.Set("rules[0].objects", "*")
	c.showAccessPolicyForm(w, r, s, pg, http.StatusOK)
}

func (c *Console) showAccessPolicyForm(w http.ResponseWriter, r *http.Request, s *session, pg *page, status int) {
	c.renderAccessPolicyForm(w, r, s, pg, nil, accessRows, status)
}

// renderAccessPolicyForm renders the access policy form with rows rule rows, for edit (the policy
// being edited) or for Create Policy (edit nil).
func (c *Console) renderAccessPolicyForm(w http.ResponseWriter, r *http.Request, s *session, pg *page, edit *gatehouse.AccessPolicy, rows, status int) {
	var repos []gatehouse.Repository
	if err := c.call(r, s, "GET", "/api/v1/repositories", nil, &repos); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	if err := c.call(r, s, "GET", "/api/v1/access-policies", nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	d := accessFormData{
		Modes:      []option{{Value: gatehouse.AccessEnforce, Label: "Enforce: refuse denied statements"}, {Value: gatehouse.AccessMonitor, Label: "Monitor: record decisions only"}},
		Effects:    []option{{Value: gatehouse.EffectAllow, Label: "Allow"}, {Value: gatehouse.EffectDeny, Label: "Deny"}},
		Operations: strings.Join(gatehouse.AccessOperations, ", "),
	}
	for _, rp := range repos {
		d.Repositories = append(d.Repositories, option{Value: rp.Name, Label: rp.Name + " — " + typeLabel(rp.Type)})
	}
	for i := range rows {
		d.Rows = append(d.Rows, i)
	}
	d.Edit = edit
	pg.Data = d
	c.render(w, r, status, "access_policy_form", pg)
}

func (c *Console) createAccessPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	in := map[string]any{"name": strings.TrimSpace(f.Get("name")), "repository": f.Get("repository"), "mode": f.Get("mode")}
	rules, rename := accessRules(f, accessRows)
	in["rules"] = rules
	if err := c.call(r, s, "POST", "/api/v1/access-policies", in, nil); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Create Access Management Policy", "policies")
		pg.Form = f
		pg.setError(err, accessFields(accessRows), rename)
		c.showAccessPolicyForm(w, r, s, pg, errStatus(err))
		return
	}
	c.flash(w, r, "Access management policy "+f.Get("name")+" saved.")
	http.Redirect(w, r, "/policies/access", http.StatusSeeOther)
}

// accessRules turns the form's rule rows into the API's rules, skipping untouched rows, and
// returns how the API's rule fields map back to the rows' fields.
func accessRules(f url.Values, rows int) ([]map[string]any, map[string]string) {
	rules := []map[string]any{}
	rename := map[string]string{"rules": "rules[0].objects"}
	for i := range rows {
		row := "rules[" + strconv.Itoa(i) + "]"
		users, groups, objects, ops := list(f.Get(row+".users")), list(f.Get(row+".groups")), list(f.Get(row+".objects")), list(f.Get(row+".operations"))
		if len(users)+len(groups)+len(ops) == 0 && (len(objects) == 0 || i > 0 && len(objects) == 1 && objects[0] == "*") {
			continue // an untouched row
		}
		rule := map[string]any{"effect": f.Get(row + ".effect"), "objects": objects, "operations": ops}
		if len(users) > 0 {
			rule["users"] = users
		}
		if len(groups) > 0 {
			rule["groups"] = groups
		}
		api := "rules[" + strconv.Itoa(len(rules)) + "]"
		for _, k := range []string{"effect", "users", "groups", "objects", "operations"} {
			rename[api+"."+k] = row + "." + k
		}
		rename[api] = row + ".objects"
		rules = append(rules, rule)
	}
	return rules, rename
}

func (c *Console) deleteAccessPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	err := c.call(r, s, "DELETE", p("/api/v1/access-policies/%s", name), nil, nil)
	c.afterDelete(w, r, s, err, "Access management policy "+name+" deleted.", "/policies/access", "/policies/access")
}
