package activity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gatehousedb/gatehouse/internal/rawio"
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

// SyncPolicy says when Append's data reaches stable storage. Under every policy Append returns
// only after the record has been written to the segment file (handed to the operating system), so
// a record survives a crash of the sidecar process; the policies differ in what a crash of the
// machine can lose.
type SyncPolicy int

const (
	// SyncInterval returns from Append after write(2) and fsyncs in the background, every
	// Config.SyncEvery or every Config.SyncRecords records, whichever comes first: a machine crash
	// loses at most the records of the last interval. Records are shipped only once they are
	// synced. The default.
	SyncInterval SyncPolicy = iota
	// SyncAlways returns from Append after fsync. Concurrent Appends share one fsync (group
	// commit), so the cost per record falls as the load rises.
	SyncAlways
	// SyncOS returns after write(2) and fsyncs only when it rotates a segment, when the shipper
	// reads and when it closes.
	SyncOS
)

// Spool defaults.
const (
	DefaultMaxBytes          = 256 << 20
	DefaultSegmentBytes      = 8 << 20
	DefaultMaxStatementBytes = 1 << 20
	DefaultSyncEvery         = 50 * time.Millisecond
	DefaultSyncRecords       = 2000

	// maxDeferred bounds the records Defer holds in memory: past it, Defer writes them itself.
	maxDeferred = 1 << 14
	// maxDeferredSpare bounds the buffer of deferred records kept for reuse.
	maxDeferredSpare = 1 << 10
	// maxSpareEnds bounds the emptied waiting statement.end records kept for reuse.
	maxSpareEnds = 64
	// ReadLines reads the files readMin to readMax bytes at a time (more for a longer line).
	readMin, readMax = 64 << 10, 1 << 20
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
	SyncEvery         time.Duration    // SyncInterval: DefaultSyncEvery
	SyncRecords       int              // SyncInterval: DefaultSyncRecords
	Now               func() time.Time // for records without a Time and spool.dropped records; time.Now
	// Logger reports failures of background work (syncs, deferred records); discarded when nil.
	Logger *slog.Logger
}

// pendingEnd is a deferred statement.end record waiting for a record of its session to carry it.
type pendingEnd struct {
	rec  Record
	tick uint64 // Spool.ticks when it was deferred
}

// carriedEnd is a deferred statement.end record that AppendAll attached to rs[i].
type carriedEnd struct {
	i   int
	rec Record
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
	activeW *rawio.File // writes to active
	total   int64
	acked   Position
	changed chan struct{}
	watched bool // Changed was called since changed was last closed
	closed  bool

	// Records are sealed into pend and written with one write(2) per Append call: pendFrom is
	// the state to return to when that write fails. Outside s.mu, pend is empty.
	pend     []byte
	pendFrom pendState
	encBuf   bytes.Buffer
	enc      *json.Encoder    // into encBuf
	canon    []byte           // the previous hash and a record's canonical JSON, without hash
	hashes   *strings.Builder // of hashString
	line     []byte
	// broken is set when a failed write left bytes in the active segment that could not be cut:
	// complete lines of records the chain in memory has undone may be among them, so nothing more
	// is written (every Append fails with it) until the spool is opened again, which takes the
	// chain up from what the file holds.
	broken       error
	writeHook    func(*os.File, []byte) (int, error) // tests: instead of activeW.Write
	truncateHook func(*os.File, int64) error         // tests: instead of (*os.File).Truncate

	// Deferred records (Defer), written before the next Append's or by the background syncer.
	dmu          sync.Mutex
	deferred     []Record // copies: the caller's record is its own again once Defer returns
	deferSpare   []Record // the last batch of deferred records, emptied, for reuse (under mu)
	deferFailing bool     // the last write of deferred records failed (logged once)
	// ends holds the latest deferred statement.end record of each session, to be carried by the
	// session's next statement or session.end record (Record.End) instead of being written as a
	// record of its own: one record per statement for a busy session. The background syncer
	// writes the ones that waited a whole SyncEvery tick as records of their own. Under dmu.
	ends map[string]*pendingEnd
	// spareEnds are emptied entries of ends, for reuse. A map keeps a value as large as a record
	// apart from its slot, so storing one under a new key would allocate once per statement.
	// Under dmu.
	spareEnds []*pendingEnd
	ticks     uint64 // SyncEvery ticks of the background syncer so far; under dmu
	// carried lists the ends the current AppendAll took from ends, to put back if its records are
	// not written. Under mu.
	carried  []carriedEnd
	syncKick chan struct{}
	syncStop chan struct{}
	syncDone chan struct{}
	log      *slog.Logger

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

// pendState is what write changes, as it was before the first record in pend.
type pendState struct {
	size     int64
	instance string
	seq      uint64
	hash     string
	written  uint64
}

type segment struct {
	num    uint64
	size   int64 // bytes of complete records written
	stable int64 // bytes Read may return: synced (SyncAlways) or written (SyncOS)
	// own is where this process started writing the segment: the lines from there on are
	// records it sealed, so ReadLines trusts them without checking.
	own int64
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
	if cfg.SyncEvery <= 0 {
		cfg.SyncEvery = DefaultSyncEvery
	}
	if cfg.SyncRecords <= 0 {
		cfg.SyncRecords = DefaultSyncRecords
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create activity spool directory: %w", err)
	}
	s := &Spool{cfg: cfg, changed: make(chan struct{}), log: cfg.Logger, ends: map[string]*pendingEnd{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.enc = json.NewEncoder(&s.encBuf)
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
	for i := range s.segs {
		sg := &s.segs[i]
		sg.own = sg.size // what was there is checked when read
		s.total += sg.size
	}
	if err := s.loadAcked(); err != nil {
		return nil, err
	}
	if err := s.loadPendingGaps(); err != nil {
		return nil, err
	}
	if len(s.segs) > 0 {
		last := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(s.path(last.num), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open activity spool segment: %w", err)
		}
		if err := s.setActive(f); err != nil {
			return nil, err
		}
	}
	s.syncKick, s.syncStop, s.syncDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.syncLoop()
	return s, nil
}

// syncLoop writes deferred records and, unless the policy is SyncOS, fsyncs what was written
// since the last sync: every SyncEvery, and when kicked (SyncRecords records written, or many
// deferred ones). Close stops it.
func (s *Spool) syncLoop() {
	defer close(s.syncDone)
	t := time.NewTicker(s.cfg.SyncEvery)
	defer t.Stop()
	for {
		tick := false
		select {
		case <-s.syncStop:
			return
		case <-t.C:
			tick = true
		case <-s.syncKick:
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		if tick {
			s.expireEnds(false)
		}
		s.writeDeferredLocked()
		err := s.flushPend()
		if err == nil && s.cfg.Sync != SyncOS && s.synced < s.written {
			err = s.waitSynced(s.written)
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("activity spool: background sync failed", "err", err)
		}
	}
}

func (s *Spool) kickSync() {
	select {
	case s.syncKick <- struct{}{}:
	default:
	}
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

// ackedFile holds the acknowledged Position, replaced atomically.
const ackedFile = "acked.json"

// Shipped reports whether the spool in dir is acknowledged up to the end of its last segment:
// everything appended to it so far has been taken. It reads the files only, without opening the
// spool, so it can watch the spool of a sidecar running in another process (the bench harness
// does). A file being replaced or deleted between two reads makes it report false: ask again.
func Shipped(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("read activity spool: %w", err)
	}
	var last uint64
	for _, e := range entries {
		if n, ok := parseSegName(e.Name()); ok && n > last {
			last = n
		}
	}
	if last == 0 {
		return true, nil
	}
	fi, err := os.Stat(filepath.Join(dir, segName(last)))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // deleted once acknowledged
	}
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(filepath.Join(dir, ackedFile))
	if errors.Is(err, os.ErrNotExist) {
		return fi.Size() == 0, nil
	}
	if err != nil {
		return false, fmt.Errorf("read activity spool position: %w", err)
	}
	var acked Position
	if err := json.Unmarshal(b, &acked); err != nil {
		return false, fmt.Errorf("decode activity spool position %s: %w", filepath.Join(dir, ackedFile), err)
	}
	return acked.Segment > last || acked.Segment == last && acked.Offset >= fi.Size(), nil
}

func (s *Spool) loadAcked() error {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, ackedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read activity spool position: %w", err)
	}
	if err := json.Unmarshal(b, &s.acked); err != nil {
		return fmt.Errorf("decode activity spool position %s: %w", filepath.Join(s.cfg.Dir, ackedFile), err)
	}
	return nil
}

// Changed returns a channel that is closed at the next write to the spool.
func (s *Spool) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watched = true
	return s.changed
}

// notifyChanged closes the channel Changed returned, if anyone asked for it. Called with s.mu held.
func (s *Spool) notifyChanged() {
	if s.watched && !s.closed {
		close(s.changed)
		s.changed = make(chan struct{})
		s.watched = false
	}
}

// Append assigns r its Seq, PrevHash and Hash, stamps the sidecar and instance IDs, and writes it
// after any deferred records. It returns once the record is written to the spool file, and with
// SyncAlways once it is on stable storage too. r is modified.
func (s *Spool) Append(ctx context.Context, r *Record) error {
	rs := [1]Record{*r}
	err := s.AppendAll(ctx, rs[:])
	*r = rs[0]
	return err
}

// AppendAll appends records in order, as Append does each, with one write and (SyncAlways) one
// sync for them all. On error, the records before the failing one may have been written; the
// caller must not act as if any was (a statement is refused). The records are modified; the spool
// keeps no reference to rs.
func (s *Spool) AppendAll(ctx context.Context, rs []Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range rs {
		s.prepare(&rs[i])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.writeDeferredLocked()
	s.carryEnds(rs)
	var idx uint64
	for i := range rs {
		n, err := s.appendLocked(&rs[i])
		if err != nil {
			// Deferred records and those before rs[i] are sealed and in the chain: write them.
			if ferr := s.flushPend(); ferr != nil {
				s.deferFailed(ferr)
				i = 0
			}
			s.uncarry(rs, i)
			return err
		}
		idx = n
	}
	if err := s.flushPend(); err != nil {
		s.uncarry(rs, 0)
		return err
	}
	if idx == 0 || s.cfg.Sync != SyncAlways {
		return nil
	}
	return s.waitSynced(idx)
}

// Defer queues a copy of r to be written after the records appended so far, without waiting:
// before the next Append's records, or by the background syncer within Config.SyncEvery. It is for
// records that complete others (statement.end), which nothing waits for. Failures are logged. r
// is not modified, and the caller may reuse it at once.
//
// A statement.end record with a SessionID is not written as a record of its own if it can be
// helped: the session's next statement or session.end record carries it (Record.End), when one
// comes within one to two SyncEvery intervals. A session has one such record waiting at a time; an
// earlier one (the outcome of a pipelined statement) is written as a record of its own.
func (s *Spool) Defer(r *Record) {
	c := *r
	s.prepare(&c)
	s.dmu.Lock()
	if c.Type == TypeStatementEnd && c.SessionID != "" && c.Ref != 0 {
		p, had := s.ends[c.SessionID]
		if !had {
			p = s.newPendingEnd()
			p.rec, p.tick = c, s.ticks
			s.ends[c.SessionID] = p
			s.dmu.Unlock()
			return
		}
		c, p.rec, p.tick = p.rec, c, s.ticks // the earlier one is written as a record of its own
	}
	s.deferred = append(s.deferred, c)
	n := len(s.deferred)
	s.dmu.Unlock()
	switch {
	case n >= maxDeferred:
		s.mu.Lock()
		if !s.closed {
			s.writeDeferredLocked()
			if err := s.flushPend(); err != nil {
				s.deferFailed(err)
			}
		}
		s.mu.Unlock()
	case n == 256:
		s.kickSync()
	}
}

// carryEnds attaches the waiting statement.end record of each record's session to the record
// (Record.End), for statement and session.end records without one, and lists what it took in
// s.carried. Called with s.mu held.
func (s *Spool) carryEnds(rs []Record) {
	s.carried = s.carried[:0]
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if len(s.ends) == 0 {
		return
	}
	for i := range rs {
		r := &rs[i]
		if r.SessionID == "" || r.End != (End{}) || (r.Type != TypeStatement && r.Type != TypeSessionEnd) {
			continue
		}
		p, ok := s.ends[r.SessionID]
		if !ok {
			continue
		}
		delete(s.ends, r.SessionID)
		e := &p.rec
		r.End = End{Ref: e.Ref, Rows: e.Rows, DurationMS: e.DurationMS, ErrorCode: e.ErrorCode, Reason: e.Reason}
		s.carried = append(s.carried, carriedEnd{i: i, rec: p.rec})
		s.freePendingEnd(p)
	}
}

// uncarry takes back the ends carryEnds attached to rs[from:], whose records were not written,
// and defers them as records of their own. Called with s.mu held.
func (s *Spool) uncarry(rs []Record, from int) {
	if len(s.carried) == 0 {
		return
	}
	s.dmu.Lock()
	for _, c := range s.carried {
		if c.i >= from {
			rs[c.i].End = End{}
			s.deferred = append(s.deferred, c.rec)
		}
	}
	s.dmu.Unlock()
	clear(s.carried) // let go of the records' strings
	s.carried = s.carried[:0]
}

// expireEnds defers, as records of their own, the statement.end records that have waited a whole
// tick of the background syncer for a record to carry them (all of them when all is set), and
// counts the tick. Called with s.mu held.
func (s *Spool) expireEnds(all bool) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.ticks++
	for id, p := range s.ends {
		if all || p.tick+1 < s.ticks {
			s.deferred = append(s.deferred, p.rec)
			delete(s.ends, id)
			s.freePendingEnd(p)
		}
	}
}

// newPendingEnd returns an empty entry for ends. Called with s.dmu held.
func (s *Spool) newPendingEnd() *pendingEnd {
	n := len(s.spareEnds)
	if n == 0 {
		return new(pendingEnd)
	}
	p := s.spareEnds[n-1]
	s.spareEnds[n-1] = nil
	s.spareEnds = s.spareEnds[:n-1]
	return p
}

// freePendingEnd empties an entry taken out of ends and keeps it for reuse. Called with s.dmu
// held.
func (s *Spool) freePendingEnd(p *pendingEnd) {
	*p = pendingEnd{} // let go of the record's strings
	if len(s.spareEnds) < maxSpareEnds {
		s.spareEnds = append(s.spareEnds, p)
	}
}

// writeDeferredLocked seals the deferred records into pend. Called with s.mu held.
func (s *Spool) writeDeferredLocked() {
	s.dmu.Lock()
	rs := s.deferred
	if len(rs) == 0 {
		s.dmu.Unlock()
		return
	}
	s.deferred, s.deferSpare = s.deferSpare, nil
	s.dmu.Unlock()
	defer func() {
		if cap(rs) <= maxDeferredSpare {
			clear(rs) // let go of the records' strings
			s.deferSpare = rs[:0]
		}
	}()
	for i := range rs {
		if _, err := s.appendLocked(&rs[i]); err != nil {
			s.deferFailed(fmt.Errorf("%d records: %w", len(rs)-i, err))
			return
		}
	}
	if s.deferFailing {
		s.deferFailing = false
		s.log.Info("activity spool: statement outcomes are recorded again")
	}
}

func (s *Spool) deferFailed(err error) {
	if !s.deferFailing {
		s.deferFailing = true
		s.log.Error("activity spool: statement outcomes not recorded", "err", err)
	}
}

// prepare stamps and normalizes a record before it is sealed.
func (s *Spool) prepare(r *Record) {
	if r.Time.IsZero() {
		r.Time = s.cfg.Now()
	}
	normalize(r)
	if !utf8.ValidString(r.Statement) {
		// json.Marshal writes invalid bytes as \ufffd, which decodes to a character that encodes
		// differently: the record would not verify after a round trip.
		r.Statement = strings.ToValidUTF8(r.Statement, "\uFFFD")
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
	if s.broken != nil {
		return 0, s.broken
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
				if err := s.flushPend(); err != nil {
					return 0, err
				}
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

// seal sets r's chain fields and returns its line, valid until the next seal. The record is
// encoded once: its canonical JSON (without hash, which is the last field) is hashed, and the
// line is that JSON with the hash added at the end — the bytes json.Marshal gives for r, which is
// what ComputeHash checks.
func (s *Spool) seal(r *Record) ([]byte, error) {
	seq, prev := s.seq, s.hash
	if r.InstanceID != s.instance {
		seq, prev = 0, "" // a new instance starts its own chain
	}
	r.Seq, r.PrevHash, r.Hash = seq+1, prev, ""
	buf, ok := appendRecord(append(s.canon[:0], prev...), r)
	if !ok {
		c := *r // a pointer given to encoding/json escapes: encoding a copy lets r stay on the caller's stack
		s.encBuf.Reset()
		if err := s.enc.Encode(&c); err != nil {
			return nil, fmt.Errorf("encode activity record %d: %w", r.Seq, err)
		}
		buf = append(buf[:len(prev)], bytes.TrimSuffix(s.encBuf.Bytes(), []byte{'\n'})...) // Encode adds it
	}
	s.canon = buf
	canon := buf[len(prev):]
	sum := sha256.Sum256(buf) // prev and canon
	var hexSum [2 * sha256.Size]byte
	hex.Encode(hexSum[:], sum[:])
	r.Hash = s.hashString(hexSum[:])
	line := append(s.line[:0], canon[:len(canon)-1]...) // without the closing brace
	line = append(line, `,"hash":"`...)
	line = append(line, hexSum[:]...)
	line = append(line, "\"}\n"...)
	s.line = line
	return line, nil
}

// hashString returns h as a string. The strings of many hashes share one allocation: a Builder
// only ever appends, so the bytes behind a string it returned never change.
func (s *Spool) hashString(h []byte) string {
	if s.hashes == nil || s.hashes.Cap()-s.hashes.Len() < len(h) {
		s.hashes = new(strings.Builder)
		s.hashes.Grow(64 * len(h))
	}
	from := s.hashes.Len()
	s.hashes.Write(h)
	return s.hashes.String()[from:]
}

// write adds a sealed line to pend and moves the chain head; flushPend writes it.
func (s *Spool) write(line []byte, r *Record) (uint64, error) {
	if s.needsRotate(int64(len(line))) {
		if err := s.rotate(); err != nil {
			return 0, err
		}
	}
	sg := &s.segs[len(s.segs)-1]
	if len(s.pend) == 0 {
		s.pendFrom = pendState{size: sg.size, instance: s.instance, seq: s.seq, hash: s.hash, written: s.written}
	}
	s.pend = append(s.pend, line...)
	sg.size += int64(len(line))
	s.total += int64(len(line))
	s.instance, s.seq, s.hash = r.InstanceID, r.Seq, r.Hash
	s.written++
	return s.written, nil
}

// flushPend writes pend to the active segment with one write(2). When that fails, the records in
// pend are undone.
func (s *Spool) flushPend() error {
	if len(s.pend) == 0 {
		return nil
	}
	sg := &s.segs[len(s.segs)-1]
	if s.broken != nil {
		return s.broken
	}
	var n int
	var err error
	if s.writeHook != nil {
		n, err = s.writeHook(s.active, s.pend)
	} else {
		n, err = s.activeW.Write(s.pend) // a raw write(2): see internal/rawio
	}
	if err != nil {
		if n > 0 {
			truncate := s.truncateHook
			if truncate == nil {
				truncate = (*os.File).Truncate
			}
			if terr := truncate(s.active, s.pendFrom.size); terr != nil {
				s.broken = fmt.Errorf("activity spool: a failed write could not be undone (%w); "+
					"nothing more is recorded until the sidecar restarts", terr)
			}
		}
		s.dropPend()
		return fmt.Errorf("write activity record: %w", err)
	}
	s.pend = s.pend[:0]
	if s.cfg.Sync == SyncOS {
		sg.stable = sg.size
		s.synced = s.written
	} else if s.written-s.synced >= uint64(s.cfg.SyncRecords) {
		s.kickSync()
	}
	s.notifyChanged()
	return nil
}

// dropPend undoes the records sealed into pend but not written.
func (s *Spool) dropPend() {
	if len(s.pend) == 0 {
		return
	}
	p := s.pendFrom
	sg := &s.segs[len(s.segs)-1]
	s.total -= sg.size - p.size // not total as it was: dropOldest may have changed it since
	sg.size = p.size
	s.instance, s.seq, s.hash, s.written = p.instance, p.seq, p.hash, p.written
	s.pend = s.pend[:0]
}

func (s *Spool) needsRotate(need int64) bool {
	n := len(s.segs)
	return n == 0 || s.segs[n-1].size > 0 && s.segs[n-1].size+need > s.cfg.SegmentBytes
}

// rotate syncs and closes the active segment and starts the next one.
func (s *Spool) rotate() error {
	if err := s.flushPend(); err != nil {
		return err
	}
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
		s.active, s.activeW = nil, nil
	}
	f, err := os.OpenFile(s.path(next), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create activity spool segment: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		f.Close()
		return err
	}
	if err := s.setActive(f); err != nil {
		return err
	}
	s.segs = append(s.segs, segment{num: next})
	return nil
}

// setActive makes f the segment that records are appended to.
func (s *Spool) setActive(f *os.File) error {
	w, err := rawio.NewFile(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("open activity spool segment: %w", err)
	}
	s.active, s.activeW = f, w
	return nil
}

// waitSynced returns once write idx is on stable storage, syncing itself if no one else is. Called
// with s.mu held; releases it while syncing so that other Appends can write meanwhile and be
// covered by the next sync.
func (s *Spool) waitSynced(idx uint64) error {
	if err := s.flushPend(); err != nil {
		return err
	}
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
		s.notifyChanged() // wake a shipper that read before the sync
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

// stableSegments syncs what was written (unless the policy is SyncOS, where written is stable)
// and returns the segments.
func (s *Spool) stableSegments() ([]segment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.cfg.Sync != SyncOS && s.synced < s.written {
		if err := s.waitSynced(s.written); err != nil {
			return nil, err
		}
	}
	return append([]segment(nil), s.segs...), nil
}

// ReadLines is Read for shipping: it returns the records' lines as they are in the spool (without
// the newline), not decoded, and stops before maxBytes of them (after at least one). The lines
// this process wrote (since it opened their segment) are returned as they are: it sealed them.
// Lines written before are returned only if they are JSON objects with a seq and a type; other
// lines are skipped and counted in Stats.Corrupt, as Read does.
func (s *Spool) ReadLines(pos Position, max, maxBytes int) ([]json.RawMessage, Position, error) {
	lines, next, _, err := s.readLines(pos, max, maxBytes, nil, nil)
	return lines, next, err
}

// readLines is ReadLines reading into buf and out, reused from the last call (whose lines it
// overwrites), and returning buf for the next. It reads the files a piece at a time, about as much
// as the lines it returns.
func (s *Spool) readLines(pos Position, maxLines, maxBytes int, buf []byte, out []json.RawMessage) ([]json.RawMessage, Position, []byte, error) {
	if maxLines <= 0 {
		maxLines = 1
	}
	segs, err := s.stableSegments()
	if err != nil {
		return nil, pos, buf, err
	}
	buf, out = buf[:0], out[:0]
	size := 0
	full := false
	for i := 0; i < len(segs) && !full; i++ {
		sg := segs[i]
		if sg.num < pos.Segment || sg.num == pos.Segment && pos.Offset >= sg.stable {
			continue
		}
		if sg.num > pos.Segment {
			pos = Position{Segment: sg.num}
		}
		f, err := os.Open(s.path(sg.num))
		if errors.Is(err, os.ErrNotExist) {
			continue // dropped or acknowledged meanwhile
		}
		if err != nil {
			return nil, pos, buf, fmt.Errorf("read activity spool segment: %w", err)
		}
		var long int64 // a line is longer than the last read: read this much
		for !full {
			from, left := pos.Offset, sg.stable-pos.Offset
			want := min(max(int64(maxBytes-size), readMin), readMax)
			want = min(max(want, long), left)
			n := len(buf)
			buf = slices.Grow(buf, int(want))[:n+int(want)]
			m, err := f.ReadAt(buf[n:], from)
			if err != nil && !errors.Is(err, io.EOF) {
				f.Close()
				return nil, pos, buf[:n], fmt.Errorf("read activity spool segment: %w", err)
			}
			if int64(m) < want {
				// The file is shorter than what was written to it: changed from outside.
				f.Close()
				return nil, pos, buf[:n], fmt.Errorf("activity spool segment %s holds %d bytes, %d were written to it: was it changed outside the sidecar?",
					s.path(sg.num), from+int64(m), sg.stable)
			}
			var cut bool
			var corrupt int
			out, size, pos, full, cut, corrupt = splitLines(buf[n:], pos, sg.own, out, size, maxLines, maxBytes)
			// A line cut at the end of the piece is read again, whole, with the next piece.
			buf = buf[:n+int(pos.Offset-from)]
			if corrupt > 0 {
				s.mu.Lock()
				s.corrupt += uint64(corrupt)
				s.mu.Unlock()
			}
			if !full && want == left {
				pos.Offset = sg.stable // everything in the segment, damaged lines included, is read
				break
			}
			if cut && pos.Offset == from {
				long = 2 * want
			}
		}
		f.Close()
	}
	return out, pos, buf, nil
}

// splitLines adds the lines of data, which starts at pos, to out, up to maxLines lines and maxBytes
// bytes of them (after at least one). Lines from offset own on are trusted; earlier ones are
// checked and counted in corrupt when they are not records. pos moves past the lines taken or
// skipped. cut reports data ending inside a line.
func splitLines(data []byte, pos Position, own int64, out []json.RawMessage, size, maxLines, maxBytes int) (_ []json.RawMessage, _ int, _ Position, full, cut bool, corrupt int) {
	base, off := pos.Offset, 0
	for off < len(data) {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			return out, size, pos, false, true, corrupt
		}
		line := data[off : off+nl : off+nl]
		if len(out) == maxLines || len(out) > 0 && size+len(line) > maxBytes {
			return out, size, pos, true, false, corrupt
		}
		start := base + int64(off)
		off += nl + 1
		pos.Offset = base + int64(off)
		if start < own && !validLine(line) {
			corrupt++
			continue
		}
		out = append(out, line)
		size += len(line) + 1
	}
	return out, size, pos, false, false, corrupt
}

// validLine reports whether a spool line is a record: what DecodeSegment accepts. The canonical
// form ({"seq":N,"type":"...) is checked without decoding.
func validLine(line []byte) bool {
	if !json.Valid(line) {
		return false
	}
	const pre = `{"seq":`
	if rest, ok := bytes.CutPrefix(line, []byte(pre)); ok && len(rest) > 0 && rest[0] >= '1' && rest[0] <= '9' {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if t, ok := bytes.CutPrefix(rest[i:], []byte(`,"type":"`)); ok && len(t) > 0 && t[0] != '"' {
			return true
		}
	}
	var r Record
	return json.Unmarshal(line, &r) == nil && r.Seq != 0 && r.Type != ""
}

// Read returns up to max records from pos on, and the position after the last one. It syncs
// first (unless the policy is SyncOS): only records on stable storage are read. Damaged lines
// are skipped and counted in Stats.Corrupt; they become gaps that Verify reports.
func (s *Spool) Read(pos Position, max int) ([]Record, Position, error) {
	if max <= 0 {
		max = 1
	}
	segs, err := s.stableSegments()
	if err != nil {
		return nil, pos, err
	}

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
	tmp := filepath.Join(s.cfg.Dir, ackedFile+".tmp")
	if err := writeFileSync(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.cfg.Dir, ackedFile)); err != nil {
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

// Close writes the deferred records, syncs and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	select {
	case <-s.syncStop:
	default:
		close(s.syncStop)
	}
	s.mu.Unlock()
	<-s.syncDone

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.expireEnds(true)
	s.writeDeferredLocked()
	for s.syncing {
		s.cond.Wait()
	}
	ferr := s.flushPend()
	s.closed = true
	close(s.changed)
	if s.active == nil {
		return ferr
	}
	err := s.active.Sync()
	if cerr := s.active.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ferr
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
