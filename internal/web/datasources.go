package web

import (
	"net/http"

	"github.com/gatehousedb/gatehouse"
)

type dataSourcesData struct {
	Repositories []gatehouse.Repository
}

func (c *Console) dataSources(w http.ResponseWriter, r *http.Request, s *session) {
	var repos []gatehouse.Repository
	if err := c.call(r, s, "GET", "/api/v1/repositories", nil, &repos); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Data Sources", "data-sources")
	pg.Form.Set("type", "repositories")
	pg.Data = dataSourcesData{Repositories: repos}
	c.render(w, r, http.StatusOK, "datasources", pg)
}

func (c *Console) addDataSource(w http.ResponseWriter, r *http.Request, s *session) {
	// An admin-only API call first, so that a data consumer gets the 403 page here too.
	if err := c.call(r, s, "GET", "/api/v1/repositories", nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Add Data Source", "data-sources")
	pg.Data = databaseTypeOptions
	c.render(w, r, http.StatusOK, "datasource_cards", pg)
}

type dataSourceFormData struct {
	Type        option
	DefaultPort int
	TLSModes    []option
}

var repositoryFields = []string{"name", "hostname", "port", "version", "database", "tls_mode", "ca_bundle"}

func (c *Console) dataSourceForm(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r, s, "GET", "/api/v1/repositories", nil, nil); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Add Data Source", "data-sources")
	pg.Form.Set("tls_mode", string(gatehouse.TLSPrefer))
	c.showDataSourceForm(w, r, pg, http.StatusOK)
}

func (c *Console) showDataSourceForm(w http.ResponseWriter, r *http.Request, pg *page, status int) {
	t := gatehouse.DatabaseType(r.PathValue("type"))
	d := dataSourceFormData{Type: option{Value: string(t), Label: typeLabel(t)}, DefaultPort: t.DefaultPort()}
	for _, m := range gatehouse.TLSModes {
		d.TLSModes = append(d.TLSModes, option{Value: string(m), Label: string(m)})
	}
	pg.Data = d
	c.render(w, r, status, "datasource_form", pg)
}

func (c *Console) createDataSource(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	in := map[string]any{"type": r.PathValue("type")}
	for _, k := range []string{"name", "hostname", "version", "database", "tls_mode", "ca_bundle"} {
		setIf(in, k, f.Get(k))
	}
	if v := f.Get("port"); v != "" {
		in["port"] = num(v)
	}
	var out gatehouse.Repository
	if err := c.call(r, s, "POST", "/api/v1/repositories", in, &out); err != nil {
		pg := c.newPage(w, r, s, "Add Data Source", "data-sources")
		pg.Form = f
		pg.setError(err, repositoryFields, map[string]string{"type": ""})
		c.showDataSourceForm(w, r, pg, errStatus(err))
		return
	}
	c.flash(w, r, "Repository "+out.Name+" registered.")
	http.Redirect(w, r, p("/repositories/%s", out.Name), http.StatusSeeOther)
}

// errStatus is the status a form page is sent with after err.
func errStatus(err error) int {
	if e, ok := err.(*apiError); ok {
		return e.Status
	}
	return http.StatusInternalServerError
}

type repositoryData struct {
	Repository gatehouse.Repository
	Users      []gatehouse.RepositoryUser
	Tab        string
}

func (c *Console) repositoryPage(w http.ResponseWriter, r *http.Request, s *session, tab string) {
	var d repositoryData
	d.Tab = tab
	name := r.PathValue("name")
	if err := c.call(r, s, "GET", p("/api/v1/repositories/%s", name), nil, &d.Repository); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	if tab == "users" {
		if err := c.call(r, s, "GET", p("/api/v1/repositories/%s/users", name), nil, &d.Users); err != nil {
			c.apiFailed(w, r, s, err)
			return
		}
	}
	pg := c.newPage(w, r, s, d.Repository.Name, "data-sources")
	pg.Data = d
	c.render(w, r, http.StatusOK, "repository", pg)
}

func (c *Console) repository(w http.ResponseWriter, r *http.Request, s *session) {
	c.repositoryPage(w, r, s, "details")
}

func (c *Console) repositoryUsers(w http.ResponseWriter, r *http.Request, s *session) {
	c.repositoryPage(w, r, s, "users")
}

func (c *Console) deleteRepository(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	err := c.call(r, s, "DELETE", p("/api/v1/repositories/%s", name), nil, nil)
	c.afterDelete(w, r, s, err, "Repository "+name+" deleted.", "/data-sources", p("/repositories/%s", name))
}

// ---- repository users

// secretFields are the form fields of each secret source, in the order they are shown; the form
// field names are the API's ("secret.arn"), so the API's errors land next to them.
var secretFields = map[gatehouse.SecretSource][]string{
	gatehouse.SourceAWSSecretsManager: {"secret.arn", "secret.json_path", "secret.version_stage"},
	gatehouse.SourceAzureKeyVault:     {"secret.secret_name", "secret.vault_uri", "secret.version"},
	gatehouse.SourceEnv:               {"secret.name"},
	gatehouse.SourceFile:              {"secret.path"},
	gatehouse.SourceAWSRDSIAM:         {"secret.region"},
	gatehouse.SourceAzureEntra:        {},
}

type repositoryUserFormData struct {
	Repository gatehouse.Repository
	Sources    []option
	Source     string // the chosen secret source: only its fields are shown
	// Username is the repository user being edited (only its secret source changes); "" on
	// Register Repository User.
	Username string
}

func (c *Console) repositoryUserForm(w http.ResponseWriter, r *http.Request, s *session) {
	pg := c.newPage(w, r, s, "Register Repository User", "data-sources")
	src := r.URL.Query().Get("secret.source")
	if _, ok := secretFields[gatehouse.SecretSource(src)]; !ok {
		src = string(gatehouse.SourceAWSSecretsManager)
	}
	pg.Form.Set("secret.source", src)
	pg.Form.Set("username", r.URL.Query().Get("username"))
	c.showRepositoryUserForm(w, r, s, pg, http.StatusOK)
}

func (c *Console) showRepositoryUserForm(w http.ResponseWriter, r *http.Request, s *session, pg *page, status int) {
	d := repositoryUserFormData{Sources: sourceOptions, Source: pg.Val("secret.source"), Username: r.PathValue("username")}
	if err := c.call(r, s, "GET", p("/api/v1/repositories/%s", r.PathValue("name")), nil, &d.Repository); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg.Data = d
	c.render(w, r, status, "repository_user_form", pg)
}

func (c *Console) createRepositoryUser(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	src := gatehouse.SecretSource(f.Get("secret.source"))
	secret := map[string]any{"source": string(src)}
	// Only the chosen source's fields are sent: the others were hidden, whatever they hold.
	for _, k := range secretFields[src] {
		setIf(secret, k[len("secret."):], f.Get(k))
	}
	in := map[string]any{"username": f.Get("username"), "secret": secret}
	name := r.PathValue("name")
	var out gatehouse.RepositoryUser
	if err := c.call(r, s, "POST", p("/api/v1/repositories/%s/users", name), in, &out); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Register Repository User", "data-sources")
		pg.Form = f
		fields := append([]string{"username", "secret.source"}, secretFields[src]...)
		pg.setError(err, fields, nil)
		c.showRepositoryUserForm(w, r, s, pg, errStatus(err))
		return
	}
	c.flash(w, r, "Repository user "+out.Username+" registered.")
	http.Redirect(w, r, p("/repositories/%s/users", name), http.StatusSeeOther)
}

func (c *Console) deleteRepositoryUser(w http.ResponseWriter, r *http.Request, s *session) {
	name, user := r.PathValue("name"), r.PathValue("username")
	err := c.call(r, s, "DELETE", p("/api/v1/repositories/%s/users/%s", name, user), nil, nil)
	back := p("/repositories/%s/users", name)
	c.afterDelete(w, r, s, err, "Repository user "+user+" deleted.", back, back)
}

// afterDelete answers a delete form: on success a flash and a redirect to done; a refusal the
// user can act on (409: dependents, listed by the API) as a flash on the page at back; a 403 as
// the 403 page.
func (c *Console) afterDelete(w http.ResponseWriter, r *http.Request, s *session, err error, ok, done, back string) {
	switch {
	case err == nil:
		c.flash(w, r, ok)
		http.Redirect(w, r, done, http.StatusSeeOther)
	case apiCode(err) == gatehouse.ECodeConflict || apiCode(err) == gatehouse.ECodeNotFound || apiCode(err) == gatehouse.ECodeInvalid:
		c.flash(w, r, "Not deleted: "+messageOf(err))
		http.Redirect(w, r, back, http.StatusSeeOther)
	default:
		c.apiFailed(w, r, s, err)
	}
}

// messageOf is the API's message of err, for a flash after a refused delete.
func messageOf(err error) string {
	if e, ok := err.(*apiError); ok {
		return e.Message
	}
	return "something went wrong on the server; its log has the details"
}
