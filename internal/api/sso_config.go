package api

import (
	"net/http"
	"slices"

	"github.com/gatehousedb/gatehouse/internal/auth"
)

// ssoConfig is how single sign-on is configured: the server's --oidc-* flags, read-only. It never
// carries the client secret, only whether one is set.
type ssoConfig struct {
	Enabled           bool     `json:"enabled"` // --oidc-issuer is set
	Issuer            string   `json:"issuer,omitempty"`
	ClientID          string   `json:"client_id,omitempty"`
	ClientSecretSet   bool     `json:"client_secret_set"`
	RedirectURL       string   `json:"redirect_url,omitempty"` // register this at the IdP
	Scopes            []string `json:"scopes,omitempty"`
	GroupsClaim       string   `json:"groups_claim,omitempty"`
	UsernameClaim     string   `json:"username_claim,omitempty"`
	AdminGroups       []string `json:"admin_groups"`
	ConsumerGroups    []string `json:"consumer_groups"`
	AllowedDomains    []string `json:"allowed_domains"` // empty: any domain
	LocalLoginEnabled bool     `json:"local_login_enabled"`
}

// registerSSOConfigRoutes adds GET /api/v1/sso/config.
func (a *API) registerSSOConfigRoutes(mux *http.ServeMux) {
	a.handle(mux, route{Method: "GET", Path: "/api/v1/sso/config", Access: adminOnly,
		Summary:  "How single sign-on is configured (the server's --oidc-* flags; the client secret is never shown)",
		Response: ssoConfig{}, Status: 200, handle: a.getSSOConfig})
}

func (a *API) getSSOConfig(w http.ResponseWriter, r *http.Request) {
	out := ssoConfig{LocalLoginEnabled: !a.cfg.DisableLocalLogin, AdminGroups: []string{}, ConsumerGroups: []string{}, AllowedDomains: []string{}}
	if c := a.cfg.OIDC; c != nil {
		// The same defaults auth.NewOIDC applies, so the page shows what is in effect.
		out.Enabled = true
		out.Issuer, out.ClientID, out.ClientSecretSet = c.Issuer, c.ClientID, c.ClientSecret != ""
		out.RedirectURL = c.RedirectURL
		if out.RedirectURL == "" {
			out.RedirectURL = a.publicURL + "/api/v1/sso/callback"
		}
		out.Scopes = slices.Clone(c.Scopes)
		if len(out.Scopes) == 0 {
			out.Scopes = slices.Clone(auth.DefaultOIDCScopes)
		}
		if !slices.Contains(out.Scopes, "openid") {
			out.Scopes = append([]string{"openid"}, out.Scopes...)
		}
		out.GroupsClaim = c.GroupsClaim
		if out.GroupsClaim == "" {
			out.GroupsClaim = "groups"
		}
		out.UsernameClaim = c.UsernameClaim
		if out.UsernameClaim == "" {
			out.UsernameClaim = auth.UsernameEmail
		}
		out.AdminGroups = append(out.AdminGroups, c.AdminGroups...)
		out.ConsumerGroups = append(out.ConsumerGroups, c.ConsumerGroups...)
		out.AllowedDomains = append(out.AllowedDomains, c.AllowedDomains...)
	}
	writeJSON(w, http.StatusOK, out)
}
