package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// Defaults for Config's zero values.
const (
	DefaultListenHost     = "0.0.0.0"
	DefaultReportInterval = 5 * time.Second
	DefaultMinBackoff     = 250 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultDrainTimeout   = 30 * time.Second
	// DefaultUpstreamPoolIdle is how many idle upstream connections are kept per pool key.
	DefaultUpstreamPoolIdle = 8
)

// EngineParams is what an engine factory gets for one listener port.
type EngineParams struct {
	Port        gatehouse.ListenerPort
	Authorizer  proxy.Authorizer
	Credentials proxy.Credentials
	// TLS is the listener's server TLS configuration: from Config.TLSCertFile/TLSKeyFile, or a
	// self-signed certificate made at start.
	TLS                     *tls.Config
	AllowPlaintextPasswords bool
	Logger                  *slog.Logger
	// Auditor records logins and governs statements (access policy, activity).
	Auditor proxy.Auditor
	// UpstreamPoolIdle is how many idle upstream connections the engine keeps per (repository,
	// repository user, database, startup parameters); zero disables pooling. PostgreSQL only.
	UpstreamPoolIdle int
	// ParkIdleAfter is how long a session moves no byte before it gives up its goroutines until
	// either side sends something; zero means the engine's default, negative never. PostgreSQL only.
	ParkIdleAfter time.Duration
	// Quiet counts the sidecar's running sessions, across its engines (memory.go).
	Quiet *proxy.Quiet
}

// EngineFactory makes the engine serving one listener port.
type EngineFactory func(EngineParams) (proxy.Engine, error)

// Config configures a sidecar instance. ControlPlane, SidecarID and PrivateKeyFile are required;
// every other zero value has a documented default.
type Config struct {
	ControlPlane   string // control-plane URL, e.g. https://gatehouse.example.com
	SidecarID      string
	PrivateKeyFile string // PEM RSA key, PKCS#8 or PKCS#1

	// DataDir holds the activity spool and the instance ID (so the activity hash chain continues
	// across restarts); DefaultDataDir when empty. One running instance per directory. The
	// configuration snapshot is only ever kept in memory.
	DataDir string
	// ActivitySpoolMaxBytes bounds the activity spool on disk; activity.DefaultMaxBytes when zero.
	ActivitySpoolMaxBytes int64
	// ActivityDropOldest makes a full spool drop its oldest unshipped records (admitted in a
	// spool.dropped record) instead of refusing statements, the default (fail closed).
	ActivityDropOldest bool
	// ActivitySyncAlways makes every statement wait for its record to be fsynced before it is
	// forwarded (activity.SyncAlways). By default records are written before forwarding and
	// fsynced in the background every ActivitySyncInterval (activity.SyncInterval).
	ActivitySyncAlways bool
	// ActivitySyncInterval is the background fsync interval; activity.DefaultSyncEvery when zero.
	ActivitySyncInterval time.Duration

	// TLSCertFile and TLSKeyFile are the listeners' certificate and key (PEM). Both or neither;
	// with neither, a self-signed certificate is generated at start and its fingerprint logged.
	TLSCertFile, TLSKeyFile string
	// AllowPlaintextPasswords lets clients send the access token without TLS (local development).
	AllowPlaintextPasswords bool
	// ListenHost is the address listener ports bind to; DefaultListenHost when empty.
	ListenHost string
	// DrainTimeout is how long open sessions may go on after Run's context ends (SIGTERM):
	// listeners stop accepting at once, sessions still open at the deadline are ended with a
	// "server is shutting down" error. DefaultDrainTimeout when zero; negative ends them at once.
	DrainTimeout time.Duration
	// UpstreamPoolIdle is how many idle upstream connections each PostgreSQL listener keeps per
	// (repository, repository user, database, startup parameters), reset and ready for the next
	// session (see docs/performance.md). DefaultUpstreamPoolIdle when zero; negative disables
	// pooling.
	UpstreamPoolIdle int
	// ParkIdleAfter is how long a PostgreSQL session moves no byte before it parks: it gives up
	// its goroutines, and with them most of its memory, until either side sends something (see
	// docs/performance.md). The engine's default (one second) when zero; negative never parks.
	ParkIdleAfter time.Duration

	// Engines maps database types to engine factories. A port whose type has no factory accepts
	// connections and closes them. Nil means DefaultEngines.
	Engines map[gatehouse.DatabaseType]EngineFactory
	// Credentials resolves repository users' credentials for the engines. Nil means a resolver
	// over the sources this build has (see DefaultCredentials), configured by Secrets.
	Credentials proxy.Credentials
	// Secrets configures the default resolver: cache TTL, grace period, AWS and Azure settings.
	Secrets SecretsConfig

	// Version is this binary's version, reported to the control plane; "dev" when empty.
	Version string
	// ReportInterval is how often the instance reports in; DefaultReportInterval when zero. The
	// control plane derives healthy / stale / disconnected from it (see internal/api).
	ReportInterval time.Duration
	// PollWait is the long-poll wait; syncapi.DefaultWait when zero.
	PollWait time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay (doubling, with jitter);
	// DefaultMinBackoff and DefaultMaxBackoff when zero.
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient talks to the control plane; nil means a client over a clone of
	// http.DefaultTransport.
	HTTPClient *http.Client
	// Logger receives the sidecar's logs; nil discards them.
	Logger *slog.Logger
}

// Sidecar is one running sidecar instance.
type Sidecar struct {
	cfg        Config
	instanceID string
	hostname   string
	startedAt  time.Time
	logger     *slog.Logger
	client     *syncapi.Client
	lookups    tokenLookuper
	tls        *tls.Config
	creds      *credentialErrors
	engines    map[gatehouse.DatabaseType]EngineFactory
	now        func() time.Time

	state     atomic.Pointer[state]
	authz     authz
	listeners *listeners
	reportNow chan struct{}
	lastSync  atomic.Pointer[string] // last sync error, nil when the last attempt succeeded
	audit     *auditor
	quiet     proxy.Quiet // running sessions, for releaseWhenQuiet
}

// New checks cfg, loads the private key and TLS certificate, and returns a sidecar ready to Run.
func New(cfg Config) (*Sidecar, error) {
	if cfg.ControlPlane == "" {
		return nil, errors.New("the control-plane URL is required (--control-plane or GATEHOUSE_CONTROL_PLANE)")
	}
	if cfg.SidecarID == "" {
		return nil, errors.New("the sidecar ID is required (--sidecar-id or GATEHOUSE_SIDECAR_ID)")
	}
	if cfg.PrivateKeyFile == "" {
		return nil, errors.New("the private key file is required (--private-key or GATEHOUSE_PRIVATE_KEY)")
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("give both a TLS certificate and key, or neither")
	}
	key, err := syncapi.LoadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ListenHost == "" {
		cfg.ListenHost = DefaultListenHost
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = DefaultReportInterval
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = syncapi.DefaultWait
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	hostname, _ := os.Hostname()
	// Check the control-plane URL before taking the data directory.
	if _, err := syncapi.NewClient(cfg.ControlPlane, &syncapi.Signer{}, cfg.HTTPClient); err != nil {
		return nil, err
	}
	audit, instance, err := openAuditor(cfg, logger.With("component", "sidecar/activity"))
	if err != nil {
		return nil, err
	}
	built := false
	defer func() {
		if !built {
			audit.close()
		}
	}()
	s := &Sidecar{
		cfg:        cfg,
		instanceID: instance,
		audit:      audit,
		hostname:   hostname,
		startedAt:  time.Now().UTC(),
		now:        time.Now,
		reportNow:  make(chan struct{}, 1),
		authz: authz{
			lookups: map[string]lookupEntry{},
			watches: map[watchKey]*grantWatch{},
			flights: map[string]*flight{},
		},
	}
	s.logger = logger.With("component", "sidecar", "sidecar_id", cfg.SidecarID, "instance_id", s.instanceID)
	s.client, err = syncapi.NewClient(cfg.ControlPlane, &syncapi.Signer{
		Key: key, SidecarID: cfg.SidecarID, InstanceID: s.instanceID, Audience: cfg.ControlPlane,
	}, cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	s.lookups = s.client
	if cfg.TLSCertFile != "" {
		if s.tls, err = proxy.LoadTLS(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	} else {
		hosts := []string{"localhost", "127.0.0.1"}
		if hostname != "" {
			hosts = append([]string{hostname}, hosts...)
		}
		var fp string
		if s.tls, fp, err = proxy.SelfSignedTLS(hosts); err != nil {
			return nil, err
		}
		s.logger.Info("no TLS certificate given; listeners use a self-signed certificate", "sha256_fingerprint", fp)
	}
	s.engines = cfg.Engines
	if s.engines == nil {
		s.engines = DefaultEngines()
	}
	creds := cfg.Credentials
	if creds == nil {
		if creds, err = DefaultCredentials(cfg.Secrets, s.logger); err != nil {
			return nil, err
		}
	}
	s.creds = &credentialErrors{next: creds, now: time.Now, errs: map[string]credentialError{}}
	s.listeners = newListeners(cfg.ListenHost, s.newEngine, s.logger)
	built = true
	return s, nil
}

// InstanceID returns this process's instance ID, as the control plane lists it.
func (s *Sidecar) InstanceID() string { return s.instanceID }

// AccessPolicies returns the access management policies in force for repository, and whether this
// sidecar lets statements it cannot parse run (allow_unsupported_queries). Engines evaluate them
// per statement; the slice must not be modified.
func (s *Sidecar) AccessPolicies(repository string) (policies []gatehouse.AccessPolicy, allowUnsupported bool) {
	st := s.state.Load()
	if st == nil {
		return nil, false
	}
	return st.access[repository], st.settings.AllowUnsupportedQueries
}

func (s *Sidecar) newEngine(p gatehouse.ListenerPort) (proxy.Engine, error) {
	f, ok := s.engines[p.Type]
	if !ok {
		return nil, nil
	}
	return f(EngineParams{
		Port:                    p,
		Authorizer:              s,
		Credentials:             s.creds,
		TLS:                     s.tls,
		AllowPlaintextPasswords: s.cfg.AllowPlaintextPasswords,
		Auditor:                 s.audit,
		Logger:                  s.logger.With("port", p.Port),
		UpstreamPoolIdle:        s.upstreamPoolIdle(),
		ParkIdleAfter:           s.cfg.ParkIdleAfter,
		Quiet:                   &s.quiet,
	})
}

func (s *Sidecar) upstreamPoolIdle() int {
	switch n := s.cfg.UpstreamPoolIdle; {
	case n == 0:
		return DefaultUpstreamPoolIdle
	case n < 0:
		return 0
	default:
		return n
	}
}

// Run syncs, reports and serves until ctx is done. It does not return because the control plane
// is unreachable; it returns nil after a clean stop.
func (s *Sidecar) Run(ctx context.Context) error {
	s.logger.Info("sidecar starting", "control_plane", syncapi.Audience(s.cfg.ControlPlane), "hostname", s.hostname, "version", s.cfg.Version)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.syncLoop(ctx) })
	g.Go(func() error { return s.reportLoop(ctx) })
	g.Go(func() error {
		sh := &activity.Shipper{Spool: s.audit.spool, Sink: activitySink{s.client}, Logger: s.logger}
		return sh.Run(ctx)
	})
	g.Go(func() error {
		releaseWhenQuiet(ctx, &s.quiet, quietCheckEvery, quietReleaseEvery, debug.FreeOSMemory, s.logger)
		return nil
	})
	err := g.Wait()
	drain := s.cfg.DrainTimeout
	if drain == 0 {
		drain = DefaultDrainTimeout
	}
	if drain > 0 {
		s.logger.Info("sidecar draining: no new connections; open sessions may finish", "deadline", drain.String())
	}
	s.listeners.stop(max(drain, 0))
	s.creds.close()
	if cerr := s.audit.close(); cerr != nil {
		s.logger.Error("close activity spool", "err", cerr)
	}
	s.client.CloseIdleConnections()
	s.logger.Info("sidecar stopped")
	return err
}

func (s *Sidecar) syncLoop(ctx context.Context) error {
	var since int64
	if st := s.state.Load(); st != nil {
		since = st.version
	}
	var backoff time.Duration
	for {
		snap, err := s.client.Config(ctx, since, s.cfg.PollWait)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var delay time.Duration
			backoff, delay = nextBackoff(backoff, s.cfg.MinBackoff, s.cfg.MaxBackoff)
			msg := err.Error()
			s.lastSync.Store(&msg)
			var se *syncapi.StatusError
			if errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized {
				s.logger.Error(fmt.Sprintf("control plane refused this sidecar's credentials, retrying in %s: check the sidecar ID, that this key's public half is registered, and that the clocks agree", delay.Round(time.Millisecond)), "err", err)
			} else {
				s.logger.Warn(fmt.Sprintf("control plane unreachable, retrying in %s: %v", delay.Round(time.Millisecond), err))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			continue
		}
		if prev := s.lastSync.Swap(nil); prev != nil {
			s.logger.Info("control plane reachable again")
		}
		backoff = 0
		if snap == nil {
			continue
		}
		s.apply(ctx, snap)
		since = snap.Version
	}
}

// apply makes snap the state in force: swap the state, re-check live sessions, reconcile
// listeners, and report.
func (s *Sidecar) apply(ctx context.Context, snap *syncapi.Snapshot) {
	st := newState(snap)
	s.audit.update(snap)
	old := s.state.Swap(st)
	s.recheck(st, s.now())
	s.listeners.set(ctx, st.ports)
	if old == nil || old.version != st.version {
		s.logger.Info("configuration applied", "config_version", st.version, "ports", len(st.ports), "tokens", len(st.tokens))
	}
	select {
	case s.reportNow <- struct{}{}:
	default:
	}
}

func (s *Sidecar) reportLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ReportInterval)
	defer t.Stop()
	for {
		s.listeners.reconcile(ctx) // retry ports that failed to bind
		if err := s.report(ctx); err != nil && ctx.Err() == nil {
			s.logger.Debug("report failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.reportNow:
		}
	}
}

func (s *Sidecar) report(ctx context.Context) error {
	ports, errs := s.listeners.status()
	errs = append(errs, s.creds.recent()...)
	var version int64
	if st := s.state.Load(); st != nil {
		version = st.version
		s.recheck(st, s.now()) // also forgets expired grants and lookups
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return s.client.Report(ctx, &syncapi.Report{
		InstanceID:    s.instanceID,
		Hostname:      s.hostname,
		Version:       s.cfg.Version,
		StartedAt:     s.startedAt,
		Ports:         ports,
		ConfigVersion: version,
		Errors:        errs,
	})
}

// nextBackoff doubles the nominal delay prev within [min, max] and returns it with the delay to
// sleep: drawn uniformly from the upper half of the nominal one, so instances that lost the control
// plane together do not come back in lockstep.
func nextBackoff(prev, lo, hi time.Duration) (nominal, sleep time.Duration) {
	nominal = min(max(prev*2, lo), hi)
	return nominal, nominal/2 + mrand.N(nominal/2+1)
}
