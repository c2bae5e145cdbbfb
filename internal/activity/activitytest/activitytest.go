// Package activitytest makes activity records for tests and benchmarks of the packages that take
// them (the API, the store, the control plane), the way a sidecar's spool makes them.
package activitytest

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// Chain makes activity records as a sidecar's spool does for a busy session: statements of one
// instance, each carrying the outcome of the one before (Record.End), sealed into its hash chain, encoded as the spool encodes them (json.Marshal gives the
// same bytes).
type Chain struct {
	sidecar, instance string
	seq               uint64
	prev              string
	t                 time.Time
}

// NewChain starts the chain of one sidecar instance.
func NewChain(sidecar, instance string) *Chain {
	return &Chain{sidecar: sidecar, instance: instance, t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
}

// Seal numbers r as the next record of the chain, hashes it and returns its line.
func (c *Chain) Seal(tb testing.TB, r *activity.Record) json.RawMessage {
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

// Lines returns n statement records' lines, each but the first carrying the outcome of the one
// before.
func (c *Chain) Lines(tb testing.TB, n int) []json.RawMessage {
	out := make([]json.RawMessage, 0, n)
	var prev uint64
	for len(out) < n {
		st := activity.Record{Type: activity.TypeStatement, SessionID: "KX4PMVQ7ZB2N5HRT6YW3JCAD8E",
			User: "alice@example.com", Repository: "sales", RepositoryUser: "reader",
			Statement:   fmt.Sprintf("SELECT c.id, c.name, c.email, o.total FROM public.customers c JOIN public.orders o ON o.customer_id = c.id WHERE c.id = %d", c.seq),
			Fingerprint: "9f3c2a61d0b47e85", Kind: "select",
			Objects:  []string{"public.customers", "public.customers.email", "public.customers.id", "public.customers.name", "public.orders", "public.orders.customer_id", "public.orders.total"},
			Decision: activity.DecisionAllow, Rule: "sales-ro#0", Mode: "enforce"}
		if prev != 0 {
			st.End = activity.End{Ref: prev, Rows: 1, DurationMS: 0.734}
		}
		out = append(out, c.Seal(tb, &st))
		prev = st.Seq
	}
	return out
}

// CPUTime is the CPU the test process has used (user and system), for benchmarks that report CPU
// per operation.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Body is the request body a sidecar sends for lines (syncapi.ActivityBody).
func Body(tb testing.TB, lines []json.RawMessage) []byte {
	tb.Helper()
	b, err := syncapi.ActivityBody(lines)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
