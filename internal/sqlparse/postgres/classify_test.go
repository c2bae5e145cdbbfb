package postgres_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/gatehousedb/gatehouse/internal/sqlparse/postgres"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenInputs cover every path a client can send SQL through, and the tricky corners of object and
// column attribution. The expected classifications are in testdata/classify.golden.json.
var goldenInputs = []string{
	"SELECT 1",
	"SELECT now(), pg_catalog.version()",
	"SELECT * FROM orders",
	"SELECT o.* FROM public.orders o",
	"SELECT id, total FROM orders WHERE status = 'open' ORDER BY created_at",
	"SELECT count(*) FROM hr.salaries",
	"SELECT count(*) FROM hr.salaries WHERE salary > 100000",
	"SELECT s.salary, e.name FROM hr.salaries s JOIN employees e USING (id) WHERE e.dept = 'x'",
	"SELECT name FROM employees WHERE id IN (SELECT employee_id FROM hr.salaries WHERE salary > 10)",
	"SELECT (SELECT max(salary) FROM bonus) FROM hr.salaries",
	"SELECT j.salary FROM (hr.salaries JOIN bonus USING (id)) AS j",
	"WITH top AS (SELECT salary FROM hr.salaries) SELECT * FROM top",
	"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM t WHERE n < 5) SELECT n FROM t",
	"SELECT a FROM x UNION SELECT b FROM y ORDER BY 1",
	"SELECT * FROM generate_series(1, 3) g, LATERAL (SELECT * FROM orders WHERE id = g) o",
	"SELECT hr.salaries.salary FROM hr.salaries",
	"TABLE orders",
	"VALUES (1, 2)",
	"SELECT * INTO archive FROM orders",
	"SELECT * FROM orders FOR UPDATE",
	"INSERT INTO orders (id, total) VALUES (1, 2)",
	"INSERT INTO orders VALUES (1, 2)",
	"INSERT INTO archive SELECT * FROM orders WHERE created_at < now() - interval '1 year'",
	"INSERT INTO t (id, v) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET v = excluded.v RETURNING id",
	"UPDATE orders SET status = 'closed' WHERE id = $1",
	"UPDATE orders o SET total = s.total FROM staging s WHERE o.id = s.id RETURNING o.*",
	"DELETE FROM orders WHERE id = 1",
	"DELETE FROM orders USING customers c WHERE orders.customer_id = c.id AND c.banned",
	"WITH d AS (DELETE FROM queue RETURNING *) INSERT INTO done SELECT * FROM d",
	"WITH d AS (DELETE FROM queue RETURNING *) SELECT * FROM d",
	"MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.qty)",
	"COPY orders TO STDOUT",
	"COPY orders (id, total) FROM STDIN",
	"COPY (SELECT salary FROM hr.salaries) TO STDOUT WITH CSV",
	"TRUNCATE orders, hr.salaries",
	"CREATE TABLE t (id int PRIMARY KEY, v text)",
	"CREATE TABLE hr.copy AS SELECT * FROM hr.salaries",
	"CREATE VIEW v AS SELECT name FROM employees",
	"ALTER TABLE orders ADD COLUMN note text",
	"CREATE INDEX ON orders (created_at)",
	"DROP TABLE orders, hr.salaries",
	"DROP SCHEMA hr CASCADE",
	"GRANT SELECT ON orders TO analyst",
	"REVOKE ALL ON hr.salaries FROM PUBLIC",
	"CREATE ROLE bob LOGIN",
	"SET ROLE admin",
	"SET SESSION AUTHORIZATION admin",
	"SET search_path = hr, public",
	"SHOW work_mem",
	"BEGIN ISOLATION LEVEL SERIALIZABLE",
	"COMMIT",
	"ROLLBACK TO SAVEPOINT a",
	"DISCARD ALL",
	"DEALLOCATE ALL",
	"CALL ops.rotate_logs(7)",
	"DO $$ BEGIN PERFORM 1; END $$",
	"VACUUM ANALYZE orders",
	"LOCK TABLE orders IN EXCLUSIVE MODE",
	"LISTEN jobs",
	"NOTIFY jobs, 'x'",
	"EXPLAIN ANALYZE SELECT * FROM hr.salaries",
	"PREPARE q (int) AS SELECT name FROM employees WHERE id = $1",
	"EXECUTE q (1)",
	"DECLARE c CURSOR FOR SELECT * FROM orders",
	"FETCH 10 FROM c",
	"CLOSE c",
	"SELECT 1; UPDATE orders SET total = 0; SELECT 2",
	"selec 1",
	"SELECT 'unterminated",
	"",
	"-- only a comment",
}

type goldenCase struct {
	SQL        string             `json:"sql"`
	Statements []policy.Statement `json:"statements"`
}

func TestClassifyGolden(t *testing.T) {
	var got []goldenCase
	for _, in := range goldenInputs {
		sts, err := postgres.Classify(in)
		if err != nil {
			t.Fatalf("Classify(%q): %v", in, err)
		}
		for _, st := range sts {
			if !st.Unsupported && st.Fingerprint == "" {
				t.Errorf("Classify(%q): no fingerprint", in)
			}
		}
		got = append(got, goldenCase{SQL: in, Statements: sts})
	}
	path := filepath.Join("testdata", "classify.golden.json")
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	var want []goldenCase
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("classification (-want +got):\n%s", diff)
	}
}

// TestClassifyWithPolicy checks the classifier and the policy package together: a column deny must
// not be bypassed by any way of reading the column.
func TestClassifyWithPolicy(t *testing.T) {
	policies := []gatehouse.AccessPolicy{{
		Name: "hr", Repository: "hr", Mode: "enforce",
		Rules: []gatehouse.AccessRule{
			{Effect: "allow", Objects: []string{"*"}, Operations: []string{"*"}},
			{Effect: "deny", Objects: []string{"*.salaries.salary"}, Operations: []string{"select"}},
			{Effect: "deny", Objects: []string{"public.orders"}, Operations: []string{"delete"}},
		},
	}}
	set, err := policy.Compile(policies)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sql     string
		blocked bool
	}{
		{"SELECT name FROM salaries", false},
		{"SELECT count(*) FROM salaries", false},
		{"SELECT * FROM salaries", true},
		{"SELECT s.* FROM salaries s", true},
		{"SELECT salary FROM salaries", true},
		{"SELECT count(*) FROM salaries WHERE salary > 100000", true},
		{"SELECT name FROM salaries ORDER BY salary", true},
		{"SELECT (SELECT max(salary) FROM bonus) FROM salaries", true},
		{"SELECT j.salary FROM (salaries JOIN bonus USING (id)) AS j", true},
		{"WITH x AS (SELECT salary FROM salaries) SELECT * FROM x", true},
		{"SELECT * FROM (SELECT * FROM salaries) sub", true},
		{"COPY salaries TO STDOUT", true},
		{"COPY (SELECT salary FROM salaries) TO STDOUT", true},
		{"INSERT INTO leak SELECT salary FROM salaries", true},
		{"UPDATE salaries SET name = 'x' WHERE salary > 5", true},
		{"UPDATE salaries SET name = 'x' WHERE id = 5", false},
		{"EXPLAIN ANALYZE SELECT salary FROM salaries", true},
		{"PREPARE p AS SELECT salary FROM salaries", true},
		{"DECLARE c CURSOR FOR SELECT * FROM salaries", true},
		{"SELECT 1; SELECT salary FROM salaries", true},
		{"DELETE FROM orders", true},
		{"TRUNCATE orders", true},
		{"WITH d AS (DELETE FROM orders RETURNING id) SELECT * FROM d", true},
		{"DELETE FROM customers", false},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			sts, err := postgres.Classify(tt.sql)
			if err != nil {
				t.Fatal(err)
			}
			blocked := false
			var reasons []string
			for _, st := range sts {
				d := set.Evaluate(policy.Subject{User: "alice"}, policy.Qualify(st, "public"), false)
				blocked = blocked || d.Blocks()
				reasons = append(reasons, d.Reason)
			}
			if blocked != tt.blocked {
				t.Errorf("blocked = %v, want %v (%s)", blocked, tt.blocked, strings.Join(reasons, "; "))
			}
		})
	}
}

func TestPrepared(t *testing.T) {
	var p policy.Prepared
	classify := func(sql string) policy.Statement {
		t.Helper()
		sts, err := postgres.Classify(sql)
		if err != nil || len(sts) != 1 {
			t.Fatalf("Classify(%q) = %v, %v", sql, sts, err)
		}
		return p.Resolve(sts[0])
	}
	if st := classify("EXECUTE nope"); st.Kind != policy.KindExecute {
		t.Errorf("unknown EXECUTE resolved to %+v", st)
	}
	prep := classify("PREPARE q (int) AS SELECT salary FROM salaries WHERE id = $1")
	if prep.Kind != "select" || prep.Prepare != "q" {
		t.Errorf("PREPARE classified as %+v", prep)
	}
	got := classify("EXECUTE q ((SELECT max(id) FROM ids))")
	want := policy.Statement{
		Kind: "select",
		Objects: []policy.Object{
			{Table: "salaries", Columns: []string{"salary", "id"}, Access: "read"},
			{Table: "ids", Columns: []string{"id"}, Access: "read"},
		},
		Functions:   []string{"max"},
		Fingerprint: prep.Fingerprint,
		Text:        "EXECUTE q ((SELECT max(id) FROM ids))",
		Execute:     "q",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EXECUTE (-want +got):\n%s", diff)
	}
}

func TestCache(t *testing.T) {
	c := postgres.NewCache()
	a, err := c.Classify("SELECT * FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Classify("SELECT * FROM orders")
	if &a[0] != &b[0] {
		t.Error("second Classify did not come from the cache")
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d", c.Len())
	}

	small := policy.Cache{Classifier: postgres.Classify, MaxBytes: 4000}
	for i := 0; i < 100; i++ {
		if _, err := small.Classify("SELECT " + strings.Repeat("x,", i) + "1 FROM t"); err != nil {
			t.Fatal(err)
		}
	}
	if n := small.Len(); n == 0 || n >= 100 {
		t.Errorf("bounded cache holds %d entries", n)
	}

	long := policy.Cache{Classifier: postgres.Classify, MaxText: 10}
	long.Classify("SELECT 1 + 1 + 1")
	if long.Len() != 0 {
		t.Error("cache kept a text longer than MaxText")
	}

	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				sts, err := small.Classify("SELECT " + strings.Repeat("y,", i%20) + "1")
				if err != nil || len(sts) != 1 {
					t.Errorf("Classify: %v %v", sts, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

var knownKinds = map[string]bool{"select": true, "insert": true, "update": true, "delete": true, "merge": true,
	"copy": true, "ddl": true, "dcl": true, "transaction": true, "utility": true, "function": true,
	"unsupported": true, "execute": true}

func FuzzClassify(f *testing.F) {
	for _, in := range goldenInputs {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		sts, err := postgres.Classify(sql)
		if err != nil {
			t.Skip(err) // a parser failure that is not a syntax error; the engine fails closed
		}
		for _, st := range sts {
			if !knownKinds[st.Kind] {
				t.Errorf("Classify(%q): unknown kind %q", sql, st.Kind)
			}
			if st.Unsupported != (st.Kind == "unsupported") {
				t.Errorf("Classify(%q): kind %q with Unsupported %v", sql, st.Kind, st.Unsupported)
			}
			for _, o := range st.Objects {
				if o.Table == "" || (o.Access != "read" && o.Access != "write") {
					t.Errorf("Classify(%q): bad object %+v", sql, o)
				}
			}
		}
	})
}

func BenchmarkClassifyUncached(b *testing.B) {
	const q = "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = $1 ORDER BY o.created_at DESC LIMIT 50"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := postgres.Classify(q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassifyCached(b *testing.B) {
	const q = "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = $1 ORDER BY o.created_at DESC LIMIT 50"
	c := postgres.NewCache()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Classify(q); err != nil {
				b.Fatal(err)
			}
		}
	})
}
