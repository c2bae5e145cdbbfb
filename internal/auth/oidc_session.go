package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"time"
)

// Browser sessions are the same login sessions as the API's bearer sessions, carried in a cookie:
// HttpOnly, SameSite=Lax (the IdP's redirect back is a cross-site navigation), Secure and
// "__Host-" prefixed when the control plane is served over HTTPS. The session lives server-side, so
// logging out or deactivating the user ends it whatever the cookie's lifetime.
//
// CSRF: a request authenticated by the cookie with a method that changes state must carry the
// session's CSRF token in X-CSRF-Token. The token is derived from the session secret, so only a
// page that can read the (SameSite=Strict, script-readable) CSRF cookie of this origin knows it.
// Requests authenticated by an Authorization header need no CSRF token: browsers never add that
// header on their own.
const (
	SessionCookie       = "gatehouse_session"
	SecureSessionCookie = "__Host-gatehouse_session"
	CSRFCookie          = "gatehouse_csrf"
	SecureCSRFCookie    = "__Host-gatehouse_csrf"
	CSRFHeader          = "X-CSRF-Token"
)

// CSRFToken returns the CSRF token of the session whose secret is given.
func CSRFToken(sessionSecret string) string {
	sum := sha256.Sum256([]byte("gatehouse-csrf:" + sessionSecret))
	return hex.EncodeToString(sum[:])
}

func (a *Authenticator) sessionCookieName() string {
	if a.secureCookies {
		return SecureSessionCookie
	}
	return SessionCookie
}

// SetSessionCookies makes w set the session and CSRF cookies of a browser session.
func (a *Authenticator) SetSessionCookies(w http.ResponseWriter, secret string, expires time.Time) {
	csrfName := CSRFCookie
	if a.secureCookies {
		csrfName = SecureCSRFCookie
	}
	http.SetCookie(w, &http.Cookie{Name: a.sessionCookieName(), Value: secret, Path: "/", Expires: expires,
		HttpOnly: true, Secure: a.secureCookies, SameSite: http.SameSiteLaxMode})
	http.SetCookie(w, &http.Cookie{Name: csrfName, Value: CSRFToken(secret), Path: "/", Expires: expires,
		Secure: a.secureCookies, SameSite: http.SameSiteStrictMode})
}

// ClearSessionCookies makes w delete the browser session's cookies.
func (a *Authenticator) ClearSessionCookies(w http.ResponseWriter) {
	csrfName := CSRFCookie
	if a.secureCookies {
		csrfName = SecureCSRFCookie
	}
	for _, n := range []string{a.sessionCookieName(), csrfName} {
		http.SetCookie(w, &http.Cookie{Name: n, Value: "", Path: "/", MaxAge: -1, HttpOnly: n != csrfName,
			Secure: a.secureCookies, SameSite: http.SameSiteLaxMode})
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// credential returns the session secret of r: the Authorization bearer, or else the session
// cookie, which on an unsafe method needs a matching X-CSRF-Token header.
func (a *Authenticator) credential(r *http.Request) (string, error) {
	if r.Header.Get("Authorization") != "" {
		return bearer(r)
	}
	c, err := r.Cookie(a.sessionCookieName())
	if err != nil || c.Value == "" {
		return bearer(r) // for its message
	}
	if !safeMethod(r.Method) {
		got := r.Header.Get(CSRFHeader)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(CSRFToken(c.Value))) != 1 {
			return "", &forbiddenCSRF
		}
	}
	return c.Value, nil
}

// SessionSecret returns the secret of the session r carries (bearer or cookie), for callers that
// end it.
func (a *Authenticator) SessionSecret(r *http.Request) (string, error) { return a.credential(r) }
