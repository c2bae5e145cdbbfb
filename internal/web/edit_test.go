package web_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/controlplane"
)

func publicKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// post submits a console form and fails unless the answer has status want.
func (b *browser) post(path string, want int, form url.Values) (http.Header, string) {
	b.t.Helper()
	code, h, body := b.do("POST", path, form)
	if code != want {
		b.t.Fatalf("POST %s: %d, want %d\n%s", path, code, want, body)
	}
	return h, body
}

// get fetches a console page and fails unless it is a 200.
func (b *browser) get(path string) string {
	b.t.Helper()
	code, _, body := b.do("GET", path, nil)
	if code != http.StatusOK {
		b.t.Fatalf("GET %s: %d\n%s", path, code, body)
	}
	return body
}

func wantIn(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, body)
		}
	}
}

func wantNotIn(t *testing.T, what, body string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(body, w) {
			t.Errorf("%s has %q:\n%s", what, w, body)
		}
	}
}

var sidecarLinkRE = regexp.MustCompile(`href="/sidecars/([^"/]+)"`)

// TestConsoleEditPages: each edit page is prefilled from the API; a wrong input shows the API's
// message next to its field and changes nothing; a right one is saved.
func TestConsoleEditPages(t *testing.T) {
	base := startServer(t)
	admin := newBrowser(t, base)
	admin.login("admin", adminPassword)
	csrf := csrfIn(t, admin.get("/data-sources"))
	form := func(kv ...string) url.Values {
		v := url.Values{"csrf": {csrf}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}

	// What the edits start from.
	admin.post("/data-sources/new/postgresql", http.StatusSeeOther, form("name", "sales", "hostname", "db.example.com", "version", "15", "tls_mode", "prefer"))
	admin.post("/repositories/sales/users/new", http.StatusSeeOther, form("username", "app", "secret.source", "env", "secret.name", "APP_DB_PASSWORD"))
	admin.post("/repositories/sales/users/new", http.StatusSeeOther, form("username", "reader", "secret.source", "env", "secret.name", "READER_PASSWORD"))
	h, _ := admin.post("/sidecars/new", http.StatusSeeOther, form("display_name", "VPC sidecar", "hostname", "sidecar.example.com", "public_key", publicKeyPEM(t)))
	sidecarPath := h.Get("Location")
	admin.post("/policies/new/impersonation/postgresql/rules", http.StatusSeeOther, form("display_name", "Analysts", "repository", "sales",
		"rules[0].kind", "group", "rules[0].name", "analysts", "rules[0].repository_user", "reader"))
	admin.post("/policies/new/access", http.StatusSeeOther, form("name", "no-ddl", "repository", "sales", "mode", "enforce",
		"rules[0].effect", "deny", "rules[0].operations", "ddl", "rules[0].objects", "*"))

	t.Run("repository", func(t *testing.T) {
		page := admin.get("/repositories/sales/edit")
		wantIn(t, "edit page", page, `value="db.example.com"`, `value="5432"`, `<option value="prefer" selected>`)
		_, body := admin.post("/repositories/sales/edit", http.StatusBadRequest, form("hostname", "http://db2.example.com", "port", "6432", "version", "15", "tls_mode", "require"))
		wantIn(t, "refused edit", body, `id="e-hostname">must be a host name without a scheme`, `value="http://db2.example.com"`)
		_, body = admin.post("/repositories/sales/edit", http.StatusBadRequest, form("hostname", "db2.example.com", "port", "70000", "version", "15", "tls_mode", "require"))
		wantIn(t, "refused edit", body, `id="e-port">`)
		details := admin.get("/repositories/sales")
		wantIn(t, "after refused edits", details, "db.example.com", "5432", "prefer")
		wantNotIn(t, "after refused edits", details, "db2.example.com", "6432")

		admin.post("/repositories/sales/edit", http.StatusSeeOther, form("hostname", "db2.example.com", "port", "6432", "version", "16", "tls_mode", "require", "record_parameters", "on"))
		details = admin.get("/repositories/sales")
		wantIn(t, "after the edit", details, "Repository sales saved", "db2.example.com", "6432", "PostgreSQL 16", "require")
		wantIn(t, "edit page after the edit", admin.get("/repositories/sales/edit"), `name="record_parameters" type="checkbox" checked`)
	})

	t.Run("repository user: secret source change", func(t *testing.T) {
		page := admin.get("/repositories/sales/users/app/edit")
		wantIn(t, "edit page", page, `<option value="env" selected>`, `value="APP_DB_PASSWORD"`, `id="edit-username">app<`)
		_, body := admin.post("/repositories/sales/users/app/edit", http.StatusBadRequest, form("secret.source", "azure-key-vault",
			"secret.secret_name", "prod-app", "secret.vault_uri", "http://vault", "secret.name", "APP_DB_PASSWORD"))
		wantIn(t, "refused edit", body, `id="e-secret-vault_uri">must be the vault&#39;s https URI`)
		users := admin.get("/repositories/sales/users")
		wantIn(t, "after the refused edit", users, "env:APP_DB_PASSWORD")
		wantNotIn(t, "after the refused edit", users, "prod-app")

		// The old source's field is hidden and not sent: only the file path counts.
		admin.post("/repositories/sales/users/app/edit", http.StatusSeeOther, form("secret.source", "file", "secret.path", "/run/secrets/app", "secret.name", "APP_DB_PASSWORD"))
		users = admin.get("/repositories/sales/users")
		wantIn(t, "after the edit", users, "Repository user app saved", "file:/run/secrets/app")
		wantNotIn(t, "after the edit", users, "env:APP_DB_PASSWORD")
	})

	t.Run("sidecar", func(t *testing.T) {
		edit := sidecarPath + "/edit"
		page := admin.get(edit)
		wantIn(t, "edit page", page, `value="VPC sidecar"`, `value="sidecar.example.com"`, "BEGIN PUBLIC KEY", `data-confirm-checkbox="f-allow_unsupported_queries"`)
		cur := form("display_name", "VPC sidecar", "hostname", "sidecar.example.com")
		cur.Set("public_key", html.UnescapeString(regexp.MustCompile(`(?s)name="public_key"[^>]*>(.*?)</textarea>`).FindStringSubmatch(page)[1]))

		bad := form()
		for k, v := range cur {
			bad[k] = v
		}
		bad.Set("display_name", "Renamed")
		bad.Set("second_public_key", "not a key")
		_, body := admin.post(edit, http.StatusBadRequest, bad)
		wantIn(t, "refused edit", body, `id="e-second_public_key">must be a PEM-encoded public key`, `value="Renamed"`)
		wantNotIn(t, "sidecar after the refused edit", admin.get(sidecarPath), "Renamed")

		// Allowing unsupported queries asks first (without JavaScript: a second step).
		allow := form("allow_unsupported_queries", "on", "confirm_unsupported", "")
		for k, v := range cur {
			allow[k] = v
		}
		_, body = admin.post(edit, http.StatusOK, allow)
		wantIn(t, "confirmation step", body, `id="confirm-unsupported-box"`, "unauthorized data access")
		wantIn(t, "sidecar before confirming", admin.get(sidecarPath), "<dd>refused</dd>")
		allow.Add("confirm_unsupported", "yes")
		second := publicKeyPEM(t)
		allow.Set("second_public_key", second)
		allow.Set("display_name", "Renamed")
		admin.post(edit, http.StatusSeeOther, allow)
		wantIn(t, "sidecar after the edit", admin.get(sidecarPath), "Sidecar Renamed saved", "<dd>allowed</dd>")
		page = admin.get(edit)
		wantIn(t, "edit page after the edit", html.UnescapeString(page), `value="Renamed"`, strings.TrimSpace(strings.SplitN(second, "\n", 3)[1]))
		wantNotIn(t, "edit page of an allowing sidecar", page, `data-confirm-checkbox`)
	})

	t.Run("impersonation policy", func(t *testing.T) {
		page := admin.get("/policies/impersonation/analysts/edit")
		wantIn(t, "edit page", page, `value="Analysts"`, `name="rules[0].groups" type="text" value="analysts"`,
			`name="rules[0].repository_users" value="reader" checked`, `name="rules[1].users"`)
		_, body := admin.post("/policies/impersonation/analysts/edit", http.StatusBadRequest, form("rows", "3", "display_name", "Analysts",
			"rules[0].groups", "analysts", "rules[0].repository_users", "reader", "rules[2].users", "carol@example.com"))
		wantIn(t, "refused edit", body, `id="e-rules-2--repository_users">must name at least one repository user`, `value="carol@example.com"`)
		wantNotIn(t, "policies after the refused edit", admin.get("/policies"), "carol@example.com")

		admin.post("/policies/impersonation/analysts/edit", http.StatusSeeOther, form("rows", "3", "display_name", "Analysts (all)",
			"rules[0].groups", "analysts", "rules[0].repository_users", "reader", "rules[0].repository_users", "app",
			"rules[2].users", "carol@example.com", "rules[2].repository_users", "app"))
		wantIn(t, "policies after the edit", admin.get("/policies"), "Analysts (all)", "group analysts → reader, app", "user carol@example.com → app")
	})

	t.Run("access policy", func(t *testing.T) {
		page := admin.get("/policies/access/no-ddl/edit")
		wantIn(t, "edit page", page, `<option value="deny" selected>`, `name="rules[0].operations" type="text" value="ddl"`, `name="rules[2].objects"`)
		_, body := admin.post("/policies/access/no-ddl/edit", http.StatusBadRequest, form("rows", "3", "mode", "monitor",
			"rules[0].effect", "deny", "rules[0].operations", "ddl, truncate", "rules[0].objects", "*"))
		wantIn(t, "refused edit", body, `id="e-rules-0--operations">&#34;truncate&#34; is not an operation`)
		list := admin.get("/policies/access")
		wantIn(t, "after the refused edit", list, "<td>enforce</td>")
		wantNotIn(t, "after the refused edit", list, "truncate")

		admin.post("/policies/access/no-ddl/edit", http.StatusSeeOther, form("rows", "3", "mode", "monitor",
			"rules[0].effect", "deny", "rules[0].operations", "ddl", "rules[0].objects", "*",
			"rules[1].effect", "deny", "rules[1].operations", "delete", "rules[1].objects", "public.orders", "rules[1].groups", "analysts"))
		wantIn(t, "after the edit", admin.get("/policies/access"), "<td>monitor</td>", "<strong>deny</strong> delete on public.orders for group analysts")
	})

	t.Run("a data consumer gets the 403 page", func(t *testing.T) {
		admin.post("/users", http.StatusSeeOther, form("name", "bob@example.com", "role", "DATA_CONSUMER", "password", "bob-Passw0rd!"))
		bob := newBrowser(t, base)
		bob.login("bob@example.com", "bob-Passw0rd!")
		for _, path := range []string{"/repositories/sales/edit", "/repositories/sales/users/app/edit", sidecarPath + "/edit",
			"/policies/impersonation/analysts/edit", "/policies/access/no-ddl/edit"} {
			if code, _, body := bob.do("GET", path, nil); code != http.StatusForbidden || !strings.Contains(body, "This page is for administrators") {
				t.Errorf("GET %s as a data consumer: %d", path, code)
			}
		}
		_, _, page := bob.do("GET", "/tokens", nil)
		code, _, _ := bob.do("POST", "/repositories/sales/edit", url.Values{"csrf": {csrfIn(t, page)}, "hostname": {"evil.example.com"}, "version": {"15"}, "tls_mode": {"prefer"}})
		if code != http.StatusForbidden {
			t.Errorf("POST an edit as a data consumer: %d", code)
		}
	})
}

func TestConsoleSettingsSCIMAndSSO(t *testing.T) {
	const clientSecret = "oidc-client-secret-never-shown"
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := controlplane.New(ctx, controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AdminPassword: adminPassword,
		OIDC: &auth.OIDCConfig{Issuer: "https://idp.example.com", ClientID: "gatehouse-console", ClientSecret: clientSecret,
			AdminGroups: []string{"gh-admins"}, ConsumerGroups: []string{"analysts", "engineers"}, AllowedDomains: []string{"example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		srv.Close()
	})
	admin := newBrowser(t, srv.URL())
	admin.login("admin", adminPassword)

	page := admin.get("/settings")
	wantIn(t, "SSO section", page, `id="sso-issuer">https://idp.example.com<`, `id="sso-client-id">gatehouse-console<`, "set (never shown)",
		`id="sso-admin-groups">gh-admins`, `id="sso-consumer-groups">analysts, engineers`, `id="sso-domains">example.com`,
		srv.URL()+"/api/v1/sso/callback", "enabled (local accounts", "server</code> (<code>--oidc-issuer</code>")
	wantIn(t, "SCIM section", page, `id="scim-none"`, `id="scim-base-url">`+srv.URL()+"/scim/v2<")
	wantNotIn(t, "settings", page, clientSecret)

	// Create: the token once; the list never shows it.
	_, created := admin.post("/settings/scim-tokens", http.StatusCreated, url.Values{"csrf": {csrfIn(t, page)}})
	m := regexp.MustCompile(`id="new-scim-token">(ghscim_[^<]+)<`).FindStringSubmatch(created)
	if m == nil {
		t.Fatalf("no new SCIM token on the page:\n%s", created)
	}
	wantIn(t, "created", created, "won't be shown again", `data-copy="#new-scim-token"`)
	page = admin.get("/settings")
	wantNotIn(t, "settings after create", page, m[1])
	wantIn(t, "settings after create", page, `<span class="status active">active</span>`)

	// The token provisions; revoked, it does not.
	scim := func() int {
		req, _ := http.NewRequest("GET", srv.URL()+"/scim/v2/Users", nil)
		req.Header.Set("Authorization", "Bearer "+m[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := scim(); code != http.StatusOK {
		t.Errorf("SCIM with the new token: %d", code)
	}
	action := regexp.MustCompile(`action="(/settings/scim-tokens/[^"]+/revoke)"`).FindStringSubmatch(page)
	if action == nil {
		t.Fatalf("no Revoke on the settings page:\n%s", page)
	}
	admin.post(action[1], http.StatusSeeOther, url.Values{"csrf": {csrfIn(t, page)}})
	page = admin.get("/settings")
	wantIn(t, "settings after revoke", page, "revoked: the identity provider can no longer provision", `<span class="status revoked">revoked</span>`)
	if code := scim(); code != http.StatusUnauthorized {
		t.Errorf("SCIM with the revoked token: %d", code)
	}
}
