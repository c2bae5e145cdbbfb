package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/auth"
)

// Config configures the API. Store is required; a nil Logger discards; PublicURL is the
// control-plane URL sidecars and CLIs use (shown when a sidecar is registered).
type Config struct {
	Store     Store
	Logger    *slog.Logger
	PublicURL string

	// A sidecar instance is "stale" when its last report is older than StaleAfter and
	// "disconnected" beyond DisconnectedAfter. Zero values: DefaultStaleAfter, DefaultDisconnectedAfter.
	StaleAfter, DisconnectedAfter time.Duration

	// OIDC turns on single sign-on (nil: off); its RedirectURL is PublicURL + /api/v1/sso/callback
	// when empty. DisableLocalLogin refuses password sign-in.
	OIDC              *auth.OIDCConfig
	DisableLocalLogin bool

	// Classifiers classify statements per database type, for POST /api/v1/access-policies/test.
	Classifiers map[gatehouse.DatabaseType]Classifier
}

// API is the control plane's HTTP API.
type API struct {
	store     Store
	logger    *slog.Logger
	publicURL string
	cfg       Config
	auth      *auth.Authenticator
	oidc      *auth.OIDC // nil when single sign-on is off
	now       func() time.Time
	handler   http.Handler

	// documented lists every route registered through handle, in order; the OpenAPI document is
	// built from it.
	documented []route
}

// New returns the API for cfg.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "api")
	authn, err := auth.New(auth.Config{Store: cfg.Store, Logger: logger, DisableLocalLogin: cfg.DisableLocalLogin,
		SecureCookies: strings.HasPrefix(cfg.PublicURL, "https://")})
	if err != nil {
		return nil, err
	}
	var rp *auth.OIDC
	if cfg.OIDC != nil {
		oc := *cfg.OIDC
		if oc.RedirectURL == "" {
			oc.RedirectURL = strings.TrimSuffix(cfg.PublicURL, "/") + "/api/v1/sso/callback"
		}
		if rp, err = auth.NewOIDC(oc); err != nil {
			return nil, err
		}
	}
	a := &API{
		store:     cfg.Store,
		logger:    logger,
		publicURL: strings.TrimSuffix(cfg.PublicURL, "/"),
		cfg:       cfg,
		auth:      authn,
		oidc:      rp,
		now:       time.Now,
	}
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		a.handle(mux, rt)
	}
	a.registerSidecarRoutes(mux)
	a.registerSSORoutes(mux)
	a.registerSSOConfigRoutes(mux)
	a.registerActivityRoutes(mux)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeNotFound, "no such endpoint: %s %s (see /api/v1/openapi.json)", r.Method, r.URL.Path))
	})
	a.handler = mux
	return a, nil
}

// Handler returns the HTTP handler serving /api/v1.
func (a *API) Handler() http.Handler { return a.handler }

type userKey struct{}

// caller returns the signed-in user of a request that passed guard.
func caller(ctx context.Context) *gatehouse.User {
	u, _ := ctx.Value(userKey{}).(*gatehouse.User)
	return u
}

func isAdmin(u *gatehouse.User) bool { return u != nil && u.Role == gatehouse.RoleAdmin }

// handle registers rt on mux behind guard and lists it in the OpenAPI document. Register every
// route through it (registerSidecarRoutes too), so the document and a test that checks it against
// the table see it.
func (a *API) handle(mux *http.ServeMux, rt route) {
	mux.Handle(rt.Method+" "+rt.Path, a.guard(rt))
	a.documented = append(a.documented, rt)
}

// guard authenticates and authorises a request for rt before its handler runs.
func (a *API) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.Access != public && rt.Access != sidecarAuth {
			u, err := a.auth.Authenticate(r.Context(), r)
			if err != nil {
				a.fail(w, r, err)
				return
			}
			if rt.Access == adminOnly && !isAdmin(u) {
				a.fail(w, r, gatehouse.Errorf(gatehouse.ECodeForbidden, "%s %s is for administrators; %q is a %s", rt.Method, rt.Path, u.Name, u.Role))
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, u))
		}
		rt.handle(w, r)
	})
}
