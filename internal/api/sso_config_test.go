package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse/internal/auth"
)

func TestSSOConfigNeverShowsTheClientSecret(t *testing.T) {
	const secret = "very-secret-client-secret"
	a, err := New(Config{Store: nilStore{}, PublicURL: "https://gatehouse.example.com", DisableLocalLogin: true, OIDC: &auth.OIDCConfig{
		Issuer: "https://idp.example.com", ClientID: "gh", ClientSecret: secret,
		AdminGroups: []string{"gh-admins"}, ConsumerGroups: []string{"analysts"}, AllowedDomains: []string{"example.com"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.getSSOConfig(rec, httptest.NewRequest("GET", "/api/v1/sso/config", nil))
	if strings.Contains(rec.Body.String(), secret) {
		t.Fatalf("the answer holds the client secret: %s", rec.Body)
	}
	var got ssoConfig
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := ssoConfig{Enabled: true, Issuer: "https://idp.example.com", ClientID: "gh", ClientSecretSet: true,
		RedirectURL: "https://gatehouse.example.com/api/v1/sso/callback", Scopes: auth.DefaultOIDCScopes, GroupsClaim: "groups",
		UsernameClaim: auth.UsernameEmail, AdminGroups: []string{"gh-admins"}, ConsumerGroups: []string{"analysts"},
		AllowedDomains: []string{"example.com"}, LocalLoginEnabled: false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /api/v1/sso/config (-want +got):\n%s", diff)
	}

	off, _ := newBare(t)
	rec = httptest.NewRecorder()
	off.getSSOConfig(rec, httptest.NewRequest("GET", "/api/v1/sso/config", nil))
	got = ssoConfig{}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want = ssoConfig{LocalLoginEnabled: true, AdminGroups: []string{}, ConsumerGroups: []string{}, AllowedDomains: []string{}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /api/v1/sso/config without SSO (-want +got):\n%s", diff)
	}
}
