package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/pgserver"
)

// The SSO tests sign people in through a real OpenID Provider (sso_op_test.go) and provision them
// with SCIM requests shaped like Okta's and Entra ID's, against the real gatehouse binary.

var ssoUsers = []opUser{
	{Username: "alice", Email: "alice@example.com", Groups: []string{"data-consumers", "analysts"}},
	{Username: "root", Email: "root@example.com", Groups: []string{"gh-admins"}},
	{Username: "bob", Email: "bob@example.com", Groups: []string{"marketing"}},
	{Username: "eve", Email: "eve@elsewhere.org", Groups: []string{"data-consumers"}},
}

type ssoFixture struct {
	cp *ControlPlane
	op *testOP
}

// newSSOFixture starts an OP and a control plane that signs in through it.
func newSSOFixture(t *testing.T, args ...string) *ssoFixture {
	t.Helper()
	port := freeTCPPort(t)
	op := startOP(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/api/v1/sso/callback", ssoUsers...)
	cp := StartControlPlane(t, ServerOptions{Args: append([]string{"--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--oidc-issuer", op.Issuer, "--oidc-client-id", opClientID, "--oidc-client-secret-file", writeSecret(t),
		"--oidc-admin-groups", "gh-admins", "--oidc-consumer-groups", "data-consumers", "--oidc-allowed-domains", "example.com"}, args...)})
	return &ssoFixture{cp: cp, op: op}
}

// noFollow GETs u with b's cookies without following a redirect.
func noFollow(t *testing.T, b *browser, u string) (*http.Response, string) {
	t.Helper()
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return (&browser{Client: &c}).get(t, u)
}

func setCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestSSOBrowserLogin(t *testing.T) {
	t.Parallel()
	f := newSSOFixture(t)
	base := f.cp.URL

	b := newBrowser(t)
	cb := b.signIn(t, base+"/api/v1/sso/login?return_to=/console/tokens", "alice")
	resp, body := noFollow(t, b, cb.String())
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/tokens" {
		t.Fatalf("callback: %s Location=%q\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	sess := setCookie(resp, "gatehouse_session")
	csrf := setCookie(resp, "gatehouse_csrf")
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || csrf == nil || csrf.HttpOnly {
		t.Fatalf("session cookies: %+v %+v", sess, csrf)
	}

	resp, body = b.get(t, base+"/api/v1/me")
	var me gatehouse.User
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &me) != nil {
		t.Fatalf("GET /me with the session cookie: %s\n%s", resp.Status, body)
	}
	if diff := cmp.Diff(gatehouse.User{Name: "alice@example.com", Email: "alice@example.com", DisplayName: "Test alice",
		Role: gatehouse.RoleDataConsumer, Active: true, Groups: []string{"analysts", "data-consumers"}},
		me, cmpIgnoreTimes); diff != "" {
		t.Errorf("user made from the IdP's claims (-want +got):\n%s", diff)
	}

	t.Run("csrf", func(t *testing.T) {
		resp, body := b.do(t, "POST", base+"/api/v1/tokens", `{"ttl":"1h"}`, "Content-Type", "application/json")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("cookie-authenticated POST without a CSRF token: %s\n%s", resp.Status, body)
		}
		resp, body = b.do(t, "POST", base+"/api/v1/tokens", `{"ttl":"1h"}`, "Content-Type", "application/json", "X-CSRF-Token", "0123")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("wrong CSRF token: %s\n%s", resp.Status, body)
		}
		resp, body = b.do(t, "POST", base+"/api/v1/tokens", `{"ttl":"1h"}`, "Content-Type", "application/json", "X-CSRF-Token", csrf.Value)
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("POST with the CSRF token: %s\n%s", resp.Status, body)
		}
	})

	t.Run("replayed callback", func(t *testing.T) {
		resp, body := noFollow(t, b, cb.String())
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("the same callback again: %s\n%s", resp.Status, body)
		}
		// An attacker who copied the URL and the state cookie: the state is used up.
		attacker := newBrowser(t)
		u, _ := url.Parse(base)
		attacker.Jar.SetCookies(u, []*http.Cookie{{Name: "gatehouse_sso_state", Value: cb.Query().Get("state")}})
		resp, body = noFollow(t, attacker, cb.String())
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
			t.Errorf("replayed callback with its state cookie: %s\n%s", resp.Status, body)
		}
	})

	t.Run("replayed code", func(t *testing.T) {
		// A fresh, valid state in this browser, but alice's code, which the OP already redeemed.
		b2 := newBrowser(t)
		resp, _ := noFollow(t, b2, base+"/api/v1/sso/login")
		loc, err := resp.Location()
		if err != nil {
			t.Fatal(err)
		}
		replay := base + "/api/v1/sso/callback?" + url.Values{"code": {cb.Query().Get("code")}, "state": {loc.Query().Get("state")}}.Encode()
		resp, body := noFollow(t, b2, replay)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "refused the authorization code") {
			t.Errorf("replayed authorization code: %s\n%s", resp.Status, body)
		}
	})

	t.Run("forged state", func(t *testing.T) {
		b3 := newBrowser(t)
		resp, body := noFollow(t, b3, base+"/api/v1/sso/callback?code=abc&state=forged")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not started by this browser") {
			t.Errorf("forged state: %s\n%s", resp.Status, body)
		}
		u, _ := url.Parse(base)
		b3.Jar.SetCookies(u, []*http.Cookie{{Name: "gatehouse_sso_state", Value: "forged"}})
		resp, body = noFollow(t, b3, base+"/api/v1/sso/callback?code=abc&state=forged")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "unknown") {
			t.Errorf("forged state with a matching cookie: %s\n%s", resp.Status, body)
		}
	})

	t.Run("expired id token", func(t *testing.T) {
		f.op.expired.Store(true)
		defer f.op.expired.Store(false)
		b4 := newBrowser(t)
		resp, body := noFollow(t, b4, b4.signIn(t, base+"/api/v1/sso/login", "alice").String())
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "expired") || setCookie(resp, "gatehouse_session") != nil {
			t.Errorf("expired ID token: %s\n%s", resp.Status, body)
		}
	})

	t.Run("roles", func(t *testing.T) {
		for _, tc := range []struct {
			user, wantRole, wantPage string
			wantStatus               int
		}{
			{user: "root", wantStatus: http.StatusFound, wantRole: "ADMIN"},
			{user: "bob", wantStatus: http.StatusForbidden, wantPage: "Not assigned to Gatehouse"},
			{user: "eve", wantStatus: http.StatusForbidden, wantPage: `domain &#34;elsewhere.org&#34; is not allowed`},
		} {
			bb := newBrowser(t)
			resp, body := noFollow(t, bb, bb.signIn(t, base+"/api/v1/sso/login", tc.user).String())
			if resp.StatusCode != tc.wantStatus || !strings.Contains(body, tc.wantPage) {
				t.Errorf("%s: %s, want %d with %q\n%s", tc.user, resp.Status, tc.wantStatus, tc.wantPage, body)
				continue
			}
			if tc.wantRole != "" {
				_, body := bb.get(t, base+"/api/v1/me")
				if !strings.Contains(body, `"role": "`+tc.wantRole+`"`) {
					t.Errorf("%s: /me = %s, want role %s", tc.user, body, tc.wantRole)
				}
			}
		}
	})

	t.Run("logout", func(t *testing.T) {
		resp, body := b.do(t, "POST", base+"/api/v1/logout", "", "X-CSRF-Token", csrf.Value)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("logout: %s\n%s", resp.Status, body)
		}
		// The cookie is gone from the browser, and the session from the server.
		req, _ := http.NewRequest("GET", base+"/api/v1/me", nil)
		req.AddCookie(sess)
		r2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != http.StatusUnauthorized {
			t.Errorf("the old session cookie after logout: %s", r2.Status)
		}
	})

	for _, secret := range []string{opClientSecret, sess.Value, cb.Query().Get("code")} {
		if strings.Contains(f.cp.Output(), secret) {
			t.Errorf("the server log holds a secret (%.8s...)", secret)
		}
	}
}

var cmpIgnoreTimes = cmp.FilterPath(func(p cmp.Path) bool {
	n := p.Last().String()
	return n == ".CreatedAt" || n == ".UpdatedAt"
}, cmp.Ignore())

func TestSSOWrongIssuerAndLocalLoginDisabled(t *testing.T) {
	t.Parallel()
	port := freeTCPPort(t)
	op := startOP(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/api/v1/sso/callback", ssoUsers...)
	// The OP's issuer is http://127.0.0.1:PORT; this control plane expects http://localhost:PORT.
	wrong := strings.Replace(op.Issuer, "127.0.0.1", "localhost", 1)
	cp := StartControlPlane(t, ServerOptions{Args: []string{"--listen", "127.0.0.1:" + strconv.Itoa(port), "--disable-local-login"},
		Env: []string{"GATEHOUSE_OIDC_ISSUER=" + wrong, "GATEHOUSE_OIDC_CLIENT_ID=" + opClientID,
			"GATEHOUSE_OIDC_CLIENT_SECRET_FILE=" + writeSecret(t), "GATEHOUSE_OIDC_CONSUMER_GROUPS=*"}})
	resp, body := noFollow(t, newBrowser(t), cp.URL+"/api/v1/sso/login")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "issuer") {
		t.Errorf("login with an IdP claiming another issuer: %s\n%s", resp.Status, body)
	}

	res := cp.NewCLI(t).RunStdin(AdminPassword+"\n", "login", "--server", cp.URL, "--username", "admin", "--password-stdin")
	if res.Code != 1 || !strings.Contains(res.Stderr, "password is disabled") {
		t.Errorf("password login with --disable-local-login: %s", res)
	}
	var info map[string]any
	_, body = newBrowser(t).get(t, cp.URL+"/api/v1/sso")
	if json.Unmarshal([]byte(body), &info) != nil || info["oidc"] != true || info["local_login"] != false {
		t.Errorf("GET /api/v1/sso = %s", body)
	}
}

// cliSSOLogin runs `gatehouse login --sso` as cli, signs in at the OP as username with a browser,
// and waits for the command to finish.
func cliSSOLogin(t *testing.T, c *CLI, username string) Result {
	t.Helper()
	cmd := exec.Command(Binary, "login", "--server", c.Server, "--sso", "--no-browser", "--timeout", "60s")
	cmd.Env = append(baseEnv(), "GATEHOUSE_CONFIG_DIR="+c.ConfigDir)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var loginURL string
	waitUntil(t, 20*time.Second, "gatehouse login --sso prints the URL", func() bool {
		for _, l := range strings.Split(stderr.String(), "\n") {
			if u, ok := strings.CutPrefix(l, "Open this URL in a browser to sign in: "); ok {
				loginURL = strings.TrimSpace(u)
				return true
			}
		}
		return false
	})
	b := newBrowser(t)
	cb := b.signIn(t, loginURL, username)
	resp, body := b.get(t, cb.String()) // follows the control plane's redirect to the CLI's loopback
	if !strings.Contains(body, "Signed in") && !strings.Contains(body, "Sign-in failed") {
		t.Errorf("the loopback page: %s\n%s", resp.Status, body)
	}
	err := cmd.Wait()
	res := Result{Args: []string{"login", "--sso"}, Stdout: stdout.String(), Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

type storedSession struct {
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
	Username     string `json:"username"`
}

func readSession(t *testing.T, c *CLI) storedSession {
	t.Helper()
	p := filepath.Join(c.ConfigDir, "session.json")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("session.json mode %v, want 0600", fi.Mode().Perm())
	}
	var s storedSession
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// scimCall sends a SCIM request with the bearer token and decodes the answer into out (if not nil).
func scimCall(t *testing.T, base, bearer, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, base+"/scim/v2"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestSSOEndToEnd is the "done when": provisioned by SCIM, signed in through the OP from
// the CLI, a token, the connections, psql through a sidecar; then SCIM takes a group away and
// deactivates the user, which ends their live session, and deletes them.
func TestSSOEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pgctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	pg, err := pgserver.Start(pgctx, pgserver.Config{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { pg.Stop() })

	f := newSSOFixture(t)
	base := f.cp.URL
	admin := f.cp.Admin(t)
	priv, pub := GenerateRSAKey(t, 2048)
	id := registerSidecar(t, admin, pub)
	port := freeTCPPort(t)
	admin.MustRun("repository", "create", "--name", "app", "--type", "postgresql", "--version", "15",
		"--hostname", "127.0.0.1", "--port", strconv.Itoa(pg.Port()), "--database", "postgres", "--tls-mode", "disable")
	admin.MustRun("repository", "user", "create", "--repository", "app", "--username", "postgres", "--secret-source", "env", "--env-name", "APP_DB_PASSWORD")
	admin.MustRun("sidecar", "port", "create", id, "--port", strconv.Itoa(port), "--type", "postgresql", "--version", "15")
	admin.MustRun("sidecar", "binding", "create", id, "--port", strconv.Itoa(port), "--repository", "app")
	admin.MustRun("policy", "impersonation", "create", "--name", "analysts-app", "--repository", "app", "--rule", "groups=analysts;repository_users=postgres")
	startSidecar(t, base, id, priv, []string{"APP_DB_PASSWORD=" + pg.Password()})

	// SCIM, as Okta provisions: a token from the CLI, then the user and the group.
	var st struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	admin.MustRunJSON(&st, "scim", "token", "create")
	if !strings.HasPrefix(st.Token, "ghscim_") {
		t.Fatalf("scim token = %q", st.Token)
	}
	if code := scimCall(t, base, "ghscim_wrong", "GET", "/Users", "", nil); code != http.StatusUnauthorized {
		t.Errorf("SCIM with a wrong token: %d", code)
	}
	var created map[string]any
	if code := scimCall(t, base, st.Token, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
		"userName":"alice@example.com","name":{"givenName":"Alice","familyName":"Liddell"},
		"emails":[{"primary":true,"value":"alice@example.com","type":"work"}],"displayName":"Alice Liddell","active":true,"password":"ignored"}`, &created); code != http.StatusCreated {
		t.Fatalf("SCIM create user: %d %v", code, created)
	}
	if code := scimCall(t, base, st.Token, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],
		"displayName":"analysts","members":[{"value":"alice@example.com"}]}`, nil); code != http.StatusCreated {
		t.Fatalf("SCIM create group: %d", code)
	}
	var list struct {
		TotalResults int              `json:"totalResults"`
		Resources    []map[string]any `json:"Resources"`
	}
	scimCall(t, base, st.Token, "GET", "/Users?filter="+url.QueryEscape(`userName eq "alice@example.com"`), "", &list)
	if list.TotalResults != 1 || list.Resources[0]["id"] != "alice@example.com" {
		t.Errorf("SCIM filter userName eq: %+v", list)
	}

	// alice signs in from the CLI through the OP.
	alice := f.cp.NewCLI(t)
	if res := cliSSOLogin(t, alice, "alice"); res.Code != 0 || !strings.Contains(res.Stdout, "Logged in to "+base+" as alice@example.com") {
		t.Fatalf("gatehouse login --sso: %s", res)
	}
	sess := readSession(t, alice)
	if !strings.Contains(alice.MustRun("whoami"), "DATA_CONSUMER") {
		t.Errorf("whoami after SSO login")
	}

	var conns []gatehouse.Connection
	alice.MustRunJSON(&conns, "connections")
	if len(conns) != 1 || conns[0].Repository != "app" || conns[0].RepositoryUser != "postgres" || conns[0].Port != port {
		t.Fatalf("connections = %+v", conns)
	}
	printed := alice.MustRun("connect", "app", "--user", "postgres", "--host", "127.0.0.1", "--print")
	if want := fmt.Sprintf("PGSSLMODE=require PGPASSWORD=<access token> psql -h 127.0.0.1 -p %d -U postgres -d postgres", port); strings.TrimSpace(printed) != want {
		t.Errorf("connect --print = %q, want %q", printed, want)
	}
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", port) })
	out := alice.MustRun("connect", "app", "--user", "postgres", "--host", "127.0.0.1", "--", "-tAc", "SELECT 41 + 1")
	if strings.TrimSpace(out) != "42" {
		t.Errorf("psql through the sidecar printed %q", out)
	}
	cache, err := os.Stat(filepath.Join(alice.ConfigDir, "connect-tokens.json"))
	if err != nil || cache.Mode().Perm() != 0o600 {
		t.Errorf("token cache: %v %v", cache, err)
	}

	// The refreshable session: a session the server no longer knows is renewed with the refresh token.
	p := filepath.Join(alice.ConfigDir, "session.json")
	raw, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(raw), sess.Token, "ghs_expiredexpiredexpiredexpiredexpired0000", 1)), 0o600)
	if !strings.Contains(alice.MustRun("whoami"), "alice@example.com") {
		t.Errorf("whoami with a refreshed session")
	}
	renewed := readSession(t, alice)
	if renewed.Token == sess.Token || renewed.RefreshToken == sess.RefreshToken || renewed.RefreshToken == "" {
		t.Errorf("the refresh did not rotate the session and refresh token")
	}
	var tokenErr map[string]any
	resp, err := http.Post(base+"/api/v1/sso/token", "application/json", strings.NewReader(`{"grant_type":"refresh_token","refresh_token":"`+sess.RefreshToken+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&tokenErr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a used refresh token: %s %v", resp.Status, tokenErr)
	}

	// A live session, then SCIM takes alice out of "analysts" as Okta does: the session ends.
	var tok struct {
		Token string `json:"token"`
	}
	alice.MustRunJSON(&tok, "token", "create", "--ttl", "2h")
	connect := func() (*pgx.Conn, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return pgx.Connect(cctx, fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=require&connect_timeout=5", tok.Token, port))
	}
	live, err := connect()
	if err != nil {
		t.Fatal(err)
	}
	if code := scimCall(t, base, st.Token, "PATCH", "/Groups/analysts", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"remove","path":"members[value eq \"alice@example.com\"]"}]}`, nil); code != http.StatusOK {
		t.Fatalf("SCIM remove member: %d", code)
	}
	start := time.Now()
	waitUntil(t, 20*time.Second, "live session ended after the group membership went", func() bool {
		var n int
		return live.QueryRow(ctx, "SELECT 1").Scan(&n) != nil
	})
	t.Logf("live session ended %s after the SCIM group change", time.Since(start).Round(time.Millisecond))
	live.Close(ctx)
	if c, err := connect(); err == nil {
		c.Close(ctx)
		t.Errorf("connected without the group's impersonation")
	}

	// Entra ID adds her back, then deactivates her ("active": "False" as a string).
	if code := scimCall(t, base, st.Token, "PATCH", "/Groups/analysts", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Add","path":"members","value":[{"value":"alice@example.com"}]}]}`, nil); code != http.StatusOK {
		t.Fatalf("SCIM add member: %d", code)
	}
	waitUntil(t, 20*time.Second, "connect again with the group back", func() bool {
		c, err := connect()
		if err != nil {
			return false
		}
		live = c
		return true
	})
	var patched map[string]any
	if code := scimCall(t, base, st.Token, "PATCH", "/Users/alice@example.com", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations":[{"op":"Replace","path":"active","value":"False"}]}`, &patched); code != http.StatusOK || patched["active"] != false {
		t.Fatalf("SCIM deactivate: %d %v", code, patched)
	}
	start = time.Now()
	waitUntil(t, 20*time.Second, "live session ended after deactivation", func() bool {
		var n int
		return live.QueryRow(ctx, "SELECT 1").Scan(&n) != nil
	})
	t.Logf("live session ended %s after SCIM deactivation", time.Since(start).Round(time.Millisecond))
	live.Close(ctx)
	if res := alice.Run("whoami"); res.Code == 0 {
		t.Errorf("a deactivated user's CLI session still works: %s", res)
	}
	var toks []gatehouse.AccessToken
	admin.MustRunJSON(&toks, "token", "list")
	if i := slices.IndexFunc(toks, func(t gatehouse.AccessToken) bool { return t.Owner == "alice@example.com" && t.RevokedAt == nil }); i >= 0 {
		t.Errorf("token %s survived the deactivation", toks[i].ID)
	}
	// Signing in again through the OP is refused too.
	bb := newBrowser(t)
	resp, body := noFollow(t, bb, bb.signIn(t, base+"/api/v1/sso/login", "alice").String())
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "deactivated") {
		t.Errorf("SSO sign-in of a deactivated user: %s\n%s", resp.Status, body)
	}

	if code := scimCall(t, base, st.Token, "DELETE", "/Users/alice@example.com", "", nil); code != http.StatusNoContent {
		t.Errorf("SCIM delete: %d", code)
	}
	if code := scimCall(t, base, st.Token, "GET", "/Users/alice@example.com", "", nil); code != http.StatusNotFound {
		t.Errorf("SCIM get after delete: %d", code)
	}
	// The break-glass admin is invisible to provisioning.
	if code := scimCall(t, base, st.Token, "DELETE", "/Users/admin", "", nil); code != http.StatusNotFound {
		t.Errorf("SCIM delete of the local admin: %d", code)
	}
	// Rotation: revoke the SCIM token.
	admin.MustRun("scim", "token", "revoke", st.ID)
	if code := scimCall(t, base, st.Token, "GET", "/Users", "", nil); code != http.StatusUnauthorized {
		t.Errorf("SCIM with a revoked token: %d", code)
	}

	for _, secret := range []string{st.Token, tok.Token, sess.Token, renewed.RefreshToken, opClientSecret} {
		if strings.Contains(f.cp.Output(), secret) {
			t.Errorf("the server log holds a secret (%.10s...)", secret)
		}
	}
}

// TestSSOLogoutRevokes checks that gatehouse logout ends the SSO session and its refresh token.
func TestSSOLogoutRevokes(t *testing.T) {
	t.Parallel()
	f := newSSOFixture(t)
	c := f.cp.NewCLI(t)
	if res := cliSSOLogin(t, c, "root"); res.Code != 0 {
		t.Fatalf("login --sso: %s", res)
	}
	s := readSession(t, c)
	if !strings.Contains(c.MustRun("whoami"), "ADMIN") {
		t.Errorf("root should be an admin")
	}
	c.MustRun("logout")
	for _, body := range []string{`{"grant_type":"refresh_token","refresh_token":"` + s.RefreshToken + `"}`} {
		resp, err := http.Post(f.cp.URL+"/api/v1/sso/token", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("refresh token after logout: %s", resp.Status)
		}
	}
	req, _ := http.NewRequest("GET", f.cp.URL+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session after logout: %s", resp.Status)
	}
	// bob is in no Gatehouse group: the CLI says so.
	if res := cliSSOLogin(t, f.cp.NewCLI(t), "bob"); res.Code != 1 || !strings.Contains(res.Stderr, "not assigned to Gatehouse") {
		t.Errorf("login --sso of an unassigned user: %s", res)
	}
}
