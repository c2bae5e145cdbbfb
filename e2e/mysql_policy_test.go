package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	drv "github.com/go-sql-driver/mysql"
)

// TestMySQLPolicyAndActivity puts an access policy on the MariaDB repository: a deny rule blocks a
// table read with ERR 1142 naming the rule and the session goes on; every statement the mariadb
// CLI and go-sql-driver (text, multi-statement, prepared) sent appears once in the activity trail,
// classified with the MySQL grammar and completed with its rows.
func TestMySQLPolicyAndActivity(t *testing.T) {
	f := newMySQLFixture(t)
	if err := f.db.Exec(context.Background(), "CREATE TABLE shop.secrets (id int primary key, v varchar(20)); INSERT INTO shop.secrets VALUES (1, 'x')"); err != nil {
		t.Fatal(err)
	}
	f.admin.MustRun("policy", "access", "create", "--name", "shop-secrets", "--repository", "shop",
		"--rule", "effect=allow;objects=*;operations=select,insert,update,delete,ddl,utility,function",
		"--rule", "effect=deny;objects=shop.secrets;operations=select")
	tok := f.token(t, f.alice)
	db := f.open(t, "app", tok.Token, true)
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	var v string
	waitUntil(t, 10*time.Second, "access policy in force", func() bool {
		err := conn.QueryRowContext(ctx, "SELECT v FROM secrets WHERE id = 1").Scan(&v)
		var me *drv.MySQLError
		return asMySQLError(err, &me) && me.Number == 1142
	})
	err = conn.QueryRowContext(ctx, "SELECT v FROM `shop`.`secrets`").Scan(&v)
	var me *drv.MySQLError
	if !asMySQLError(err, &me) || me.Number != 1142 || string(me.SQLState[:]) != "42000" || !strings.Contains(me.Message, "shop-secrets") {
		t.Fatalf("qualified read of a denied table: %v; want ERR 1142 (42000) naming the rule", err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM items").Scan(&n); err != nil || n != 2 {
		t.Fatalf("the session after a refusal: %d, %v", n, err)
	}
	var name string
	if err := conn.QueryRowContext(ctx, "SELECT name FROM items WHERE id = ?", 2).Scan(&name); err != nil || name != "pear" {
		t.Fatalf("prepared: %q, %v", name, err)
	}
	conn.Close()

	out, err := f.mariadb(tok.Token, "--ssl", "--user", "app", "shop", "-e", "SELECT name FROM items ORDER BY id; SELECT v FROM secrets AS s")
	if err == nil || !strings.Contains(out, "ERROR 1142") || !strings.Contains(out, "apple") {
		t.Fatalf("mariadb CLI: %v\n%s", err, out)
	}

	var recs []activityLine
	waitUntil(t, 15*time.Second, "statements in the activity trail", func() bool {
		recs = activity(t, f.admin, "--repository", "shop")
		return len(statementsLike(recs, "SELECT name FROM items ORDER BY id")) > 0 &&
			len(statementsLike(recs, "SELECT v FROM secrets AS s")) > 0
	})
	for _, tc := range []struct {
		prefix, decision string
		count            int // how many times the clients sent it
	}{
		{"SELECT v FROM secrets AS s", "deny", 1},
		{"SELECT v FROM `shop`.`secrets`", "deny", 1},
		{"SELECT COUNT(*) FROM items", "allow", 1},
		{"SELECT name FROM items WHERE id = ?", "allow", 1},
		{"SELECT name FROM items ORDER BY id", "allow", 1},
	} {
		got := statementsLike(recs, tc.prefix)
		if len(got) != tc.count {
			t.Errorf("%q: %d records; want %d", tc.prefix, len(got), tc.count)
			continue
		}
		for _, r := range got {
			if r.Decision != tc.decision || r.User != "alice@example.com" || r.RepositoryUser != "app" {
				t.Errorf("%q: decision %s, user %s as %s", tc.prefix, r.Decision, r.User, r.RepositoryUser)
			}
			if tc.decision == "deny" && (r.Rule == "" || !containsString(r.Objects, "shop.secrets.v")) {
				t.Errorf("%q: rule %q, objects %v", tc.prefix, r.Rule, r.Objects)
			}
		}
	}
	// Outcomes, from the statement.end records: rows returned, or the repository's error.
	waitUntil(t, 10*time.Second, "statement outcomes in the trail", func() bool {
		recs = activity(t, f.admin, "--repository", "shop")
		got := statementsLike(recs, "SELECT name FROM items ORDER BY id")
		return len(got) == 1 && got[0].Rows == 2
	})
	for _, r := range statementsLike(recs, "SELECT COUNT(*) FROM items") {
		if r.Rows != 1 || r.ErrorCode != "" {
			t.Errorf("outcome of %q: rows %d, error %q", r.Statement, r.Rows, r.ErrorCode)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func asMySQLError(err error, me **drv.MySQLError) bool { return errors.As(err, me) }
