package activity_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)

func stmt(i int) *activity.Record {
	return &activity.Record{
		Type:           activity.TypeStatement,
		Time:           t0.Add(time.Duration(i) * time.Millisecond),
		SessionID:      "s1",
		User:           "alice@example.com",
		Groups:         []string{"analysts"},
		Repository:     "hr",
		RepositoryUser: "reader",
		Statement:      fmt.Sprintf("SELECT %d FROM orders", i),
		Kind:           "select",
		Objects:        []string{"public.orders"},
		Decision:       activity.DecisionAllow,
		Rule:           "analysts#0",
		Mode:           "enforce",
		Rows:           int64(i),
		DurationMS:     1.25,
	}
}

func open(t testing.TB, cfg activity.Config) *activity.Spool {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = "i-1"
	}
	cfg.SidecarID = "sc-1"
	s, err := activity.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t testing.TB, s *activity.Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(context.Background(), stmt(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func readAll(t testing.TB, s *activity.Spool) []activity.Record {
	t.Helper()
	var all []activity.Record
	pos := activity.Position{}
	for {
		recs, next, err := s.Read(pos, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 && next == pos {
			return all
		}
		all = append(all, recs...)
		pos = next
	}
}

func seqs(recs []activity.Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func upto(n int) []uint64 {
	var out []uint64
	for i := 1; i <= n; i++ {
		out = append(out, uint64(i))
	}
	return out
}

func TestSpoolChainAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir, SegmentBytes: 2000})
	appendN(t, s, 0, 20)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, activity.Config{Dir: dir, SegmentBytes: 2000})
	appendN(t, s, 20, 5)
	recs := readAll(t, s)
	if diff := cmp.Diff(upto(25), seqs(recs)); diff != "" {
		t.Fatalf("seqs (-want +got):\n%s", diff)
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
	if st := s.Stats(); st.Segments < 3 {
		t.Errorf("expected several segments, got %+v", st)
	}
	if recs[0].SidecarID != "sc-1" || recs[0].InstanceID != "i-1" || recs[0].PrevHash != "" {
		t.Errorf("first record: %+v", recs[0])
	}
}

func TestSpoolNewInstanceStartsNewChain(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir})
	appendN(t, s, 0, 3)
	s.Close()
	s = open(t, activity.Config{Dir: dir, InstanceID: "i-2"})
	appendN(t, s, 3, 2)
	recs := readAll(t, s)
	if diff := cmp.Diff([]uint64{1, 2, 3, 1, 2}, seqs(recs)); diff != "" {
		t.Fatalf("seqs (-want +got):\n%s", diff)
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

func TestSpoolTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir})
	appendN(t, s, 0, 3)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"type":"statem`) // a crash mid-write
	f.Close()

	s = open(t, activity.Config{Dir: dir})
	appendN(t, s, 3, 2)
	recs := readAll(t, s)
	if diff := cmp.Diff(upto(5), seqs(recs)); diff != "" {
		t.Fatalf("seqs (-want +got):\n%s", diff)
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

func TestSpoolDamagedLineIsSkippedAndShowsAsGap(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir})
	appendN(t, s, 0, 5)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	data, _ := os.ReadFile(segs[0])
	lines := strings.SplitAfter(string(data), "\n")
	lines[2] = "\x00\x00garbage\n"
	os.WriteFile(segs[0], []byte(strings.Join(lines, "")), 0o600)

	s = open(t, activity.Config{Dir: dir})
	recs := readAll(t, s)
	if diff := cmp.Diff([]uint64{1, 2, 4, 5}, seqs(recs)); diff != "" {
		t.Fatalf("seqs (-want +got):\n%s", diff)
	}
	if s.Stats().Corrupt == 0 {
		t.Error("Corrupt not counted")
	}
	p := activity.Verify(recs)
	if len(p) != 1 || p[0].Kind != activity.ProblemGap || p[0].Seq != 4 {
		t.Errorf("Verify: %+v", p)
	}
}

func TestSpoolFailClosed(t *testing.T) {
	s := open(t, activity.Config{MaxBytes: 4000, SegmentBytes: 1000})
	var err error
	n := 0
	for ; n < 100; n++ {
		if err = s.Append(context.Background(), stmt(n)); err != nil {
			break
		}
	}
	if !errors.Is(err, activity.ErrSpoolFull) {
		t.Fatalf("after %d records: %v, want ErrSpoolFull", n, err)
	}
	if st := s.Stats(); st.Bytes > 4000 {
		t.Errorf("spool holds %d bytes, max 4000", st.Bytes)
	}
	// Shipping frees space.
	recs, next, err := s.Read(s.Acked(), 1000)
	if err != nil || len(recs) != n {
		t.Fatalf("Read: %d records, %v; want %d", len(recs), err, n)
	}
	if err := s.Ack(next); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), stmt(n)); err != nil {
		t.Fatalf("Append after Ack: %v", err)
	}
	more, _, err := s.Read(next, 1000)
	if err != nil || len(more) != 1 {
		t.Fatalf("Read after Ack: %d records, %v", len(more), err)
	}
	all := append(recs, more...)
	if p := activity.Verify(all); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

func TestSpoolDropOldest(t *testing.T) {
	s := open(t, activity.Config{MaxBytes: 8000, SegmentBytes: 2000, Full: activity.DropOldest})
	// Ship the first few, as a control plane would have.
	appendN(t, s, 0, 3)
	shipped, next, err := s.Read(s.Acked(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(next); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 3, 60)
	st := s.Stats()
	if st.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v", st)
	}
	if st.Bytes > 8000+1000 {
		t.Errorf("spool holds %d bytes", st.Bytes)
	}
	rest, _, err := s.Read(s.Acked(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	received := append(shipped, rest...)
	// Each spool.dropped record repeats the unshipped gaps before it: the last one covers them all.
	var dropped uint64
	for _, r := range received {
		if r.Type == activity.TypeDropped {
			dropped = 0
			for _, g := range r.Gaps {
				dropped += g.To - g.From + 1
			}
		}
	}
	if dropped != st.Dropped {
		t.Errorf("the last spool.dropped record covers %d records, Stats.Dropped = %d", dropped, st.Dropped)
	}
	if p := activity.Verify(received); len(p) != 0 {
		t.Errorf("Verify of an admitted drop: %+v", p)
	}
	// Check says which ranges the drop cost, and they add up to what the spool counted.
	_, admitted := activity.Check(received)
	var lost uint64
	for _, g := range admitted {
		lost += g.To - g.From + 1
	}
	if len(admitted) == 0 || lost < st.Dropped {
		t.Errorf("Check admitted %+v (%d records), want at least the %d dropped", admitted, lost, st.Dropped)
	}

	// Removing a record besides the admitted drop is still reported.
	var tampered []activity.Record
	for _, r := range received {
		if r.Type == activity.TypeStatement && r.Seq == received[len(received)-3].Seq {
			continue
		}
		tampered = append(tampered, r)
	}
	if p := activity.Verify(tampered); len(p) != 1 || p[0].Kind != activity.ProblemGap {
		t.Errorf("Verify after deleting a record: %+v", p)
	}
}

func TestVerify(t *testing.T) {
	s := open(t, activity.Config{})
	appendN(t, s, 0, 6)
	good := readAll(t, s)

	tests := []struct {
		name   string
		change func(rs []activity.Record) []activity.Record
		want   []string // kind@seq
	}{
		{"intact", func(rs []activity.Record) []activity.Record { return rs }, nil},
		{"range from the middle", func(rs []activity.Record) []activity.Record { return rs[2:] }, nil},
		{"edited statement", func(rs []activity.Record) []activity.Record {
			rs[2].Statement = "SELECT 1"
			return rs
		}, []string{"edited@3"}},
		{"edited decision with recomputed hash", func(rs []activity.Record) []activity.Record {
			rs[2].Decision = "allow"
			rs[2].Rows = 99
			rs[2].Hash, _ = activity.ComputeHash(&rs[2])
			return rs
		}, []string{"broken_link@4"}},
		{"deleted record", func(rs []activity.Record) []activity.Record {
			return append(rs[:3], rs[4:]...)
		}, []string{"gap@5"}},
		{"swapped records", func(rs []activity.Record) []activity.Record {
			rs[2], rs[3] = rs[3], rs[2]
			return rs
		}, []string{"gap@4", "reordered@3"}},
		{"first record with a previous hash", func(rs []activity.Record) []activity.Record {
			rs[0].PrevHash = "abc"
			rs[0].Hash, _ = activity.ComputeHash(&rs[0])
			return rs
		}, []string{"broken_link@1", "broken_link@2"}},
		{"forged gap record does not admit", func(rs []activity.Record) []activity.Record {
			forged := activity.Record{Seq: 7, Type: activity.TypeDropped, InstanceID: "i-1", PrevHash: rs[5].Hash,
				Gaps: []activity.Gap{{InstanceID: "i-1", From: 4, To: 4, PrevHash: "wrong", LastHash: rs[3].Hash}}}
			forged.Hash, _ = activity.ComputeHash(&forged)
			return append(append(rs[:3], rs[4:]...), forged)
		}, []string{"gap@5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := tt.change(append([]activity.Record(nil), good...))
			var got []string
			for _, p := range activity.Verify(rs) {
				got = append(got, fmt.Sprintf("%s@%d", p.Kind, p.Seq))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordJSON(t *testing.T) {
	s := open(t, activity.Config{})
	r := stmt(1)
	if err := s.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"seq", "type", "time", "user", "groups", "repository", "repository_user", "statement",
		"kind", "objects", "decision", "rule", "mode", "rows", "duration_ms", "sidecar_id", "instance_id", "hash"} {
		if _, ok := m[k]; !ok {
			t.Errorf("record JSON has no %q: %s", k, b)
		}
	}
	// A record survives a JSON round trip with its hash intact: the receiver can verify it.
	var back activity.Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if h, _ := activity.ComputeHash(&back); h != r.Hash {
		t.Errorf("hash after round trip %s, want %s", h, r.Hash)
	}
}

func TestStatementTruncated(t *testing.T) {
	s := open(t, activity.Config{MaxStatementBytes: 100})
	r := stmt(1)
	r.Statement = strings.Repeat("é", 200)
	if err := s.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if len(r.Statement) > 100+len("…[truncated]") || !strings.HasSuffix(r.Statement, "…[truncated]") {
		t.Errorf("statement not truncated: %d bytes", len(r.Statement))
	}
	if !json.Valid([]byte(`"` + r.Statement + `"`)) {
		t.Error("truncation split a character")
	}
}

// TestAppendWritesBeforeReturning: under every sync policy a record is in the segment file (handed
// to the operating system) when Append returns, before the caller forwards the statement.
func TestAppendWritesBeforeReturning(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync activity.SyncPolicy
	}{{"interval", activity.SyncInterval}, {"always", activity.SyncAlways}, {"os", activity.SyncOS}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, activity.Config{Dir: dir, Sync: tc.sync, SyncEvery: time.Hour})
			for i := range 3 {
				r := stmt(i)
				if err := s.Append(context.Background(), r); err != nil {
					t.Fatal(err)
				}
				segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
				data, err := os.ReadFile(segs[len(segs)-1])
				if err != nil {
					t.Fatal(err)
				}
				want, _ := json.Marshal(r)
				if !strings.HasSuffix(string(data), string(want)+"\n") {
					t.Fatalf("after Append %d the file ends %q, want the record %s", i, data[max(0, len(data)-80):], want)
				}
			}
		})
	}
}

// TestSealedLineIsCanonical: the line written is json.Marshal of the record, and its hash is what
// ComputeHash (and so Verify, on the control plane) computes, for text that JSON escapes.
func TestSealedLineIsCanonical(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir})
	texts := []string{
		`SELECT '<b>&amp;</b>' AS "x"`,
		"SELECT 'line\u2028sep\u2029', '\t\x01\\\"é€😀'",
		"SELECT 'latin1 \xe9t\xe9'", // invalid UTF-8
		"",
	}
	var want []activity.Record
	for i, text := range texts {
		r := stmt(i)
		r.Statement, r.DurationMS, r.Rows = text, float64(i)*1e6+0.001, int64(i)<<40
		if err := s.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		want = append(want, *r)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	data, _ := os.ReadFile(segs[0])
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%d lines, want %d", len(lines), len(texts))
	}
	for i, line := range lines {
		var back activity.Record
		if err := json.Unmarshal([]byte(line), &back); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		again, _ := json.Marshal(&back)
		if string(again) != line {
			t.Errorf("line %d is not canonical:\n got %s\nwant %s", i, line, again)
		}
		if h, _ := activity.ComputeHash(&back); h != back.Hash || back.Hash != want[i].Hash {
			t.Errorf("line %d: hash %s, ComputeHash %s, Append set %s", i, back.Hash, h, want[i].Hash)
		}
	}
	if p := activity.Verify(readAll(t, s)); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

// TestDeferredRecords: a session's deferred outcome is carried by its next statement or
// session.end record; an earlier one still waiting (a pipelined statement's), one without a
// session, and one no record came to carry are written as records of their own: before the next
// Append's records, by the background syncer, and at Close.
func TestDeferredRecords(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir, SyncEvery: time.Hour})
	appendN(t, s, 0, 1)                                                                                           // 1, session s1
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, Ref: 1, SessionID: "s1", Rows: 1, DurationMS: 0.5}) // carried by 2
	appendN(t, s, 1, 1)                                                                                           // 2
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, Ref: 2, SessionID: "s1", Rows: 2})                  // 3: displaced by the next
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, Ref: 2, SessionID: "s1", Rows: 3})                  // carried by 5
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, Ref: 1, Rows: 4})                                   // 4: no session
	other := stmt(2)
	other.SessionID = "s2"
	if err := s.Append(context.Background(), other); err != nil { // 5: another session's, carries nothing
		t.Fatal(err)
	}
	if other.End != (activity.End{}) {
		t.Errorf("a record of session s2 carried %+v", other.End)
	}
	end := &activity.Record{Type: activity.TypeSessionEnd, SessionID: "s1", DurationMS: 9}
	if err := s.Append(context.Background(), end); err != nil { // 6: carries Ref 2's outcome
		t.Fatal(err)
	}
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, Ref: 5, SessionID: "s2", ErrorCode: "57014"}) // 7: at Close
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, activity.Config{Dir: dir, SyncEvery: 5 * time.Millisecond})
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, Ref: 5, SessionID: "s3"}) // 8: by the syncer
	waitFor(t, "the background syncer to write a deferred record", func() bool { return s.Stats().Seq == 8 })
	recs := readAll(t, s)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%d %s %s ref %d rows %d, end %+v", r.Seq, r.Type, r.SessionID, r.Ref, r.Rows, r.End))
	}
	want := []string{
		"1 statement s1 ref 0 rows 0, end {Ref:0 Rows:0 DurationMS:0 ErrorCode: Reason:}",
		"2 statement s1 ref 0 rows 1, end {Ref:1 Rows:1 DurationMS:0.5 ErrorCode: Reason:}",
		"3 statement.end s1 ref 2 rows 2, end {Ref:0 Rows:0 DurationMS:0 ErrorCode: Reason:}",
		"4 statement.end  ref 1 rows 4, end {Ref:0 Rows:0 DurationMS:0 ErrorCode: Reason:}",
		"5 statement s2 ref 0 rows 2, end {Ref:0 Rows:0 DurationMS:0 ErrorCode: Reason:}",
		"6 session.end s1 ref 0 rows 0, end {Ref:2 Rows:3 DurationMS:0 ErrorCode: Reason:}",
		"7 statement.end s2 ref 5 rows 0, end {Ref:0 Rows:0 DurationMS:0 ErrorCode: Reason:}",
		"8 statement.end s3 ref 5 rows 0, end {Ref:0 Rows:0 DurationMS:0 ErrorCode: Reason:}",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
	if e, ok := recs[5].EndRecord(); !ok || e.Type != activity.TypeStatementEnd || e.Ref != 2 || e.Rows != 3 || e.SessionID != "s1" || !e.Time.Equal(recs[5].Time) {
		t.Errorf("EndRecord of the session.end record: %+v, %v", e, ok)
	}
	if _, ok := recs[4].EndRecord(); ok {
		t.Error("a statement record carrying nothing has an EndRecord")
	}
}

// TestWaitingEndsReused: sessions whose statements carry the previous one's outcome, interleaved,
// get their own outcomes although the spool reuses what held them, and a statement with its
// outcome makes no allocation (an outcome waiting under a new session ID used to take one).
func TestWaitingEndsReused(t *testing.T) {
	s := open(t, activity.Config{SyncEvery: time.Hour, Sync: activity.SyncOS, MaxBytes: 1 << 30})
	ctx := context.Background()
	sessions := []string{"s1", "s2", "s3"}
	last := map[string]uint64{}
	cycle := func(i int) {
		r := stmt(i)
		r.SessionID = sessions[i%len(sessions)]
		if err := s.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		last[r.SessionID] = r.Seq
		s.Defer(&activity.Record{Type: activity.TypeStatementEnd, SessionID: r.SessionID, Ref: r.Seq, Rows: int64(r.Seq) * 10})
	}
	for i := range 30 {
		cycle(i)
	}
	recs := readAll(t, s)
	prev := map[string]uint64{}
	for _, r := range recs {
		want := activity.End{}
		if p := prev[r.SessionID]; p != 0 {
			want = activity.End{Ref: p, Rows: int64(p) * 10}
		}
		if r.End != want {
			t.Errorf("record %d of session %s carries %+v, want %+v", r.Seq, r.SessionID, r.End, want)
		}
		prev[r.SessionID] = r.Seq
	}
	if len(recs) != 30 {
		t.Fatalf("%d records, want 30", len(recs))
	}

	r := stmt(0)
	var i int
	allocs := testing.AllocsPerRun(500, func() {
		rec := *r
		rec.SessionID = sessions[i%len(sessions)]
		i++
		if err := s.Append(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		s.Defer(&activity.Record{Type: activity.TypeStatementEnd, SessionID: rec.SessionID, Ref: rec.Seq, Rows: 1})
	})
	if allocs != 0 {
		t.Errorf("a statement and its outcome made %v allocations, want 0", allocs)
	}
}

// TestReadLines: the shipper's read gives the lines as written, skips damaged ones like Read, and
// keeps to its size limit.
func TestReadLines(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir})
	appendN(t, s, 0, 6)
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	data, _ := os.ReadFile(segs[0])
	lines := strings.SplitAfter(string(data), "\n")
	lines[2] = `{"seq":3,"type":"statement","time":"2026-` + "\n" // cut short, as by a damaged disk
	lines[3] = `{"type":"statement","seq":4}` + "\n"              // valid, not canonical: kept as Read keeps it
	os.WriteFile(segs[0], []byte(strings.Join(lines, "")), 0o600)

	s = open(t, activity.Config{Dir: dir})
	var got []string
	pos := activity.Position{}
	for {
		batch, next, err := s.ReadLines(pos, 10, len(lines[0])+1)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 && next == pos {
			break
		}
		if len(batch) > 1 {
			t.Errorf("batch of %d lines over the byte limit", len(batch))
		}
		for _, l := range batch {
			got = append(got, string(l)+"\n")
		}
		pos = next
	}
	want := []string{lines[0], lines[1], lines[3], lines[4], lines[5]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if s.Stats().Corrupt != 1 {
		t.Errorf("Corrupt = %d, want 1", s.Stats().Corrupt)
	}
}

func TestAppendConcurrent(t *testing.T) {
	for _, sync := range []activity.SyncPolicy{activity.SyncInterval, activity.SyncAlways} {
		testAppendConcurrent(t, sync)
	}
}

func testAppendConcurrent(t *testing.T, policy activity.SyncPolicy) {
	s := open(t, activity.Config{SegmentBytes: 4000, Sync: policy, SyncEvery: time.Millisecond})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := s.Append(context.Background(), stmt(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	recs := readAll(t, s)
	if diff := cmp.Diff(upto(200), seqs(recs)); diff != "" {
		t.Fatalf("seqs (-want +got):\n%s", diff)
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

// sink stores what it receives, deduplicating like the control plane, and fails when told to.
type sink struct {
	mu       sync.Mutex
	failures int
	got      map[uint64]activity.Record
	order    []uint64
	calls    int
}

func (k *sink) Ship(ctx context.Context, lines []json.RawMessage) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if k.failures > 0 {
		k.failures--
		return errors.New("control plane unreachable")
	}
	for _, line := range lines {
		var r activity.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("shipped line %q: %w", line, err)
		}
		if h, err := activity.ComputeHash(&r); err != nil || h != r.Hash {
			return fmt.Errorf("shipped record %d does not match its hash", r.Seq)
		}
		if _, dup := k.got[r.Seq]; dup {
			continue
		}
		k.got[r.Seq] = r
		k.order = append(k.order, r.Seq)
	}
	return nil
}

func (k *sink) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.got)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShipperDeliversInOrderAcrossOutageAndRestart(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	k := &sink{failures: 3, got: map[uint64]activity.Record{}}

	run := func(s *activity.Spool) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		sh := &activity.Shipper{Spool: s, Sink: k, BatchSize: 4, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, PollInterval: 10 * time.Millisecond}
		go func() { done <- sh.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}

	s, err := activity.Open(activity.Config{Dir: dir, InstanceID: "i-1", SegmentBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(s)
	appendN(t, s, 0, 30) // while the sink fails, the spool keeps them
	waitFor(t, "30 records", func() bool { return k.count() == 30 })
	stop()
	s.Close()

	// Restart: records appended while no shipper runs are delivered by the next one, and the
	// delivered ones are not sent again.
	s, err = activity.Open(activity.Config{Dir: dir, InstanceID: "i-1", SegmentBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 30, 10)
	k.mu.Lock()
	calls := k.calls
	k.mu.Unlock()
	stop = run(s)
	waitFor(t, "40 records", func() bool { return k.count() == 40 })
	stop()
	if st := s.Stats(); st.Segments != 1 {
		t.Errorf("delivered segments were not deleted: %+v", st)
	}
	s.Close()

	k.mu.Lock()
	defer k.mu.Unlock()
	if diff := cmp.Diff(upto(40), k.order); diff != "" {
		t.Errorf("delivery order (-want +got):\n%s", diff)
	}
	if k.calls-calls > 3 {
		t.Errorf("after restart the shipper made %d calls for 10 records in batches of 4: old records resent?", k.calls-calls)
	}
	var recs []activity.Record
	for _, seq := range k.order {
		recs = append(recs, k.got[seq])
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

func FuzzDecodeSegment(f *testing.F) {
	dir := f.TempDir()
	s, err := activity.Open(activity.Config{Dir: dir, InstanceID: "i-1"})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s.Append(context.Background(), stmt(i))
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	good, _ := os.ReadFile(segs[0])
	f.Add(good)
	f.Add(good[:len(good)-10])
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, corrupt, tail := activity.DecodeSegment(data)
		if tail < 0 || tail > len(data) || corrupt < 0 {
			t.Fatalf("tail %d corrupt %d", tail, corrupt)
		}
		last := int64(0)
		for _, e := range entries {
			if e.End <= last || e.End > int64(len(data)) || data[e.End-1] != '\n' {
				t.Fatalf("entry end %d after %d in %d bytes", e.End, last, len(data))
			}
			last = e.End
			if e.Record.Seq == 0 || e.Record.Type == "" {
				t.Fatalf("decoded an empty record: %+v", e.Record)
			}
		}
		activity.Verify(recordsOf(entries)) // must not panic on anything decoded
	})
}

func recordsOf(es []activity.SegmentEntry) []activity.Record {
	out := make([]activity.Record, len(es))
	for i, e := range es {
		out[i] = e.Record
	}
	return out
}

func benchmarkAppend(b *testing.B, sync activity.SyncPolicy, parallel bool) {
	s := benchSpool(b, activity.Config{Sync: sync})
	r := stmt(1)
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			rec := *r
			if err := s.Append(context.Background(), &rec); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(16) // many sessions appending at once: fsyncs are shared
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := *r
			if err := s.Append(context.Background(), &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendSyncAlways(b *testing.B)         { benchmarkAppend(b, activity.SyncAlways, false) }
func BenchmarkAppendSyncAlwaysParallel(b *testing.B) { benchmarkAppend(b, activity.SyncAlways, true) }
func BenchmarkAppendSyncOS(b *testing.B)             { benchmarkAppend(b, activity.SyncOS, false) }
func BenchmarkVerify(b *testing.B) {
	s := open(b, activity.Config{Sync: activity.SyncOS})
	appendN(b, s, 0, 1000)
	recs := readAll(b, s)
	b.ReportAllocs()
	for b.Loop() {
		activity.Verify(recs)
	}
}

// TestReadLinesAcrossAcks: the shipper's reads stay complete and in order while records are
// written, acknowledged and the segments rotate.
func TestReadLinesAcrossAcks(t *testing.T) {
	s := open(t, activity.Config{MaxBytes: 64 << 20})
	pos := s.Acked()
	next := uint64(1)
	for i := range 400 {
		r := stmt(i)
		r.Statement = strings.Repeat("x", 50<<10)
		if err := s.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if i%7 != 0 {
			continue
		}
		lines, np, err := s.ReadLines(pos, 1000, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			var got activity.Record
			if err := json.Unmarshal(l, &got); err != nil {
				t.Fatalf("line of %d bytes: %v", len(l), err)
			}
			if got.Seq != next {
				t.Fatalf("seq %d, want %d", got.Seq, next)
			}
			next++
		}
		if err := s.Ack(np); err != nil {
			t.Fatal(err)
		}
		pos = np
	}
	if next < 390 {
		t.Errorf("read %d records of 400", next-1)
	}
}

// TestShipped reads a spool's files as another process would: not shipped while records are
// unacknowledged, shipped once the position after the last one is acknowledged.
func TestShipped(t *testing.T) {
	dir := t.TempDir()
	sp, err := activity.Open(activity.Config{Dir: dir, Sync: activity.SyncOS})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if done, err := activity.Shipped(dir); err != nil || !done {
		t.Fatalf("empty spool: shipped=%v, %v; want true", done, err)
	}
	for i := range 3 {
		if err := sp.Append(context.Background(), &activity.Record{Type: activity.TypeStatement, Statement: fmt.Sprintf("SELECT %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if done, err := activity.Shipped(dir); err != nil || done {
		t.Fatalf("3 records, none acknowledged: shipped=%v, %v; want false", done, err)
	}
	lines, pos, err := sp.ReadLines(activity.Position{}, 2, 1<<20)
	if err != nil || len(lines) != 2 {
		t.Fatalf("ReadLines: %d lines, %v", len(lines), err)
	}
	if err := sp.Ack(pos); err != nil {
		t.Fatal(err)
	}
	if done, err := activity.Shipped(dir); err != nil || done {
		t.Fatalf("2 of 3 acknowledged: shipped=%v, %v; want false", done, err)
	}
	lines, pos, err = sp.ReadLines(pos, 10, 1<<20)
	if err != nil || len(lines) != 1 {
		t.Fatalf("ReadLines: %d lines, %v", len(lines), err)
	}
	if err := sp.Ack(pos); err != nil {
		t.Fatal(err)
	}
	if done, err := activity.Shipped(dir); err != nil || !done {
		t.Fatalf("all acknowledged: shipped=%v, %v; want true", done, err)
	}
}
