package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// Setting returns the value of a setting, or "" if it was never set.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.queryRow(ctx, "SELECT value FROM settings WHERE name = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get setting %s: %w", key, err)
	}
	return v, nil
}

// SetSetting stores a setting, replacing any previous value.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	if key == "" {
		return gatehouse.Invalid("key", "is required")
	}
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", key, value); err != nil {
			return fmt.Errorf("set setting %s: %w", key, err)
		}
		return nil
	})
}

// ConfigVersion returns the number of the last change a sidecar would see.
func (s *Store) ConfigVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.queryRow(ctx, "SELECT version FROM config_version WHERE id = 1").Scan(&v); err != nil {
		return 0, fmt.Errorf("get config version: %w", err)
	}
	return v, nil
}

// UpsertInstance records a sidecar instance's report; the sidecar must exist (Invalid
// "sidecar_id"). Status is not stored: it is derived from LastSeen when served.
func (s *Store) UpsertInstance(ctx context.Context, in *gatehouse.SidecarInstance) error {
	if in.SidecarID == "" {
		return gatehouse.Invalid("sidecar_id", "is required")
	}
	if in.InstanceID == "" {
		return gatehouse.Invalid("instance_id", "is required")
	}
	ports, err := toJSON(in.Ports)
	if err != nil {
		return err
	}
	errs, err := toJSON(in.Errors)
	if err != nil {
		return err
	}
	now := s.stamp()
	if in.LastSeen.IsZero() {
		in.LastSeen = now
	}
	return s.inTx(ctx, func(t *tx) error {
		ok, err := t.exists(ctx, "SELECT 1 FROM sidecars WHERE id = ?", in.SidecarID)
		if err != nil {
			return fmt.Errorf("check sidecar: %w", err)
		}
		if !ok {
			return gatehouse.Invalid("sidecar_id", "sidecar %q does not exist", in.SidecarID)
		}
		_, err = t.exec(ctx, `INSERT INTO sidecar_instances
			(sidecar_id, instance_id, hostname, version, started_at, ports, config_version, errors, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (sidecar_id, instance_id) DO UPDATE SET
				hostname = excluded.hostname, version = excluded.version, started_at = excluded.started_at,
				ports = excluded.ports, config_version = excluded.config_version, errors = excluded.errors,
				last_seen = excluded.last_seen`,
			in.SidecarID, in.InstanceID, in.Hostname, in.Version, fmtTime(in.StartedAt), ports, in.ConfigVersion, errs, fmtTime(now), fmtTime(in.LastSeen))
		if err != nil {
			return fmt.Errorf("record sidecar instance: %w", err)
		}
		return nil
	})
}

// ListInstances returns a sidecar's instances ("" = every sidecar's), in the order they first
// reported.
func (s *Store) ListInstances(ctx context.Context, sidecarID string) ([]gatehouse.SidecarInstance, error) {
	query, args := `SELECT sidecar_id, instance_id, hostname, version, started_at, ports, config_version, errors, last_seen
		FROM sidecar_instances`, []any{}
	if sidecarID != "" {
		query, args = query+" WHERE sidecar_id = ?", []any{sidecarID}
	}
	rows, err := s.query(ctx, query+" ORDER BY first_seen, sidecar_id, instance_id", args...)
	if err != nil {
		return nil, fmt.Errorf("list sidecar instances: %w", err)
	}
	defer rows.Close()
	out := []gatehouse.SidecarInstance{}
	for rows.Next() {
		var in gatehouse.SidecarInstance
		var started, ports, errs, lastSeen string
		if err := rows.Scan(&in.SidecarID, &in.InstanceID, &in.Hostname, &in.Version, &started, &ports, &in.ConfigVersion, &errs, &lastSeen); err != nil {
			return nil, fmt.Errorf("list sidecar instances: %w", err)
		}
		if in.StartedAt, err = parseTime(started); err != nil {
			return nil, err
		}
		if in.LastSeen, err = parseTime(lastSeen); err != nil {
			return nil, err
		}
		if err := fromJSON(ports, &in.Ports); err != nil {
			return nil, err
		}
		if err := fromJSON(errs, &in.Errors); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sidecar instances: %w", err)
	}
	return out, nil
}

// UseJTI records a sidecar JWT's jti until exp. The insert is the check: the primary key makes a
// second use a Conflict even when two replicas see the same token at once. Expired entries are
// purged first.
func (s *Store) UseJTI(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return gatehouse.Invalid("jti", "is required")
	}
	return s.inTx(ctx, func(t *tx) error {
		if _, err := t.exec(ctx, "DELETE FROM used_jtis WHERE expires_at < ?", fmtTime(s.now())); err != nil {
			return fmt.Errorf("purge used jtis: %w", err)
		}
		res, err := t.exec(ctx, "INSERT INTO used_jtis (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING", jti, fmtTime(exp))
		if err != nil {
			return fmt.Errorf("record jti: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return gatehouse.Conflict("token id (jti) %q was already used: replayed token", jti)
		}
		return nil
	})
}
