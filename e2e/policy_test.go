package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestPolicyEnforcement: deny rules refuse reads and writes of named tables and columns with 42501
// without breaking the session (next statement, inside a transaction, in a batch); monitor mode
// records but allows; unparseable statements follow allow_unsupported_queries; policy test shows
// the deciding rule.
func TestPolicyEnforcement(t *testing.T) {
	t.Parallel()
	f, tok := startGoverned(t)
	ctx := context.Background()
	conn, err := f.connect(ctx, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `create table salaries (id int, name text, salary int);
		create table audit_log (id int, note text);
		insert into salaries values (1, 'ann', 100)`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}

	f.admin.MustRun("policy", "access", "create", "--name", "salaries", "--repository", "app",
		"--rule", "effect=allow;objects=*;operations=select,insert,update,delete,ddl,copy,utility,function",
		"--rule", "effect=deny;users=alice@example.com;objects=public.salaries.salary;operations=select",
		"--rule", "effect=deny;objects=public.audit_log;operations=insert,update,delete")
	waitUntil(t, 20*time.Second, "policy in force on the sidecar", func() bool {
		_, err := conn.Exec(ctx, "select salary from salaries")
		return sqlstate(err) == "42501"
	})

	t.Run("read and write denied, session intact", func(t *testing.T) {
		_, err := conn.Exec(ctx, "select salary from salaries")
		if sqlstate(err) != "42501" || !strings.Contains(err.Error(), "salaries#1") {
			t.Errorf("column read: %v; want 42501 naming salaries#1", err)
		}
		_, err = conn.Exec(ctx, "insert into audit_log values (1, 'x')", pgx.QueryExecModeSimpleProtocol)
		if sqlstate(err) != "42501" || !strings.Contains(err.Error(), "salaries#2") {
			t.Errorf("write: %v; want 42501 naming salaries#2", err)
		}
		var name string
		if err := conn.QueryRow(ctx, "select name from salaries where id = $1", 1).Scan(&name); err != nil || name != "ann" {
			t.Errorf("allowed column after the denials: %q, %v", name, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from audit_log").Scan(&n); err != nil {
			t.Errorf("reading audit_log is allowed: %v", err)
		}
	})
	t.Run("in a transaction", func(t *testing.T) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "update salaries set name = 'anne' where id = 1"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "delete from audit_log"); sqlstate(err) != "42501" {
			t.Errorf("delete in a transaction: %v; want 42501", err)
		}
		if _, err := tx.Exec(ctx, "update salaries set name = 'annie' where id = 1"); err != nil {
			t.Fatalf("statement after the denial in the transaction: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var name string
		if err := conn.QueryRow(ctx, "select name from salaries").Scan(&name); err != nil || name != "annie" {
			t.Errorf("after commit: %q, %v", name, err)
		}
	})
	t.Run("in a batch", func(t *testing.T) {
		b := &pgx.Batch{}
		b.Queue("select name from salaries")
		b.Queue("select salary from salaries")
		br := conn.SendBatch(ctx, b)
		var name string
		if err := br.QueryRow().Scan(&name); err != nil {
			t.Fatal(err)
		}
		if _, err := br.Exec(); sqlstate(err) != "42501" {
			t.Errorf("denied statement in a batch: %v", err)
		}
		br.Close()
		var n int
		if err := conn.QueryRow(ctx, "select 5").Scan(&n); err != nil || n != 5 {
			t.Errorf("after the batch: %d, %v", n, err)
		}
	})
	t.Run("policy test", func(t *testing.T) {
		out := f.admin.MustRun("policy", "test", "--repository", "app", "--user", "alice@example.com", "select salary from salaries")
		if !strings.Contains(out, "Decision: deny") || !strings.Contains(out, "salaries#1") {
			t.Errorf("policy test output:\n%s", out)
		}
		out = f.admin.MustRun("policy", "test", "--repository", "app", "--user", "bob@example.com", "select salary from salaries")
		if !strings.Contains(out, "Decision: allow") {
			t.Errorf("policy test for bob:\n%s", out)
		}
	})
	t.Run("unsupported statements", func(t *testing.T) {
		_, err := conn.Exec(ctx, "selec 1", pgx.QueryExecModeSimpleProtocol)
		if sqlstate(err) != "42501" {
			t.Errorf("unparseable statement without allow_unsupported_queries: %v; want 42501", err)
		}
		f.admin.MustRun("sidecar", "update", f.id, "--allow-unsupported-queries", "--yes")
		waitUntil(t, 20*time.Second, "unsupported statements reach the database", func() bool {
			_, err := conn.Exec(ctx, "selec 1", pgx.QueryExecModeSimpleProtocol)
			return sqlstate(err) == "42601" // PostgreSQL's own syntax error
		})
	})
	t.Run("monitor mode", func(t *testing.T) {
		f.admin.MustRun("policy", "access", "update", "salaries", "--mode", "monitor")
		waitUntil(t, 20*time.Second, "monitor mode in force", func() bool {
			_, err := conn.Exec(ctx, "select salary from salaries")
			return err == nil
		})
		waitUntil(t, 10*time.Second, "monitor decision recorded", func() bool {
			for _, r := range activity(t, f.admin, "--decision", "deny") {
				if r.Statement == "select salary from salaries" && r.Mode == "monitor" && r.Rule == "salaries#1" {
					return true
				}
			}
			return false
		})
	})
	denied := activity(t, f.admin, "--decision", "deny", "--object", "public.audit_log")
	if len(denied) == 0 || denied[0].Rule != "salaries#2" || denied[0].Kind != "insert" {
		t.Errorf("denied write not in the trail as such: %+v", denied)
	}
}
