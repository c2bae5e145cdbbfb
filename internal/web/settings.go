package web

import (
	"cmp"
	"net/http"
	"slices"

	"github.com/gatehousedb/gatehouse"
)

// Settings → General: the token maximum lifetime (a form), how single sign-on is configured
// (read-only: it is the server's --oidc-* flags) and the SCIM tokens (create, shown once; revoke).

type settingsBody struct {
	MaxTokenTTL string `json:"max_token_ttl,omitempty"`
}

var settingsFields = []string{"max_token_ttl"}

// ssoConfig is GET /api/v1/sso/config. The API never sends the client secret, only whether it is set.
type ssoConfig struct {
	Enabled           bool     `json:"enabled"`
	Issuer            string   `json:"issuer"`
	ClientID          string   `json:"client_id"`
	ClientSecretSet   bool     `json:"client_secret_set"`
	RedirectURL       string   `json:"redirect_url"`
	Scopes            []string `json:"scopes"`
	GroupsClaim       string   `json:"groups_claim"`
	UsernameClaim     string   `json:"username_claim"`
	AdminGroups       []string `json:"admin_groups"`
	ConsumerGroups    []string `json:"consumer_groups"`
	AllowedDomains    []string `json:"allowed_domains"`
	LocalLoginEnabled bool     `json:"local_login_enabled"`
}

type scimTokenRow struct {
	gatehouse.SCIMToken
	Status string // active or revoked
}

// createdSCIMToken is POST /api/v1/scim-tokens: the secret is in this answer only.
type createdSCIMToken struct {
	gatehouse.SCIMToken
	Token string `json:"token"`
}

type settingsData struct {
	SSO         *ssoConfig // nil: the control plane has no such endpoint
	SCIMBaseURL string
	SCIMTokens  []scimTokenRow
	SCIMMissing bool              // the control plane has no SCIM token endpoints
	NewSCIM     *createdSCIMToken // set once, on the answer to "Create SCIM token"
}

func (c *Console) settings(w http.ResponseWriter, r *http.Request, s *session) {
	var cur settingsBody
	if err := c.call(r, s, "GET", "/api/v1/settings", nil, &cur); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Settings", "settings")
	pg.Form.Set("max_token_ttl", cur.MaxTokenTTL)
	c.showSettings(w, r, s, pg, nil, http.StatusOK)
}

// showSettings loads the SSO and SCIM sections and renders the page with pg's form.
func (c *Console) showSettings(w http.ResponseWriter, r *http.Request, s *session, pg *page, created *createdSCIMToken, status int) {
	d := settingsData{SCIMBaseURL: c.baseURL(r) + "/scim/v2", NewSCIM: created}
	var sso ssoConfig
	switch err := c.call(r, s, "GET", "/api/v1/sso/config", nil, &sso); {
	case err == nil:
		d.SSO = &sso
	case !routeMissing(err):
		c.apiFailed(w, r, s, err)
		return
	}
	var tokens []gatehouse.SCIMToken
	switch err := c.call(r, s, "GET", "/api/v1/scim-tokens", nil, &tokens); {
	case routeMissing(err):
		d.SCIMMissing = true
	case err != nil:
		c.apiFailed(w, r, s, err)
		return
	}
	for _, t := range tokens {
		st := "active"
		if t.RevokedAt != nil {
			st = "revoked"
		}
		d.SCIMTokens = append(d.SCIMTokens, scimTokenRow{SCIMToken: t, Status: st})
	}
	// Active tokens first, newest first: the one to revoke after a rotation is easy to find.
	slices.SortStableFunc(d.SCIMTokens, func(a, b scimTokenRow) int {
		return cmp.Or(cmp.Compare(a.Status, b.Status), b.CreatedAt.Compare(a.CreatedAt))
	})
	pg.Data = d
	c.render(w, r, status, "settings", pg)
}

func (c *Console) saveSettings(w http.ResponseWriter, r *http.Request, s *session) {
	in := map[string]any{"max_token_ttl": r.PostForm.Get("max_token_ttl")}
	if err := c.call(r, s, "PUT", "/api/v1/settings", in, nil); err != nil {
		if apiCode(err) == gatehouse.ECodeForbidden {
			c.apiFailed(w, r, s, err)
			return
		}
		pg := c.newPage(w, r, s, "Settings", "settings")
		pg.Form = r.PostForm
		pg.setError(err, settingsFields, nil)
		c.showSettings(w, r, s, pg, nil, errStatus(err))
		return
	}
	c.flash(w, r, "Settings saved.")
	http.Redirect(w, r, "/settings", http.StatusSeeOther)
}

// createSCIMToken answers "Create SCIM token" with the settings page showing the new token once:
// no redirect, no cache, never stored by the console.
func (c *Console) createSCIMToken(w http.ResponseWriter, r *http.Request, s *session) {
	var out createdSCIMToken
	if err := c.call(r, s, "POST", "/api/v1/scim-tokens", nil, &out); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	var cur settingsBody
	if err := c.call(r, s, "GET", "/api/v1/settings", nil, &cur); err != nil {
		c.apiFailed(w, r, s, err)
		return
	}
	pg := c.newPage(w, r, s, "Settings", "settings")
	pg.Form.Set("max_token_ttl", cur.MaxTokenTTL)
	c.showSettings(w, r, s, pg, &out, http.StatusCreated)
}

func (c *Console) revokeSCIMToken(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	err := c.call(r, s, "DELETE", p("/api/v1/scim-tokens/%s", id), nil, nil)
	c.afterDelete(w, r, s, err, "SCIM token "+id+" revoked: the identity provider can no longer provision with it.", "/settings#scim-title", "/settings#scim-title")
}
