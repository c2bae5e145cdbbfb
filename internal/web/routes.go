package web

import (
	"io/fs"
	"net/http"
	"strconv"
	"strings"
)

// handler is a console handler for a signed-in browser.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// page serves a GET for a signed-in user.
func (c *Console) page(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := c.signedIn(w, r); s != nil {
			h(w, r, s)
		}
	})
}

// post serves a form post for a signed-in user whose CSRF token checks out.
func (c *Console) post(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := c.signedIn(w, r); s != nil && c.form(w, r, s) {
			h(w, r, s)
		}
	})
}

// routes lists the console's pages. docs/console.md describes them.
func (c *Console) routes() {
	m := c.mux
	static, _ := fs.Sub(staticFS, "static") // the directory is embedded; Sub cannot fail
	m.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FileServerFS(static))))

	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.Handle("POST /logout", c.post(c.logout))
	m.Handle("GET /{$}", c.page(c.home))

	// Data Configuration → Data Sources
	m.Handle("GET /data-sources", c.page(c.dataSources))
	m.Handle("GET /data-sources/new", c.page(c.addDataSource))
	m.Handle("GET /data-sources/new/{type}", c.page(c.dataSourceForm))
	m.Handle("POST /data-sources/new/{type}", c.post(c.createDataSource))
	m.Handle("GET /repositories/{name}", c.page(c.repository))
	m.Handle("POST /repositories/{name}/delete", c.post(c.deleteRepository))
	m.Handle("GET /repositories/{name}/edit", c.page(c.editRepository))
	m.Handle("POST /repositories/{name}/edit", c.post(c.updateRepository))
	m.Handle("GET /repositories/{name}/users", c.page(c.repositoryUsers))
	m.Handle("GET /repositories/{name}/users/new", c.page(c.repositoryUserForm))
	m.Handle("POST /repositories/{name}/users/new", c.post(c.createRepositoryUser))
	m.Handle("POST /repositories/{name}/users/{username}/delete", c.post(c.deleteRepositoryUser))
	m.Handle("GET /repositories/{name}/users/{username}/edit", c.page(c.editRepositoryUser))
	m.Handle("POST /repositories/{name}/users/{username}/edit", c.post(c.updateRepositoryUser))

	// Settings → Sidecars
	m.Handle("GET /sidecars", c.page(c.sidecars))
	m.Handle("GET /sidecars/new", c.page(c.sidecarForm))
	m.Handle("POST /sidecars/new", c.post(c.createSidecar))
	m.Handle("GET /sidecars/{id}", c.page(c.sidecarInstances))
	m.Handle("GET /sidecars/{id}/instances.json", c.page(c.sidecarInstancesJSON))
	m.Handle("POST /sidecars/{id}/delete", c.post(c.deleteSidecar))
	m.Handle("GET /sidecars/{id}/edit", c.page(c.editSidecar))
	m.Handle("POST /sidecars/{id}/edit", c.post(c.updateSidecar))
	m.Handle("GET /sidecars/{id}/ports", c.page(c.sidecarPorts))
	m.Handle("GET /sidecars/{id}/ports/new", c.page(c.portForm))
	m.Handle("POST /sidecars/{id}/ports/new", c.post(c.createPort))
	m.Handle("POST /sidecars/{id}/ports/{port}/delete", c.post(c.deletePort))
	m.Handle("GET /sidecars/{id}/bindings", c.page(c.sidecarBindings))
	m.Handle("GET /sidecars/{id}/bindings/new", c.page(c.bindingForm))
	m.Handle("POST /sidecars/{id}/bindings/new", c.post(c.createBinding))
	m.Handle("POST /sidecars/{id}/bindings/{port}/{repository}/delete", c.post(c.deleteBinding))

	// Policy
	m.Handle("GET /policies", c.page(c.policies))
	m.Handle("GET /policies/access", c.page(c.accessPolicies))
	m.Handle("GET /policies/new", c.page(c.createPolicyCards))
	m.Handle("GET /policies/new/impersonation", c.page(c.impersonationCards))
	m.Handle("GET /policies/new/impersonation/{type}", c.page(c.impersonationStep1))
	m.Handle("GET /policies/new/impersonation/{type}/rules", c.page(c.impersonationStep2))
	m.Handle("POST /policies/new/impersonation/{type}/rules", c.post(c.createImpersonationPolicy))
	m.Handle("POST /policies/impersonation/{name}/delete", c.post(c.deleteImpersonationPolicy))
	m.Handle("GET /policies/impersonation/{name}/edit", c.page(c.editImpersonationPolicy))
	m.Handle("POST /policies/impersonation/{name}/edit", c.post(c.updateImpersonationPolicy))
	m.Handle("POST /policies/access/test", c.post(c.testStatement))
	m.Handle("GET /policies/new/access", c.page(c.accessPolicyForm))
	m.Handle("POST /policies/new/access", c.post(c.createAccessPolicy))
	m.Handle("POST /policies/access/{name}/delete", c.post(c.deleteAccessPolicy))
	m.Handle("GET /policies/access/{name}/edit", c.page(c.editAccessPolicy))
	m.Handle("POST /policies/access/{name}/edit", c.post(c.updateAccessPolicy))

	// Users & Groups, Activity, Settings
	m.Handle("GET /users", c.page(c.users))
	m.Handle("POST /users", c.post(c.createUser))
	m.Handle("POST /users/{name}/delete", c.post(c.deleteUser))
	m.Handle("GET /groups", c.page(c.groups))
	m.Handle("POST /groups", c.post(c.createGroup))
	m.Handle("POST /groups/{name}/delete", c.post(c.deleteGroup))
	m.Handle("GET /activity", c.page(c.activity))
	m.Handle("GET /activity/export", c.page(c.exportActivity))
	m.Handle("GET /settings", c.page(c.settings))
	m.Handle("POST /settings", c.post(c.saveSettings))
	m.Handle("POST /settings/scim-tokens", c.post(c.createSCIMToken))
	m.Handle("POST /settings/scim-tokens/{id}/revoke", c.post(c.revokeSCIMToken))

	// Data consumers (and admins for themselves)
	m.Handle("GET /tokens", c.page(c.tokens))
	m.Handle("GET /tokens/new", c.page(c.tokenForm))
	m.Handle("POST /tokens/new", c.post(c.createToken))
	m.Handle("POST /tokens/{id}/revoke", c.post(c.revokeToken))
	m.Handle("GET /connections", c.page(c.connections))

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "Not found", "There is no console page at "+r.URL.Path+".")
	})
}

// staticHandler lets browsers cache assets briefly; they change only with the binary.
func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// num sends a form value the way the user typed it: an integer as a JSON number, anything else as
// a string, so that the API's own type error ("must be an integer") reaches the form.
func num(v string) any {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil {
		return n
	}
	return v
}

// setIf sets m[k] = v when v is not empty.
func setIf(m map[string]any, k, v string) {
	if v = strings.TrimSpace(v); v != "" {
		m[k] = v
	}
}

// list splits a comma- or newline-separated form value.
func list(v string) []string {
	out := []string{}
	for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
