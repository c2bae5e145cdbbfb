package cli

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/controlplane"
	"github.com/gatehousedb/gatehouse/internal/token"
)

// ---- gatehouse server: single sign-on flags

type oidcFlags struct {
	issuer, clientID, secretFile, scopes, groupsClaim, usernameClaim string
	adminGroups, consumerGroups, allowedDomains                      string
	disableLocalLogin                                                bool
}

func addOIDCFlags(cmd *cobra.Command, o *oidcFlags) {
	f := cmd.Flags()
	f.StringVar(&o.issuer, "oidc-issuer", "", "OpenID Provider issuer URL; turns on single sign-on")
	f.StringVar(&o.clientID, "oidc-client-id", "", "OIDC client ID registered at the IdP")
	f.StringVar(&o.secretFile, "oidc-client-secret-file", "", "file holding the OIDC client secret")
	f.StringVar(&o.scopes, "oidc-scopes", "", "comma-separated scopes to request (default openid,email,profile,groups)")
	f.StringVar(&o.groupsClaim, "oidc-groups-claim", "", "claim holding the user's IdP groups (default groups)")
	f.StringVar(&o.usernameClaim, "oidc-username-claim", "", "claim that names the Gatehouse user: email (default) or preferred_username")
	f.StringVar(&o.adminGroups, "oidc-admin-groups", "", "comma-separated IdP groups whose members are ADMIN")
	f.StringVar(&o.consumerGroups, "oidc-consumer-groups", "", "comma-separated IdP groups whose members are DATA_CONSUMER (\"*\": everyone)")
	f.StringVar(&o.allowedDomains, "oidc-allowed-domains", "", "comma-separated e-mail domains allowed to sign in (default any)")
	f.BoolVar(&o.disableLocalLogin, "disable-local-login", false, "refuse password sign-in; restart without it as the break-glass way in")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// applyOIDCFlags fills cfg's single sign-on settings from the flags and their GATEHOUSE_OIDC_*
// environment fallbacks.
func applyOIDCFlags(e *env, o *oidcFlags, cfg *controlplane.Config) error {
	for _, f := range []struct {
		v   *string
		env string
	}{
		{&o.issuer, "GATEHOUSE_OIDC_ISSUER"}, {&o.clientID, "GATEHOUSE_OIDC_CLIENT_ID"},
		{&o.secretFile, "GATEHOUSE_OIDC_CLIENT_SECRET_FILE"}, {&o.scopes, "GATEHOUSE_OIDC_SCOPES"},
		{&o.groupsClaim, "GATEHOUSE_OIDC_GROUPS_CLAIM"}, {&o.usernameClaim, "GATEHOUSE_OIDC_USERNAME_CLAIM"},
		{&o.adminGroups, "GATEHOUSE_OIDC_ADMIN_GROUPS"}, {&o.consumerGroups, "GATEHOUSE_OIDC_CONSUMER_GROUPS"},
		{&o.allowedDomains, "GATEHOUSE_OIDC_ALLOWED_DOMAINS"},
	} {
		fallback(e, f.v, f.env, "")
	}
	if !o.disableLocalLogin {
		switch strings.ToLower(e.Getenv("GATEHOUSE_DISABLE_LOCAL_LOGIN")) {
		case "", "0", "false", "no":
		case "1", "true", "yes":
			o.disableLocalLogin = true
		default:
			return usageErrorf("GATEHOUSE_DISABLE_LOCAL_LOGIN must be true or false")
		}
	}
	cfg.DisableLocalLogin = o.disableLocalLogin
	if o.issuer == "" {
		if o.disableLocalLogin {
			return usageErrorf("--disable-local-login needs single sign-on: pass --oidc-issuer too, or nobody could sign in")
		}
		return nil
	}
	if o.clientID == "" {
		return usageErrorf("--oidc-client-id is required with --oidc-issuer")
	}
	var secret string
	if o.secretFile != "" {
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return fmt.Errorf("read the OIDC client secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if o.adminGroups == "" && o.consumerGroups == "" {
		return usageErrorf("name the IdP groups that may sign in: --oidc-admin-groups and/or --oidc-consumer-groups (\"*\" admits everyone)")
	}
	cfg.OIDC = &auth.OIDCConfig{
		Issuer: o.issuer, ClientID: o.clientID, ClientSecret: secret, Scopes: splitList(o.scopes),
		GroupsClaim: o.groupsClaim, UsernameClaim: o.usernameClaim,
		AdminGroups: splitList(o.adminGroups), ConsumerGroups: splitList(o.consumerGroups), AllowedDomains: splitList(o.allowedDomains),
	}
	return nil
}

// ---- gatehouse login --sso

// SSOURLPrefix starts the line `gatehouse login --sso` prints with the URL to open; scripts and
// the e2e tests look for it.
const SSOURLPrefix = "Open this URL in a browser to sign in: "

type ssoTokens struct {
	Token            string    `json:"token"`
	ExpiresAt        time.Time `json:"expires_at"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
	Username         string    `json:"username"`
}

// ssoLoginOptions are gatehouse login --sso's flags.
type ssoLoginOptions struct {
	Device    bool          // --device: the device authorization grant, nothing else
	NoBrowser bool          // --no-browser: the loopback redirect, printing the URL only
	Timeout   time.Duration // --timeout; 0: 5 minutes for a browser, the code's lifetime for a device
}

// errNoLoopback is loginSSO's error when it cannot listen on a loopback port.
var errNoLoopback = errors.New("cannot listen on loopback for the sign-in redirect")

// ssoLogin picks how to sign in. --device and --no-browser choose; without either, a machine with
// no display (no DISPLAY or WAYLAND_DISPLAY on Unix, an SSH session on macOS and Windows) or no
// usable loopback signs in with a device code when the IdP can, since a browser elsewhere cannot
// reach this machine's loopback port. Everything else uses the loopback redirect.
func (e *env) ssoLogin(ctx context.Context, server string, o ssoLoginOptions) error {
	switch {
	case o.Device:
		return e.loginDevice(ctx, server, o.Timeout)
	case o.NoBrowser:
		return e.loginSSO(ctx, server, false, o.Timeout)
	case e.headless():
		fmt.Fprintln(e.Stderr, "No browser on this machine: signing in with a code you enter in a browser elsewhere (--no-browser for the loopback redirect instead).")
		err := e.loginDevice(ctx, server, o.Timeout)
		if gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
			return err
		}
		fmt.Fprintf(e.Stderr, "(%s)\n", errorMessage(err))
		return e.loginSSO(ctx, server, false, o.Timeout)
	}
	err := e.loginSSO(ctx, server, e.Interactive(), o.Timeout)
	if errors.Is(err, errNoLoopback) {
		fmt.Fprintf(e.Stderr, "(%v: signing in with a code instead)\n", err)
		return e.loginDevice(ctx, server, o.Timeout)
	}
	return err
}

// headless reports whether no browser can run on this machine's display.
func (e *env) headless() bool {
	switch runtime.GOOS {
	case "darwin", "windows":
		return e.Getenv("SSH_CONNECTION") != ""
	}
	return e.Getenv("DISPLAY") == "" && e.Getenv("WAYLAND_DISPLAY") == ""
}

func errorMessage(err error) string {
	var ge *gatehouse.Error
	if errors.As(err, &ge) {
		return ge.Message
	}
	return err.Error()
}

// loginSSO runs the browser flow on a loopback redirect: it listens on 127.0.0.1, prints (and when
// someone is at the keyboard, opens) the control plane's SSO URL, waits for the browser to come
// back with a one-time code, and redeems that code with its PKCE verifier.
func (e *env) loginSSO(ctx context.Context, server string, openBrowser bool, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("%w: %w", errNoLoopback, err)
	}
	defer ln.Close()
	state, err := token.Random(32)
	if err != nil {
		return err
	}
	verifier, err := token.Random(64)
	if err != nil {
		return err
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	q := url.Values{"cli_redirect": {redirect}, "cli_state": {state}, "cli_challenge": {auth.S256(verifier)}}
	loginURL := server + "/api/v1/sso/login?" + q.Encode()

	type result struct {
		tokens *ssoTokens
		err    error
	}
	done := make(chan result, 1)
	c := newClient(server)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		p := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(p.Get("state")), []byte(state)) != 1 {
			http.Error(w, "This sign-in was not started by this gatehouse login.", http.StatusBadRequest)
			return // keep waiting: a stray request must not end the real login
		}
		var res result
		if msg := p.Get("error_description"); p.Get("error") != "" {
			res.err = fmt.Errorf("single sign-on refused: %s", msg)
		} else {
			raw, err := c.post(r.Context(), path("sso", "token"), map[string]string{"grant_type": "authorization_code", "code": p.Get("code"), "code_verifier": verifier})
			if err == nil {
				res.tokens, err = decode[ssoTokens](raw)
			}
			res.err = err
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if res.err != nil {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "<!doctype html><title>Gatehouse</title><h1>Sign-in failed</h1><p>%s</p>", html.EscapeString(res.err.Error()))
		} else {
			fmt.Fprintf(w, "<!doctype html><title>Gatehouse</title><h1>Signed in</h1><p>You are signed in to Gatehouse as %s. You can close this tab.</p>", html.EscapeString(res.tokens.Username))
		}
		select {
		case done <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer func() {
		// Let the handler finish the page it is writing: the result is handed over before the
		// handler returns, and Close would cut the browser off mid-response.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()

	fmt.Fprintln(e.Stderr, SSOURLPrefix+loginURL)
	if openBrowser {
		if err := startBrowser(loginURL); err != nil {
			fmt.Fprintf(e.Stderr, "(could not open a browser: %v; open the URL yourself)\n", err)
		}
	}
	fmt.Fprintln(e.Stderr, "Waiting for the browser to come back...")
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("no sign-in within %s; run gatehouse login --sso again", timeout)
	}
	if res.err != nil {
		return res.err
	}
	return e.ssoLoggedIn(server, res.tokens)
}

// ssoLoggedIn stores the session of a single sign-on and says who signed in.
func (e *env) ssoLoggedIn(server string, t *ssoTokens) error {
	if err := e.saveSession(&session{Server: server, Username: t.Username, Token: t.Token, ExpiresAt: t.ExpiresAt,
		RefreshToken: t.RefreshToken, RefreshExpiresAt: t.RefreshExpiresAt}); err != nil {
		return err
	}
	if e.json() {
		return e.printJSON(mustJSON(map[string]string{"server": server, "username": t.Username}))
	}
	fmt.Fprintf(e.Stdout, "Logged in to %s as %s.\n", server, t.Username)
	return nil
}

func startBrowser(u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

// refresher returns the function the client calls on a 401 to renew an SSO session with its
// refresh token (rotated on each use) and store the new session; nil when s has no refresh token.
func (e *env) refresher(s *session) func(ctx context.Context) (string, error) {
	if s == nil || s.RefreshToken == "" {
		return nil
	}
	return func(ctx context.Context) (string, error) {
		c := newClient(normalizeServer(s.Server))
		raw, err := c.post(ctx, path("sso", "token"), map[string]string{"grant_type": "refresh_token", "refresh_token": s.RefreshToken})
		if err != nil {
			return "", err
		}
		t, err := decode[ssoTokens](raw)
		if err != nil {
			return "", err
		}
		if t.Token == "" {
			return "", errors.New("the control plane renewed the session without a token")
		}
		ns := *s
		ns.Token, ns.ExpiresAt, ns.RefreshToken, ns.RefreshExpiresAt = t.Token, t.ExpiresAt, t.RefreshToken, t.RefreshExpiresAt
		if err := e.saveSession(&ns); err != nil {
			return "", err
		}
		*s = ns
		return t.Token, nil
	}
}
