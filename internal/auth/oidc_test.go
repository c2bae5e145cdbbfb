package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse"
)

func newTestOIDC(t *testing.T, cfg OIDCConfig) *OIDC {
	t.Helper()
	cfg.Issuer, cfg.ClientID, cfg.RedirectURL = "https://idp.example.com", "gatehouse", "https://gh.example.com/api/v1/sso/callback"
	o, err := NewOIDC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOIDCConfigRefusals(t *testing.T) {
	for name, cfg := range map[string]OIDCConfig{
		"no issuer":      {ClientID: "c", RedirectURL: "r", ConsumerGroups: []string{"*"}},
		"no groups":      {Issuer: "i", ClientID: "c", RedirectURL: "r"},
		"username claim": {Issuer: "i", ClientID: "c", RedirectURL: "r", ConsumerGroups: []string{"*"}, UsernameClaim: "sub"},
	} {
		if _, err := NewOIDC(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	o := newTestOIDC(t, OIDCConfig{ConsumerGroups: []string{"*"}, ClientSecret: "s3cr3t"})
	if strings.Contains(o.cfg.LogValue().String(), "s3cr3t") || strings.Contains(fmt.Sprint(o.cfg), "s3cr3t") {
		t.Error("LogValue shows the client secret")
	}
}

func TestIdentity(t *testing.T) {
	o := newTestOIDC(t, OIDCConfig{AdminGroups: []string{"gh-admins"}, ConsumerGroups: []string{"analysts"}, AllowedDomains: []string{"Example.com"}})
	for _, tc := range []struct {
		name     string
		claims   map[string]any
		wantName string
		wantRole gatehouse.Role
		wantErr  string
	}{
		{"consumer", map[string]any{"email": "Alice@example.com", "email_verified": true, "groups": []any{"analysts"}}, "alice@example.com", gatehouse.RoleDataConsumer, ""},
		{"admin wins", map[string]any{"email": "root@example.com", "groups": []any{"analysts", "gh-admins"}}, "root@example.com", gatehouse.RoleAdmin, ""},
		{"single group string", map[string]any{"email": "a@example.com", "groups": "analysts"}, "a@example.com", gatehouse.RoleDataConsumer, ""},
		{"not assigned", map[string]any{"email": "bob@example.com", "groups": []any{"marketing"}}, "", "", "not assigned to Gatehouse"},
		{"no groups", map[string]any{"email": "bob@example.com"}, "", "", "not assigned to Gatehouse"},
		{"other domain", map[string]any{"email": "eve@elsewhere.org", "groups": []any{"analysts"}}, "", "", `domain "elsewhere.org"`},
		{"unverified", map[string]any{"email": "a@example.com", "email_verified": false, "groups": []any{"analysts"}}, "", "", "not verified"},
		{"no email", map[string]any{"preferred_username": "alice", "groups": []any{"analysts"}}, "", "", "no email claim"},
	} {
		id, err := o.identity("sub", tc.claims)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || gatehouse.ErrorCode(err) != gatehouse.ECodeForbidden {
				t.Errorf("%s: err = %v, want forbidden %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || id.Name != tc.wantName || id.Role != tc.wantRole {
			t.Errorf("%s: %+v, %v; want %s %s", tc.name, id, err, tc.wantName, tc.wantRole)
		}
	}
	pu := newTestOIDC(t, OIDCConfig{ConsumerGroups: []string{"*"}, UsernameClaim: UsernamePreferredUsername})
	if id, err := pu.identity("sub", map[string]any{"preferred_username": "alice"}); err != nil || id.Name != "alice" || id.Role != gatehouse.RoleDataConsumer {
		t.Errorf("preferred_username with consumer groups *: %+v %v", id, err)
	}
}

func TestCookieCredentialNeedsCSRF(t *testing.T) {
	a := &Authenticator{}
	for _, tc := range []struct {
		method, csrf string
		ok           bool
	}{
		{"GET", "", true},
		{"POST", "", false},
		{"POST", "wrong", false},
		{"DELETE", CSRFToken("ghs_secret"), true},
	} {
		r := httptest.NewRequest(tc.method, "/api/v1/tokens", nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "ghs_secret"})
		if tc.csrf != "" {
			r.Header.Set(CSRFHeader, tc.csrf)
		}
		got, err := a.credential(r)
		if (err == nil) != tc.ok || tc.ok && got != "ghs_secret" {
			t.Errorf("%s csrf=%q: %q, %v", tc.method, tc.csrf, got, err)
		}
	}
	// A bearer header needs no CSRF token, and wins over the cookie.
	r := httptest.NewRequest("POST", "/api/v1/tokens", nil)
	r.Header.Set("Authorization", "Bearer ghs_other")
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "ghs_secret"})
	if got, err := a.credential(r); err != nil || got != "ghs_other" {
		t.Errorf("bearer: %q %v", got, err)
	}
	// With secure cookies only the __Host- cookie counts.
	s := &Authenticator{secureCookies: true}
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "ghs_secret"})
	if _, err := s.credential(r); err == nil {
		t.Error("a non-__Host- cookie was accepted over HTTPS")
	}
}

func TestS256(t *testing.T) {
	// RFC 7636 appendix B.
	if got := S256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("S256 = %s", got)
	}
}
