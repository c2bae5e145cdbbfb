package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/auth"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
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

// batchBody is the body syncapi.Client.ShipActivity sends for lines.
func batchBody(lines []json.RawMessage) []byte {
	body := []byte(`{"records":[`)
	for i, l := range lines {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, l...)
	}
	return append(body, "]}"...)
}

// discardStore takes activity and keeps none of it, so that a benchmark sees the API's own work.
type discardStore struct{ Store }

func (discardStore) AddActivity(_ context.Context, recs []activity.Stored) (int, int, error) {
	return len(recs), 0, nil
}

// BenchmarkReceiveActivity measures the activity route's handler on 1,000-record batches, without
// authentication or a store; an op is one record.
func BenchmarkReceiveActivity(b *testing.B) {
	const batch = 1000
	a, err := New(Config{Store: discardStore{}})
	if err != nil {
		b.Fatal(err)
	}
	lines := newChain("sc1", "inst1").lines(b, batch)
	body := batchBody(lines)
	p := &auth.SidecarPrincipal{Sidecar: &gatehouse.Sidecar{ID: "sc1"}, InstanceID: "inst1"}
	ctx := context.WithValue(context.Background(), sidecarKey{}, p)
	b.SetBytes(int64(len(body) / batch))
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for done := 0; done < b.N; done += batch {
		body := body
		if n := b.N - done; n < batch {
			body = batchBody(lines[:n])
		}
		req := httptest.NewRequestWithContext(ctx, "POST", syncapi.ActivityPath, bytes.NewReader(body))
		w := httptest.NewRecorder()
		a.receiveActivity(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
