package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehousedb/gatehouse/internal/proxy/postgres"
)

// The engine tests all run with pooling on (poolDefault); these check what pooling promises: a
// connection is reused, and nothing of one client's session reaches the next.

// admin connects to the test server as its superuser, directly.
func admin(t *testing.T, database string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, srv.DSN(database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// terminateBackends ends every backend of a repository user and waits until they are gone.
func terminateBackends(t *testing.T, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := admin(t, "postgres")
	if _, err := conn.Exec(ctx, "select pg_terminate_backend(pid) from pg_stat_activity where usename = $1", user); err != nil {
		t.Fatal(err)
	}
	for {
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from pg_stat_activity where usename = $1", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForLogCount waits until the sidecar's log contains s at least n times.
func waitForLogCount(t *testing.T, sc *sidecar, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(sc.logs.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log said %q %d times, want %d", s, strings.Count(sc.logs.String(), s), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	logPooled    = "upstream connection returned to the pool"
	logNotPooled = "upstream connection not pooled"
)

func backendPID(t *testing.T, conn *pgx.Conn) uint32 {
	t.Helper()
	var pid uint32
	if err := conn.QueryRow(context.Background(), "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// closeConn ends a client session cleanly (Terminate).
func closeConn(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	if err := conn.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPoolNoStateLeaks(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first := sc.pgx(t, "scram_user", aliceToken, "application_name=etl")
	pid := backendPID(t, first)
	timeZone := first.PgConn().ParameterStatus("TimeZone")
	for _, q := range []string{
		"create temp table leak (v int)",
		"prepare leak_stmt as select 1",
		"set work_mem = '7MB'",
		"set timezone = 'Asia/Tokyo'",
		"set search_path = pg_catalog",
		"select set_config('gatehouse_test.secret', 'alice', false)",
		"select pg_advisory_lock(4242)",
		"listen leak_channel",
	} {
		if _, err := first.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A protocol-level named statement.
	if _, err := first.Prepare(ctx, "leak_named", "select 2"); err != nil {
		t.Fatal(err)
	}
	closeConn(t, first)
	waitForLogCount(t, sc, logPooled, 1)

	second := sc.pgx(t, "scram_user", carolToken, "")
	var (
		secondPID                 uint32
		tempTable                 *string
		prepared, locks, channels int
		workMem, secret, app      string
		searchPath                string
	)
	// The simple protocol, so that this session has prepared nothing of its own yet.
	err := second.QueryRow(ctx, `select pg_backend_pid(),
		to_regclass('pg_temp.leak')::text,
		(select count(*) from pg_prepared_statements),
		(select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()),
		(select count(*) from pg_listening_channels()),
		current_setting('work_mem'),
		coalesce(current_setting('gatehouse_test.secret', true), ''),
		current_setting('search_path'),
		(select application_name from pg_stat_activity where pid = pg_backend_pid())`,
		pgx.QueryExecModeSimpleProtocol).Scan(&secondPID, &tempTable, &prepared, &locks, &channels, &workMem, &secret, &searchPath, &app)
	if err != nil {
		t.Fatal(err)
	}
	if secondPID != pid {
		t.Fatalf("second session runs on backend %d, want the pooled %d", secondPID, pid)
	}
	got := []any{tempTable, prepared, locks, channels, workMem, secret, searchPath, app}
	want := []any{(*string)(nil), 0, 0, 0, "4MB", "", `"$user", public`, "gatehouse:carol@example.com"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state seen by the next session (-want +got):\n%s", diff)
	}
	// What the client was told at startup is the connection's state now, not the last session's.
	ps := second.PgConn()
	if diff := cmp.Diff([]string{"gatehouse:carol@example.com", timeZone}, []string{ps.ParameterStatus("application_name"), ps.ParameterStatus("TimeZone")}); diff != "" {
		t.Errorf("ParameterStatus (-want +got):\n%s", diff)
	}
	if ps.PID() == pid {
		t.Errorf("client was given the upstream backend's pid %d", pid)
	}
	// The advisory lock is free for anyone.
	var ok bool
	if err := admin(t, "app").QueryRow(ctx, "select pg_try_advisory_lock(4242)").Scan(&ok); err != nil || !ok {
		t.Errorf("advisory lock 4242 still held: %v %v", ok, err)
	}
	// The same statement names can be prepared again.
	if _, err := second.Exec(ctx, "prepare leak_stmt as select 1"); err != nil {
		t.Errorf("PREPARE in the next session: %v", err)
	}
	if _, err := second.Prepare(ctx, "leak_named", "select 2"); err != nil {
		t.Errorf("protocol-level prepare in the next session: %v", err)
	}
}

func TestPoolOpenTransactionNotReused(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := admin(t, "app").Exec(ctx, "create table if not exists pool_tx (who text); grant all on pool_tx to scram_user; truncate pool_tx"); err != nil {
		t.Fatal(err)
	}

	t.Run("pgx", func(t *testing.T) {
		conn := sc.pgx(t, "scram_user", aliceToken, "")
		pid := backendPID(t, conn)
		if _, err := conn.Exec(ctx, "begin"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "insert into pool_tx values ('pgx')"); err != nil {
			t.Fatal(err)
		}
		closeConn(t, conn) // Terminate inside the transaction
		waitForLogCount(t, sc, logNotPooled, 1)
		next := sc.pgx(t, "scram_user", aliceToken, "")
		if got := backendPID(t, next); got == pid {
			t.Errorf("a connection left inside a transaction was reused")
		}
	})
	t.Run("psql", func(t *testing.T) {
		// One Query that leaves a transaction open; psql then sends Terminate.
		out, err := sc.psql(t, "scram_user", aliceToken, "-c", "begin; insert into pool_tx values ('psql')")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		waitForLogCount(t, sc, logNotPooled, 2)
	})
	var n int
	if err := admin(t, "app").QueryRow(ctx, "select count(*) from pool_tx").Scan(&n); err != nil || n != 0 {
		t.Errorf("rows left by uncommitted transactions: %d, %v", n, err)
	}
	// A session that ends cleanly after committing goes back.
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	if _, err := conn.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	closeConn(t, conn)
	waitForLogCount(t, sc, logPooled, 1)
}

func TestPoolKeys(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	pid := backendPID(t, conn)
	closeConn(t, conn)
	waitForLogCount(t, sc, logPooled, 1)

	for _, c := range []struct {
		name, user, extra string
	}{
		{"other repository user", "md5_user", "database=postgres"},
		{"other database", "scram_user", "database=postgres"},
		{"other startup parameter", "scram_user", "search_path=pg_catalog"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := sc.pgx(t, c.user, aliceToken, c.extra)
			var user string
			var got uint32
			if err := conn.QueryRow(ctx, "select current_user, pg_backend_pid()").Scan(&user, &got); err != nil {
				t.Fatal(err)
			}
			if got == pid || user != c.user {
				t.Errorf("session as %s (%s) on backend %d as %s; the pooled one is %d", c.user, c.extra, got, user, pid)
			}
		})
	}
	// The pooled connection is still there for its own key.
	conn = sc.pgx(t, "scram_user", aliceToken, "")
	if got := backendPID(t, conn); got != pid {
		t.Errorf("backend %d, want the pooled %d", got, pid)
	}
}

func TestPoolCancel(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := sc.pgx(t, "scram_user", aliceToken, "")
	pid := backendPID(t, first)
	closeConn(t, first)
	waitForLogCount(t, sc, logPooled, 1)

	conn := sc.pgx(t, "scram_user", aliceToken, "")
	if got := backendPID(t, conn); got != pid {
		t.Fatalf("backend %d, want the pooled %d", got, pid)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "select pg_sleep(30)")
		done <- err
	}()
	waitForActive(t, pid)
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Errorf("cancelled query: %v, want SQLSTATE 57014", err)
	}
	if _, err := conn.Exec(ctx, "select 1"); err != nil {
		t.Errorf("session after cancel: %v", err)
	}
}

// waitForActive waits until backend pid runs a statement.
func waitForActive(t *testing.T, pid uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := admin(t, "postgres")
	for {
		var state string
		if err := conn.QueryRow(ctx, "select coalesce(state, '') from pg_stat_activity where pid = $1", pid).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state == "active" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoolRevokedEndsSession(t *testing.T) {
	sc := startProxy(t, proxyOptions{})
	first := sc.pgx(t, "scram_user", aliceToken, "")
	pid := backendPID(t, first)
	closeConn(t, first)
	waitForLogCount(t, sc, logPooled, 1)

	revoked, revoke := context.WithCancel(context.Background())
	sc.auth.set(func(a *authorizer) { a.revoked = revoked })
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	if got := backendPID(t, conn); got != pid {
		t.Fatalf("backend %d, want the pooled %d", got, pid)
	}
	revoke()
	pe := sessionEnd(t, conn)
	if diff := cmp.Diff([]string{"FATAL", "57P01", "access token revoked"}, []string{pe.Severity, pe.Code, pe.Message}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	waitForLog(t, sc, "ended_by=token_revoked")
	// The revoked session's connection is closed, not pooled.
	sc.auth.set(func(a *authorizer) { a.revoked = nil })
	next := sc.pgx(t, "scram_user", aliceToken, "")
	if got := backendPID(t, next); got == pid {
		t.Errorf("the revoked session's backend %d was reused", pid)
	}
}

func TestPoolOff(t *testing.T) {
	sc := startProxy(t, proxyOptions{pool: postgres.PoolConfig{Idle: -1}})
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	pid := backendPID(t, conn)
	closeConn(t, conn)
	waitForLog(t, sc, "session ended")
	conn = sc.pgx(t, "scram_user", aliceToken, "")
	if got := backendPID(t, conn); got == pid {
		t.Errorf("backend %d reused with pooling off", pid)
	}
	if strings.Contains(sc.logs.String(), "pool") {
		t.Errorf("pooling off, yet the log mentions it:\n%s", sc.logs.String())
	}
}
