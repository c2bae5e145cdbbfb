package sidecar

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/proxy"
)

func TestReleaseWhenQuiet(t *testing.T) {
	var q proxy.Quiet
	released := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go releaseWhenQuiet(ctx, &q, 5*time.Millisecond, 0, func() { released <- struct{}{} }, slog.New(slog.DiscardHandler))

	none := func(when string) {
		t.Helper()
		select {
		case <-released:
			t.Fatalf("%s: memory released", when)
		case <-time.After(60 * time.Millisecond):
		}
	}
	one := func(when string) {
		t.Helper()
		select {
		case <-released:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: memory not released", when)
		}
		none(when + ", then")
	}

	none("nothing has run yet")
	q.Start() // a session is accepted
	q.Start() // and another
	none("two sessions running")
	q.Stop() // one parks
	none("one session running")
	q.Stop() // the other parks
	one("every session parked")
	q.Start() // one wakes
	none("a session woke")
	q.Stop() // and ends
	one("it ended")
}

// After a release, the next waits for minGap however quiet the sidecar is.
func TestReleaseWhenQuietMinGap(t *testing.T) {
	var q proxy.Quiet
	released := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go releaseWhenQuiet(ctx, &q, 5*time.Millisecond, time.Hour, func() { released <- struct{}{} }, slog.New(slog.DiscardHandler))
	q.Start()
	q.Stop()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("memory not released")
	}
	q.Start()
	q.Stop()
	select {
	case <-released:
		t.Fatal("released again within the minimum gap")
	case <-time.After(100 * time.Millisecond):
	}
}
