package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehousedb/gatehouse/internal/controlplane"
)

// ListeningPrefix starts the line `gatehouse server` prints once it accepts connections; the URL
// follows it. Scripts and the e2e tests wait for it.
const ListeningPrefix = "gatehouse: control plane listening on "

func newServerCmd(e *env) *cobra.Command {
	var cfg controlplane.Config
	var oidc oidcFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane: API, web console, store, SSO and SCIM",
		Long: `Run the Gatehouse control plane.

On first start it creates the administrator "admin". Its password is taken from
GATEHOUSE_ADMIN_PASSWORD, or generated and printed once.

Each flag falls back to an environment variable when not given:
  --data-dir    GATEHOUSE_DATA_DIR    (default ./gatehouse-data)
  --listen      GATEHOUSE_LISTEN      (default 127.0.0.1:8080; port 0 picks a free port)
  --store       GATEHOUSE_STORE       (default: SQLite in the data directory)
  --public-url  GATEHOUSE_PUBLIC_URL  (the URL sidecars and users reach this server at)
  --instance-stale-after         GATEHOUSE_SIDECAR_STALE_AFTER         (default 15s)
  --instance-disconnected-after  GATEHOUSE_SIDECAR_DISCONNECTED_AFTER  (default 60s)
  --oidc-*      GATEHOUSE_OIDC_* (e.g. --oidc-issuer: GATEHOUSE_OIDC_ISSUER)
  --disable-local-login          GATEHOUSE_DISABLE_LOCAL_LOGIN=true

Single sign-on (docs/sso.md): register {public URL}/api/v1/sso/callback as the redirect URI at
your identity provider, then pass --oidc-issuer, --oidc-client-id, --oidc-client-secret-file and
the IdP groups that may sign in (--oidc-admin-groups, --oidc-consumer-groups).`,
		Example: `  gatehouse server
  gatehouse server --data-dir /var/lib/gatehouse --listen 0.0.0.0:8080 --public-url https://gatehouse.example.com
  gatehouse server --store 'postgres://gatehouse@db.example.com/gatehouse?sslmode=verify-full'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fallback(e, &cfg.DataDir, "GATEHOUSE_DATA_DIR", "./gatehouse-data")
			fallback(e, &cfg.Listen, "GATEHOUSE_LISTEN", "127.0.0.1:8080")
			fallback(e, &cfg.StoreURL, "GATEHOUSE_STORE", "")
			fallback(e, &cfg.PublicURL, "GATEHOUSE_PUBLIC_URL", "")
			var err error
			if cfg.InstanceStaleAfter, err = durationFallback(e, cmd, "instance-stale-after", "GATEHOUSE_SIDECAR_STALE_AFTER"); err != nil {
				return err
			}
			if cfg.InstanceDisconnectedAfter, err = durationFallback(e, cmd, "instance-disconnected-after", "GATEHOUSE_SIDECAR_DISCONNECTED_AFTER"); err != nil {
				return err
			}
			if err := applyOIDCFlags(e, &oidc, &cfg); err != nil {
				return err
			}
			cfg.AdminPassword = e.Getenv("GATEHOUSE_ADMIN_PASSWORD")
			cfg.Stdout = e.Stdout
			cfg.Logger = e.logger()
			return runServer(cmd.Context(), e, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the embedded store and server state (default ./gatehouse-data)")
	f.StringVar(&cfg.Listen, "listen", "", "address to serve the API on, HOST:PORT (default 127.0.0.1:8080)")
	f.StringVar(&cfg.StoreURL, "store", "", "PostgreSQL store URL, postgres://... (default: SQLite in --data-dir)")
	f.StringVar(&cfg.PublicURL, "public-url", "", "URL sidecars and users reach this control plane at (default: the listen address)")
	f.Duration("instance-stale-after", 0, "a sidecar instance silent this long shows as stale (default 15s)")
	f.Duration("instance-disconnected-after", 0, "a sidecar instance silent this long shows as disconnected (default 60s)")
	addOIDCFlags(cmd, &oidc)
	return cmd
}

func fallback(e *env, v *string, name, def string) {
	if *v == "" {
		*v = e.Getenv(name)
	}
	if *v == "" {
		*v = def
	}
}

// durationFallback reads a duration flag, falling back to an environment variable; 0 means default.
func durationFallback(e *env, cmd *cobra.Command, flag, envName string) (time.Duration, error) {
	if cmd.Flags().Changed(flag) {
		d, _ := cmd.Flags().GetDuration(flag)
		return d, nil
	}
	v := e.Getenv(envName)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, usageErrorf("%s=%q: must be a positive duration such as 15s", envName, v)
	}
	return d, nil
}

func runServer(ctx context.Context, e *env, cfg controlplane.Config) error {
	srv, err := controlplane.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	fmt.Fprintln(e.Stdout, ListeningPrefix+srv.URL())
	runErr := srv.Run(ctx)
	closeErr := srv.Close()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return closeErr
}
