package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/token"
)

// Single sign-on.
//
// Browser: GET /api/v1/sso/login → 302 to the IdP (state, nonce, PKCE S256; the state is stored
// by hash and bound to the browser by an HttpOnly cookie) → the IdP redirects to
// GET /api/v1/sso/callback → the code is redeemed, the ID token verified, the user created or
// updated with the IdP's groups → session cookie, 302 to return_to.
//
// CLI: the CLI listens on a loopback port and opens /api/v1/sso/login?cli_redirect=...&cli_state=...
// &cli_challenge=... in a browser. After the same IdP round trip the callback redirects the browser
// to the loopback with a one-time code, which the CLI redeems with its PKCE verifier at
// POST /api/v1/sso/token for a session and a refresh token. The IdP sees one client and one
// redirect URI; its secret stays on the control plane.
//
// CLIs without a browser use the device authorization grant instead (sso_device.go).
const (
	ssoStateTTL   = 10 * time.Minute
	cliCodeTTL    = 2 * time.Minute
	refreshTTL    = 30 * 24 * time.Hour
	ssoStateName  = "gatehouse_sso_state"
	cliCodePrefix = "ghc_"
	refreshPrefix = "ghr_"
)

type ssoInfo struct {
	OIDC       bool   `json:"oidc"`        // single sign-on is configured
	LocalLogin bool   `json:"local_login"` // password sign-in is allowed
	LoginURL   string `json:"login_url,omitempty"`
}

type ssoTokenRequest struct {
	GrantType    string `json:"grant_type"` // "authorization_code" or "refresh_token"
	Code         string `json:"code,omitempty"`
	CodeVerifier string `json:"code_verifier,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

type ssoTokenResponse struct {
	Token            string    `json:"token"`
	ExpiresAt        time.Time `json:"expires_at"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
	Username         string    `json:"username"`
}

// ssoState is what a pending login remembers (the data of its GrantOIDCState).
type ssoState struct {
	Nonce        string `json:"nonce"`
	Verifier     string `json:"verifier"`
	ReturnTo     string `json:"return_to,omitempty"`
	CLIRedirect  string `json:"cli_redirect,omitempty"`
	CLIState     string `json:"cli_state,omitempty"`
	CLIChallenge string `json:"cli_challenge,omitempty"`
}

type scimTokenCreated struct {
	gatehouse.SCIMToken
	Token string `json:"token"` // shown once
}

func (a *API) registerSSORoutes(mux *http.ServeMux) {
	redirect := map[string]any{}
	for _, rt := range []route{
		{Method: "GET", Path: "/api/v1/sso", Access: public, Summary: "How to sign in here: single sign-on, password, or both", Response: ssoInfo{}, Status: 200, handle: a.ssoInfo},
		{Method: "GET", Path: "/api/v1/sso/login", Access: public, Summary: "Browsers: start single sign-on (302 to the identity provider)", Status: 302, Response: redirect,
			Query: map[string]string{
				"return_to":     "path to go back to after signing in (default /)",
				"cli_redirect":  "CLIs: the loopback URL (http://127.0.0.1:PORT/...) to send the one-time code to",
				"cli_state":     "CLIs: echoed to cli_redirect",
				"cli_challenge": "CLIs: PKCE S256 challenge of the verifier POST /api/v1/sso/token will need",
			}, handle: a.ssoLogin},
		{Method: "GET", Path: "/api/v1/sso/callback", Access: public, Summary: "The identity provider's redirect back (register this URL at the IdP)", Status: 302, Response: redirect,
			Query: map[string]string{"code": "authorization code", "state": "the login's state"}, handle: a.ssoCallback},
		{Method: "POST", Path: "/api/v1/sso/token", Access: public, Summary: "CLIs: redeem a one-time code (with the PKCE verifier) or a refresh token for a session", Request: ssoTokenRequest{}, Response: ssoTokenResponse{}, Status: 200, handle: a.ssoToken},

		{Method: "POST", Path: "/api/v1/scim-tokens", Access: adminOnly, Summary: "Create a bearer token for SCIM provisioning; the secret is in the answer only", Response: scimTokenCreated{}, Status: 201, handle: a.createSCIMToken},
		{Method: "GET", Path: "/api/v1/scim-tokens", Access: adminOnly, Summary: "List SCIM tokens", Response: []gatehouse.SCIMToken{}, Status: 200, handle: a.listSCIMTokens},
		{Method: "DELETE", Path: "/api/v1/scim-tokens/{id}", Access: adminOnly, Summary: "Revoke a SCIM token", Status: 204, handle: a.revokeSCIMToken},
	} {
		a.handle(mux, rt)
	}
	a.registerSSODeviceRoutes(mux)
}

func (a *API) ssoInfo(w http.ResponseWriter, r *http.Request) {
	info := ssoInfo{OIDC: a.oidc != nil, LocalLogin: !a.cfg.DisableLocalLogin}
	if a.oidc != nil {
		info.LoginURL = a.publicURL + "/api/v1/sso/login"
	}
	writeJSON(w, http.StatusOK, info)
}

// secureCookies reports whether the control plane is served over HTTPS.
func (a *API) secureCookies() bool { return strings.HasPrefix(a.publicURL, "https://") }

func (a *API) stateCookieName() string {
	if a.secureCookies() {
		return "__Host-" + ssoStateName
	}
	return ssoStateName
}

func randomSecret(prefix string) (string, error) {
	r, err := token.Random(token.SecretChars)
	if err != nil {
		return "", err
	}
	return prefix + r, nil
}

// safeReturnTo keeps return_to a path on this server, so the login cannot be used as an open redirect.
func safeReturnTo(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	return p
}

// checkLoopback accepts only http://127.0.0.1:PORT/..., http://[::1]:PORT/... and
// http://localhost:PORT/...: the one-time code may only go to a process on the user's machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Port() == "" || u.Fragment != "" {
		return gatehouse.Invalid("cli_redirect", "must be a loopback URL such as http://127.0.0.1:PORT/callback")
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); !(host == "localhost" || ip != nil && ip.IsLoopback()) {
		return gatehouse.Invalid("cli_redirect", "must be a loopback URL such as http://127.0.0.1:PORT/callback")
	}
	return nil
}

func (a *API) ssoLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if a.oidc == nil {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeNotFound, "single sign-on is not configured on this control plane (gatehouse server --oidc-issuer ...)"))
		return
	}
	q := r.URL.Query()
	st := ssoState{ReturnTo: safeReturnTo(q.Get("return_to")), CLIRedirect: q.Get("cli_redirect"), CLIState: q.Get("cli_state"), CLIChallenge: q.Get("cli_challenge")}
	if st.CLIRedirect != "" {
		if err := checkLoopback(st.CLIRedirect); err != nil {
			a.fail(w, r, err)
			return
		}
		if st.CLIState == "" || len(st.CLIState) > 200 {
			a.fail(w, r, gatehouse.Invalid("cli_state", "is required with cli_redirect (at most 200 characters)"))
			return
		}
		if len(st.CLIChallenge) != 43 {
			a.fail(w, r, gatehouse.Invalid("cli_challenge", "must be the PKCE S256 challenge (43 base64url characters) of the CLI's verifier"))
			return
		}
	}
	state, err := randomSecret("")
	if err == nil {
		st.Nonce, err = randomSecret("")
	}
	if err == nil {
		st.Verifier, err = randomSecret("")
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	target, err := a.oidc.AuthCodeURL(ctx, state, st.Nonce, st.Verifier)
	if err != nil {
		a.ssoPage(w, r, http.StatusBadGateway, "The identity provider cannot be reached", err.Error())
		return
	}
	data, _ := json.Marshal(st)
	g := &gatehouse.SSOGrant{Hash: token.Hash(state), Kind: gatehouse.GrantOIDCState, Data: string(data), ExpiresAt: a.now().Add(ssoStateTTL)}
	if err := a.store.CreateSSOGrant(ctx, g); err != nil {
		a.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: a.stateCookieName(), Value: state, Path: "/", MaxAge: int(ssoStateTTL.Seconds()),
		HttpOnly: true, Secure: a.secureCookies(), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

func (a *API) ssoCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if a.oidc == nil {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeNotFound, "single sign-on is not configured on this control plane"))
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	c, _ := r.Cookie(a.stateCookieName())
	// Clear the state cookie whatever happens: it is good for one attempt.
	http.SetCookie(w, &http.Cookie{Name: a.stateCookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.secureCookies(), SameSite: http.SameSiteLaxMode})
	if state == "" || c == nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		a.ssoPage(w, r, http.StatusBadRequest, "Sign-in refused",
			"This sign-in was not started by this browser (its state does not match). Start again from the sign-in page.")
		return
	}
	g, err := a.store.ConsumeSSOGrant(ctx, gatehouse.GrantOIDCState, token.Hash(state))
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		a.ssoPage(w, r, http.StatusBadRequest, "Sign-in refused", "This sign-in is unknown, has expired or was already used. Start again from the sign-in page.")
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var st ssoState
	if err := json.Unmarshal([]byte(g.Data), &st); err != nil {
		a.fail(w, r, fmt.Errorf("decode sign-in state: %w", err))
		return
	}
	u, err := a.ssoFinish(ctx, q, &st)
	if err != nil {
		var ge *gatehouse.Error
		if !errors.As(err, &ge) || statusOf(ge.Code) == http.StatusInternalServerError {
			a.logger.ErrorContext(ctx, "single sign-on failed", "err", err)
			ge = gatehouse.Errorf(gatehouse.ECodeInternal, "signing in with the identity provider failed; the server log has the details")
		}
		if st.CLIRedirect != "" {
			a.cliRedirect(w, r, &st, url.Values{"error": {ge.Code}, "error_description": {ge.Message}})
			return
		}
		title := "Sign-in refused"
		if ge.Code == gatehouse.ECodeForbidden && strings.Contains(ge.Message, "not assigned to Gatehouse") {
			title = "Not assigned to Gatehouse"
		}
		a.ssoPage(w, r, statusOf(ge.Code), title, ge.Message)
		return
	}
	if st.CLIRedirect != "" {
		code, err := randomSecret(cliCodePrefix)
		if err == nil {
			err = a.store.CreateSSOGrant(ctx, &gatehouse.SSOGrant{Hash: token.Hash(code), Kind: gatehouse.GrantCLICode, User: u.Name,
				Data: st.CLIChallenge, ExpiresAt: a.now().Add(cliCodeTTL)})
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.cliRedirect(w, r, &st, url.Values{"code": {code}})
		return
	}
	secret, exp, err := a.auth.NewSession(ctx, u.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.auth.SetSessionCookies(w, secret.Reveal(), exp)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, st.ReturnTo, http.StatusFound)
}

func (a *API) cliRedirect(w http.ResponseWriter, r *http.Request, st *ssoState, v url.Values) {
	u, _ := url.Parse(st.CLIRedirect) // checked at login
	q := u.Query()
	for k, vs := range v {
		q[k] = vs
	}
	q.Set("state", st.CLIState)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// ssoFinish redeems the IdP's answer and makes (or updates) the Gatehouse user.
func (a *API) ssoFinish(ctx context.Context, q url.Values, st *ssoState) (*gatehouse.User, error) {
	if e := q.Get("error"); e != "" {
		return nil, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "the identity provider refused the sign-in: %s %s", e, q.Get("error_description"))
	}
	code := q.Get("code")
	if code == "" {
		return nil, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "the identity provider's answer has no authorization code")
	}
	id, err := a.oidc.Exchange(ctx, code, st.Verifier, st.Nonce)
	if err != nil {
		return nil, err
	}
	u, err := a.ssoUser(ctx, id)
	if err != nil {
		return nil, err
	}
	a.logger.InfoContext(ctx, "single sign-on", "user", u.Name, "role", id.Role, "groups", id.Groups, "cli", st.CLIRedirect != "")
	return u, nil
}

// ssoUser creates the IdP's user or brings their name, e-mail, role and groups up to date. A local
// user (one with a password) of the same name is never taken over.
func (a *API) ssoUser(ctx context.Context, id *auth.Identity) (*gatehouse.User, error) {
	u, err := a.store.GetUser(ctx, id.Name)
	switch {
	case gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound:
		u = &gatehouse.User{Name: id.Name, DisplayName: id.DisplayName, Email: id.Email, Role: id.Role, Active: true}
		if err := a.store.CreateUser(ctx, u); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		hash, err := a.store.UserPasswordHash(ctx, u.Name)
		if err != nil {
			return nil, err
		}
		if hash != "" {
			return nil, gatehouse.Conflict("%q is a local Gatehouse user with a password; an administrator must remove its password before it can sign in with single sign-on", u.Name)
		}
		if !u.Active {
			return nil, gatehouse.Errorf(gatehouse.ECodeForbidden, "user %q is deactivated in Gatehouse", u.Name)
		}
		if u.DisplayName != id.DisplayName && id.DisplayName != "" || u.Email != id.Email || u.Role != id.Role {
			if id.DisplayName != "" {
				u.DisplayName = id.DisplayName
			}
			u.Email, u.Role = id.Email, id.Role
			if err := a.store.UpdateUser(ctx, u); err != nil {
				return nil, err
			}
		}
	}
	if err := a.store.SetUserGroups(ctx, u.Name, id.Groups); err != nil {
		return nil, err
	}
	return a.store.GetUser(ctx, u.Name)
}

func (a *API) ssoToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var in ssoTokenRequest
	if _, err := decode(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	var user string
	switch in.GrantType {
	case "authorization_code":
		if in.Code == "" || in.CodeVerifier == "" {
			a.fail(w, r, gatehouse.Invalid("code", "code and code_verifier are required"))
			return
		}
		g, err := a.store.ConsumeSSOGrant(ctx, gatehouse.GrantCLICode, token.Hash(in.Code))
		if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
			a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "the sign-in code is unknown, expired or already used; run gatehouse login --sso again"))
			return
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if subtle.ConstantTimeCompare([]byte(auth.S256(in.CodeVerifier)), []byte(g.Data)) != 1 {
			a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "code_verifier does not match the sign-in's challenge"))
			return
		}
		user = g.User
	case "refresh_token":
		g, err := a.store.ConsumeSSOGrant(ctx, gatehouse.GrantRefresh, token.Hash(in.RefreshToken))
		if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
			a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "the refresh token is unknown, expired, used or revoked; run gatehouse login --sso again"))
			return
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if err := a.store.DeleteSession(ctx, g.SessionHash); err != nil {
			a.fail(w, r, err)
			return
		}
		user = g.User
	default:
		a.fail(w, r, gatehouse.Invalid("grant_type", "must be authorization_code or refresh_token"))
		return
	}
	u, err := a.store.GetUser(ctx, user)
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "user %q no longer exists", user))
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !u.Active {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeUnauthenticated, "user %q is deactivated", user))
		return
	}
	out, err := a.cliSession(ctx, u.Name)
	a.answer(w, r, http.StatusOK, out, err)
}

// cliSession makes a CLI's login session and the refresh token that renews it.
func (a *API) cliSession(ctx context.Context, user string) (*ssoTokenResponse, error) {
	secret, exp, err := a.auth.NewSession(ctx, user)
	if err != nil {
		return nil, err
	}
	refresh, err := randomSecret(refreshPrefix)
	if err != nil {
		return nil, err
	}
	rexp := a.now().Add(refreshTTL).UTC()
	if err := a.store.CreateSSOGrant(ctx, &gatehouse.SSOGrant{Hash: token.Hash(refresh), Kind: gatehouse.GrantRefresh, User: user,
		SessionHash: token.Hash(secret.Reveal()), ExpiresAt: rexp}); err != nil {
		return nil, err
	}
	return &ssoTokenResponse{Token: secret.Reveal(), ExpiresAt: exp, RefreshToken: refresh, RefreshExpiresAt: rexp, Username: user}, nil
}

// endSession answers POST /api/v1/logout: it ends the session (bearer or cookie), the refresh
// tokens that renew it, and clears a browser's cookies.
func (a *API) endSession(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	secret, err := a.auth.SessionSecret(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.DeleteSessionGrants(ctx, token.Hash(secret)); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.auth.Logout(ctx, r); err != nil {
		a.fail(w, r, err)
		return
	}
	a.auth.ClearSessionCookies(w)
	w.WriteHeader(http.StatusNoContent)
}

var ssoPageTmpl = template.Must(template.New("sso").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · Gatehouse</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem">
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
<p><a href="/api/v1/sso/login">Sign in again</a></p>
</body></html>
`))

// ssoPage answers a browser with a small HTML page, and a client asking for JSON with the API's
// error body.
func (a *API) ssoPage(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		code := gatehouse.ECodeInvalid
		switch status {
		case http.StatusUnauthorized:
			code = gatehouse.ECodeUnauthenticated
		case http.StatusForbidden:
			code = gatehouse.ECodeForbidden
		case http.StatusConflict:
			code = gatehouse.ECodeConflict
		case http.StatusBadGateway, http.StatusInternalServerError:
			code = gatehouse.ECodeInternal
		}
		writeJSON(w, status, errorBody{&gatehouse.Error{Code: code, Message: title + ": " + message}})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page's only style is its inline style attribute; it has no script.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_ = ssoPageTmpl.Execute(w, struct{ Title, Message string }{title, message})
}

func (a *API) createSCIMToken(w http.ResponseWriter, r *http.Request) {
	secret, err := randomSecret(SCIMTokenPrefix)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st := &gatehouse.SCIMToken{Hash: token.Hash(secret)}
	if err := a.store.CreateSCIMToken(r.Context(), st); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, scimTokenCreated{SCIMToken: *st, Token: secret})
}

// SCIMTokenPrefix starts every SCIM bearer token.
const SCIMTokenPrefix = "ghscim_"

func (a *API) listSCIMTokens(w http.ResponseWriter, r *http.Request) {
	out, err := a.store.ListSCIMTokens(r.Context())
	a.answer(w, r, http.StatusOK, nonNil(out), err)
}

func (a *API) revokeSCIMToken(w http.ResponseWriter, r *http.Request) {
	a.answer(w, r, http.StatusNoContent, nil, a.store.RevokeSCIMToken(r.Context(), r.PathValue("id"), a.now()))
}
