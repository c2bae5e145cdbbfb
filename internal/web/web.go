package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultIdleTimeout is how long a console session lasts without a page load when
// Config.IdleTimeout is zero.
const DefaultIdleTimeout = 30 * time.Minute

// Cookie names.
const (
	sessionCookie = "gatehouse_session"
	loginCookie   = "gatehouse_login" // CSRF token of the sign-in form, before a session exists
	flashCookie   = "gatehouse_flash"
)

// Config configures the console. API is required.
type Config struct {
	// API is the REST API's handler; every page and form is an in-process request to it.
	API http.Handler
	// PublicURL is the control-plane URL; an https URL makes cookies Secure even behind a
	// TLS-terminating proxy. Empty: Secure only on requests that arrive over TLS.
	PublicURL string
	// IdleTimeout ends a console session after this long without a page load (default
	// DefaultIdleTimeout). The API session's own expiry still applies.
	IdleTimeout time.Duration
	// SSOLoginURL, when set, adds a "Sign in with SSO" button to the sign-in page that links there.
	SSOLoginURL string
	Logger      *slog.Logger
}

// Console serves the web console.
type Console struct {
	api         http.Handler
	logger      *slog.Logger
	publicURL   string // without a trailing slash; "" = the request's own origin
	secure      bool
	idle        time.Duration
	ssoLoginURL string
	pages       map[string]*template.Template
	mux         *http.ServeMux
}

// New returns the console for cfg.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil {
		return nil, errors.New("web: Config.API is required")
	}
	c := &Console{
		api:         cfg.API,
		logger:      cfg.Logger,
		publicURL:   strings.TrimSuffix(cfg.PublicURL, "/"),
		secure:      strings.HasPrefix(cfg.PublicURL, "https://"),
		idle:        cfg.IdleTimeout,
		ssoLoginURL: cfg.SSOLoginURL,
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.logger = c.logger.With("component", "web")
	if c.idle <= 0 {
		c.idle = DefaultIdleTimeout
	}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.mux = http.NewServeMux()
	c.routes()
	return c, nil
}

func (c *Console) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	c.pages = map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("parse template %s: %w", base, err)
		}
		c.pages[strings.TrimSuffix(base, ".html")] = t
	}
	return nil
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if c.isSecure(r) {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.mux.ServeHTTP(w, r)
}

func (c *Console) isSecure(r *http.Request) bool { return c.secure || r.TLS != nil }

// baseURL is the control plane's URL as clients outside reach it: Config.PublicURL, else the
// origin of request r.
func (c *Console) baseURL(r *http.Request) string {
	if c.publicURL != "" {
		return c.publicURL
	}
	scheme := "http"
	if c.isSecure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// ---- sessions and CSRF

// session is a signed-in browser.
type session struct {
	token string          // the API session bearer
	user  *gatehouse.User // from GET /api/v1/me
}

// csrf is the session's CSRF token: a hash of the session token, so it needs no server state
// (replicas agree on it) and cannot be computed by a page that cannot read the cookie.
func (s *session) csrf() string { return csrfOf(s.token) }

func csrfOf(secret string) string {
	sum := sha256.Sum256([]byte("gatehouse-console-csrf\x00" + secret))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func equalTokens(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	ck := &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, Secure: c.isSecure(r), SameSite: http.SameSiteLaxMode,
		MaxAge: int(maxAge / time.Second),
	}
	if maxAge < 0 {
		ck.MaxAge = -1
	}
	http.SetCookie(w, ck)
}

// sessionCookieName is the session cookie's name: the same names internal/auth gives the cookie the
// SSO callback sets ("__Host-" prefixed under HTTPS), so signing in through the IdP signs in to the
// console too.
func (c *Console) sessionCookieName(r *http.Request) string {
	if c.isSecure(r) {
		return "__Host-" + sessionCookie
	}
	return sessionCookie
}

// signedIn resolves the session cookie through GET /api/v1/me. On any failure it sends the
// browser to the sign-in page and returns nil.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request) *session {
	ck, err := r.Cookie(c.sessionCookieName(r))
	if err == nil && ck.Value != "" {
		s := &session{token: ck.Value}
		var u gatehouse.User
		if err := c.call(r, s, "GET", "/api/v1/me", nil, &u); err == nil {
			s.user = &u
			// Sliding idle timeout: every page load extends the cookie's life.
			c.setCookie(w, r, c.sessionCookieName(r), s.token, c.idle)
			return s
		} else if apiCode(err) != gatehouse.ECodeUnauthenticated {
			c.serverError(w, r, nil, err)
			return nil
		}
		c.setCookie(w, r, c.sessionCookieName(r), "", -1)
	}
	next := r.URL.RequestURI()
	if r.Method != http.MethodGet {
		next = "/"
	}
	http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
	return nil
}

// form parses a POST's form and checks its CSRF token. On failure it has answered.
func (c *Console) form(w http.ResponseWriter, r *http.Request, s *session) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		err = r.ParseMultipartForm(256 << 10)
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		c.errorPage(w, r, s, http.StatusBadRequest, "The form could not be read", err.Error())
		return false
	}
	if !equalTokens(r.PostFormValue("csrf"), s.csrf()) {
		c.errorPage(w, r, s, http.StatusForbidden, "The form expired", "This form was not issued by this session (missing or wrong CSRF token). Reload the page and try again.")
		return false
	}
	return true
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// flash stores a one-time message shown on the next page.
func (c *Console) flash(w http.ResponseWriter, r *http.Request, msg string) {
	c.setCookie(w, r, flashCookie, base64.RawURLEncoding.EncodeToString([]byte(msg)), time.Minute)
}

func (c *Console) takeFlash(w http.ResponseWriter, r *http.Request) string {
	ck, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	c.setCookie(w, r, flashCookie, "", -1)
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil {
		return ""
	}
	return string(b)
}

// safeNext returns next if it is a path on this site, else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
