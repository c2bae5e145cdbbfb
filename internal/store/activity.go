package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
)

// Activity records are inserted up to activityChunk at a time, one multi-row INSERT each: a
// statement per record cost more than storing it (parsing and binding on SQLite, a round trip on
// PostgreSQL). 100 rows of activityColumns values is 1,600 placeholders, well under SQLite's
// limit (32,766 in modernc.org/sqlite) and PostgreSQL's (65,535).
const (
	activityChunk   = 100
	activityColumns = 16
)

// activityRows is how many of left records the next INSERT takes: activityChunk, and then the
// largest power of two, so that there are only eight statements (which pgx keeps prepared on each
// PostgreSQL connection, by their text) whatever the sizes of the batches.
func activityRows(left int) int {
	if left >= activityChunk {
		return activityChunk
	}
	return 1 << (bits.Len(uint(left)) - 1)
}

// activityInsert returns the INSERT of rows records, with the dialect's placeholders. Built per
// chunk: a few microseconds for a hundred records.
func (s *Store) activityInsert(rows int) string {
	b := make([]byte, 0, 300+rows*activityColumns*5)
	b = append(b, `INSERT INTO activity (instance_id, seq, sidecar_id, type, time, session_id, ref, user_name,
		repository, repository_user, kind, decision, statement, objects, record, received_at) VALUES `...)
	n := 0
	for i := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		for j := range activityColumns {
			if j > 0 {
				b = append(b, ',')
			}
			n++
			if s.dialect == postgres {
				b = strconv.AppendInt(append(b, '$'), int64(n), 10)
			} else {
				b = append(b, '?')
			}
		}
		b = append(b, ')')
	}
	return string(append(b, " ON CONFLICT DO NOTHING"...))
}

// AddActivity stores records as received, in order, in one transaction. A record the store
// already has (same instance and seq), or has earlier in recs, is left as it is and counted as a
// duplicate.
func (s *Store) AddActivity(ctx context.Context, recs []activity.Stored) (stored, duplicates int, err error) {
	now := fmtTime(s.now())
	err = s.inTx(ctx, func(t *tx) error {
		// SQLite (modernc.org/sqlite) parses a statement on every Exec, so each size is prepared
		// once per transaction; pgx caches prepared statements by their text on its own.
		var stmts map[int]*sql.Stmt
		defer func() {
			for _, st := range stmts {
				st.Close()
			}
		}()
		args := make([]any, 0, min(len(recs), activityChunk)*activityColumns)
		var inserted int64
		for lo := 0; lo < len(recs); {
			chunk := recs[lo : lo+activityRows(len(recs)-lo)]
			lo += len(chunk)
			args = args[:0]
			for i := range chunk {
				r := &chunk[i].Record
				args = append(args, r.InstanceID, int64(r.Seq), r.SidecarID, r.Type, fmtTime(r.Time), r.SessionID, int64(r.Completes()), r.User,
					r.Repository, r.RepositoryUser, r.Kind, r.Decision, r.Statement, objectsJSON(r.Objects), string(chunk[i].Raw), now)
			}
			var res sql.Result
			var err error
			if s.dialect == sqlite {
				st := stmts[len(chunk)]
				if st == nil {
					if st, err = t.tx.PrepareContext(ctx, s.activityInsert(len(chunk))); err != nil {
						return fmt.Errorf("store activity records: %w", err)
					}
					if stmts == nil {
						stmts = map[int]*sql.Stmt{}
					}
					stmts[len(chunk)] = st
				}
				res, err = st.ExecContext(ctx, args...)
			} else {
				res, err = t.tx.ExecContext(ctx, s.activityInsert(len(chunk)), args...)
			}
			if err != nil {
				return fmt.Errorf("store activity records: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("store activity records: %w", err)
			}
			inserted += n
		}
		stored, duplicates = int(inserted), len(recs)-int(inserted)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return stored, duplicates, nil
}

// objectsJSON is json.Marshal(objects) as a string, from the spool's own encoder.
func objectsJSON(objects []string) string {
	if objects == nil {
		return "null"
	}
	return string(activity.AppendJSONStrings(nil, objects))
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

// attachEnds finds the outcome of each statement record: its statement.end record, or the
// outcome a later record of its session carries (Record.End), as a statement.end record.
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
		rows, err := s.query(ctx, "SELECT record FROM activity WHERE instance_id = ? AND ref >= ? AND ref <= ?",
			inst, int64(sp.lo), int64(sp.hi))
		if err != nil {
			return fmt.Errorf("list activity: %w", err)
		}
		for rows.Next() {
			var raw string
			if err := rows.Scan(&raw); err != nil {
				rows.Close()
				return fmt.Errorf("list activity: %w", err)
			}
			var r activity.Record
			if json.Unmarshal([]byte(raw), &r) != nil {
				continue
			}
			if e, ok := r.EndRecord(); ok {
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
