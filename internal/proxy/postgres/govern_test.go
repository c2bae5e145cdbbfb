package postgres_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// fakeAuditor records what the engine tells it and refuses statements whose text mentions
// "forbidden". Each statement message gets one ref.
type fakeAuditor struct {
	t *testing.T

	mu        sync.Mutex
	logins    []proxy.LoginEvent
	stmts     []string
	completed map[uint64][]proxy.Completion
	schemas   []string
	closed    int
	next      uint64
}

func (a *fakeAuditor) Login(_ context.Context, l proxy.LoginEvent) (proxy.StatementAuditor, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logins = append(a.logins, l)
	if a.completed == nil {
		a.completed = map[uint64][]proxy.Completion{}
	}
	if l.Err != nil {
		return nil, nil
	}
	return a, nil
}

func (a *fakeAuditor) Statement(_ context.Context, st *proxy.Statement) proxy.Verdict {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stmts = append(a.stmts, st.Path+":"+st.SQL)
	if strings.Contains(st.SQL, "forbidden") {
		return proxy.Verdict{Refusal: proxy.RefusedByPolicy, Message: "denied by test#0"}
	}
	a.next++
	return proxy.Verdict{Refs: []uint64{a.next}, RefreshSchema: strings.Contains(st.SQL, "search_path")}
}

func (a *fakeAuditor) Complete(ref uint64, c proxy.Completion) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.completed[ref] = append(a.completed[ref], c)
}

func (a *fakeAuditor) SetSchema(s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.schemas = append(a.schemas, s)
}

func (a *fakeAuditor) RecordParams() bool { return false }

func (a *fakeAuditor) Close(context.Context, proxy.SessionEnd) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed++
}

func (a *fakeAuditor) statements() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.stmts...)
}

func (a *fakeAuditor) waitClosed(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		c := a.closed
		a.mu.Unlock()
		if c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions closed, want %d", c, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkComplete requires every allowed statement to have been completed exactly once.
func (a *fakeAuditor) checkComplete(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for ref := uint64(1); ref <= a.next; ref++ {
		if n := len(a.completed[ref]); n != 1 {
			t.Errorf("statement %d completed %d times: %+v", ref, n, a.completed[ref])
		}
	}
}

func (a *fakeAuditor) completion(ref uint64) proxy.Completion {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.completed[ref]; len(c) > 0 {
		return c[0]
	}
	return proxy.Completion{}
}

func wantDenied(t *testing.T, err error) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "test#0") {
		t.Fatalf("err = %v; want 42501 naming the rule", err)
	}
}

func TestGovernance(t *testing.T) {
	aud := &fakeAuditor{t: t}
	sc := startProxy(t, proxyOptions{auditor: aud})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := sc.pgx(t, "scram_user", aliceToken, "")
	if _, err := conn.Exec(ctx, "create temp table forbidden_t (v int); create temp table ok_t (v int)", pgx.QueryExecModeSimpleProtocol); err == nil {
		t.Fatal("multi-statement query naming a forbidden table ran")
	}
	if _, err := conn.Exec(ctx, "create temp table ok_t (v int)"); err != nil {
		t.Fatal(err)
	}

	t.Run("simple", func(t *testing.T) {
		_, err := conn.Exec(ctx, "select 1 from forbidden", pgx.QueryExecModeSimpleProtocol)
		wantDenied(t, err)
		var n int
		if err := conn.QueryRow(ctx, "select 2", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 2 {
			t.Fatalf("next statement: %d, %v", n, err)
		}
	})
	t.Run("extended", func(t *testing.T) {
		_, err := conn.Exec(ctx, "select $1::int as forbidden", 1)
		wantDenied(t, err)
		var n int
		if err := conn.QueryRow(ctx, "select $1::int + 1", 2).Scan(&n); err != nil || n != 3 {
			t.Fatalf("next statement: %d, %v", n, err)
		}
	})
	t.Run("transaction", func(t *testing.T) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "insert into ok_t values (1)"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "select 'forbidden'")
		wantDenied(t, err)
		if _, err := tx.Exec(ctx, "insert into ok_t values (2)"); err != nil {
			t.Fatalf("statement after the denial inside the transaction: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from ok_t").Scan(&n); err != nil || n != 2 {
			t.Fatalf("rows committed: %d, %v; want 2", n, err)
		}
	})
	t.Run("batch", func(t *testing.T) {
		b := &pgx.Batch{}
		b.Queue("select 1")
		b.Queue("select 'forbidden'")
		b.Queue("select 3")
		br := conn.SendBatch(ctx, b)
		var n int
		if err := br.QueryRow().Scan(&n); err != nil || n != 1 {
			t.Fatalf("first of the batch: %d, %v", n, err)
		}
		_, err := br.Exec()
		wantDenied(t, err)
		br.Close()
		if err := conn.QueryRow(ctx, "select 4").Scan(&n); err != nil || n != 4 {
			t.Fatalf("after the batch: %d, %v", n, err)
		}
	})
	t.Run("pipeline", func(t *testing.T) {
		p := conn.PgConn().StartPipeline(ctx)
		p.SendQueryParams("select 1", nil, nil, nil, nil)
		p.SendQueryParams("select 'forbidden'", nil, nil, nil, nil)
		p.SendPipelineSync()
		p.SendQueryParams("select 3", nil, nil, nil, nil)
		p.SendPipelineSync()
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for syncs := 0; syncs < 2; {
			res, err := p.GetResults()
			switch r := res.(type) {
			case *pgconn.PipelineSync:
				syncs++
				got = append(got, "sync")
			case *pgconn.ResultReader:
				rr := r.Read()
				if rr.Err != nil {
					got = append(got, "error: "+rr.Err.Error())
				} else {
					got = append(got, string(rr.Rows[0][0]))
				}
			case nil:
				if err == nil {
					t.Fatalf("pipeline ended early: %q", got)
				}
				got = append(got, "error: "+err.Error())
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		want := []string{"1", "error: ERROR: denied by test#0 (SQLSTATE 42501)", "sync", "3", "sync"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("rows and errors", func(t *testing.T) {
		before := aud.next
		if _, err := conn.Exec(ctx, "insert into ok_t select g from generate_series(1, 5) g"); err != nil {
			t.Fatal(err)
		}
		if c := aud.completion(before + 1); c.Rows != 5 || c.ErrorCode != "" {
			t.Errorf("insert completion %+v; want 5 rows", c)
		}
		if _, err := conn.Exec(ctx, "select 1/0"); err == nil {
			t.Fatal("division by zero succeeded")
		}
		if c := aud.completion(before + 2); c.ErrorCode != "22012" {
			t.Errorf("failed statement completion %+v; want 22012", c)
		}
	})
	t.Run("schema", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "set search_path to pg_temp, public", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "select 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		aud.mu.Lock()
		schemas := append([]string(nil), aud.schemas...)
		aud.mu.Unlock()
		if len(schemas) < 3 || schemas[0] != "public" || schemas[len(schemas)-1] == "public" {
			t.Errorf("schemas set: %q; want public first, then unknown after SET search_path to two schemas", schemas)
		}
	})
	conn.Close(ctx)
	aud.waitClosed(t, 1)
	aud.checkComplete(t)
	if len(aud.logins) != 1 || aud.logins[0].Grant == nil || !aud.logins[0].TLS {
		t.Errorf("logins %+v; want one successful TLS login", aud.logins)
	}
}
