package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// ssoSignIn clicks "Sign in with SSO" on the console's sign-in page and signs in on the real OP's
// login page as username; landing is an element of the page the browser should end on.
func (c *chromium) ssoSignIn(username, landing string) {
	c.t.Helper()
	c.run("Sign in with SSO", click("#sso-sign-in", "#username"))
	c.run("sign in at the IdP as "+username, fill("username", username), fill("password", opPassword),
		click(`form[action="/login/username"] button[type=submit]`, landing))
}

// TestWebSSOAndEditPages signs people in to the console through a real OpenID Provider (the "Sign
// in with SSO" button): an admin lands signed in with their role, edits each kind of object (a
// wrong input first: the message shows next to the field and nothing changes), and reads how SSO
// and SCIM are set up; a data consumer lands on Connections and gets the 403 page on an edit page;
// someone in no Gatehouse group gets the "not assigned" page.
func TestWebSSOAndEditPages(t *testing.T) {
	t.Parallel()
	f := newSSOFixture(t)
	admin := f.cp.Admin(t)
	_, pub := GenerateRSAKey(t, 2048)
	admin.MustRun("repository", "create", "sales", "--type", "postgresql", "--version", "15", "--hostname", "db1.example.com")
	admin.MustRun("repository", "user", "create", "app", "--repository", "sales", "--secret-source", "env", "--env-name", "APP_DB_PASSWORD")
	var reg struct {
		ID string `json:"id"`
	}
	admin.MustRunJSON(&reg, "sidecar", "register", "--display-name", "east", "--hostname", "sidecar.example.com", "--public-key-file", pub)
	admin.MustRun("policy", "impersonation", "create", "analysts", "--repository", "sales", "--rule", "groups=analysts;repository_users=app")
	admin.MustRun("policy", "access", "create", "--name", "no-ddl", "--repository", "sales", "--rule", "effect=deny;objects=*;operations=ddl")
	b := startChromium(t, f.cp.URL)

	// An admin of the IdP: signed out, /sidecars asks for a sign-in; SSO brings them back there.
	b.open("/sidecars")
	b.shot("login-with-sso")
	b.ssoSignIn("root", "#register-sidecar")
	b.wantText(".signout .who", "root@example.com", "ADMIN")
	if loc := b.location(); loc != "/sidecars" {
		t.Errorf("after signing in with SSO: %s; want /sidecars", loc)
	}
	b.shot("sso-admin-signed-in")

	// Settings: how SSO is configured (server flags, read-only, no secret) and a SCIM token.
	b.open("/settings")
	b.wantText("#sso-config", f.op.Issuer, opClientID, "gh-admins", "data-consumers", "example.com", "set (never shown)")
	b.wantText("#sso-flags", "--oidc-issuer")
	if body := b.text("main"); strings.Contains(body, opClientSecret) {
		t.Errorf("the settings page shows the OIDC client secret")
	}
	b.run("create SCIM token", click("#create-scim-token", "#new-scim-token"))
	b.wantText("#scim-token-once", "won't be shown again")
	if tok := b.text("#new-scim-token"); !strings.HasPrefix(tok, "ghscim_") {
		t.Errorf("new SCIM token: %q", tok)
	}
	b.shot("settings-sso-scim")
	b.open("/settings")
	b.run("revoke SCIM token", chromedp.Click(`form[action$="/revoke"] button`, chromedp.ByQuery), chromedp.WaitVisible("#confirm-dialog[open]", chromedp.ByQuery),
		click("#confirm-ok", ".flash"))
	b.wantText("#scim-tokens", "revoked")

	// Repository: a wrong hostname shows the API's message and changes nothing.
	b.open("/repositories/sales")
	b.run("edit repository", click("#edit-repository", "#f-hostname"))
	b.run("bad hostname", fill("f-hostname", "http://db2.example.com"), fill("f-port", "6432"), click("#save-repository", "#e-hostname"))
	b.wantText("#e-hostname", "must be a host name without a scheme")
	b.shot("edit-repository-error")
	b.open("/repositories/sales")
	b.wantText("main", "db1.example.com", "5432")
	b.run("edit repository", click("#edit-repository", "#f-hostname"), fill("f-hostname", "db2.example.com"), fill("f-port", "6432"),
		click("#save-repository", ".flash"))
	b.wantText("main", "Repository sales saved", "db2.example.com", "6432")

	// Repository user: change the secret source; a wrong vault URI first.
	b.open("/repositories/sales/users")
	b.run("edit repository user", click("#edit-user-app", "#f-secret-name"))
	var v string
	b.run("prefilled", chromedp.Value("#f-secret-name", &v, chromedp.ByQuery))
	if v != "APP_DB_PASSWORD" {
		t.Errorf("variable name on the edit page: %q", v)
	}
	b.run("bad vault URI", choose("f-secret-source", "azure-key-vault"), chromedp.WaitNotVisible("#f-secret-name", chromedp.ByQuery),
		fill("f-secret-secret_name", "prod-app"), fill("f-secret-vault_uri", "http://vault"), click("#save-user", "#e-secret-vault_uri"))
	b.wantText("#e-secret-vault_uri", "https URI")
	b.shot("edit-repository-user-error")
	b.open("/repositories/sales/users")
	b.wantText("main", "env:APP_DB_PASSWORD")
	b.run("file source", click("#edit-user-app", "#f-secret-name"), choose("f-secret-source", "file"), fill("f-secret-path", "/run/secrets/app"),
		click("#save-user", ".flash"))
	b.wantText("main", "Repository user app saved", "file:/run/secrets/app")

	// Sidecar: a broken second key is refused; allowing unsupported queries asks first.
	b.open("/sidecars/" + reg.ID)
	b.run("edit sidecar", click("#edit-sidecar", "#f-display_name"))
	b.run("bad second key", fill("f-display_name", "east (rotating)"), fill("f-second_public_key", "not a key"), click("#save-sidecar", "#e-second_public_key"))
	b.wantText("#e-second_public_key", "PEM")
	b.shot("edit-sidecar-error")
	b.open("/sidecars/" + reg.ID)
	b.wantText("main", "east", "refused")
	b.run("allow unsupported queries", click("#edit-sidecar", "#f-display_name"), fill("f-display_name", "east (rotating)"),
		chromedp.Click("details.advanced summary", chromedp.ByQuery), chromedp.Click("#f-allow_unsupported_queries", chromedp.ByQuery),
		click("#save-sidecar", "#confirm-dialog[open]"))
	b.wantText("#confirm-message", "unauthorized data access")
	b.shot("edit-sidecar-confirm")
	b.run("confirm", click("#confirm-ok", ".flash"))
	b.wantText("main", "Sidecar east (rotating) saved", "allowed")

	// Impersonation policy: a rule without a repository user is refused.
	b.open("/policies")
	b.run("edit policy", click("#edit-policy-analysts", "#f-rules-0--groups"))
	b.run("untick the repository user", chromedp.Click(`input[name="rules[0].repository_users"][value="app"]`, chromedp.ByQuery),
		fill("f-rules-1--users", "carol@example.com"), click("#save-policy", "#e-rules-0--repository_users"))
	b.wantText("#e-rules-0--repository_users", "at least one repository user")
	b.shot("edit-policy-error")
	b.open("/policies")
	b.wantText("main", "group analysts → app")
	b.run("add a rule", click("#edit-policy-analysts", "#f-rules-1--users"), fill("f-rules-1--users", "carol@example.com"),
		chromedp.Click(`input[name="rules[1].repository_users"][value="app"]`, chromedp.ByQuery), click("#save-policy", ".flash"))
	b.wantText("main", "group analysts → app", "user carol@example.com → app")

	// Access management policy: a wrong operation is refused.
	b.open("/policies/access")
	b.run("edit access policy", click("#edit-access-no-ddl", "#f-rules-0--operations"))
	b.run("bad operation", choose("f-mode", "monitor"), fill("f-rules-0--operations", "ddl, drop"), click("#save-access-policy", "#e-rules-0--operations"))
	b.wantText("#e-rules-0--operations", `"drop" is not an operation`)
	b.shot("edit-access-policy-error")
	b.open("/policies/access")
	b.wantText("#access-policies", "enforce")
	b.run("monitor", click("#edit-access-no-ddl", "#f-rules-0--operations"), choose("f-mode", "monitor"), click("#save-access-policy", ".flash"))
	b.wantText("#access-policies", "monitor", "deny ddl on *")
	b.signOut()

	// A data consumer of the IdP lands on Connections; edit pages are for admins.
	b.ssoSignIn("alice", "main h1")
	b.wantText(".signout .who", "alice@example.com", "DATA_CONSUMER")
	if loc := b.location(); loc != "/connections" {
		t.Errorf("a data consumer signed in with SSO lands on %s; want /connections", loc)
	}
	b.shot("sso-consumer-signed-in")
	b.open("/repositories/sales/edit")
	b.wantText("#error-message", "for administrators")
	b.signOut()

	// Someone in no Gatehouse group: the "not assigned" page, and no session.
	b.ssoSignIn("bob", "h1")
	b.wantText("h1", "Not assigned to Gatehouse")
	b.wantText("body", "bob@example.com")
	b.shot("sso-not-assigned")
	b.open("/connections")
	if loc := b.location(); !strings.HasPrefix(loc, "/login") {
		t.Errorf("after the not-assigned page, /connections went to %s; want the sign-in page", loc)
	}
}
