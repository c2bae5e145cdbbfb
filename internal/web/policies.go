package web

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

type policiesData struct {
	Tab      string
	Policies []gatehouse.ImpersonationPolicy
}

func (c *Console) policies(w http.ResponseWriter, r *http.Request, s *session) {
	d := policiesData{Tab: "impersonation"}
	if err := c.call(r, s, "GET", "/api/v1/impersonation-policies", nil, &d.Policies); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Policy", "policies")
	pg.Data = d
	c.render(w, r, http.StatusOK, "policies", pg)
}

func (c *Console) createPolicyCards(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r, s, "GET", "/api/v1/impersonation-policies", nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Create Policy", "policies")
	c.render(w, r, http.StatusOK, "policy_cards", pg)
}

func (c *Console) impersonationCards(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r, s, "GET", "/api/v1/impersonation-policies", nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Create Impersonation Policy", "policies")
	pg.Data = databaseTypeOptions
	c.render(w, r, http.StatusOK, "policy_db_cards", pg)
}

// policyRows is how many rule rows (IdP user or group → repository user) the form offers.
const policyRows = 5

type policyFormData struct {
	Type            option
	Repositories    []option
	Step            int
	RepositoryUsers []option
	Rows            []int
}

var policyStep1Fields = []string{"display_name", "name", "repository"}

func (c *Console) impersonationStep1(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Create Impersonation Policy", "policies")
	pg.Form = r.URL.Query()
	c.showPolicyForm(w, r, s, pg, 1, http.StatusOK)
}

// impersonationStep2 is the rule statement, after "Next". A data source that does not exist
// comes back to step 1 with the API's message.
func (c *Console) impersonationStep2(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Create Impersonation Policy", "policies")
	pg.Form = r.URL.Query()
	repo := pg.Val("repository")
	if repo == "" {
		pg.Errs = map[string]string{"repository": "is required"}
		c.showPolicyForm(w, r, s, pg, 1, http.StatusBadRequest)
		return
	}
	pg.Form.Set("rules[0].kind", "user")
	c.showPolicyForm(w, r, s, pg, 2, http.StatusOK)
}

func (c *Console) showPolicyForm(w http.ResponseWriter, r *http.Request, s *session, pg *page, step, status int) {
	t := gatehouse.DatabaseType(r.PathValue("type"))
	d := policyFormData{Type: option{Value: string(t), Label: typeLabel(t)}, Step: step}
	var repos []gatehouse.Repository
	if err := c.call(r, s, "GET", "/api/v1/repositories", nil, &repos); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	for _, rp := range repos {
		if rp.Type == t {
			d.Repositories = append(d.Repositories, option{Value: rp.Name, Label: rp.Name})
		}
	}
	if step == 2 {
		var users []gatehouse.RepositoryUser
		if err := c.call(r, s, "GET", p("/api/v1/repositories/%s/users", pg.Val("repository")), nil, &users); err != nil {
			if apiCode(err) != gatehouse.ECodeNotFound {
				c.apiFailed(w, r, s, err)
				return
			}
			pg.setError(&apiError{Code: gatehouse.ECodeInvalid, Field: "repository", Message: messageOf(err)}, policyStep1Fields, nil)
			d.Step, status = 1, http.StatusBadRequest
		}
		for _, u := range users {
			d.RepositoryUsers = append(d.RepositoryUsers, option{Value: u.Username, Label: u.Username})
		}
		for i := range policyRows {
			d.Rows = append(d.Rows, i)
		}
	}
	pg.Data = d
	c.render(w, r, status, "policy_form", pg)
}

var slugBad = regexp.MustCompile(`[^a-z0-9_-]+`)

// slug derives a policy name from its display name when the admin leaves the name empty.
func slug(s string) string {
	return strings.Trim(slugBad.ReplaceAllString(strings.ToLower(strings.TrimSpace(s)), "-"), "-_")
}

func (c *Console) createImpersonationPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	name := strings.TrimSpace(f.Get("name"))
	if name == "" {
		name = slug(f.Get("display_name"))
	}
	in := map[string]any{"name": name, "repository": f.Get("repository")}
	setIf(in, "display_name", f.Get("display_name"))
	// Each filled row is one rule; apiRow maps the rule's index back to its row for errors.
	rules := []map[string]any{}
	rename := map[string]string{"rules": "rules[0].name"}
	for i := range policyRows {
		row := "rules[" + strconv.Itoa(i) + "]"
		who, ru := strings.TrimSpace(f.Get(row+".name")), f.Get(row+".repository_user")
		if who == "" && ru == "" {
			continue
		}
		rule := map[string]any{"repository_users": []string{ru}}
		if ru == "" {
			rule["repository_users"] = []string{}
		}
		kind := "users"
		if f.Get(row+".kind") == "group" {
			kind = "groups"
		}
		if who != "" {
			rule[kind] = []string{who}
		}
		api := "rules[" + strconv.Itoa(len(rules)) + "]"
		rename[api] = row + ".name"
		rename[api+".users"] = row + ".name"
		rename[api+".groups"] = row + ".name"
		rename[api+".repository_users"] = row + ".repository_user"
		rules = append(rules, rule)
	}
	in["rules"] = rules
	fields := append([]string{}, policyStep1Fields...)
	for i := range policyRows {
		fields = append(fields, "rules["+strconv.Itoa(i)+"].name", "rules["+strconv.Itoa(i)+"].repository_user")
	}
	var out gatehouse.ImpersonationPolicy
	if err := c.call(r, s, "POST", "/api/v1/impersonation-policies", in, &out); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Create Impersonation Policy", "policies")
		pg.Form = f
		if name != f.Get("name") && (errField(err) == "name") {
			// The name came from the display name: say so next to the field the admin typed.
			rename["name"] = "display_name"
		}
		pg.setError(err, fields, rename)
		c.showPolicyForm(w, r, s, pg, 2, errStatus(err))
		return
	}
	c.flash(w, r, "Impersonation policy "+displayOr(out.DisplayName, out.Name)+" saved.")
	http.Redirect(w, r, "/policies", http.StatusSeeOther)
}

func errField(err error) string {
	if e, ok := err.(*apiError); ok {
		return e.Field
	}
	return ""
}

func displayOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (c *Console) deleteImpersonationPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	err := c.call(r, s, "DELETE", p("/api/v1/impersonation-policies/%s", name), nil, nil)
	c.afterDelete(w, r, s, err, "Impersonation policy "+name+" deleted.", "/policies", "/policies")
}
