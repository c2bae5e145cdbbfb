package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/store"
)

// chain makes activity records as a sidecar's spool does: statement and statement.end pairs of one
// instance, sealed into its hash chain, encoded as the spool encodes them (json.Marshal gives the
// same bytes).
type chain struct {
	sidecar, instance string
	seq               uint64
	prev              string
	t                 time.Time
}

func newChain(sidecar, instance string) *chain {
	return &chain{sidecar: sidecar, instance: instance, t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
}

func (c *chain) seal(tb testing.TB, r *activity.Record) json.RawMessage {
	tb.Helper()
	c.seq++
	c.t = c.t.Add(1234567 * time.Nanosecond)
	r.Seq, r.Time, r.SidecarID, r.InstanceID, r.PrevHash, r.Hash = c.seq, c.t, c.sidecar, c.instance, c.prev, ""
	h, err := activity.ComputeHash(r)
	if err != nil {
		tb.Fatal(err)
	}
	r.Hash, c.prev = h, h
	raw, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// lines returns n records' lines (n/2 statements, each followed by its statement.end).
func (c *chain) lines(tb testing.TB, n int) []json.RawMessage {
	out := make([]json.RawMessage, 0, n)
	for len(out) < n {
		st := activity.Record{Type: activity.TypeStatement, SessionID: "KX4PMVQ7ZB2N5HRT6YW3JCAD8E",
			User: "alice@example.com", Repository: "sales", RepositoryUser: "reader",
			Statement:   fmt.Sprintf("SELECT c.id, c.name, c.email, o.total FROM public.customers c JOIN public.orders o ON o.customer_id = c.id WHERE c.id = %d", c.seq),
			Fingerprint: "9f3c2a61d0b47e85", Kind: "select",
			Objects:  []string{"public.customers", "public.customers.email", "public.customers.id", "public.customers.name", "public.orders", "public.orders.customer_id", "public.orders.total"},
			Decision: activity.DecisionAllow, Rule: "sales-ro#0", Mode: "enforce"}
		out = append(out, c.seal(tb, &st))
		if len(out) == n {
			break
		}
		end := activity.Record{Type: activity.TypeStatementEnd, SessionID: st.SessionID, Ref: st.Seq,
			User: st.User, Repository: st.Repository, RepositoryUser: st.RepositoryUser, Rows: 1, DurationMS: 0.734}
		out = append(out, c.seal(tb, &end))
	}
	return out
}

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
			c := newChain("sc1", "inst1")
			b.ReportAllocs()
			b.ResetTimer()
			var cpu time.Duration
			for done := 0; done < b.N; {
				n := min(batch, b.N-done)
				b.StopTimer()
				recs := stored(b, c.lines(b, n))
				b.StartTimer()
				before := cpuTime()
				got, dups, err := s.AddActivity(ctx, recs)
				cpu += cpuTime() - before
				if err != nil || got != n || dups != 0 {
					b.Fatalf("AddActivity = %d, %d, %v; want %d, 0", got, dups, err, n)
				}
				done += n
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU time this process has used, user and system: on PostgreSQL, ns/op includes
// waiting for the server, and cpu-ns/op is what the control plane itself spends.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
