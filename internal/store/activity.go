package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
)

// AddActivity stores records as received, in order, in one transaction. A record the store
// already has (same instance and seq) is left as it is and counted as a duplicate.
func (s *Store) AddActivity(ctx context.Context, recs []activity.Stored) (stored, duplicates int, err error) {
	now := fmtTime(s.now())
	err = s.inTx(ctx, func(t *tx) error {
		stored, duplicates = 0, 0
		for i := range recs {
			r := &recs[i].Record
			objects, err := toJSON(r.Objects)
			if err != nil {
				return err
			}
			res, err := t.exec(ctx, `INSERT INTO activity (instance_id, seq, sidecar_id, type, time, session_id, ref, user_name,
				repository, repository_user, kind, decision, statement, objects, record, received_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				r.InstanceID, int64(r.Seq), r.SidecarID, r.Type, fmtTime(r.Time), r.SessionID, int64(r.Ref), r.User,
				r.Repository, r.RepositoryUser, r.Kind, r.Decision, r.Statement, objects, string(recs[i].Raw), now)
			if err != nil {
				return fmt.Errorf("store activity record: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				duplicates++
			} else {
				stored++
			}
		}
		return nil
	})
	return stored, duplicates, err
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ListActivity returns the records f selects, ordered by time (or by chain), with the
// statement.end record of each statement record.
func (s *Store) ListActivity(ctx context.Context, f activity.Filter) ([]activity.Stored, error) {
	var where []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, fmtTime(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "time < ?")
		args = append(args, fmtTime(f.Until))
	}
	eq("user_name", f.User)
	eq("repository", f.Repository)
	eq("repository_user", f.RepositoryUser)
	eq("type", f.Type)
	eq("kind", f.Kind)
	eq("decision", f.Decision)
	eq("sidecar_id", f.SidecarID)
	eq("instance_id", f.InstanceID)
	if f.Object != "" {
		where = append(where, `LOWER(objects) LIKE ? ESCAPE '\'`)
		args = append(args, `%"`+likeEscape(strings.ToLower(f.Object))+`%`)
	}
	if f.Text != "" {
		where = append(where, `LOWER(statement) LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscape(strings.ToLower(f.Text))+"%")
	}
	if c := f.After; c != nil {
		t := fmtTime(c.Time)
		where = append(where, "(time > ? OR (time = ? AND (instance_id > ? OR (instance_id = ? AND seq > ?))))")
		args = append(args, t, t, c.InstanceID, c.InstanceID, int64(c.Seq))
	}
	q := "SELECT record FROM activity"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Chain {
		q += " ORDER BY instance_id, seq"
	} else {
		q += " ORDER BY time, instance_id, seq"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list activity: %w", err)
	}
	defer rows.Close()
	out := []activity.Stored{}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("list activity: %w", err)
		}
		st := activity.Stored{Raw: json.RawMessage(raw)}
		// A record edited in the store may no longer decode; it is still listed (Verify reports it).
		_ = json.Unmarshal([]byte(raw), &st.Record)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list activity: %w", err)
	}
	if f.Chain {
		return out, nil
	}
	return out, s.attachEnds(ctx, out)
}

// attachEnds finds the statement.end record of each statement record.
func (s *Store) attachEnds(ctx context.Context, recs []activity.Stored) error {
	type span struct{ lo, hi uint64 }
	spans := map[string]*span{}
	for _, r := range recs {
		if r.Record.Type != activity.TypeStatement {
			continue
		}
		sp := spans[r.Record.InstanceID]
		if sp == nil {
			spans[r.Record.InstanceID] = &span{r.Record.Seq, r.Record.Seq}
			continue
		}
		sp.lo, sp.hi = min(sp.lo, r.Record.Seq), max(sp.hi, r.Record.Seq)
	}
	ends := map[[2]string]*activity.Record{}
	for inst, sp := range spans {
		rows, err := s.query(ctx, "SELECT record FROM activity WHERE instance_id = ? AND type = ? AND ref >= ? AND ref <= ?",
			inst, activity.TypeStatementEnd, int64(sp.lo), int64(sp.hi))
		if err != nil {
			return fmt.Errorf("list activity: %w", err)
		}
		for rows.Next() {
			var raw string
			if err := rows.Scan(&raw); err != nil {
				rows.Close()
				return fmt.Errorf("list activity: %w", err)
			}
			var e activity.Record
			if json.Unmarshal([]byte(raw), &e) == nil {
				ends[[2]string{inst, fmt.Sprint(e.Ref)}] = &e
			}
		}
		rows.Close()
	}
	for i := range recs {
		r := &recs[i].Record
		if r.Type == activity.TypeStatement {
			recs[i].End = ends[[2]string{r.InstanceID, fmt.Sprint(r.Seq)}]
		}
	}
	return nil
}

// PurgeActivity deletes records older than before and returns how many.
func (s *Store) PurgeActivity(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(t *tx) error {
		res, err := t.exec(ctx, "DELETE FROM activity WHERE time < ?", fmtTime(before))
		if err != nil {
			return fmt.Errorf("purge activity: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}
