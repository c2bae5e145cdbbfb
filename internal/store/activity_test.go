package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
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
