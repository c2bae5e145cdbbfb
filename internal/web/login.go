package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
)

type loginData struct {
	Next string
	// SSOLoginURL is where the "Sign in with SSO" button goes; the button shows only when set.
	SSOLoginURL string
}

var loginFields = []string{"username", "password"}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, url.Values{"next": {r.URL.Query().Get("next")}}, nil)
}

// showLogin renders the sign-in form with a fresh login CSRF token (a double-submit cookie: no
// session exists yet to derive one from).
func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, form url.Values, err error) {
	tok := randomToken()
	c.setCookie(w, r, loginCookie, tok, 10*time.Minute)
	pg := c.newPage(w, r, nil, "Sign in", "")
	pg.CSRF = tok
	pg.Form = form
	next := safeNext(form.Get("next"))
	sso := c.ssoURL(r)
	if sso != "" && next != "/" && !strings.Contains(sso, "?") {
		// Back to the page that asked for a sign-in, as after a password sign-in.
		sso += "?return_to=" + url.QueryEscape(next)
	}
	pg.Data = loginData{Next: next, SSOLoginURL: sso}
	if err != nil {
		pg.setError(err, loginFields, nil)
	}
	c.render(w, r, status, "login", pg)
}

// ssoURL is where "Sign in with SSO" goes: Config.SSOLoginURL, else the login URL the API
// announces at GET /api/v1/sso when single sign-on is configured, else "" (no button).
func (c *Console) ssoURL(r *http.Request) string {
	if c.ssoLoginURL != "" {
		return c.ssoLoginURL
	}
	var info struct {
		LoginURL string `json:"login_url"`
	}
	if err := c.call(r, nil, "GET", "/api/v1/sso", nil, &info); err != nil || info.LoginURL == "" {
		return ""
	}
	if u, err := url.Parse(info.LoginURL); err == nil && u.Path != "" {
		return u.Path
	}
	return ""
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, nil, http.StatusBadRequest, "The form could not be read", err.Error())
		return
	}
	form := url.Values{"username": {r.PostFormValue("username")}, "next": {r.PostFormValue("next")}}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !equalTokens(r.PostFormValue("csrf"), ck.Value) {
		c.showLogin(w, r, http.StatusForbidden, form, &apiError{Status: http.StatusForbidden, Code: gatehouse.ECodeForbidden,
			Message: "The sign-in form expired. Please sign in again."})
		return
	}
	var out struct {
		Token string `json:"token"`
	}
	in := map[string]string{"username": r.PostFormValue("username"), "password": r.PostFormValue("password")}
	if err := c.call(r, nil, "POST", "/api/v1/login", in, &out); err != nil {
		status := http.StatusBadRequest
		if e, ok := err.(*apiError); ok {
			status = e.Status
		} else {
			status = http.StatusInternalServerError
		}
		c.showLogin(w, r, status, form, err)
		return
	}
	c.setCookie(w, r, loginCookie, "", -1)
	c.setCookie(w, r, c.sessionCookieName(r), out.Token, c.idle)
	http.Redirect(w, r, safeNext(form.Get("next")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.call(r, s, "POST", "/api/v1/logout", nil, nil); err != nil && apiCode(err) != gatehouse.ECodeUnauthenticated {
		c.serverError(w, r, s, err)
		return
	}
	c.setCookie(w, r, c.sessionCookieName(r), "", -1)
	c.flash(w, r, "You are signed out.")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// home sends admins to Data Sources and everyone else to their connections.
func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) {
	if s.user.Role == gatehouse.RoleAdmin {
		http.Redirect(w, r, "/data-sources", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/connections", http.StatusSeeOther)
}
