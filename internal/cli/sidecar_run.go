package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/sidecar"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// sidecarFileConfig is the sidecar's config file (YAML, or JSON, which YAML reads too). Unknown
// keys are an error.
type sidecarFileConfig struct {
	ControlPlane            string `yaml:"control_plane"`
	SidecarID               string `yaml:"sidecar_id"`
	PrivateKey              string `yaml:"private_key"`
	TLSCert                 string `yaml:"tls_cert"`
	TLSKey                  string `yaml:"tls_key"`
	DataDir                 string `yaml:"data_dir"`
	ListenHost              string `yaml:"listen_host"`
	AllowPlaintextPasswords *bool  `yaml:"allow_plaintext_passwords"`
	ReportInterval          string `yaml:"report_interval"`
	DrainTimeout            string `yaml:"drain_timeout"`
	UpstreamPoolIdle        *int   `yaml:"upstream_pool_idle"`
	ParkIdleAfter           string `yaml:"park_idle_after"`

	Secrets  sidecarSecretsFileConfig  `yaml:",inline"`
	Activity sidecarActivityFileConfig `yaml:",inline"`
}

type sidecarRunFlags struct {
	config, controlPlane, sidecarID, privateKey, tlsCert, tlsKey, dataDir, listenHost string
	allowPlaintext                                                                    bool
	reportInterval, drainTimeout, parkIdleAfter                                       time.Duration
	upstreamPoolIdle                                                                  int
	secrets                                                                           sidecarSecretsFlags
	activity                                                                          sidecarActivityFlags
}

// addSidecarRunCommands makes `gatehouse sidecar` run a sidecar instance and adds `sidecar keygen`
// and `sidecar instances`.
func addSidecarRunCommands(e *env, cmd *cobra.Command) {
	var f sidecarRunFlags
	cmd.Use = "sidecar"
	cmd.Long = `Run a sidecar instance, or manage sidecars with the subcommands.

Running: gatehouse sidecar --control-plane URL --sidecar-id ID --private-key FILE
Each setting is taken from its flag, else from its environment variable, else from the config file
(--config or GATEHOUSE_CONFIG; YAML or JSON, an unknown key is an error):

  flag                        environment variable                   config file key
  --control-plane URL         GATEHOUSE_CONTROL_PLANE                control_plane
  --sidecar-id ID             GATEHOUSE_SIDECAR_ID                   sidecar_id
  --private-key FILE          GATEHOUSE_PRIVATE_KEY                  private_key
  --tls-cert FILE             GATEHOUSE_TLS_CERT                     tls_cert
  --tls-key FILE              GATEHOUSE_TLS_KEY                      tls_key
  --data-dir DIR              GATEHOUSE_DATA_DIR                     data_dir (default ./gatehouse-sidecar-data)
  --listen-host ADDR          GATEHOUSE_LISTEN_HOST                  listen_host (default 0.0.0.0)
  --allow-plaintext-passwords GATEHOUSE_ALLOW_PLAINTEXT_PASSWORDS    allow_plaintext_passwords
  --report-interval DURATION  GATEHOUSE_REPORT_INTERVAL              report_interval (default 5s)
  --drain-timeout DURATION    GATEHOUSE_DRAIN_TIMEOUT                drain_timeout (default 30s)
  --upstream-pool-idle N      GATEHOUSE_UPSTREAM_POOL_IDLE           upstream_pool_idle (default 8; 0 disables pooling)
  --park-idle-after DURATION  GATEHOUSE_PARK_IDLE_AFTER              park_idle_after (default 1s; 0 never parks)
` + sidecarActivityHelp + `

On SIGTERM or Ctrl-C the sidecar stops accepting connections at once and lets open sessions finish
for up to --drain-timeout; sessions still open then are ended with "server is shutting down".

Without --tls-cert/--tls-key the listeners use a self-signed certificate made at start; its
fingerprint is logged. The sidecar keeps running when the control plane is unreachable: it serves
from the configuration it last received and reconnects on its own.
` + sidecarSecretsHelp
	cmd.Example = `  gatehouse sidecar keygen --out /etc/gatehouse
  gatehouse sidecar register --display-name "Sales VPC" --hostname sidecar.example.com --public-key-file /etc/gatehouse/public.pem
  gatehouse sidecar --control-plane https://gatehouse.example.com --sidecar-id 3f2a9c --private-key /etc/gatehouse/private.pem
  gatehouse sidecar instances 3f2a9c`
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := f.resolve(e, cmd)
		if err != nil {
			return err
		}
		if cfg.ControlPlane == "" && cfg.SidecarID == "" && cfg.PrivateKeyFile == "" {
			return cmd.Help()
		}
		var missing []string
		if cfg.ControlPlane == "" {
			missing = append(missing, "--control-plane")
		}
		if cfg.SidecarID == "" {
			missing = append(missing, "--sidecar-id")
		}
		if cfg.PrivateKeyFile == "" {
			missing = append(missing, "--private-key")
		}
		if len(missing) > 0 {
			return usageErrorf("running a sidecar needs %s (flags, GATEHOUSE_* variables or a config file)", strings.Join(missing, ", "))
		}
		return runSidecar(cmd.Context(), cfg)
	}
	f.add(cmd)
	addSidecarPprof(e, cmd)
	cmd.AddCommand(sidecarKeygenCmd(e), sidecarInstancesCmd(e), sidecarCheckSecretsCmd(e))
}

func (f *sidecarRunFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "config file (YAML or JSON) with the settings below")
	fl.StringVar(&f.controlPlane, "control-plane", "", "control-plane URL, like https://gatehouse.example.com")
	fl.StringVar(&f.sidecarID, "sidecar-id", "", "the sidecar ID shown when the sidecar was registered")
	fl.StringVar(&f.privateKey, "private-key", "", "PEM file with the sidecar's RSA private key (PKCS#8 or PKCS#1)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate chain the listeners present to clients")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for the activity spool and the instance ID (default ./gatehouse-sidecar-data)")
	fl.StringVar(&f.listenHost, "listen-host", "", "address listener ports bind to (default 0.0.0.0)")
	fl.BoolVar(&f.allowPlaintext, "allow-plaintext-passwords", false, "accept access tokens without TLS (local development only)")
	fl.DurationVar(&f.reportInterval, "report-interval", 0, "how often the instance reports to the control plane (default 5s)")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 0, "on SIGTERM, how long open sessions may finish before they are ended (default 30s)")
	fl.IntVar(&f.upstreamPoolIdle, "upstream-pool-idle", sidecar.DefaultUpstreamPoolIdle,
		"idle PostgreSQL connections kept per repository user, database and startup parameters for the next session; 0 disables pooling")
	fl.DurationVar(&f.parkIdleAfter, "park-idle-after", 0,
		"how long a PostgreSQL session moves nothing before it parks, holding no goroutine until either side sends (default 1s; 0 never parks)")
	f.secrets.add(fl)
	f.activity.add(fl)

}

// resolve merges flags, environment and config file, in that order of precedence.
func (f *sidecarRunFlags) resolve(e *env, cmd *cobra.Command) (sidecar.Config, error) {
	var file sidecarFileConfig
	path := f.config
	if path == "" {
		path = e.Getenv("GATEHOUSE_CONFIG")
	}
	if path != "" {
		fc, err := loadSidecarConfig(path)
		if err != nil {
			return sidecar.Config{}, err
		}
		file = *fc
	}
	pick := func(flag, envName, fromFile string) string {
		if flag != "" {
			return flag
		}
		if v := e.Getenv(envName); v != "" {
			return v
		}
		return fromFile
	}
	cfg := sidecar.Config{
		ControlPlane:   pick(f.controlPlane, "GATEHOUSE_CONTROL_PLANE", file.ControlPlane),
		SidecarID:      pick(f.sidecarID, "GATEHOUSE_SIDECAR_ID", file.SidecarID),
		PrivateKeyFile: pick(f.privateKey, "GATEHOUSE_PRIVATE_KEY", file.PrivateKey),
		TLSCertFile:    pick(f.tlsCert, "GATEHOUSE_TLS_CERT", file.TLSCert),
		TLSKeyFile:     pick(f.tlsKey, "GATEHOUSE_TLS_KEY", file.TLSKey),
		DataDir:        pick(f.dataDir, "GATEHOUSE_DATA_DIR", file.DataDir),
		ListenHost:     pick(f.listenHost, "GATEHOUSE_LISTEN_HOST", file.ListenHost),
		Version:        gatehouseVersion(),
		Logger:         e.logger(),
	}
	switch {
	case cmd.Flags().Changed("allow-plaintext-passwords"):
		cfg.AllowPlaintextPasswords = f.allowPlaintext
	case e.Getenv("GATEHOUSE_ALLOW_PLAINTEXT_PASSWORDS") != "":
		b, err := strconv.ParseBool(e.Getenv("GATEHOUSE_ALLOW_PLAINTEXT_PASSWORDS"))
		if err != nil {
			return sidecar.Config{}, usageErrorf("GATEHOUSE_ALLOW_PLAINTEXT_PASSWORDS must be true or false")
		}
		cfg.AllowPlaintextPasswords = b
	case file.AllowPlaintextPasswords != nil:
		cfg.AllowPlaintextPasswords = *file.AllowPlaintextPasswords
	}
	interval := ""
	if f.reportInterval == 0 {
		interval = pick("", "GATEHOUSE_REPORT_INTERVAL", file.ReportInterval)
	}
	cfg.ReportInterval = f.reportInterval
	if interval != "" {
		d, err := time.ParseDuration(interval)
		if err != nil || d <= 0 {
			return sidecar.Config{}, usageErrorf("report interval must be a positive duration like 5s, not %q", interval)
		}
		cfg.ReportInterval = d
	}
	cfg.DrainTimeout = f.drainTimeout
	if f.drainTimeout == 0 {
		if v := pick("", "GATEHOUSE_DRAIN_TIMEOUT", file.DrainTimeout); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return sidecar.Config{}, usageErrorf("drain timeout must be a positive duration like 30s, not %q", v)
			}
			cfg.DrainTimeout = d
		}
	}
	if cmd.Flags().Changed("park-idle-after") {
		if f.parkIdleAfter < 0 {
			return sidecar.Config{}, usageErrorf("--park-idle-after must be 0 (never park) or a positive duration like 1s, not %s", f.parkIdleAfter)
		}
		cfg.ParkIdleAfter = parkSetting(f.parkIdleAfter)
	} else if v := pick("", "GATEHOUSE_PARK_IDLE_AFTER", file.ParkIdleAfter); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return sidecar.Config{}, usageErrorf("park idle after must be 0 (never park) or a positive duration like 1s, not %q", v)
		}
		cfg.ParkIdleAfter = parkSetting(d)
	}
	poolIdle, poolSet := 0, true
	switch {
	case cmd.Flags().Changed("upstream-pool-idle"):
		poolIdle = f.upstreamPoolIdle
	case e.Getenv("GATEHOUSE_UPSTREAM_POOL_IDLE") != "":
		n, err := strconv.Atoi(e.Getenv("GATEHOUSE_UPSTREAM_POOL_IDLE"))
		if err != nil {
			return sidecar.Config{}, usageErrorf("GATEHOUSE_UPSTREAM_POOL_IDLE must be a number of connections, not %q", e.Getenv("GATEHOUSE_UPSTREAM_POOL_IDLE"))
		}
		poolIdle = n
	case file.UpstreamPoolIdle != nil:
		poolIdle = *file.UpstreamPoolIdle
	default:
		poolSet = false
	}
	switch {
	case !poolSet:
	case poolIdle < 0:
		return sidecar.Config{}, usageErrorf("upstream pool size must be 0 (off) or more, not %d", poolIdle)
	case poolIdle == 0:
		cfg.UpstreamPoolIdle = -1 // sidecar.Config: negative disables
	default:
		cfg.UpstreamPoolIdle = poolIdle
	}
	secrets, err := f.secrets.resolve(e, cmd, file.Secrets)
	if err != nil {
		return sidecar.Config{}, err
	}
	cfg.Secrets = secrets
	if err := f.activity.resolve(e, cmd, file.Activity, &cfg); err != nil {
		return sidecar.Config{}, err
	}
	return cfg, nil
}

var yamlUnknownField = regexp.MustCompile(`line (\d+): field (\S+) not found`)

// loadSidecarConfig reads a config file strictly: an unknown key is an error naming it.
func loadSidecarConfig(path string) (*sidecarFileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	var c sidecarFileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		if m := yamlUnknownField.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("config file %s, line %s: unknown key %q (known keys: control_plane, sidecar_id, private_key, tls_cert, tls_key, data_dir, listen_host, allow_plaintext_passwords, report_interval, drain_timeout, %s, %s)", path, m[1], m[2], sidecarSecretsFileKeys, sidecarActivityFileKeys)
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return &c, nil
}

// gatehouseVersion is the version reported to the control plane.
func gatehouseVersion() string {
	return "dev"
}

func runSidecar(ctx context.Context, cfg sidecar.Config) error {
	s, err := sidecar.New(cfg)
	if err != nil {
		return err
	}
	err = s.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func sidecarKeygenCmd(e *env) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Make the sidecar's RSA key pair: DIR/private.pem (PKCS#8, mode 0600) and DIR/public.pem",
		Long: `Make a 2048-bit RSA key pair for a sidecar. Keep private.pem on the sidecar's host; register
public.pem with gatehouse sidecar register --public-key-file. Existing files are never overwritten.

A key made with openssl works too:
  openssl genpkey -out private.pem -algorithm RSA -pkeyopt rsa_keygen_bits:2048
  openssl rsa -in private.pem -pubout -out public.pem`,
		Example: `  gatehouse sidecar keygen --out /etc/gatehouse`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErrorf("--out DIR is required")
			}
			priv, pub, err := syncapi.WriteKeyPair(out)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.Stdout, "Private key: %s (keep it on the sidecar's host)\nPublic key:  %s (register it: gatehouse sidecar register --public-key-file %s ...)\n", priv, pub, pub)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write private.pem and public.pem to (created if missing)")
	return cmd
}

func sidecarInstancesCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "instances SIDECAR_ID",
		Short:   "List a sidecar's running instances and their status (healthy, stale, disconnected)",
		Example: `  gatehouse sidecar instances 3f2a9c`,
		Args:    exactArgs(1, "SIDECAR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			raw, err := c.get(cmd.Context(), path("sidecars", args[0], "instances"))
			if err != nil {
				return err
			}
			return e.show(raw, func() error {
				list, err := decodeList[gatehouse.SidecarInstance](raw)
				if err != nil {
					return err
				}
				var rows [][]string
				for _, in := range list {
					ports := make([]string, len(in.Ports))
					for i, p := range in.Ports {
						ports[i] = itoa(p)
					}
					rows = append(rows, []string{in.InstanceID, in.Hostname, in.Version, in.Status,
						strings.Join(ports, ","), strconv.FormatInt(in.ConfigVersion, 10), ts(in.LastSeen), strings.Join(in.Errors, "; ")})
				}
				return table(e.Stdout, []string{"INSTANCE ID", "HOSTNAME", "VERSION", "STATUS", "PORTS", "CONFIG VERSION", "LAST SEEN", "ERRORS"}, rows)
			})
		},
	}
}

// parkSetting turns the user's park-idle-after, where 0 means never, into sidecar.Config's, where
// 0 means the default and negative never.
func parkSetting(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
