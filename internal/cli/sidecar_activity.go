package cli

import (
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehousedb/gatehouse/internal/sidecar"
)

// sidecarActivityFileConfig is the activity part of the sidecar's config file.
type sidecarActivityFileConfig struct {
	ActivitySpoolMaxBytes string `yaml:"activity_spool_max_bytes"`
	ActivityWhenFull      string `yaml:"activity_when_full"`
}

const sidecarActivityFileKeys = "activity_spool_max_bytes, activity_when_full"

const sidecarActivityHelp = `  --activity-spool-max-bytes N    GATEHOUSE_ACTIVITY_SPOOL_MAX_BYTES   activity_spool_max_bytes (default 268435456)
  --activity-when-full POLICY     GATEHOUSE_ACTIVITY_WHEN_FULL         activity_when_full: fail-closed (default) or drop-oldest

Every statement is recorded in the activity spool in --data-dir (default ./gatehouse-sidecar-data)
before it is forwarded, and shipped to the control plane in order. When the spool is full,
fail-closed refuses statements until the control plane has taken records off it; drop-oldest
discards the oldest unshipped records and says so in a spool.dropped record. Give each running
instance its own data directory; it also keeps the instance's ID.`

type sidecarActivityFlags struct {
	maxBytes int64
	whenFull string
}

func (f *sidecarActivityFlags) add(fl *pflag.FlagSet) {
	fl.Int64Var(&f.maxBytes, "activity-spool-max-bytes", 0, "largest size of the activity spool on disk (default 256 MiB)")
	fl.StringVar(&f.whenFull, "activity-when-full", "", "when the activity spool is full: fail-closed (refuse statements; default) or drop-oldest")
}

func (f *sidecarActivityFlags) resolve(e *env, cmd *cobra.Command, file sidecarActivityFileConfig, cfg *sidecar.Config) error {
	max := f.maxBytes
	if !cmd.Flags().Changed("activity-spool-max-bytes") {
		v := e.Getenv("GATEHOUSE_ACTIVITY_SPOOL_MAX_BYTES")
		if v == "" {
			v = file.ActivitySpoolMaxBytes
		}
		if v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return usageErrorf("activity spool size must be a number of bytes, not %q", v)
			}
			max = n
		}
	}
	if max < 0 || (max > 0 && max < 1<<20) {
		return usageErrorf("--activity-spool-max-bytes must be at least 1048576 (1 MiB)")
	}
	cfg.ActivitySpoolMaxBytes = max
	when := f.whenFull
	if when == "" {
		when = e.Getenv("GATEHOUSE_ACTIVITY_WHEN_FULL")
	}
	if when == "" {
		when = file.ActivityWhenFull
	}
	switch when {
	case "", "fail-closed":
	case "drop-oldest":
		cfg.ActivityDropOldest = true
	default:
		return usageErrorf("--activity-when-full must be fail-closed or drop-oldest, not %q", when)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = sidecar.DefaultDataDir
	}
	return nil
}
