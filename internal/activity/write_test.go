package activity_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/google/go-cmp/cmp"
)

// segmentsContain reports whether one of dir's segment files holds line.
func segmentsContain(t *testing.T, dir string, line []byte) bool {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(data, line) {
			return true
		}
	}
	return false
}

// TestAppendManySessions: many sessions append (and defer outcomes) at once while segments rotate
// and a reader reads; each Append returns with its line in a file, and every record is there
// once, in one unbroken chain.
func TestAppendManySessions(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir, SegmentBytes: 32 << 10, SyncEvery: time.Millisecond})
	var writes, written atomic.Int64
	activity.SetWriteHook(s, func(f *os.File, p []byte) (int, error) {
		writes.Add(1)
		written.Add(int64(bytes.Count(p, []byte{'\n'})))
		return f.Write(p)
	})
	ctx := context.Background()

	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() { // reads as a shipper does, concurrently with the writes
		pos := activity.Position{}
		for {
			select {
			case <-stop:
				return
			default:
			}
			lines, next, err := s.ReadLines(pos, 100, 64<<10)
			if err != nil {
				t.Error(err)
				return
			}
			for _, l := range lines {
				if !json.Valid(l) {
					t.Errorf("ReadLines returned %q", l)
				}
			}
			pos = next
		}
	})

	const sessions, perSession = 16, 30
	var wg sync.WaitGroup
	for g := range sessions {
		wg.Go(func() {
			for i := range perSession {
				r := stmt(g*perSession + i)
				r.SessionID = fmt.Sprint("s", g)
				r.Statement = fmt.Sprintf("SELECT %d, %d", g, i)
				if err := s.Append(ctx, r); err != nil {
					t.Error(err)
					return
				}
				line, _ := json.Marshal(r)
				if !segmentsContain(t, dir, append(line, '\n')) {
					t.Errorf("Append of seq %d returned before its line was in a segment file", r.Seq)
					return
				}
				s.Defer(&activity.Record{Type: activity.TypeStatementEnd, SessionID: r.SessionID, Ref: r.Seq, Rows: 1})
			}
		})
	}
	wg.Wait()
	close(stop)
	reader.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, activity.Config{Dir: dir, SegmentBytes: 32 << 10})
	recs := readAll(t, s)
	if diff := cmp.Diff(upto(len(recs)), seqs(recs)); diff != "" {
		t.Fatalf("seqs (-want +got):\n%s", diff)
	}
	// Outcomes are carried by the session's next statement, but for each session's last (written
	// at Close) and those the syncer wrote when their session was slow to append again.
	if len(recs) < sessions*perSession+sessions || len(recs) > 2*sessions*perSession {
		t.Errorf("%d records for %d statements", len(recs), sessions*perSession)
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
	statements := map[string]uint64{}
	ends := map[uint64]int{}
	for _, r := range recs {
		switch r.Type {
		case activity.TypeStatement:
			if _, dup := statements[r.Statement]; dup {
				t.Errorf("%q recorded twice", r.Statement)
			}
			statements[r.Statement] = r.Seq
		}
		if e, ok := r.EndRecord(); ok {
			ends[e.Ref]++
		}
	}
	for _, seq := range statements {
		if ends[seq] != 1 {
			t.Errorf("statement %d has %d outcomes", seq, ends[seq])
		}
	}
	if len(statements) != sessions*perSession || len(ends) != sessions*perSession {
		t.Errorf("%d statements and %d outcomes, want %d each", len(statements), len(ends), sessions*perSession)
	}
	if written.Load() != int64(len(recs)) {
		t.Errorf("%d lines written, %d records", written.Load(), len(recs))
	}
	t.Logf("%d records in %d writes", written.Load(), writes.Load())
}

// TestWriteFailure: a failed write (here, half written) fails the Append whose records it
// carried, leaves no torn line, and the chain goes on from the last record written.
func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir, SyncEvery: time.Hour})
	appendN(t, s, 0, 3)
	errDisk := errors.New("disk on fire")
	activity.SetWriteHook(s, func(f *os.File, p []byte) (int, error) {
		n, _ := f.Write(p[:len(p)/2])
		return n, errDisk
	})
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, SessionID: "s1", Ref: 3})
	if err := s.Append(context.Background(), stmt(10)); !errors.Is(err, errDisk) {
		t.Fatalf("Append: %v, want %v", err, errDisk)
	}
	if seq := s.Stats().Seq; seq != 3 {
		t.Errorf("chain head seq %d after the failure, want 3", seq)
	}
	activity.SetWriteHook(s, nil)
	appendN(t, s, 20, 2)
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	data, _ := os.ReadFile(segs[len(segs)-1])
	if st := s.Stats(); len(segs) != 1 || st.Bytes != int64(len(data)) {
		t.Errorf("Stats.Bytes %d; %d segments, the last of %d bytes", st.Bytes, len(segs), len(data))
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var recs []activity.Record
	for _, l := range lines {
		var r activity.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		recs = append(recs, r)
	}
	// The outcome of statement 3, carried by the record the failed write lost, is written as a
	// record of its own with the next Append.
	if diff := cmp.Diff(upto(6), seqs(recs)); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
	if len(recs) == 6 && (recs[3].Type != activity.TypeStatementEnd || recs[3].Ref != 3 || recs[4].End != (activity.End{})) {
		t.Errorf("after the failure: %+v, then %+v", recs[3], recs[4])
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

// TestWriteFailureNotUndone: when a failed write cannot be cut back, lines the chain in memory
// undid may be in the file, so the spool refuses every record until it is opened again; then the
// chain goes on from what the file holds, without a seq taken twice.
func TestWriteFailureNotUndone(t *testing.T) {
	dir := t.TempDir()
	cfg := activity.Config{Dir: dir, SyncEvery: time.Hour}
	s := open(t, cfg)
	appendN(t, s, 0, 2)
	errDisk, errTrunc := errors.New("disk on fire"), errors.New("cannot truncate")
	activity.SetWriteHook(s, func(f *os.File, p []byte) (int, error) {
		// Two records' lines whole and half of the third: complete lines get out.
		first := bytes.IndexByte(p, '\n') + 1
		second := first + bytes.IndexByte(p[first:], '\n') + 1
		n, _ := f.Write(p[:second+(len(p)-second)/2])
		return n, errDisk
	})
	activity.SetTruncateHook(s, func(*os.File, int64) error { return errTrunc })
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, SessionID: "s1", Ref: 2})
	s.Defer(&activity.Record{Type: activity.TypeStatementEnd, SessionID: "s1", Ref: 1})
	if err := s.Append(context.Background(), stmt(10)); !errors.Is(err, errDisk) {
		t.Fatalf("Append: %v, want %v", err, errDisk)
	}
	activity.SetWriteHook(s, nil)
	activity.SetTruncateHook(s, nil)
	if err := s.Append(context.Background(), stmt(11)); !errors.Is(err, errTrunc) {
		t.Fatalf("Append after an undone write: %v, want the spool to refuse with %v", err, errTrunc)
	}
	s.Close()

	s = open(t, cfg)
	appendN(t, s, 20, 2)
	recs := readAll(t, s)
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
	seen := map[uint64]bool{}
	for _, r := range recs {
		if seen[r.Seq] {
			t.Errorf("seq %d recorded twice", r.Seq)
		}
		seen[r.Seq] = true
	}
	if want := 2 + 2 + 2; len(recs) != want { // before, the two lines that got out, after
		t.Errorf("%d records, want %d: %v", len(recs), want, seqs(recs))
	}
}

// TestReadLinesFileCut: a segment cut short from outside is an error for the shipper's reads, not
// bytes left in its reused buffer from an earlier read.
func TestReadLinesFileCut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, activity.Config{Dir: dir, Sync: activity.SyncAlways})
	appendN(t, s, 0, 20)
	lines, _, buf, err := activity.ReadLinesReusing(s, activity.Position{}, 100, 1<<20, nil, nil)
	if err != nil || len(lines) != 20 {
		t.Fatalf("ReadLines: %d lines, %v; want 20", len(lines), err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	fi, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segs[0], fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	lines, _, _, err = activity.ReadLinesReusing(s, activity.Position{}, 100, 1<<20, buf, lines)
	if err == nil || !strings.Contains(err.Error(), "changed outside the sidecar") {
		t.Errorf("ReadLines of a cut segment: %d lines, err %v; want an error saying the file changed", len(lines), err)
	}
}

// TestReadLinesPieces: the shipper's reads, in pieces and with reused buffers, give exactly the
// records Read gives, within their limits, for lines longer than a piece, across segments, and
// across a restart (lines written before it are checked, a damaged one skipped).
func TestReadLinesPieces(t *testing.T) {
	dir := t.TempDir()
	cfg := activity.Config{Dir: dir, SegmentBytes: 8 << 20, MaxStatementBytes: 2 << 20}
	s := open(t, cfg)
	sizes := []int{100, 70 << 10, 10, 1100 << 10, 300, 200 << 10}
	add := func(from int) {
		for i, n := range sizes {
			r := stmt(from + i)
			r.Statement = strings.Repeat("x", n)
			if err := s.Append(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 {
		add(10 * i)
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.jsonl"))
	data, _ := os.ReadFile(segs[len(segs)-1])
	lines := strings.SplitAfter(string(data), "\n")
	lines[len(lines)-3] = `{"seq":` + strings.Repeat("9", 100) + "\n" // damaged on disk
	os.WriteFile(segs[len(segs)-1], []byte(strings.Join(lines, "")), 0o600)
	s = open(t, cfg)
	for i := 2; i < 4; i++ {
		add(10 * i)
	}
	want := readAll(t, s)
	if len(want) != 4*len(sizes)-1 {
		t.Fatalf("Read gives %d records", len(want))
	}

	for _, limits := range [][2]int{{1, 1}, {3, 1000}, {5000, 100 << 10}, {5000, 8 << 20}, {2, 8 << 20}} {
		var buf []byte
		var batch []json.RawMessage
		var got []uint64
		pos := activity.Position{}
		for {
			var next activity.Position
			var err error
			batch, next, buf, err = activity.ReadLinesReusing(s, pos, limits[0], limits[1], buf, batch)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) == 0 && next == pos {
				break
			}
			size := 0
			for _, l := range batch {
				size += len(l) + 1
				var seq uint64
				if _, err := fmt.Sscanf(string(l[:min(len(l), 40)]), `{"seq":%d,`, &seq); err != nil || l[len(l)-1] != '}' {
					t.Fatalf("limits %v: line of %d bytes %.40q...: %v", limits, len(l), l, err)
				}
				got = append(got, seq)
			}
			if len(batch) > limits[0] || len(batch) > 1 && size > limits[1] {
				t.Errorf("limits %v: batch of %d lines, %d bytes", limits, len(batch), size)
			}
			pos = next
		}
		if diff := cmp.Diff(seqs(want), got); diff != "" {
			t.Errorf("limits %v: seqs (-Read +ReadLines):\n%s", limits, diff)
		}
	}
}
