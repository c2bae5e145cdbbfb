package activity

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Sink receives batches of records in spool order, each record as its line in the spool: its
// canonical JSON with the hash, which is what the receiver stores. Ship returns nil only when the
// receiver has stored the whole batch; it must accept a batch it has seen before (deduplicating by
// instance and seq), because a batch is sent again when the acknowledgement did not reach the disk.
// The lines are valid only during the call.
type Sink interface {
	Ship(ctx context.Context, records []json.RawMessage) error
}

// Shipper defaults.
const (
	DefaultBatchSize     = 5000
	DefaultMaxBatchBytes = 8 << 20
	DefaultLinger        = 250 * time.Millisecond
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultPollInterval  = time.Second
)

// Shipper delivers a spool's records to a Sink. Zero-valued fields take the defaults.
//
// Batches are few and large: after a batch that was not full, the next is sent Linger later at
// the earliest, so that under load each request (with its signed token and the receiver's
// transaction) carries many records, and when idle a new record still goes out at once.
type Shipper struct {
	Spool         *Spool
	Sink          Sink
	BatchSize     int // records per batch at most
	MaxBatchBytes int // bytes per batch at most (a larger single record goes alone)
	Linger        time.Duration
	MinBackoff    time.Duration
	MaxBackoff    time.Duration
	PollInterval  time.Duration // how often to look for records when no Append signalled any
	Logger        *slog.Logger
}

// Run ships from the spool's acknowledged position until ctx is done, and then returns nil. A
// failed Ship is retried with exponential backoff and jitter; the position advances only after a
// success.
func (s *Shipper) Run(ctx context.Context) error {
	batch := cmpOr(s.BatchSize, DefaultBatchSize)
	batchBytes := cmpOr(s.MaxBatchBytes, DefaultMaxBatchBytes)
	linger := cmpOr(s.Linger, DefaultLinger)
	minB := cmpOr(s.MinBackoff, DefaultMinBackoff)
	maxB := cmpOr(s.MaxBackoff, DefaultMaxBackoff)
	poll := cmpOr(s.PollInterval, DefaultPollInterval)
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "activity/shipper")

	pos := s.Spool.Acked()
	backoff := time.Duration(0)
	var lastShip time.Time
	// Each batch is read into buf and recs, reused: the lines are valid only during Sink.Ship. A
	// buffer much larger than the batches lately is let go, so an idle sidecar holds little.
	var buf []byte
	var recs []json.RawMessage
	for {
		if ctx.Err() != nil {
			return nil
		}
		if wait := linger - time.Since(lastShip); !lastShip.IsZero() && wait > 0 {
			if !sleep(ctx, wait) {
				return nil
			}
		}
		changed := s.Spool.Changed()
		if cap(buf) > 1<<20 && len(buf) < cap(buf)/8 {
			buf, recs = nil, nil // recs beyond its length would keep the old buffer alive
		}
		var next Position
		var err error
		recs, next, buf, err = s.Spool.readLines(pos, batch, batchBytes, buf, recs)
		if err == nil && len(recs) == 0 && next != pos {
			// Only damaged lines (or an emptied segment) lay between pos and next: move past them.
			if err = s.Spool.Ack(next); err == nil {
				pos = next
				continue
			}
		}
		if err == nil && len(recs) > 0 {
			lastShip = time.Now()
			size := 0
			for _, r := range recs {
				size += len(r) + 1
			}
			if len(recs) == batch || size > batchBytes-batchBytes/8 {
				lastShip = time.Time{} // a full batch: more may be waiting, send it at once
			}
			err = s.Sink.Ship(ctx, recs)
			if err == nil {
				err = s.Spool.Ack(next)
				pos = next
			}
		}
		switch {
		case err != nil:
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return nil
			}
			backoff = min(max(backoff*2, minB), maxB)
			wait := backoff/2 + rand.N(backoff/2+1)
			log.Warn("activity shipping failed; retrying", "error", err, "retry_in", wait.Round(time.Millisecond), "position", pos)
			if !sleep(ctx, wait) {
				return nil
			}
			continue
		case len(recs) > 0:
			backoff = 0
			continue // there may be more
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
