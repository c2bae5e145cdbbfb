package activity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
	"unicode/utf8"
)

// ErrSpoolFull is returned by Append when the spool is at Config.MaxBytes and the policy is
// FailClosed. The engine refuses the statement rather than run it unrecorded.
var ErrSpoolFull = errors.New("activity spool is full")

// ErrClosed is returned by a closed Spool.
var ErrClosed = errors.New("activity spool is closed")

// FullPolicy says what Append does when the spool is full.
type FullPolicy int

const (
	// FailClosed refuses new records (ErrSpoolFull) until the shipper frees space. The default.
	FailClosed FullPolicy = iota
	// DropOldest discards the oldest unshipped segments, counts the records and writes a
	// "spool.dropped" record naming the gaps.
	DropOldest
)

// SyncPolicy says when Append's data reaches stable storage.
type SyncPolicy int

const (
	// SyncAlways returns from Append after fsync. Concurrent Appends share one fsync (group
	// commit), so the cost per record falls as the load rises. The default.
	SyncAlways SyncPolicy = iota
	// SyncOS returns after write(2): the record survives a sidecar crash but not a host crash.
	// The spool fsyncs when it rotates a segment and when it closes.
	SyncOS
)

// Spool defaults.
const (
	DefaultMaxBytes          = 256 << 20
	DefaultSegmentBytes      = 8 << 20
	DefaultMaxStatementBytes = 1 << 20
)

// Config configures a Spool. Zero values mean the defaults.
type Config struct {
	Dir string // created if missing (mode 0700)
	// SidecarID and InstanceID are stamped on every record. The chain is per InstanceID.
	SidecarID  string
	InstanceID string

	MaxBytes          int64 // DefaultMaxBytes
	SegmentBytes      int64 // DefaultSegmentBytes
	MaxStatementBytes int   // longer statement texts are cut, DefaultMaxStatementBytes
	Full              FullPolicy
	Sync              SyncPolicy
	Now               func() time.Time // for records without a Time and spool.dropped records; time.Now
}

// Position is a place in the spool: a segment and a byte offset in it. Records before it are
// acknowledged.
type Position struct {
	Segment uint64 `json:"segment"`
	Offset  int64  `json:"offset"`
}

// Stats describes a spool.
type Stats struct {
	Bytes    int64
	Segments int
	Dropped  uint64 // records discarded by DropOldest since Open
	Corrupt  uint64 // damaged lines skipped by Read since Open
	Acked    Position
	Seq      uint64 // of the last record appended
}

// Spool is the append-only, on-disk activity log of one sidecar instance. It is safe for
// concurrent use.
type Spool struct {
	cfg Config

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a sync finishes
	segs    []segment  // ascending; the last is the active one
	active  *os.File
	total   int64
	acked   Position
	changed chan struct{}
	closed  bool

	instance string // chain head
	seq      uint64
	hash     string

	written, synced uint64 // write and sync counters for group commit
	syncing         bool

	dropped, corrupt uint64

	// The last spool.dropped record until it is acknowledged: every new one repeats its gaps, so
	// that gaps stay few and a dropped spool.dropped record loses nothing.
	pendingGaps []Gap
	pendingEnd  Position
}

type segment struct {
	num    uint64
	size   int64 // bytes of complete records written
	stable int64 // bytes Read may return: synced (SyncAlways) or written (SyncOS)
}

// Open opens the spool in cfg.Dir, creating it if needed. It truncates a record left half-written by
// a crash and continues the hash chain from the last record on disk.
func Open(cfg Config) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("activity spool: no directory configured")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = DefaultSegmentBytes
	}
	if cfg.SegmentBytes > cfg.MaxBytes/2 {
		cfg.SegmentBytes = max(cfg.MaxBytes/2, 1)
	}
	if cfg.MaxStatementBytes <= 0 {
		cfg.MaxStatementBytes = DefaultMaxStatementBytes
	}
	if int64(cfg.MaxStatementBytes) > cfg.SegmentBytes/4 {
		cfg.MaxStatementBytes = int(cfg.SegmentBytes / 4)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create activity spool directory: %w", err)
	}
	s := &Spool{cfg: cfg, changed: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)

	des, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read activity spool directory: %w", err)
	}
	for _, de := range des {
		n, ok := parseSegName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("stat activity spool segment: %w", err)
		}
		s.segs = append(s.segs, segment{num: n, size: fi.Size(), stable: fi.Size()})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].num < s.segs[j].num })
	if err := s.recoverTail(); err != nil {
		return nil, err
	}
	for _, sg := range s.segs {
		s.total += sg.size
	}
	if err := s.loadAcked(); err != nil {
		return nil, err
	}
	if err := s.loadPendingGaps(); err != nil {
		return nil, err
	}
	if len(s.segs) > 0 {
		f, err := os.OpenFile(s.path(s.segs[len(s.segs)-1].num), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open activity spool segment: %w", err)
		}
		s.active = f
	}
	return s, nil
}

func (s *Spool) path(n uint64) string { return filepath.Join(s.cfg.Dir, segName(n)) }

// recoverTail drops empty trailing segments, cuts a torn last line and reads the chain head.
func (s *Spool) recoverTail() error {
	for len(s.segs) > 0 {
		last := &s.segs[len(s.segs)-1]
		data, err := os.ReadFile(s.path(last.num))
		if err != nil {
			return fmt.Errorf("read activity spool segment: %w", err)
		}
		entries, _, tail := DecodeSegment(data)
		if tail > 0 {
			last.size = int64(len(data) - tail)
			last.stable = last.size
			if err := os.Truncate(s.path(last.num), last.size); err != nil {
				return fmt.Errorf("truncate torn activity record: %w", err)
			}
		}
		if len(entries) == 0 && last.size == 0 && len(s.segs) > 1 {
			if err := os.Remove(s.path(last.num)); err != nil {
				return fmt.Errorf("remove empty activity spool segment: %w", err)
			}
			s.segs = s.segs[:len(s.segs)-1]
			continue
		}
		if n := len(entries); n > 0 {
			r := entries[n-1].Record
			s.instance, s.seq, s.hash = r.InstanceID, r.Seq, r.Hash
		}
		return nil
	}
	return nil
}

// loadPendingGaps finds the last unacknowledged spool.dropped record.
func (s *Spool) loadPendingGaps() error {
	for i := len(s.segs) - 1; i >= 0; i-- {
		sg := s.segs[i]
		if s.acked.Segment > sg.num {
			return nil
		}
		data, err := os.ReadFile(s.path(sg.num))
		if err != nil {
			return fmt.Errorf("read activity spool segment: %w", err)
		}
		if !bytes.Contains(data, []byte(`"type":"`+TypeDropped+`"`)) {
			continue
		}
		entries, _, _ := DecodeSegment(data[:sg.size])
		for j := len(entries) - 1; j >= 0; j-- {
			e := entries[j]
			if e.Record.Type != TypeDropped {
				continue
			}
			if s.acked.Segment == sg.num && e.End <= s.acked.Offset {
				return nil
			}
			s.pendingGaps, s.pendingEnd = e.Record.Gaps, Position{Segment: sg.num, Offset: e.End}
			return nil
		}
	}
	return nil
}

func (s *Spool) loadAcked() error {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, "acked.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read activity spool position: %w", err)
	}
	if err := json.Unmarshal(b, &s.acked); err != nil {
		return fmt.Errorf("decode activity spool position %s: %w", filepath.Join(s.cfg.Dir, "acked.json"), err)
	}
	return nil
}

// Changed returns a channel that is closed at the next Append.
func (s *Spool) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Append assigns r its Seq, PrevHash and Hash, stamps the sidecar and instance IDs, and writes it.
// It returns once the record is as durable as Config.Sync says. r is modified.
func (s *Spool) Append(ctx context.Context, r *Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.prepare(r)

	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.appendLocked(r)
	if err != nil {
		return err
	}
	return s.waitSynced(idx)
}

// AppendAll appends records in order, as Append does each, and returns once all are durable: one
// sync covers them all. On error, the records before the failing one are written.
func (s *Spool) AppendAll(ctx context.Context, rs []*Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, r := range rs {
		s.prepare(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var idx uint64
	for _, r := range rs {
		i, err := s.appendLocked(r)
		if err != nil {
			if idx > 0 {
				_ = s.waitSynced(idx)
			}
			return err
		}
		idx = i
	}
	if idx == 0 {
		return nil
	}
	return s.waitSynced(idx)
}

// prepare stamps and normalizes a record before it is sealed.
func (s *Spool) prepare(r *Record) {
	if r.Time.IsZero() {
		r.Time = s.cfg.Now()
	}
	normalize(r)
	if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		r.DurationMS = 0
	}
	if len(r.Statement) > s.cfg.MaxStatementBytes {
		r.Statement = truncateUTF8(r.Statement, s.cfg.MaxStatementBytes) + "…[truncated]"
	}
	if s.cfg.SidecarID != "" {
		r.SidecarID = s.cfg.SidecarID
	}
	if s.cfg.InstanceID != "" {
		r.InstanceID = s.cfg.InstanceID
	}
}

func truncateUTF8(str string, n int) string {
	for n > 0 && !utf8.RuneStart(str[n]) {
		n--
	}
	return str[:n]
}

// appendLocked writes r at the end of the chain, making room first. It returns the write counter
// value to wait for.
func (s *Spool) appendLocked(r *Record) (uint64, error) {
	if s.closed {
		return 0, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		line, err := s.seal(r)
		if err != nil {
			return 0, err
		}
		need := int64(len(line))
		if need > s.cfg.SegmentBytes {
			return 0, fmt.Errorf("activity record of %d bytes is larger than a spool segment (%d bytes)", need, s.cfg.SegmentBytes)
		}
		// spool.dropped records may overshoot MaxBytes a little: they are what makes a drop visible.
		if s.total+need <= s.cfg.MaxBytes || r.Type == TypeDropped {
			if s.needsRotate(need) && s.syncing {
				// Rotation must wait for the sync of the active segment, and waiting releases the
				// lock: another Append may take this seq meanwhile, so seal again afterwards.
				for s.syncing {
					s.cond.Wait()
				}
				continue
			}
			return s.write(line, r)
		}
		if attempt > len(s.segs)+1 {
			return 0, ErrSpoolFull
		}
		freed, err := s.makeRoom(need)
		if err != nil {
			return 0, err
		}
		if !freed {
			return 0, ErrSpoolFull
		}
		// Dropping wrote spool.dropped records: seal r again after them.
	}
}

// seal sets r's chain fields and returns its line.
func (s *Spool) seal(r *Record) ([]byte, error) {
	seq, prev := s.seq, s.hash
	if r.InstanceID != s.instance {
		seq, prev = 0, "" // a new instance starts its own chain
	}
	r.Seq, r.PrevHash, r.Hash = seq+1, prev, ""
	h, err := ComputeHash(r)
	if err != nil {
		return nil, err
	}
	r.Hash = h
	line, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode activity record: %w", err)
	}
	return append(line, '\n'), nil
}

func (s *Spool) write(line []byte, r *Record) (uint64, error) {
	if s.needsRotate(int64(len(line))) {
		if err := s.rotate(); err != nil {
			return 0, err
		}
	}
	sg := &s.segs[len(s.segs)-1]
	if n, err := s.active.Write(line); err != nil {
		if n > 0 {
			_ = s.active.Truncate(sg.size) // best effort: a torn line is also cut at the next Open
		}
		return 0, fmt.Errorf("write activity record: %w", err)
	}
	sg.size += int64(len(line))
	s.total += int64(len(line))
	s.instance, s.seq, s.hash = r.InstanceID, r.Seq, r.Hash
	s.written++
	if s.cfg.Sync == SyncOS {
		sg.stable = sg.size
		s.synced = s.written
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return s.written, nil
}

func (s *Spool) needsRotate(need int64) bool {
	n := len(s.segs)
	return n == 0 || s.segs[n-1].size > 0 && s.segs[n-1].size+need > s.cfg.SegmentBytes
}

// rotate syncs and closes the active segment and starts the next one.
func (s *Spool) rotate() error {
	for s.syncing {
		s.cond.Wait()
	}
	next := uint64(1)
	if n := len(s.segs); n > 0 {
		next = s.segs[n-1].num + 1
		if err := s.active.Sync(); err != nil {
			return fmt.Errorf("sync activity spool segment: %w", err)
		}
		s.segs[n-1].stable = s.segs[n-1].size
		s.synced = s.written
		if err := s.active.Close(); err != nil {
			return fmt.Errorf("close activity spool segment: %w", err)
		}
		s.active = nil
	}
	f, err := os.OpenFile(s.path(next), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create activity spool segment: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		f.Close()
		return err
	}
	s.active = f
	s.segs = append(s.segs, segment{num: next})
	return nil
}

// waitSynced returns once write idx is on stable storage, syncing itself if no one else is. Called
// with s.mu held; releases it while syncing so that other Appends can write meanwhile and be
// covered by the next sync.
func (s *Spool) waitSynced(idx uint64) error {
	for s.synced < idx {
		if s.closed {
			return ErrClosed
		}
		if s.syncing {
			s.cond.Wait()
			continue
		}
		s.syncing = true
		target, f := s.written, s.active
		num, size := s.segs[len(s.segs)-1].num, s.segs[len(s.segs)-1].size
		s.mu.Unlock()
		err := f.Sync()
		s.mu.Lock()
		s.syncing = false
		s.cond.Broadcast()
		if err != nil {
			return fmt.Errorf("sync activity spool: %w", err)
		}
		if target > s.synced {
			s.synced = target
		}
		// Ack may have deleted segments meanwhile: find the synced one by number.
		for i := range s.segs {
			if s.segs[i].num == num && s.segs[i].stable < size {
				s.segs[i].stable = size
			}
		}
		if !s.closed {
			close(s.changed) // wake a shipper that read before the sync
			s.changed = make(chan struct{})
		}
	}
	return nil
}

// makeRoom frees space for need bytes: first by deleting acknowledged segments, then, with
// DropOldest, by dropping unacknowledged ones. It reports whether there is room now.
func (s *Spool) makeRoom(need int64) (bool, error) {
	if err := s.deleteAcked(); err != nil {
		return false, err
	}
	if s.total+need <= s.cfg.MaxBytes {
		return true, nil
	}
	if s.cfg.Full != DropOldest || len(s.segs) == 0 {
		return false, nil
	}
	if len(s.segs) == 1 {
		if err := s.rotate(); err != nil {
			return false, err
		}
	}
	return true, s.dropOldest(need)
}

// dropOldest deletes the oldest segments, down to three quarters of MaxBytes (so that drops come
// in batches and their spool.dropped records stay few), and records which unshipped records they
// held, in one spool.dropped record.
func (s *Spool) dropOldest(need int64) error {
	var gaps []*Gap
	var lost uint64
	for len(s.segs) > 1 && (s.total+need > s.cfg.MaxBytes*3/4 || len(gaps) == 0 && lost == 0 && s.total+need > s.cfg.MaxBytes) {
		sg := s.segs[0]
		data, err := os.ReadFile(s.path(sg.num))
		if err != nil {
			return fmt.Errorf("read activity spool segment: %w", err)
		}
		entries, _, _ := DecodeSegment(data)
		for _, e := range entries {
			if s.acked.Segment > sg.num || s.acked.Segment == sg.num && e.End <= s.acked.Offset {
				continue // shipped already
			}
			r := e.Record
			lost++
			gaps = append(gaps, &Gap{InstanceID: r.InstanceID, From: r.Seq, To: r.Seq, PrevHash: r.PrevHash, LastHash: r.Hash})
			if r.Type == TypeDropped {
				// A spool.dropped record is lost: carry what it admitted into the new one.
				for _, g := range r.Gaps {
					gaps = append(gaps, &g)
				}
			}
		}
		if err := os.Remove(s.path(sg.num)); err != nil {
			return fmt.Errorf("drop activity spool segment: %w", err)
		}
		s.segs = s.segs[1:]
		s.total -= sg.size
		if s.acked.Segment <= sg.num {
			if err := s.storeAcked(Position{Segment: s.segs[0].num}); err != nil {
				return err
			}
		}
	}
	s.dropped += lost
	if len(gaps) == 0 {
		return nil
	}
	if s.pendingGaps != nil {
		for _, g := range s.pendingGaps {
			gaps = append(gaps, &g)
		}
	}
	merged := mergeGaps(gaps)
	r := &Record{
		Type:       TypeDropped,
		Time:       s.cfg.Now(),
		SidecarID:  s.cfg.SidecarID,
		InstanceID: s.cfg.InstanceID,
		Reason:     fmt.Sprintf("activity spool full: %d records discarded", lost),
	}
	for _, g := range merged {
		r.Gaps = append(r.Gaps, *g)
	}
	if r.InstanceID == "" {
		r.InstanceID = s.instance
	}
	normalize(r)
	if _, err := s.appendLocked(r); err != nil {
		return err
	}
	s.pendingGaps = r.Gaps
	last := s.segs[len(s.segs)-1]
	s.pendingEnd = Position{Segment: last.num, Offset: last.size}
	return nil
}

// mergeGaps sorts gaps and joins those that repeat, overlap or continue one another (same chain,
// adjacent seqs with matching hashes).
func mergeGaps(gaps []*Gap) []*Gap {
	sort.SliceStable(gaps, func(i, j int) bool {
		a, b := gaps[i], gaps[j]
		if a.InstanceID != b.InstanceID {
			return a.InstanceID < b.InstanceID
		}
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To > b.To
	})
	var out []*Gap
	for _, g := range gaps {
		if n := len(out); n > 0 && out[n-1].InstanceID == g.InstanceID {
			last := out[n-1]
			switch {
			case g.To <= last.To:
				continue // contained
			case g.From <= last.To || g.From == last.To+1 && last.LastHash == g.PrevHash:
				last.To, last.LastHash = g.To, g.LastHash
				continue
			}
		}
		c := *g
		out = append(out, &c)
	}
	return out
}

// Read returns up to max records from pos on (fewer when fewer are on stable storage), and the
// position after the last one. Damaged lines are skipped and counted in Stats.Corrupt; they
// become gaps that Verify reports.
func (s *Spool) Read(pos Position, max int) ([]Record, Position, error) {
	if max <= 0 {
		max = 1
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, pos, ErrClosed
	}
	segs := append([]segment(nil), s.segs...)
	s.mu.Unlock()

	var out []Record
	for i := 0; i < len(segs) && len(out) < max; i++ {
		sg := segs[i]
		if sg.num < pos.Segment || sg.num == pos.Segment && pos.Offset >= sg.stable {
			continue
		}
		if sg.num > pos.Segment {
			pos = Position{Segment: sg.num}
		}
		data, err := readRange(s.path(sg.num), pos.Offset, sg.stable)
		if errors.Is(err, os.ErrNotExist) {
			continue // dropped or acknowledged meanwhile
		}
		if err != nil {
			return nil, pos, err
		}
		entries, corrupt, _ := DecodeSegment(data)
		if corrupt > 0 {
			s.mu.Lock()
			s.corrupt += uint64(corrupt)
			s.mu.Unlock()
		}
		base := pos.Offset
		for _, e := range entries {
			if len(out) == max {
				break
			}
			out = append(out, e.Record)
			pos.Offset = base + e.End
		}
		if len(out) < max {
			pos.Offset = sg.stable // everything in the segment, damaged lines included, is read
		}
	}
	return out, pos, nil
}

func readRange(path string, from, to int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, to-from)
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read activity spool segment: %w", err)
	}
	return buf, nil
}

// Acked returns the acknowledged position.
func (s *Spool) Acked() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// Ack records that everything before pos has been delivered, persists it and deletes segments
// that hold only delivered records.
func (s *Spool) Ack(pos Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if pos.Segment < s.acked.Segment || pos.Segment == s.acked.Segment && pos.Offset <= s.acked.Offset {
		return nil
	}
	if err := s.storeAcked(pos); err != nil {
		return err
	}
	return s.deleteAcked()
}

func (s *Spool) storeAcked(pos Position) error {
	b, _ := json.Marshal(pos)
	tmp := filepath.Join(s.cfg.Dir, "acked.json.tmp")
	if err := writeFileSync(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.cfg.Dir, "acked.json")); err != nil {
		return fmt.Errorf("store activity spool position: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		return err
	}
	s.acked = pos
	if pos.Segment > s.pendingEnd.Segment || pos.Segment == s.pendingEnd.Segment && pos.Offset >= s.pendingEnd.Offset {
		s.pendingGaps = nil
	}
	return nil
}

// deleteAcked removes fully acknowledged segments other than the active one, which holds the head
// of the chain.
func (s *Spool) deleteAcked() error {
	for len(s.segs) > 1 {
		sg := s.segs[0]
		if s.acked.Segment < sg.num || s.acked.Segment == sg.num && s.acked.Offset < sg.size {
			return nil
		}
		if err := os.Remove(s.path(sg.num)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove delivered activity spool segment: %w", err)
		}
		s.segs = s.segs[1:]
		s.total -= sg.size
	}
	return nil
}

// Stats returns counters and sizes.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Bytes: s.total, Segments: len(s.segs), Dropped: s.dropped, Corrupt: s.corrupt, Acked: s.acked, Seq: s.seq}
}

// Close syncs and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	for s.syncing {
		s.cond.Wait()
	}
	s.closed = true
	close(s.changed)
	if s.active == nil {
		return nil
	}
	err := s.active.Sync()
	if cerr := s.active.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		s.synced = s.written // Appends still waiting for a sync are covered by this one
	}
	s.cond.Broadcast()
	if err != nil {
		return fmt.Errorf("close activity spool: %w", err)
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open activity spool directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync activity spool directory: %w", err)
	}
	return nil
}
