package activity_test

import (
	"context"
	"encoding/json"
	"os"
	"sync/atomic"
	"testing"

	"github.com/gatehousedb/gatehouse/internal/activity"
)

// countWrites makes s count its write(2)s and reports them per op when b ends.
func countWrites(b *testing.B, s *activity.Spool) {
	var n atomic.Int64
	activity.SetWriteHook(s, func(f *os.File, p []byte) (int, error) {
		n.Add(1)
		return f.Write(p)
	})
	b.Cleanup(func() { b.ReportMetric(float64(n.Load())/float64(b.N), "writes/op") })
}

// benchSpool opens a spool for a benchmark. Nothing ships or acknowledges its records, so its limit
// is set past what a run of a few seconds writes (about 1 KB per statement cycle): at the default
// 256 MiB a one-second run would fill it, and Append would fail with ErrSpoolFull.
func benchSpool(b *testing.B, cfg activity.Config) *activity.Spool {
	cfg.Dir, cfg.MaxBytes = b.TempDir(), 64<<30
	return open(b, cfg)
}

// statementCycle is what the sidecar does per statement: append its record before forwarding it
// and defer its outcome.
func statementCycle(b *testing.B, s *activity.Spool, r *activity.Record) {
	rec := *r
	if err := s.Append(context.Background(), &rec); err != nil {
		b.Fatal(err)
	}
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, Time: r.Time, SessionID: r.SessionID, Ref: rec.Seq, User: r.User, Repository: r.Repository, RepositoryUser: r.RepositoryUser, Rows: 1, DurationMS: 0.25})
}

// BenchmarkAppend is one session appending (SyncInterval, the default).
func BenchmarkAppend(b *testing.B) {
	s := benchSpool(b, activity.Config{})
	r := stmt(1)
	b.ReportAllocs()
	for b.Loop() {
		statementCycle(b, s, r)
	}
}

// BenchmarkAppendParallel is GOMAXPROCS sessions appending at once (run with -cpu 1,2,8).
func BenchmarkAppendParallel(b *testing.B) {
	s := benchSpool(b, activity.Config{})
	countWrites(b, s)
	r := stmt(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			statementCycle(b, s, r)
		}
	})
}

// BenchmarkAppendParallel4x is four sessions per CPU: more sessions than cores, as under pgbench.
func BenchmarkAppendParallel4x(b *testing.B) {
	s := benchSpool(b, activity.Config{})
	countWrites(b, s)
	r := stmt(1)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			statementCycle(b, s, r)
		}
	})
}

// BenchmarkReadLinesBehind is the shipper reading lines this process wrote when it is behind
// (30000 records, 16 MB): 5000 records per call, as DefaultBatchSize, as the Shipper calls it.
func BenchmarkReadLinesBehind(b *testing.B) {
	s := open(b, activity.Config{Dir: b.TempDir(), SegmentBytes: 64 << 20, MaxBytes: 256 << 20})
	appendN(b, s, 0, 30000) // more than the tail holds
	b.ReportAllocs()
	n := 0
	var buf []byte
	var lines []json.RawMessage
	for b.Loop() {
		var err error
		lines, _, buf, err = activity.ReadLinesReusing(s, activity.Position{Segment: 1}, 5000, 8<<20, buf, lines)
		if err != nil {
			b.Fatal(err)
		}
		n = len(lines)
	}
	if n != 5000 {
		b.Fatalf("read %d lines", n)
	}
}

// BenchmarkShipCaughtUp is appending with a shipper that keeps up: per op, 1000 statements (with
// their outcomes) appended, then read for shipping and acknowledged.
func BenchmarkShipCaughtUp(b *testing.B) {
	s := benchSpool(b, activity.Config{})
	r := stmt(1)
	pos := s.Acked()
	b.ReportAllocs()
	for b.Loop() {
		for range 1000 {
			statementCycle(b, s, r)
		}
		for {
			lines, next, err := s.ReadLines(pos, 5000, 8<<20)
			if err != nil {
				b.Fatal(err)
			}
			if len(lines) == 0 {
				break
			}
			pos = next
		}
		if err := s.Ack(pos); err != nil {
			b.Fatal(err)
		}
	}
}
