package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/activity/activitytest"
	"github.com/gatehousedb/gatehouse/internal/store"
)

// TestPurgeActivity: the retention purge deletes the records older than the cutoff and keeps the
// rest, whatever their type.
func TestPurgeActivity(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		now := time.Date(2025, 6, 30, 12, 0, 0, 0, time.UTC)
		retention := 30 * 24 * time.Hour
		ages := []time.Duration{
			90 * 24 * time.Hour,
			31 * 24 * time.Hour,
			retention + time.Second,
			retention - time.Second,
			24 * time.Hour,
			time.Minute,
		}
		types := []string{activity.TypeSessionStart, activity.TypeStatement, activity.TypeStatementEnd, activity.TypeStatement, activity.TypeSessionEnd, activity.TypeStatement}
		var recs []activity.Stored
		for i, age := range ages {
			r := activity.Record{Seq: uint64(i + 1), Type: types[i], Time: now.Add(-age), SidecarID: "sc", InstanceID: "inst",
				SessionID: "s1", User: "alice@example.com", Repository: "sales", Statement: fmt.Sprintf("select %d", i)}
			raw, err := json.Marshal(&r)
			must(t, err)
			recs = append(recs, activity.Stored{Record: r, Raw: raw})
		}
		stored, dups, err := s.AddActivity(ctx, recs)
		must(t, err)
		if stored != len(recs) || dups != 0 {
			t.Fatalf("stored %d, duplicates %d; want %d, 0", stored, dups, len(recs))
		}

		n, err := s.PurgeActivity(ctx, now.Add(-retention))
		must(t, err)
		if n != 3 {
			t.Errorf("purged %d records, want the 3 older than the retention", n)
		}
		left, err := s.ListActivity(ctx, activity.Filter{Chain: true})
		must(t, err)
		var seqs []uint64
		for _, r := range left {
			seqs = append(seqs, r.Record.Seq)
		}
		if diff := cmp.Diff([]uint64{4, 5, 6}, seqs); diff != "" {
			t.Errorf("records kept (-want +got):\n%s", diff)
		}

		// Purging again with the same cutoff finds nothing more.
		n, err = s.PurgeActivity(ctx, now.Add(-retention))
		must(t, err)
		if n != 0 {
			t.Errorf("second purge deleted %d records, want 0", n)
		}
	})
}

// TestRepositoryRecordParameters: the opt-in is off by default and survives create, update and
// list on both backends.
func TestRepositoryRecordParameters(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		r := repo("sales", gatehouse.PostgreSQL, "15")
		must(t, s.CreateRepository(ctx, r))
		got, err := s.GetRepository(ctx, "sales")
		must(t, err)
		if got.RecordParameters {
			t.Error("a new repository records parameters; want off by default")
		}
		got.RecordParameters = true
		must(t, s.UpdateRepository(ctx, got))
		got, err = s.GetRepository(ctx, "sales")
		must(t, err)
		if !got.RecordParameters {
			t.Error("record_parameters not stored by update")
		}
		on := repo("hr", gatehouse.PostgreSQL, "15")
		on.RecordParameters = true
		must(t, s.CreateRepository(ctx, on))
		list, err := s.ListRepositories(ctx)
		must(t, err)
		want := map[string]bool{"hr": true, "sales": true}
		gotm := map[string]bool{}
		for _, r := range list {
			gotm[r.Name] = r.RecordParameters
		}
		if diff := cmp.Diff(want, gotm); diff != "" {
			t.Errorf("record_parameters by repository (-want +got):\n%s", diff)
		}
	})
}

// TestAddActivityDuplicates: records the store already has, and records repeated within a batch,
// are counted as duplicates and leave the first stored copy as it is, wherever they fall among
// the rows of one INSERT (a batch is inserted many rows at a time).
func TestAddActivityDuplicates(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, _ string) {
		ctx := context.Background()
		c := activitytest.NewChain("sc1", "inst1")
		all := stored(t, c.Lines(t, 260))
		// Some records already stored, the 1st, the 100th and 101st among them.
		var first []activity.Stored
		for _, i := range []int{0, 1, 99, 100, 150} {
			first = append(first, all[i])
		}
		n, dups, err := s.AddActivity(ctx, first)
		must(t, err)
		if n != len(first) || dups != 0 {
			t.Fatalf("first batch: stored %d, duplicates %d; want %d, 0", n, dups, len(first))
		}

		// A batch of all 260, with copies of records of the same batch (in the same group of rows
		// and across groups) that differ in their raw bytes: the first copy is kept.
		edited := func(r activity.Stored) activity.Stored {
			r.Raw = append(json.RawMessage(nil), r.Raw...)
			r.Raw = json.RawMessage(strings.Replace(string(r.Raw), `"seq":`, `"extra":1,"seq":`, 1))
			return r
		}
		batch := append([]activity.Stored(nil), all...)
		batch = append(batch[:120:120], append([]activity.Stored{edited(all[119]), edited(all[5])}, batch[120:]...)...)
		batch = append(batch, edited(all[200]), edited(all[1]), edited(all[259]))
		n, dups, err = s.AddActivity(ctx, batch)
		must(t, err)
		if want := len(all) - len(first); n != want || dups != len(batch)-want {
			t.Errorf("second batch: stored %d, duplicates %d; want %d, %d", n, dups, want, len(batch)-want)
		}

		// Everything again: all duplicates.
		n, dups, err = s.AddActivity(ctx, batch)
		must(t, err)
		if n != 0 || dups != len(batch) {
			t.Errorf("third batch: stored %d, duplicates %d; want 0, %d", n, dups, len(batch))
		}

		got, err := s.ListActivity(ctx, activity.Filter{Chain: true})
		must(t, err)
		if len(got) != len(all) {
			t.Fatalf("listed %d records, want %d", len(got), len(all))
		}
		for i := range all {
			if string(got[i].Raw) != string(all[i].Raw) {
				t.Errorf("record %d stored as\n%s\nwant\n%s", i+1, got[i].Raw, all[i].Raw)
			}
		}
		if diff := cmp.Diff(all[7].Record, got[7].Record); diff != "" {
			t.Errorf("record 8 (-want +got):\n%s", diff)
		}
	})
}

// TestAddActivityColumns: the columns searches use hold what the record says, and a record the
// store cannot take fails the whole batch.
func TestAddActivityColumns(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Store, dsn string) {
		ctx := context.Background()
		c := activitytest.NewChain("sc1", "inst1")
		// Six statements, each carrying the outcome of the one before; the last one's outcome is a
		// statement.end record of its own.
		lines := c.Lines(t, 6)
		lines = append(lines, c.Seal(t, &activity.Record{Type: activity.TypeStatementEnd, SessionID: "KX4PMVQ7ZB2N5HRT6YW3JCAD8E", Ref: 6,
			User: "alice@example.com", Repository: "sales", RepositoryUser: "reader", Rows: 2, ErrorCode: "57014"}))
		recs := stored(t, lines)
		// Objects that json.Marshal escapes, and a statement without objects.
		recs[0].Record.Objects = []string{`public."we<ird>"`, "public.caf\u00e9", "a&b"}
		recs[4].Record.Objects = []string{}
		n, _, err := s.AddActivity(ctx, recs)
		must(t, err)
		if n != 7 {
			t.Fatalf("stored %d, want 7", n)
		}
		for _, tc := range []struct {
			name   string
			filter activity.Filter
			want   []uint64
		}{
			// objects is stored as json.Marshal encodes it, & as \u0026.
			{"escaped object", activity.Filter{Object: `a\u0026b`}, []uint64{1}},
			{"non-ASCII object", activity.Filter{Object: "public.caf\u00e9"}, []uint64{1}},
			{"plain object", activity.Filter{Object: "public.orders"}, []uint64{2, 3, 4, 6}},
			{"kind", activity.Filter{Kind: "select"}, []uint64{1, 2, 3, 4, 5, 6}},
			{"type", activity.Filter{Type: activity.TypeStatementEnd}, []uint64{7}},
			{"user and repository", activity.Filter{User: "alice@example.com", Repository: "sales", RepositoryUser: "reader"}, []uint64{1, 2, 3, 4, 5, 6, 7}},
			{"text", activity.Filter{Text: "where c.id = 2"}, []uint64{3}},
			{"since", activity.Filter{Since: recs[1].Record.Time}, []uint64{2, 3, 4, 5, 6, 7}},
		} {
			got, err := s.ListActivity(ctx, tc.filter)
			must(t, err)
			var seqs []uint64
			for _, r := range got {
				seqs = append(seqs, r.Record.Seq)
				if r.Record.Type != activity.TypeStatement {
					continue
				}
				// Statement k's outcome came carried by record k+1, statement 6's on its own.
				want := activity.Record{Seq: r.Record.Seq + 1, Type: activity.TypeStatementEnd, Ref: r.Record.Seq, Rows: 1, DurationMS: 0.734}
				if r.Record.Seq == 6 {
					want.Rows, want.DurationMS, want.ErrorCode = 2, 0, "57014"
				}
				if e := r.End; e == nil || e.Seq != want.Seq || e.Type != want.Type || e.Ref != want.Ref || e.Rows != want.Rows ||
					e.DurationMS != want.DurationMS || e.ErrorCode != want.ErrorCode || e.SessionID != r.Record.SessionID {
					t.Errorf("%s: statement %d: end %+v, want %+v", tc.name, r.Record.Seq, e, want)
				}
			}
			if diff := cmp.Diff(tc.want, seqs); diff != "" {
				t.Errorf("%s: records listed (-want +got):\n%s", tc.name, diff)
			}
		}

		if !strings.HasPrefix(dsn, "postgres") {
			return
		}
		// PostgreSQL refuses a NUL in text: the batch around it is not stored either.
		more := stored(t, c.Lines(t, 250))
		more[180].Record.Statement = "select \x00"
		if _, _, err := s.AddActivity(ctx, more); err == nil {
			t.Fatal("a batch with a record PostgreSQL refuses was stored")
		}
		got, err := s.ListActivity(ctx, activity.Filter{Chain: true})
		must(t, err)
		if len(got) != 7 {
			t.Errorf("%d records after the failed batch, want the 7 stored before", len(got))
		}
	})
}
