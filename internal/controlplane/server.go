package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/api"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/scim"
	sqlmy "github.com/gatehousedb/gatehouse/internal/sqlparse/mysql"
	sqlpg "github.com/gatehousedb/gatehouse/internal/sqlparse/postgres"
	"github.com/gatehousedb/gatehouse/internal/store"
	"github.com/gatehousedb/gatehouse/internal/web"
)

var _ api.Store = (*store.Store)(nil)
var _ auth.Store = (*store.Store)(nil)
var _ scim.Store = (*store.Store)(nil)

// Defaults for Config's zero values.
const (
	DefaultDataDir = "./gatehouse-data"
	DefaultListen  = "127.0.0.1:8080"
)

// shutdownTimeout bounds how long Run waits for in-flight requests once its context ends.
const shutdownTimeout = 10 * time.Second

// Config configures a control-plane server. Every zero value has a useful default.
type Config struct {
	DataDir       string // default ./gatehouse-data; SQLite at DataDir/gatehouse.db
	Listen        string // default 127.0.0.1:8080; port 0 picks a free port
	StoreURL      string // "" = SQLite in DataDir; postgres://... for PostgreSQL
	PublicURL     string // "" = http://<actual listen address>
	AdminPassword string // first start only; "" = generated and printed once to Stdout (the CLI passes $GATEHOUSE_ADMIN_PASSWORD)
	Stdout        io.Writer
	Logger        *slog.Logger

	// Instance status thresholds for GET /api/v1/sidecars/{id}/instances (zero: 15s and 60s).
	InstanceStaleAfter, InstanceDisconnectedAfter time.Duration

	// OIDC turns on single sign-on (nil: off). DisableLocalLogin refuses password sign-in; restart
	// without it as the break-glass way in.
	OIDC              *auth.OIDCConfig
	DisableLocalLogin bool
}

// Server is a running control plane.
type Server struct {
	api      *api.API
	store    *store.Store
	listener net.Listener
	http     *http.Server
	url      string
	logger   *slog.Logger

	// stopping is cancelled when shutdown begins; every request's context derives from it, so
	// sidecars' long-polls return at once instead of holding the shutdown for its whole grace period.
	stopping context.Context
	stop     context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// New opens the store, migrates it, bootstraps the admin and binds the listener. The caller must
// call Close (Run does not).
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "controlplane")
	stdout := cfg.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	dsn := cfg.StoreURL
	if dsn == "" {
		dir := cfg.DataDir
		if dir == "" {
			dir = DefaultDataDir
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		dsn = filepath.Join(dir, "gatehouse.db")
	} else if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return nil, fmt.Errorf("store URL must start with postgres:// (leave it empty for SQLite in the data directory)")
	}
	st, err := store.Open(ctx, dsn, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if err := auth.Bootstrap(ctx, st, cfg.AdminPassword, stdout); err != nil {
		return nil, err
	}
	listen := cfg.Listen
	if listen == "" {
		listen = DefaultListen
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	url := strings.TrimSuffix(cfg.PublicURL, "/")
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	a, err := api.New(api.Config{
		Store: st, Logger: cfg.Logger, PublicURL: url,
		StaleAfter: cfg.InstanceStaleAfter, DisconnectedAfter: cfg.InstanceDisconnectedAfter,
		OIDC: cfg.OIDC, DisableLocalLogin: cfg.DisableLocalLogin,
		Classifiers: map[gatehouse.DatabaseType]api.Classifier{
			gatehouse.PostgreSQL: sqlpg.NewCache().Classify,
			gatehouse.MySQL:      sqlmy.NewCache().Classify,
		},
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	adminGroup := func(string) bool { return false }
	if cfg.OIDC != nil {
		admins := cfg.OIDC.AdminGroups
		adminGroup = func(g string) bool { return slices.Contains(admins, g) }
	}
	sc, err := scim.New(scim.Config{Store: st, Logger: cfg.Logger, BaseURL: url, AdminGroup: adminGroup})
	if err != nil {
		ln.Close()
		return nil, err
	}
	// The web console calls the API in-process, so it applies the API's rules and errors.
	console, err := web.New(web.Config{API: a.Handler(), PublicURL: url, Logger: cfg.Logger})
	if err != nil {
		ln.Close()
		return nil, err
	}
	root := http.NewServeMux()
	root.Handle(scim.Prefix+"/", sc)
	root.Handle("/api/", a.Handler())
	root.Handle("/", console)
	stopping, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{
		api:      a,
		stopping: stopping,
		stop:     stop,
		store:    st,
		listener: ln,
		url:      url,
		logger:   logger,
		http: &http.Server{
			Handler:           root,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return stopping },
		},
	}
	return s, nil
}

// URL returns the control plane's public URL.
func (s *Server) URL() string { return s.url }

// Run serves until ctx is done, then shuts down gracefully (waiting up to 10 s for requests in
// flight). It returns nil after a shutdown caused by ctx.
func (s *Server) Run(ctx context.Context) error {
	s.logger.InfoContext(ctx, "control plane serving", "url", s.url, "listen", s.listener.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.listener) }()
	// Activity past its retention is purged at start and then hourly.
	rctx, rcancel := context.WithCancel(ctx)
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		s.api.RunRetention(rctx, time.Hour)
	}()
	defer func() {
		rcancel()
		<-purged
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	s.stop()
	err := s.http.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// Close stops serving at once and closes the store. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		err := s.http.Close()
		if lerr := s.listener.Close(); err == nil && lerr != nil && !errors.Is(lerr, net.ErrClosed) {
			err = lerr
		}
		if serr := s.store.Close(); err == nil {
			err = serr
		}
		s.closeErr = err
	})
	return s.closeErr
}

// NewSession signs user in without a password and returns an API bearer token. It is for
// in-process wiring that already holds the store, such as `gatehouse quickstart`; nothing remote
// can reach it.
func (s *Server) NewSession(ctx context.Context, user string) (string, error) {
	a, err := auth.New(auth.Config{Store: s.store, Logger: s.logger})
	if err != nil {
		return "", err
	}
	secret, _, err := a.NewSession(ctx, user)
	if err != nil {
		return "", err
	}
	return secret.Reveal(), nil
}
