package web

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

// Edit pages. Each is a form prefilled from the API's GET and sent back as one PUT or PATCH, so
// the API checks the whole change at once: a refused change shows the API's message next to its
// field, keeps what the admin typed, and changes nothing. Keys (names, IDs, a policy's data
// source) are not editable: they are what other objects refer to.

// editRefused answers a refused edit that is not about the form (403, 404) with the error page;
// it reports whether it did.
func (c *Console) editRefused(w http.ResponseWriter, r *http.Request, s *session, err error) bool {
	switch apiCode(err) {
	case gatehouse.ECodeForbidden, gatehouse.ECodeNotFound, gatehouse.ECodeUnauthenticated:
		c.apiFailed(w, r, s, err)
		return true
	}
	if _, ok := err.(*apiError); !ok {
		c.serverError(w, r, s, err)
		return true
	}
	return false
}

// maxRows bounds the rule rows a posted form may claim to have.
const maxRows = 50

// formRows is the number of rule rows a posted form had (its hidden "rows" field), at least least.
func formRows(f url.Values, least int) int {
	n, err := strconv.Atoi(f.Get("rows"))
	if err != nil {
		return least
	}
	return min(max(n, least), maxRows)
}

// ---- repositories

var repositoryEditFields = []string{"hostname", "port", "version", "database", "tls_mode", "ca_bundle", "record_parameters"}

type repositoryEditData struct {
	Repository  gatehouse.Repository
	DefaultPort int
	TLSModes    []option
}

func (c *Console) editRepository(w http.ResponseWriter, r *http.Request, s *session) {
	var rp gatehouse.Repository
	if err := c.call(r, s, "GET", p("/api/v1/repositories/%s", r.PathValue("name")), nil, &rp); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit "+rp.Name, "data-sources")
	pg.Form = url.Values{
		"hostname": {rp.Hostname}, "port": {strconv.Itoa(rp.Port)}, "version": {rp.Version}, "database": {rp.Database},
		"tls_mode": {string(rp.TLSMode)}, "ca_bundle": {rp.CABundle},
	}
	if rp.RecordParameters {
		pg.Form.Set("record_parameters", "on")
	}
	c.renderRepositoryEdit(w, r, pg, &rp, http.StatusOK)
}

func (c *Console) renderRepositoryEdit(w http.ResponseWriter, r *http.Request, pg *page, rp *gatehouse.Repository, status int) {
	d := repositoryEditData{Repository: *rp, DefaultPort: rp.Type.DefaultPort()}
	for _, m := range gatehouse.TLSModes {
		d.TLSModes = append(d.TLSModes, option{Value: string(m), Label: string(m)})
	}
	pg.Data = d
	c.render(w, r, status, "repository_edit", pg)
}

func (c *Console) updateRepository(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	name := r.PathValue("name")
	in := map[string]any{
		"hostname": strings.TrimSpace(f.Get("hostname")), "version": strings.TrimSpace(f.Get("version")),
		"database": strings.TrimSpace(f.Get("database")), "tls_mode": f.Get("tls_mode"),
		"ca_bundle": strings.TrimSpace(f.Get("ca_bundle")), "record_parameters": f.Get("record_parameters") == "on",
		"port": 0, // empty: the database type's usual port, as on Add Data Source
	}
	if v := strings.TrimSpace(f.Get("port")); v != "" {
		in["port"] = num(v)
	}
	var out gatehouse.Repository
	err := c.call(r, s, "PATCH", p("/api/v1/repositories/%s", name), in, &out)
	if err == nil {
		c.flash(w, r, "Repository "+out.Name+" saved.")
		http.Redirect(w, r, p("/repositories/%s", out.Name), http.StatusSeeOther)
		return
	}
	if c.editRefused(w, r, s, err) {
		return
	}
	var rp gatehouse.Repository
	if err := c.call(r, s, "GET", p("/api/v1/repositories/%s", name), nil, &rp); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit "+rp.Name, "data-sources")
	pg.Form = f
	pg.setError(err, repositoryEditFields, nil)
	c.renderRepositoryEdit(w, r, pg, &rp, errStatus(err))
}

// ---- repository users: change where the password comes from

// secretValues are the form values of ref's fields (named as in secretFields).
func secretValues(ref gatehouse.SecretRef) url.Values {
	v := url.Values{"secret.source": {string(ref.Source)}}
	for k, val := range map[string]string{
		"secret.arn": ref.ARN, "secret.json_path": ref.JSONPath, "secret.version_stage": ref.VersionStage,
		"secret.secret_name": ref.SecretName, "secret.vault_uri": ref.VaultURI, "secret.version": ref.Version,
		"secret.name": ref.Name, "secret.path": ref.Path, "secret.region": ref.Region,
	} {
		if val != "" {
			v.Set(k, val)
		}
	}
	return v
}

func (c *Console) editRepositoryUser(w http.ResponseWriter, r *http.Request, s *session) {
	name, username := r.PathValue("name"), r.PathValue("username")
	var ru gatehouse.RepositoryUser
	if err := c.call(r, s, "GET", p("/api/v1/repositories/%s/users/%s", name, username), nil, &ru); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit Repository User", "data-sources")
	pg.Form = secretValues(ru.Secret)
	// Without JavaScript, "Show the fields of this source" comes back here with the chosen source.
	if q := r.URL.Query(); q.Get("secret.source") != "" {
		if _, ok := secretFields[gatehouse.SecretSource(q.Get("secret.source"))]; ok {
			pg.Form = q
		}
	}
	pg.Form.Set("username", ru.Username)
	c.showRepositoryUserForm(w, r, s, pg, http.StatusOK)
}

func (c *Console) updateRepositoryUser(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	name, username := r.PathValue("name"), r.PathValue("username")
	src := gatehouse.SecretSource(f.Get("secret.source"))
	secret := map[string]any{"source": string(src)}
	for _, k := range secretFields[src] {
		setIf(secret, k[len("secret."):], f.Get(k))
	}
	var out gatehouse.RepositoryUser
	err := c.call(r, s, "PUT", p("/api/v1/repositories/%s/users/%s", name, username), map[string]any{"secret": secret}, &out)
	if err == nil {
		c.flash(w, r, "Repository user "+out.Username+" saved: the sidecar fetches its password from "+out.Secret.String()+" from now on.")
		http.Redirect(w, r, p("/repositories/%s/users", name), http.StatusSeeOther)
		return
	}
	if c.editRefused(w, r, s, err) {
		return
	}
	pg := c.newPage(w, r, s, "Edit Repository User", "data-sources")
	pg.Form = f
	pg.Form.Set("username", username)
	pg.setError(err, append([]string{"secret.source"}, secretFields[src]...), nil)
	c.showRepositoryUserForm(w, r, s, pg, errStatus(err))
}

// ---- sidecars

var sidecarEditFields = []string{"display_name", "hostname", "public_key", "second_public_key", "allow_unsupported_queries"}

type sidecarEditData struct {
	Sidecar sidecar
	// Confirm asks the admin to confirm turning "Allow unsupported queries" on (the step the
	// JavaScript modal does in place, for browsers without it).
	Confirm bool
}

func (c *Console) editSidecar(w http.ResponseWriter, r *http.Request, s *session) {
	var sc sidecar
	if err := c.call(r, s, "GET", p("/api/v1/sidecars/%s", r.PathValue("id")), nil, &sc); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit "+sc.DisplayName, "sidecars")
	pg.Form = url.Values{"display_name": {sc.DisplayName}, "hostname": {sc.Hostname}, "public_key": {sc.PublicKey}, "second_public_key": {sc.SecondPublicKey}}
	if sc.AllowUnsupportedQueries {
		pg.Form.Set("allow_unsupported_queries", "on")
	}
	pg.Data = sidecarEditData{Sidecar: sc}
	c.render(w, r, http.StatusOK, "sidecar_edit", pg)
}

func (c *Console) updateSidecar(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	id := r.PathValue("id")
	var cur sidecar
	if err := c.call(r, s, "GET", p("/api/v1/sidecars/%s", id), nil, &cur); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	for field, file := range map[string]string{"public_key": "public_key_file", "second_public_key": "second_public_key_file"} {
		if k, ok := uploaded(r, file); ok {
			f.Set(field, k)
		}
	}
	allow := f.Get("allow_unsupported_queries") == "on"
	pg := c.newPage(w, r, s, "Edit "+cur.DisplayName, "sidecars")
	pg.Form = f
	if allow && !cur.AllowUnsupportedQueries && !slices.Contains(f["confirm_unsupported"], "yes") {
		pg.Data = sidecarEditData{Sidecar: cur, Confirm: true}
		c.render(w, r, http.StatusOK, "sidecar_edit", pg)
		return
	}
	in := map[string]any{
		"display_name": strings.TrimSpace(f.Get("display_name")), "hostname": strings.TrimSpace(f.Get("hostname")),
		"public_key": strings.TrimSpace(f.Get("public_key")), "second_public_key": strings.TrimSpace(f.Get("second_public_key")),
		"allow_unsupported_queries": allow,
	}
	var out sidecar
	err := c.call(r, s, "PATCH", p("/api/v1/sidecars/%s", id), in, &out)
	if err == nil {
		c.flash(w, r, "Sidecar "+out.DisplayName+" saved. Its instances pick up the change at their next sync.")
		http.Redirect(w, r, p("/sidecars/%s", id), http.StatusSeeOther)
		return
	}
	if c.editRefused(w, r, s, err) {
		return
	}
	pg.setError(err, sidecarEditFields, nil)
	pg.Data = sidecarEditData{Sidecar: cur}
	c.render(w, r, errStatus(err), "sidecar_edit", pg)
}

// uploaded returns the text of the form's file field name, when a non-empty file was chosen.
func uploaded(r *http.Request, name string) (string, bool) {
	file, _, err := r.FormFile(name)
	if err != nil {
		return "", false
	}
	defer file.Close()
	b, err := io.ReadAll(io.LimitReader(file, 64<<10))
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

// ---- impersonation policies

type policyEditData struct {
	Policy          gatehouse.ImpersonationPolicy
	RepositoryUsers []option
	Rows            []int
}

func policyEditFields(rows int) []string {
	f := []string{"display_name"}
	for i := range rows {
		row := "rules[" + strconv.Itoa(i) + "]"
		f = append(f, row+".users", row+".groups", row+".repository_users")
	}
	return f
}

func (c *Console) editImpersonationPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	var pol gatehouse.ImpersonationPolicy
	if err := c.call(r, s, "GET", p("/api/v1/impersonation-policies/%s", r.PathValue("name")), nil, &pol); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit "+displayOr(pol.DisplayName, pol.Name), "policies")
	pg.Form = url.Values{"display_name": {pol.DisplayName}}
	for i, rule := range pol.Rules {
		row := "rules[" + strconv.Itoa(i) + "]"
		pg.Form.Set(row+".users", strings.Join(rule.Users, ", "))
		pg.Form.Set(row+".groups", strings.Join(rule.Groups, ", "))
		pg.Form[row+".repository_users"] = rule.RepositoryUsers
	}
	c.renderPolicyEdit(w, r, s, pg, &pol, len(pol.Rules)+2, http.StatusOK)
}

func (c *Console) renderPolicyEdit(w http.ResponseWriter, r *http.Request, s *session, pg *page, pol *gatehouse.ImpersonationPolicy, rows, status int) {
	d := policyEditData{Policy: *pol}
	var users []gatehouse.RepositoryUser
	if err := c.call(r, s, "GET", p("/api/v1/repositories/%s/users", pol.Repository), nil, &users); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	for _, u := range users {
		d.RepositoryUsers = append(d.RepositoryUsers, option{Value: u.Username, Label: u.Username})
	}
	for i := range rows {
		d.Rows = append(d.Rows, i)
	}
	pg.Data = d
	c.render(w, r, status, "policy_edit", pg)
}

func (c *Console) updateImpersonationPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	name := r.PathValue("name")
	rows := formRows(f, 1)
	rules := []map[string]any{}
	rename := map[string]string{"rules": "rules[0].users"}
	for i := range rows {
		row := "rules[" + strconv.Itoa(i) + "]"
		users, groups, rus := list(f.Get(row+".users")), list(f.Get(row+".groups")), f[row+".repository_users"]
		if len(users)+len(groups)+len(rus) == 0 {
			continue // an empty row: no rule (emptying a row removes its rule)
		}
		rule := map[string]any{"repository_users": nonNilStrings(rus)}
		if len(users) > 0 {
			rule["users"] = users
		}
		if len(groups) > 0 {
			rule["groups"] = groups
		}
		api := "rules[" + strconv.Itoa(len(rules)) + "]"
		rename[api] = row + ".users"
		for _, k := range []string{"users", "groups", "repository_users"} {
			rename[api+"."+k] = row + "." + k
		}
		rules = append(rules, rule)
	}
	in := map[string]any{"display_name": strings.TrimSpace(f.Get("display_name")), "rules": rules}
	var out gatehouse.ImpersonationPolicy
	err := c.call(r, s, "PATCH", p("/api/v1/impersonation-policies/%s", name), in, &out)
	if err == nil {
		c.flash(w, r, "Impersonation policy "+displayOr(out.DisplayName, out.Name)+" saved.")
		http.Redirect(w, r, "/policies", http.StatusSeeOther)
		return
	}
	if c.editRefused(w, r, s, err) {
		return
	}
	var pol gatehouse.ImpersonationPolicy
	if err := c.call(r, s, "GET", p("/api/v1/impersonation-policies/%s", name), nil, &pol); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit "+displayOr(pol.DisplayName, pol.Name), "policies")
	pg.Form = f
	pg.setError(err, policyEditFields(rows), rename)
	c.renderPolicyEdit(w, r, s, pg, &pol, rows, errStatus(err))
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ---- access management policies

func (c *Console) editAccessPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	var pol gatehouse.AccessPolicy
	if err := c.call(r, s, "GET", p("/api/v1/access-policies/%s", r.PathValue("name")), nil, &pol); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit "+pol.Name, "policies")
	pg.Form = url.Values{"mode": {pol.Mode}}
	for i, rule := range pol.Rules {
		row := "rules[" + strconv.Itoa(i) + "]"
		pg.Form.Set(row+".effect", rule.Effect)
		pg.Form.Set(row+".operations", strings.Join(rule.Operations, ", "))
		pg.Form.Set(row+".objects", strings.Join(rule.Objects, ", "))
		pg.Form.Set(row+".users", strings.Join(rule.Users, ", "))
		pg.Form.Set(row+".groups", strings.Join(rule.Groups, ", "))
	}
	c.renderAccessPolicyForm(w, r, s, pg, &pol, max(len(pol.Rules)+1, accessRows), http.StatusOK)
}

func (c *Console) updateAccessPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	name := r.PathValue("name")
	rows := formRows(f, 1)
	rules, rename := accessRules(f, rows)
	in := map[string]any{"mode": f.Get("mode"), "rules": rules}
	err := c.call(r, s, "PATCH", p("/api/v1/access-policies/%s", name), in, nil)
	if err == nil {
		c.flash(w, r, "Access management policy "+name+" saved.")
		http.Redirect(w, r, "/policies/access", http.StatusSeeOther)
		return
	}
	if c.editRefused(w, r, s, err) {
		return
	}
	var pol gatehouse.AccessPolicy
	if err := c.call(r, s, "GET", p("/api/v1/access-policies/%s", name), nil, &pol); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Edit "+pol.Name, "policies")
	pg.Form = f
	pg.setError(err, accessFields(rows), rename)
	c.renderAccessPolicyForm(w, r, s, pg, &pol, rows, errStatus(err))
}
