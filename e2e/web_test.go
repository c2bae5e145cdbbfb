package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehousedb/gatehouse/internal/pgserver"
)

// chromium is a headless Chromium driven by chromedp for one test, with screenshots saved under
// $GATEHOUSE_ARTIFACTS/<test name> (or a temporary directory).
type chromium struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	n     int
}

func startChromium(t *testing.T, base string) *chromium {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make test-deps installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	// No UserDataDir: chromedp makes a temporary profile and removes it after Chromium exits (a
	// t.TempDir profile races Chromium's last writes at cleanup and fails the test).
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// chromedp reports CDP events it has no handler for (new ones like the <dialog> top layer's) as
	// errors; they are not the console's.
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "unhandled node event") {
			t.Logf("chromedp: %s", msg)
		}
	}))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	shots := t.TempDir()
	if dir := os.Getenv("GATEHOUSE_ARTIFACTS"); dir != "" {
		shots = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", shots)
	return &chromium{t: t, ctx: ctx, base: base, shots: shots}
}

// run runs actions with a per-step timeout, failing the test with what was asked.
func (c *chromium) run(what string, actions ...chromedp.Action) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var loc, body string
		_ = chromedp.Run(c.ctx, chromedp.Location(&loc), chromedp.Text("main", &body, chromedp.ByQuery))
		c.shot("failed")
		c.t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
	}
}

// open loads a console path.
func (c *chromium) open(path string) {
	c.t.Helper()
	c.run("open "+path, chromedp.Navigate(c.base+path), chromedp.WaitReady("main", chromedp.ByQuery))
}

// shot saves a full-page screenshot as NN-name.png.
func (c *chromium) shot(name string) {
	c.t.Helper()
	var png []byte
	if err := chromedp.Run(c.ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		c.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	c.n++
	if err := os.WriteFile(filepath.Join(c.shots, fmt.Sprintf("%02d-%s.png", c.n, name)), png, 0o644); err != nil {
		c.t.Errorf("save screenshot %s: %v", name, err)
	}
}

// fill types value into the field with the given id (after clearing it).
func fill(id, value string) chromedp.Action {
	sel := "#" + id
	return chromedp.Tasks{
		chromedp.WaitVisible(sel, chromedp.ByQuery),
		chromedp.Evaluate(fmt.Sprintf(`document.getElementById(%q).value = ""`, id), nil),
		chromedp.SendKeys(sel, value, chromedp.ByQuery),
	}
}

// choose selects value in a <select> and fires "change", as a user's choice does.
func choose(id, value string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.WaitVisible("#"+id, chromedp.ByQuery),
		chromedp.Evaluate(fmt.Sprintf(`(function (el) { el.value = %q; if (el.value !== %q) throw new Error("no option " + %q); el.dispatchEvent(new Event("change", {bubbles: true})); })(document.getElementById(%q))`, value, value, value, id), nil),
	}
}

// click clicks and waits for the next page's element sel.
func click(target, next string) chromedp.Action {
	return chromedp.Tasks{chromedp.Click(target, chromedp.ByQuery), chromedp.WaitVisible(next, chromedp.ByQuery)}
}

func (c *chromium) text(sel string) string {
	c.t.Helper()
	var s string
	c.run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

func (c *chromium) location() string {
	c.t.Helper()
	var loc string
	c.run("location", chromedp.Location(&loc))
	return strings.TrimPrefix(loc, c.base)
}

// wantText fails unless the element sel contains every want.
func (c *chromium) wantText(sel string, wants ...string) {
	c.t.Helper()
	got := c.text(sel)
	for _, w := range wants {
		if !strings.Contains(got, w) {
			c.t.Errorf("%s lacks %q; it reads:\n%s", sel, w, got)
		}
	}
}

func (c *chromium) signIn(user, password, landing string) {
	c.t.Helper()
	c.open("/login")
	c.run("sign in as "+user, fill("f-username", user), fill("f-password", password), click("#sign-in", landing))
}

func (c *chromium) signOut() {
	c.t.Helper()
	c.run("sign out", click(".signout button", "#sign-in"))
}

// TestWebRegistrationWorkflow is the reference guide's workflow, click by click: an admin registers a
// repository, its user, a sidecar, a listener port, a binding and an impersonation policy through
// the console; a data consumer makes a token there, reads the connection details, and psql connects
// with them through the running sidecar to a real PostgreSQL.
func TestWebRegistrationWorkflow(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	cp := StartControlPlane(t, ServerOptions{Env: []string{"GATEHOUSE_SIDECAR_STALE_AFTER=3s", "GATEHOUSE_SIDECAR_DISCONNECTED_AFTER=6s"}})
	priv, pub := GenerateRSAKey(t, 2048)
	port := freeTCPPort(t)
	b := startChromium(t, cp.URL)

	// Log in; Data Configuration → Data Sources.
	b.open("/sidecars")
	if loc := b.location(); !strings.HasPrefix(loc, "/login?next=") {
		t.Errorf("signed out, /sidecars went to %s; want the sign-in page", loc)
	}
	b.shot("login")
	b.run("wrong password", fill("f-username", "admin"), fill("f-password", "wrong"), click("#sign-in", "#general-error"))
	b.wantText("#general-error", "invalid username or password")
	b.signIn("admin", AdminPassword, "#add-data-source")
	b.shot("data-sources-empty")

	// Add Data Source → the card → Select; a wrong hostname first.
	b.run("add data source", click("#add-data-source", `a[aria-label="Select PostgreSQL"]`))
	b.shot("add-data-source")
	b.run("select PostgreSQL", click(`a[aria-label="Select PostgreSQL"]`, "#f-name"))
	b.run("bad hostname", fill("f-name", "app"), fill("f-hostname", "http://db.example.com"), fill("f-port", strconv.Itoa(pg.Port())),
		fill("f-version", "15"), fill("f-database", "postgres"), choose("f-tls_mode", "disable"), click("#save", "#e-hostname"))
	b.wantText("#e-hostname", "must be a host name without a scheme")
	b.shot("add-data-source-error")
	b.run("save repository", fill("f-hostname", "127.0.0.1"), click("#save", "#tab-users"))
	b.wantText("main", "Repository app registered", "127.0.0.1", strconv.Itoa(pg.Port()), "disable")
	b.shot("repository")

	// Users tab → Register Repository User → Secret Source shows only its fields.
	b.run("users tab", click("#tab-users", "#register-repository-user"))
	b.run("register repository user", click("#register-repository-user", "#f-username"))
	b.run("AWS fields by default", chromedp.WaitVisible("#f-secret-arn", chromedp.ByQuery), chromedp.WaitNotVisible("#f-secret-vault_uri", chromedp.ByQuery))
	b.run("Azure fields", choose("f-secret-source", "azure-key-vault"), chromedp.WaitVisible("#f-secret-vault_uri", chromedp.ByQuery),
		chromedp.WaitVisible("#f-secret-secret_name", chromedp.ByQuery), chromedp.WaitNotVisible("#f-secret-arn", chromedp.ByQuery))
	b.shot("register-repository-user-azure")
	b.run("bad vault URI", fill("f-username", "postgres"), fill("f-secret-secret_name", "prod-user-admin"), fill("f-secret-vault_uri", "http://vault"),
		click("#register-user", "#e-secret-vault_uri"))
	b.wantText("#e-secret-vault_uri", "https URI")
	b.shot("register-repository-user-error")
	b.run("env source", choose("f-secret-source", "env"), fill("f-secret-name", "APP_DB_PASSWORD"), chromedp.WaitNotVisible("#f-secret-vault_uri", chromedp.ByQuery),
		click("#register-user", "#register-repository-user"))
	b.wantText("main", "Repository user postgres registered", "env:APP_DB_PASSWORD")
	b.shot("repository-users")

	// Settings → Sidecars → Register Sidecar: a wrong key first, then the uploaded public.pem with
	// "Allow unsupported queries" and its confirmation.
	b.run("sidecars", click(`a[href="/sidecars"]`, "#register-sidecar"))
	b.run("register sidecar", click("#register-sidecar", "#f-display_name"))
	b.run("bad key", fill("f-display_name", "Local sidecar"), fill("f-hostname", "127.0.0.1"), fill("f-public_key", "not a key"),
		click("#register", "#e-public_key"))
	b.wantText("#e-public_key", "PEM")
	b.shot("register-sidecar-error")
	b.open("/sidecars")
	b.wantText("main", "No sidecars yet")
	b.run("register sidecar again", click("#register-sidecar", "#f-display_name"),
		fill("f-display_name", "Local sidecar"), fill("f-hostname", "127.0.0.1"),
		chromedp.SetUploadFiles("#f-public_key_file", []string{pub}, chromedp.ByQuery),
		chromedp.Click("details.advanced summary", chromedp.ByQuery), chromedp.Click("#f-allow_unsupported_queries", chromedp.ByQuery),
		click("#register", "#confirm-dialog[open]"))
	b.wantText("#confirm-message", "unauthorized data access")
	b.shot("register-sidecar-confirm")
	b.run("confirm", click("#confirm-ok", "#sidecar-id"))
	id := b.text("#sidecar-id")
	if got := b.text("#control-plane-url"); got != cp.URL {
		t.Errorf("control-plane URL on the sidecar page: %q; want %q", got, cp.URL)
	}
	b.wantText("#install-snippet", "--sidecar-id "+id, "--control-plane "+cp.URL)
	b.wantText("main", "allowed", "No instance has connected yet")
	b.shot("sidecar")

	// Install: the instance appears on the Instances tab without a reload.
	startSidecar(t, cp.URL, id, priv, []string{"APP_DB_PASSWORD=" + pg.Password()})
	b.run("live instance status", chromedp.WaitVisible("#instances .status.healthy", chromedp.ByQuery))
	b.shot("sidecar-instances-live")

	// Listener Ports tab → Register Port.
	b.run("ports tab", click("#tab-ports", "#register-port"))
	b.run("register port", click("#register-port", "#f-port"), fill("f-port", "0"), choose("f-type", "postgresql"), fill("f-version", "15"),
		click("#register-port-submit", "#e-port"))
	b.wantText("#e-port", "between 1 and 65535")
	b.run("register port", fill("f-port", strconv.Itoa(port)), click("#register-port-submit", "#register-port"))
	b.wantText("main", "Listener port "+strconv.Itoa(port)+" registered")
	b.shot("sidecar-ports")

	// Bindings tab → Create Binding.
	b.run("bindings tab", click("#tab-bindings", "#create-binding"))
	b.run("create binding", click("#create-binding", "#f-port"), choose("f-port", strconv.Itoa(port)), choose("f-repository", "app"),
		click("#create-binding-submit", "#create-binding"))
	b.wantText("main", "bound to app")
	b.shot("sidecar-bindings")

	// Users & Groups: the data consumer (SSO and SCIM would bring her; here a local user).
	b.open("/users")
	b.run("add user", fill("f-name", "alice@example.com"), choose("f-role", "DATA_CONSUMER"), fill("f-password", "alice-Passw0rd!"),
		click("#add-user", ".flash"))
	b.wantText("main", "alice@example.com", "DATA_CONSUMER")
	b.shot("users")

	// Policy → Create Policy → Impersonation Policy → PostgreSQL → Display Name, Data Source → Next → rule → Save.
	b.run("policy", click(`a[href="/policies"]`, "#create-policy"))
	b.run("create policy", click("#create-policy", "#create-impersonation"))
	b.run("impersonation", click("#create-impersonation", `a[aria-label="Create Policy for PostgreSQL"]`))
	b.run("postgresql", click(`a[aria-label="Create Policy for PostgreSQL"]`, "#f-display_name"))
	b.run("step 1", fill("f-display_name", "Alice on app"), choose("f-repository", "app"), click("#next", "#f-rules-0--name"))
	b.run("rule without a repository user", fill("f-rules-0--name", "alice@example.com"), click("#save-policy", "#e-rules-0--repository_user"))
	b.wantText("#e-rules-0--repository_user", "at least one repository user")
	b.shot("impersonation-policy-error")
	b.run("rule", choose("f-rules-0--repository_user", "postgres"), click("#save-policy", "#create-policy"))
	b.wantText("main", "Alice on app", "user alice@example.com → postgres")
	b.shot("policies")

	// Access management: a monitor-mode policy, a wrong operation first; then "Test a statement".
	b.run("create policy", click("#create-policy", "#create-access"))
	b.run("access management policy", click("#create-access", "#f-name"))
	b.run("bad operation", fill("f-name", "no-ddl"), choose("f-repository", "app"), choose("f-mode", "monitor"),
		choose("f-rules-0--effect", "deny"), fill("f-rules-0--operations", "drop"), fill("f-rules-0--objects", "*"),
		click("#save-access-policy", "#e-rules-0--operations"))
	b.wantText("#e-rules-0--operations", `"drop" is not an operation`)
	b.shot("access-policy-error")
	b.run("save access policy", fill("f-rules-0--operations", "ddl"), click("#save-access-policy", "#access-policies"))
	b.wantText("#access-policies", "no-ddl", "monitor", "deny ddl on *")
	b.run("test a statement", choose("f-test-repository", "app"), fill("f-test-user", "alice@example.com"), fill("f-test-sql", "DROP TABLE orders"),
		click("#test-statement", "#test-result"))
	b.wantText("#test-result", "ddl", "no-ddl")
	b.shot("access-policies-test")

	// Settings: the token maximum lifetime.
	b.open("/settings")
	b.run("bad lifetime", fill("f-max_token_ttl", "forever"), click("#save-settings", "#e-max_token_ttl"))
	b.shot("settings-error")
	b.run("lifetime", fill("f-max_token_ttl", "12h"), click("#save-settings", ".flash"))
	b.shot("settings")
	b.signOut()

	// The data consumer: no admin pages; New Access Token; the connection drawer.
	// Keyboard only: type, Tab to the next field, Enter submits.
	b.open("/login")
	b.run("sign in with the keyboard", chromedp.Focus("#f-username", chromedp.ByQuery), chromedp.KeyEvent("alice@example.com"), chromedp.KeyEvent("\t"),
		chromedp.KeyEvent("alice-Passw0rd!"), chromedp.KeyEvent("\r"), chromedp.WaitVisible("details.drawer", chromedp.ByQuery))
	for _, path := range []string{"/data-sources", "/sidecars", "/policies", "/users", "/settings", "/repositories/app"} {
		b.open(path)
		if got := b.text("#error-message"); !strings.Contains(got, "for administrators") {
			t.Errorf("data consumer on %s: %q; want the 403 page", path, got)
		}
	}
	b.shot("consumer-403")
	b.open("/tokens")
	b.run("new access token", click("#new-access-token", "#f-ttl"))
	b.run("too long", choose("f-ttl", "7d"), click("#generate-token", "#e-ttl"))
	b.wantText("#e-ttl", "at most 12h")
	b.run("custom", choose("f-ttl", "custom"), chromedp.WaitVisible("#f-ttl_custom", chromedp.ByQuery))
	b.shot("new-access-token")
	b.run("generate", choose("f-ttl", "1h"), chromedp.WaitNotVisible("#f-ttl_custom", chromedp.ByQuery), click("#generate-token", "#new-token"))
	token := b.text("#new-token")
	b.wantText(".token-once", "won't be shown again")
	if !strings.HasPrefix(token, "gh1_") {
		t.Fatalf("token on the page: %q", token)
	}
	b.shot("token-once")

	b.run("connections", click("#to-connections", "details.drawer"))
	b.run("open the drawer", chromedp.Click("#repo-app > summary", chromedp.ByQuery), chromedp.Click(`#repo-app details.conn > summary`, chromedp.ByQuery),
		chromedp.WaitVisible(`#repo-app details.conn dl`, chromedp.ByQuery))
	conn := b.text(`#repo-app details.conn`)
	for _, want := range []string{"Username\npostgres", "Sidecar Hostname\n127.0.0.1", "Sidecar Listener Port\n" + strconv.Itoa(port), "jdbc:postgresql://127.0.0.1:" + strconv.Itoa(port)} {
		if !strings.Contains(conn, want) {
			t.Errorf("connection details lack %q:\n%s", want, conn)
		}
	}
	psql := b.text(`#repo-app details.conn pre[id^="cli-"]`)
	b.shot("connections")
	b.run("phone width", chromedp.EmulateViewport(390, 844))
	b.shot("connections-phone")
	b.run("laptop width", chromedp.EmulateViewport(1280, 900))

	// The ready-to-paste psql line, with the token as the password, through the sidecar.
	waitUntil(t, 10*time.Second, "listener port open", func() bool { return listening("127.0.0.1", port) })
	cmd := exec.Command("sh", "-c", psql+" -tA -c 'SELECT 41 + 1'")
	cmd.Env = append(baseEnv(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Fatalf("%s: %v\n%s", psql, err, out)
	}

	// My tokens → Revoke: psql is refused afterwards.
	b.open("/tokens")
	b.run("revoke", chromedp.Click(`form[action$="/revoke"] button`, chromedp.ByQuery), chromedp.WaitVisible("#confirm-dialog[open]", chromedp.ByQuery),
		click("#confirm-ok", ".flash"))
	b.wantText("#tokens", "revoked")
	b.shot("tokens-revoked")
	waitUntil(t, 20*time.Second, "revoked token refused by psql", func() bool {
		cmd := exec.Command("sh", "-c", psql+" -tA -c 'SELECT 1'")
		cmd.Env = append(baseEnv(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=5")
		return cmd.Run() != nil
	})

	// The admin reads alice's statement on the Activity page, with its full record.
	b.signOut()
	b.signIn("admin", AdminPassword, "#add-data-source")
	waitUntil(t, 20*time.Second, "alice's statement on the Activity page", func() bool {
		b.open("/activity?user=alice%40example.com&type=statement")
		var n int
		b.run("count records", chromedp.Evaluate(`Array.from(document.querySelectorAll("#activity code")).filter(c => c.textContent.includes("SELECT 41 + 1")).length`, &n))
		return n > 0
	})
	b.run("full record", chromedp.Click("#activity details > summary", chromedp.ByQuery), chromedp.WaitVisible("#activity pre.record", chromedp.ByQuery))
	b.wantText("#activity pre.record", `"user": "alice@example.com"`, `"repository": "app"`)
	b.shot("activity")
	b.open("/activity?since=forever")
	b.wantText("#e-since", "")
	b.shot("activity-filter-error")
}
