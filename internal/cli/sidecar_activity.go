package cli

import (
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehousedb/gatehouse/internal/sidecar"
)

// sidecarActivityFileConfig is the activity part of the sidecar's config file.
type sidecarActivityFileConfig struct {
	ActivitySpoolMaxBytes string `yaml:"activity_spool_max_bytes"`
	ActivityWhenFull      string `yaml:"activity_when_full"`
	ActivitySync          string `yaml:"activity_sync"`
	ActivitySyncInterval  string `yaml:"activity_sync_interval"`
}

const sidecarActivityFileKeys = "activity_spool_max_bytes, activity_when_full, activity_sync, activity_sync_interval"

const sidecarActivityHelp = `  --activity-spool-max-bytes N    GATEHOUSE_ACTIVITY_SPOOL_MAX_BYTES   activity_spool_max_bytes (default 268435456)
  --activity-when-full POLICY     GATEHOUSE_ACTIVITY_WHEN_FULL         activity_when_full: fail-closed (default) or drop-oldest
  --activity-sync POLICY          GATEHOUSE_ACTIVITY_SYNC              activity_sync: interval (default) or always
  --activity-sync-interval D      GATEHOUSE_ACTIVITY_SYNC_INTERVAL     activity_sync_interval (default 50ms)

Every statement is recorded in the activity spool in --data-dir (default ./gatehouse-sidecar-data)
before it is forwarded, and shipped to the control plane in order. With --activity-sync interval
the spool is fsynced in the background every --activity-sync-interval, so a crash of the machine
(not of the sidecar) can lose the records of the last interval; always fsyncs each statement's
record before forwarding it, at about a millisecond per statement. When the spool is full,
fail-closed refuses statements until the control plane has taken records off it; drop-oldest
discards the oldest unshipped records and says so in a spool.dropped record. Give each running
instance its own data directory; it also keeps the instance's ID.`

type sidecarActivityFlags struct {
	maxBytes     int64
	whenFull     string
	sync         string
	syncInterval time.Duration
}

func (f *sidecarActivityFlags) add(fl *pflag.FlagSet) {
	fl.Int64Var(&f.maxBytes, "activity-spool-max-bytes", 0, "largest size of the activity spool on disk (default 256 MiB)")
	fl.StringVar(&f.whenFull, "activity-when-full", "", "when the activity spool is full: fail-closed (refuse statements; default) or drop-oldest")
	fl.StringVar(&f.sync, "activity-sync", "", "when activity records are fsynced: interval (in the background; default) or always (before each statement is forwarded)")
	fl.DurationVar(&f.syncInterval, "activity-sync-interval", 0, "how often the activity spool is fsynced with --activity-sync interval (default 50ms)")
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
	sync := f.sync
	if sync == "" {
		sync = e.Getenv("GATEHOUSE_ACTIVITY_SYNC")
	}
	if sync == "" {
		sync = file.ActivitySync
	}
	switch sync {
	case "", "interval":
	case "always":
		cfg.ActivitySyncAlways = true
	default:
		return usageErrorf("--activity-sync must be interval or always, not %q", sync)
	}
	every := f.syncInterval
	if !cmd.Flags().Changed("activity-sync-interval") {
		v := e.Getenv("GATEHOUSE_ACTIVITY_SYNC_INTERVAL")
		if v == "" {
			v = file.ActivitySyncInterval
		}
		if v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return usageErrorf("activity sync interval must be a duration like 50ms, not %q", v)
			}
			every = d
		}
	}
	if every < 0 || every > time.Minute {
		return usageErrorf("--activity-sync-interval must be between 1ms and 1m")
	}
	if every > 0 && every < time.Millisecond {
		return usageErrorf("--activity-sync-interval must be between 1ms and 1m")
	}
	cfg.ActivitySyncInterval = every
	if cfg.DataDir == "" {
		cfg.DataDir = sidecar.DefaultDataDir
	}
	return nil
}
