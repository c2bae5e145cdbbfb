package postgres_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehousedb/gatehouse/internal/proxy/postgres"
)

// parkTestAfter is how long the sessions of these tests stay quiet before they park.
const parkTestAfter = 20 * time.Millisecond

// waitParked waits until n directions of the engine's sessions are parked.
func waitParked(t *testing.T, sc *sidecar, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for postgres.Parked(sc.engine) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d directions parked, want %d", postgres.Parked(sc.engine), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// relayGoroutines counts the goroutines running a relay direction's loop.
func relayGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "(*session).clientToUpstream") || strings.Contains(g, "(*session).upstreamToClient") {
			n++
		}
	}
	return n
}

// A quiet session gives up both goroutines and resumes on the same upstream session when the
// client speaks again; results, bulk ones included, are whole.
func TestParkIdleSession(t *testing.T) {
	sc := startProxy(t, proxyOptions{parkAfter: parkTestAfter})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	pid := backendPID(t, conn)
	if _, err := conn.Exec(ctx, "SET application_name = 'parked-client'"); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		waitParked(t, sc, 2)
		if n := relayGoroutines(); n != 0 {
			t.Fatalf("round %d: %d relay goroutines while the session is parked", round, n)
		}
		var app string
		var sum int64
		if err := conn.QueryRow(ctx, "SELECT current_setting('application_name'), (SELECT sum(i) FROM generate_series(1, 100000) i)").Scan(&app, &sum); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if app != "parked-client" || sum != 5000050000 {
			t.Errorf("round %d: got %q, %d", round, app, sum)
		}
		if got := backendPID(t, conn); got != pid {
			t.Errorf("round %d: backend %d after parking, want %d", round, got, pid)
		}
		// A result bigger than the relay's buffers, read after a park.
		rows, err := conn.Query(ctx, "SELECT repeat('x', 1000) FROM generate_series(1, 5000)")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil || n != 5000 {
			t.Fatalf("round %d: %d rows, %v", round, n, err)
		}
	}
	// A clean end from a parked session hands the upstream connection back to the pool.
	waitParked(t, sc, 2)
	closeConn(t, conn)
	waitForLogCount(t, sc, logPooled, 1)
	waitParked(t, sc, 0)
}

// The server may speak first: a notification wakes the parked upstream side.
func TestParkedSessionGetsNotification(t *testing.T) {
	sc := startProxy(t, proxyOptions{parkAfter: parkTestAfter})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	if _, err := conn.Exec(ctx, "LISTEN parked_channel"); err != nil {
		t.Fatal(err)
	}
	waitParked(t, sc, 2)
	if _, err := admin(t, "app").Exec(ctx, "NOTIFY parked_channel, 'wake up'"); err != nil {
		t.Fatal(err)
	}
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "parked_channel" || n.Payload != "wake up" {
		t.Errorf("notification %q %q", n.Channel, n.Payload)
	}
}

// Both sides park while a statement runs, and the answer wakes them.
func TestParkDuringLongStatement(t *testing.T) {
	sc := startProxy(t, proxyOptions{parkAfter: parkTestAfter})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	done := make(chan error, 1)
	var got int
	go func() { done <- conn.QueryRow(ctx, "SELECT 42 FROM pg_sleep(1)").Scan(&got) }()
	waitParked(t, sc, 2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != 42 {
		t.Errorf("got %d", got)
	}
}

// A read that times out inside a message carries on: a client that pauses halfway through a
// message is not cut off, nor is its message split.
func TestParkMidMessage(t *testing.T) {
	sc := startProxy(t, proxyOptions{parkAfter: parkTestAfter})
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	hc, err := conn.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	msg, err := (&pgproto3.Query{String: "SELECT 'whole message'"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{3, 5, 12} { // inside the header, at its end, inside the body
		if _, err := hc.Conn.Write(msg[:cut]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * parkTestAfter)
		if _, err := hc.Conn.Write(msg[cut:]); err != nil {
			t.Fatal(err)
		}
		var row string
		for {
			hc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, err := hc.Frontend.Receive()
			if err != nil {
				t.Fatalf("cut at %d: %v", cut, err)
			}
			if d, ok := m.(*pgproto3.DataRow); ok {
				row = string(d.Values[0])
			}
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("cut at %d: %s", cut, e.Message)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if row != "whole message" {
			t.Errorf("cut at %d: row %q", cut, row)
		}
	}
}

// A parked session ends as a relaying one does, whoever ends it: the client tells why, the
// session is recorded as ended and nothing of it is left parked or running.
func TestParkedSessionEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, sc *sidecar, conn *pgx.Conn, revoke func())
		log  string
		// fatal is what the client is told, when it is told anything.
		fatal string
	}{
		{"revoked", func(t *testing.T, sc *sidecar, conn *pgx.Conn, revoke func()) { revoke() },
			"ended_by=token_revoked", "access token revoked"},
		{"shutdown", func(t *testing.T, sc *sidecar, conn *pgx.Conn, revoke func()) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // no grace: the parked session is ended at once
			go sc.engine.Shutdown(ctx)
		}, "ended_by=shutdown", "server is shutting down"},
		{"client closes", func(t *testing.T, sc *sidecar, conn *pgx.Conn, revoke func()) {
			conn.PgConn().Conn().Close()
		}, "session ended", ""},
		{"server closes", func(t *testing.T, sc *sidecar, conn *pgx.Conn, revoke func()) {
			terminateBackends(t, "scram_user")
		}, "session ended", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := startProxy(t, proxyOptions{parkAfter: parkTestAfter})
			revoked, revoke := context.WithCancel(context.Background())
			defer revoke()
			sc.auth.set(func(a *authorizer) { a.revoked = revoked })
			conn := sc.pgx(t, "scram_user", aliceToken, "")
			backendPID(t, conn)
			waitParked(t, sc, 2)
			tc.end(t, sc, conn, revoke)
			waitForLog(t, sc, tc.log)
			waitParked(t, sc, 0)
			if tc.fatal != "" {
				pe := sessionEnd(t, conn)
				if pe.Message != tc.fatal {
					t.Errorf("client told %q, want %q", pe.Message, tc.fatal)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for relayGoroutines() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d relay goroutines left after the session ended", relayGoroutines())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// Without parking, an idle session keeps its goroutines.
func TestParkOff(t *testing.T) {
	sc := startProxy(t, proxyOptions{parkAfter: -1})
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	backendPID(t, conn)
	time.Sleep(10 * parkTestAfter)
	if n := postgres.Parked(sc.engine); n != 0 {
		t.Errorf("%d directions parked with parking off", n)
	}
	if n := relayGoroutines(); n != 2 {
		t.Errorf("%d relay goroutines, want 2", n)
	}
}

// waitRunning waits until the engine counts n running sessions (Config.Quiet), and returns how
// many times one has stopped.
func waitRunning(t *testing.T, sc *sidecar, n int64) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		running, stops := sc.quiet.State()
		if running == n {
			return stops
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions running, want %d", running, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A session counts as running (Config.Quiet) from its start until it parks, again while it has
// something to do, and not after it ends; a refused login counts once and stops.
func TestQuietCountsRunningSessions(t *testing.T) {
	sc := startProxy(t, proxyOptions{parkAfter: parkTestAfter})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := sc.pgx(t, "scram_user", aliceToken, "")
	b := sc.pgx(t, "scram_user", aliceToken, "")
	waitParked(t, sc, 4)
	stops := waitRunning(t, sc, 0)
	if _, err := a.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waitParked(t, sc, 4)
	if again := waitRunning(t, sc, 0); again <= stops {
		t.Errorf("stops %d after a parked session ran a statement and parked again, want more than %d", again, stops)
	}
	if _, err := pgx.Connect(ctx, sc.connString("scram_user", "gh1_not_a_token", "")); err == nil {
		t.Fatal("login with a bad token succeeded")
	}
	closeConn(t, a)
	closeConn(t, b)
	waitParked(t, sc, 0)
	waitRunning(t, sc, 0)
	time.Sleep(10 * parkTestAfter) // nothing counts twice
	if running, _ := sc.quiet.State(); running != 0 {
		t.Fatalf("%d sessions running after all ended", running)
	}

	// Without parking, an open session runs until it ends.
	off := startProxy(t, proxyOptions{parkAfter: -1})
	c := off.pgx(t, "scram_user", aliceToken, "")
	backendPID(t, c)
	time.Sleep(10 * parkTestAfter)
	waitRunning(t, off, 1)
	closeConn(t, c)
	waitRunning(t, off, 0)
}
