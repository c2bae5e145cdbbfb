package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/controlplane"
)

const adminPassword = "web-admin-Passw0rd!"

// startServer runs a real control plane (SQLite in a temp dir) in-process.
func startServer(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := controlplane.New(ctx, controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AdminPassword: adminPassword})
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
	return srv.URL()
}

// browser is an HTTP client with cookies that does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) (int, http.Header, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(out)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfIn(t *testing.T, html string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", html)
	}
	return m[1]
}

func (b *browser) login(user, password string) {
	b.t.Helper()
	_, _, page := b.do("GET", "/login", nil)
	code, h, body := b.do("POST", "/login", url.Values{"csrf": {csrfIn(b.t, page)}, "username": {user}, "password": {password}})
	if code != http.StatusSeeOther {
		b.t.Fatalf("login as %s: %d %s", user, code, body)
	}
	if ck := h.Get("Set-Cookie"); !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Lax") {
		b.t.Errorf("session cookie %q lacks HttpOnly or SameSite", ck)
	}
}

func TestConsole(t *testing.T) {
	base := startServer(t)
	admin := newBrowser(t, base)

	t.Run("signed out goes to the sign-in page", func(t *testing.T) {
		code, h, _ := admin.do("GET", "/sidecars", nil)
		if code != http.StatusSeeOther || h.Get("Location") != "/login?next=%2Fsidecars" {
			t.Errorf("got %d to %q", code, h.Get("Location"))
		}
	})
	t.Run("wrong password shows the API's message", func(t *testing.T) {
		_, _, page := admin.do("GET", "/login", nil)
		code, _, body := admin.do("POST", "/login", url.Values{"csrf": {csrfIn(t, page)}, "username": {"admin"}, "password": {"nope"}})
		if code != http.StatusUnauthorized || !strings.Contains(body, "invalid username or password") {
			t.Errorf("got %d:\n%s", code, body)
		}
	})
	t.Run("sign-in without the form's CSRF token is refused", func(t *testing.T) {
		code, _, _ := newBrowser(t, base).do("POST", "/login", url.Values{"username": {"admin"}, "password": {adminPassword}})
		if code != http.StatusForbidden {
			t.Errorf("got %d", code)
		}
	})

	admin.login("admin", adminPassword)
	_, h, page := admin.do("GET", "/data-sources", nil)
	csrf := csrfIn(t, page)
	for k, want := range map[string]string{
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "same-origin",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}

	t.Run("a wrong input shows the API's error next to the field and creates nothing", func(t *testing.T) {
		code, _, body := admin.do("POST", "/data-sources/new/postgresql", url.Values{"csrf": {csrf}, "name": {"sales"}, "hostname": {"http://db.example.com"}, "version": {"15"}})
		if code != http.StatusBadRequest {
			t.Fatalf("got %d", code)
		}
		if !strings.Contains(body, `id="e-hostname">must be a host name without a scheme`) {
			t.Errorf("no error next to hostname:\n%s", body)
		}
		_, _, list := admin.do("GET", "/data-sources", nil)
		if strings.Contains(list, "/repositories/sales") {
			t.Error("the refused repository was created")
		}
		code, _, body = admin.do("POST", "/data-sources/new/postgresql", url.Values{"csrf": {csrf}, "name": {"sales"}, "hostname": {"db.example.com"}, "version": {"15"}, "port": {"abc"}})
		if code != http.StatusBadRequest || !strings.Contains(body, `id="e-port">must be an integer`) {
			t.Errorf("port abc: %d\n%s", code, body)
		}
	})
	t.Run("a form without the CSRF token changes nothing", func(t *testing.T) {
		code, _, _ := admin.do("POST", "/data-sources/new/postgresql", url.Values{"name": {"sales"}, "hostname": {"db.example.com"}, "version": {"15"}})
		if code != http.StatusForbidden {
			t.Errorf("got %d", code)
		}
	})
	t.Run("repository user: only the chosen source's fields are sent", func(t *testing.T) {
		code, _, body := admin.do("POST", "/data-sources/new/postgresql", url.Values{"csrf": {csrf}, "name": {"sales"}, "hostname": {"db.example.com"}, "version": {"15"}})
		if code != http.StatusSeeOther {
			t.Fatalf("create repository: %d %s", code, body)
		}
		code, _, body = admin.do("POST", "/repositories/sales/users/new", url.Values{"csrf": {csrf}, "username": {"app"},
			"secret.source": {"azure-key-vault"}, "secret.arn": {"left over from AWS"}, "secret.vault_uri": {"http://vault"}, "secret.secret_name": {"prod-user"}})
		if code != http.StatusBadRequest || !strings.Contains(body, `id="e-secret-vault_uri">must be the vault&#39;s https URI`) {
			t.Errorf("got %d:\n%s", code, body)
		}
		code, _, _ = admin.do("POST", "/repositories/sales/users/new", url.Values{"csrf": {csrf}, "username": {"app"},
			"secret.source": {"azure-key-vault"}, "secret.arn": {"left over from AWS"}, "secret.vault_uri": {"https://v.vault.azure.net/"}, "secret.secret_name": {"prod-user"}})
		if code != http.StatusSeeOther {
			t.Errorf("got %d", code)
		}
	})
	t.Run("access management and activity use the API's rules", func(t *testing.T) {
		code, _, body := admin.do("POST", "/policies/new/access", url.Values{"csrf": {csrf}, "name": {"ro"}, "repository": {"sales"}, "mode": {"enforce"},
			"rules[0].effect": {"allow"}, "rules[0].operations": {"select, drop"}, "rules[0].objects": {"*"}})
		if code != http.StatusBadRequest || !strings.Contains(body, `id="e-rules-0--operations">&#34;drop&#34; is not an operation`) {
			t.Errorf("bad operation: %d\n%s", code, body)
		}
		if _, _, list := admin.do("GET", "/policies/access", nil); strings.Contains(list, "<code>ro</code>") {
			t.Error("the refused access policy was created")
		}
		code, _, body = admin.do("POST", "/policies/access/test", url.Values{"csrf": {csrf}, "test.repository": {"sales"}, "test.user": {"someone"}, "test.sql": {"SELECT 1"}})
		if code != http.StatusOK || !strings.Contains(body, `id="test-result"`) {
			t.Errorf("test a statement: %d\n%s", code, body)
		}
		code, _, body = admin.do("GET", "/activity?since=forever", nil)
		if code != http.StatusBadRequest || !strings.Contains(body, `id="e-since"`) {
			t.Errorf("activity with a bad filter: %d\n%s", code, body)
		}
		code, h, _ := admin.do("GET", "/activity/export?since=1h", nil)
		if code != http.StatusOK || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
			t.Errorf("export: %d %v", code, h)
		}
	})
	t.Run("every admin page renders", func(t *testing.T) {
		for _, path := range []string{"/data-sources", "/data-sources/new", "/data-sources/new/mysql", "/repositories/sales", "/repositories/sales/users",
			"/repositories/sales/users/new?secret.source=env", "/sidecars", "/sidecars/new", "/policies", "/policies/access", "/policies/new",
			"/policies/new/impersonation", "/policies/new/impersonation/postgresql", "/policies/new/impersonation/postgresql/rules?repository=sales&display_name=X", "/policies/new/access",
			"/users", "/groups", "/activity", "/settings", "/tokens", "/tokens/new", "/connections", "/static/app.js", "/static/app.css"} {
			if code, _, body := admin.do("GET", path, nil); code != http.StatusOK {
				t.Errorf("GET %s: %d\n%s", path, code, body)
			}
		}
	})

	t.Run("a data consumer gets the 403 page on admin pages", func(t *testing.T) {
		if code, _, body := admin.do("POST", "/users", url.Values{"csrf": {csrf}, "name": {"bob@example.com"}, "role": {"DATA_CONSUMER"}, "password": {"bob-Passw0rd!"}}); code != http.StatusSeeOther {
			t.Fatalf("create bob: %d\n%s", code, body)
		}
		bob := newBrowser(t, base)
		bob.login("bob@example.com", "bob-Passw0rd!")
		for _, path := range []string{"/data-sources", "/data-sources/new", "/repositories/sales", "/sidecars", "/sidecars/new", "/policies", "/policies/access", "/policies/new/access", "/users", "/groups", "/activity", "/activity/export", "/settings"} {
			code, _, body := bob.do("GET", path, nil)
			if code != http.StatusForbidden || !strings.Contains(body, "This page is for administrators") {
				t.Errorf("GET %s as a data consumer: %d", path, code)
			}
		}
		for _, path := range []string{"/connections", "/tokens", "/tokens/new"} {
			if code, _, _ := bob.do("GET", path, nil); code != http.StatusOK {
				t.Errorf("GET %s as a data consumer: %d", path, code)
			}
		}
	})
}

func TestLogoutEndsTheAPISession(t *testing.T) {
	base := startServer(t)
	b := newBrowser(t, base)
	b.login("admin", adminPassword)
	_, _, page := b.do("GET", "/tokens", nil)
	u, _ := url.Parse(base)
	cookies := b.c.Jar.Cookies(u)
	if code, _, _ := b.do("POST", "/logout", url.Values{"csrf": {csrfIn(t, page)}}); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	// The old cookie, replayed, no longer signs anyone in: the API session is gone.
	replay := newBrowser(t, base)
	replay.c.Jar.SetCookies(u, cookies)
	code, h, _ := replay.do("GET", "/tokens", nil)
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Errorf("replayed cookie after logout: %d %s", code, h.Get("Location"))
	}
}
