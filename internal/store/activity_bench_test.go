package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/activity/activitytest"
	"github.com/gatehousedb/gatehouse/internal/store"
)

// stored decodes lines as the API does before it calls AddActivity.
func stored(tb testing.TB, lines []json.RawMessage) []activity.Stored {
	out := make([]activity.Stored, len(lines))
	for i, l := range lines {
		out[i].Raw = l
		if err := json.Unmarshal(l, &out[i].Record); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// BenchmarkAddActivity measures storing activity in batches of 1,000 records, as sidecars ship
// them; an op is one record.
func BenchmarkAddActivity(b *testing.B) {
	const batch = 1000
	dsns := map[string]func() string{
		"sqlite": func() string { return filepath.Join(b.TempDir(), "gatehouse.db") },
		"postgres": func() string {
			name := fmt.Sprintf("store_bench_%d", dbCounter.Add(1))
			if err := pg.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
				b.Fatal(err)
			}
			return pg.DSN(name)
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s, err := store.Open(ctx, dsns[name](), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c := activitytest.NewChain("sc1", "inst1")
			b.ReportAllocs()
			b.ResetTimer()
			var cpu time.Duration
			for done := 0; done < b.N; {
				n := min(batch, b.N-done)
				b.StopTimer()
				recs := stored(b, c.Lines(b, n))
				b.StartTimer()
				before := activitytest.CPUTime()
				got, dups, err := s.AddActivity(ctx, recs)
				cpu += activitytest.CPUTime() - before
				if err != nil || got != n || dups != 0 {
					b.Fatalf("AddActivity = %d, %d, %v; want %d, 0", got, dups, err, n)
				}
				done += n
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
