package mysql_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/gatehousedb/gatehouse/internal/sqlparse/mysql"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenInputs cover the statements clients send (mysql, mariadb, go-sql-driver, JDBC, ORMs) and
// the corners of object and column attribution. The expected classifications are in
// testdata/classify.golden.json.
var goldenInputs = []string{
	"SELECT 1",
	"select @@version_comment limit 1",
	"SELECT NOW(), DATABASE(), hr.bonus_for(id) FROM hr.salaries",
	"SELECT * FROM orders",
	"SELECT o.* FROM shop.orders o",
	"SELECT `id`, total FROM `shop`.`orders` WHERE status = 'open' ORDER BY created_at LIMIT 10",
	"SELECT COUNT(*) FROM hr.salaries",
	"SELECT count(*) FROM hr.salaries WHERE salary > 100000",
	"SELECT s.salary, e.name FROM hr.salaries s JOIN employees e USING (id) WHERE e.dept = 'x'",
	"SELECT e.name FROM employees e LEFT JOIN hr.salaries s ON s.id = e.id AND s.salary > 10",
	"SELECT name FROM employees WHERE id IN (SELECT employee_id FROM hr.salaries WHERE salary > 10)",
	"SELECT (SELECT MAX(salary) FROM bonus) FROM hr.salaries",
	"SELECT d.salary FROM (SELECT salary FROM hr.salaries) AS d",
	"WITH top AS (SELECT salary FROM hr.salaries) SELECT * FROM top",
	"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM t WHERE n < 5) SELECT n FROM t",
	"SELECT a FROM x UNION SELECT b FROM y ORDER BY 1",
	"SELECT hr.salaries.salary FROM hr.salaries",
	"SELECT id, ROW_NUMBER() OVER (ORDER BY salary) FROM hr.salaries",
	"SELECT * FROM orders FOR UPDATE",
	"SELECT salary INTO @s FROM hr.salaries LIMIT 1",
	"SELECT salary FROM hr.salaries LIMIT 1 INTO @s",
	"SELECT * FROM orders INTO OUTFILE '/tmp/orders.csv'",
	"TABLE orders",
	"VALUES ROW(1, 2)",
	"DO SLEEP(1)",
	"INSERT INTO orders (id, total) VALUES (1, 2)",
	"INSERT INTO orders VALUES (1, 2)",
	"INSERT INTO orders SET id = 1, total = 2",
	"INSERT INTO archive SELECT * FROM orders WHERE created_at < NOW() - INTERVAL 1 YEAR",
	"INSERT INTO t (id, v) VALUES (1, 2) ON DUPLICATE KEY UPDATE v = VALUES(v) + 1",
	"REPLACE INTO blobs VALUES (?, ?)",
	"UPDATE orders SET status = 'closed' WHERE id = ?",
	"UPDATE orders o JOIN staging s ON o.id = s.id SET o.total = s.total",
	"DELETE FROM orders WHERE id = 1",
	"DELETE o FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.banned",
	"TRUNCATE TABLE orders",
	"LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE orders (id, total)",
	"CREATE TABLE t (id INT PRIMARY KEY, v TEXT)",
	"CREATE TABLE hr.copy AS SELECT * FROM hr.salaries",
	"CREATE TABLE t2 LIKE t",
	"CREATE VIEW v AS SELECT name FROM employees",
	"ALTER TABLE orders ADD COLUMN note TEXT",
	"CREATE INDEX i ON orders (created_at)",
	"DROP TABLE orders, hr.salaries",
	"DROP DATABASE hr",
	"RENAME TABLE a TO b",
	"GRANT SELECT ON shop.orders TO 'analyst'@'%'",
	"REVOKE ALL ON hr.* FROM 'bob'@'%'",
	"CREATE USER 'bob'@'%' IDENTIFIED BY 'secret'",
	"SET PASSWORD = 'x'",
	"SET ROLE admin",
	"SET NAMES utf8mb4",
	"SET autocommit = 0",
	"SHOW DATABASES",
	"SHOW CREATE TABLE hr.salaries",
	"SHOW COLUMNS FROM salaries",
	"DESCRIBE hr.salaries",
	"USE hr",
	"BEGIN",
	"START TRANSACTION READ ONLY",
	"COMMIT",
	"ROLLBACK TO SAVEPOINT a",
	"CALL ops.rotate_logs(7)",
	"ANALYZE TABLE orders",
	"FLUSH PRIVILEGES",
	"KILL QUERY 12",
	"LOCK TABLES orders READ",
	"EXPLAIN SELECT * FROM hr.salaries",
	"PREPARE q FROM 'SELECT name FROM employees WHERE id = ?'",
	"PREPARE q FROM @sql",
	"EXECUTE q USING @id",
	"DEALLOCATE PREPARE q",
	"SELECT 1; UPDATE orders SET total = 0; SELECT 2",
	"SELECT 1 /*!50000 , salary */ FROM hr.salaries",
	"SELECT 1 /*M!100100 , salary */ FROM hr.salaries",
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
		sts, err := mysql.Classify(in)
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

func TestFingerprintIgnoresLiterals(t *testing.T) {
	a, _ := mysql.Classify("SELECT name FROM t WHERE id = 1")
	b, _ := mysql.Classify("select  name from t where id = 42")
	c, _ := mysql.Classify("SELECT name FROM t WHERE id = 1 AND x = 2")
	if a[0].Fingerprint != b[0].Fingerprint {
		t.Errorf("same statement, other literal: %s vs %s", a[0].Fingerprint, b[0].Fingerprint)
	}
	if a[0].Fingerprint == c[0].Fingerprint {
		t.Error("different statements share a fingerprint")
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
			{Effect: "deny", Objects: []string{"app.orders"}, Operations: []string{"delete"}},
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
		{"SELECT COUNT(*) FROM salaries", false},
		{"SELECT * FROM salaries", true},
		{"SELECT s.* FROM salaries s", true},
		{"SELECT salary FROM salaries", true},
		{"SELECT `salary` FROM `salaries`", true},
		{"SELECT SALARY FROM salaries", true},
		{"SELECT COUNT(*) FROM salaries WHERE salary > 100000", true},
		{"SELECT name FROM salaries ORDER BY salary", true},
		{"SELECT (SELECT MAX(salary) FROM bonus) FROM salaries", true},
		{"SELECT j.salary FROM (SELECT * FROM salaries) AS j", true},
		{"WITH x AS (SELECT salary FROM salaries) SELECT * FROM x", true},
		{"DESCRIBE salaries", false},
		{"SELECT * FROM salaries INTO OUTFILE '/tmp/s'", true},
		{"INSERT INTO leak SELECT salary FROM salaries", true},
		{"UPDATE salaries SET name = 'x' WHERE salary > 5", true},
		{"UPDATE salaries SET name = 'x' WHERE id = 5", false},
		{"EXPLAIN SELECT salary FROM salaries", true},
		{"PREPARE p FROM 'SELECT salary FROM salaries'", true},
		{"SELECT 1; SELECT salary FROM salaries", true},
		{"SELECT 1 /*!50000 , salary */ FROM salaries", true},
		{"DELETE FROM orders", true},
		{"TRUNCATE orders", true},
		{"DELETE o FROM orders o JOIN customers c ON o.cid = c.id", true},
		{"DELETE c FROM orders o JOIN customers c ON o.cid = c.id", false},
		{"DELETE FROM customers", false},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			sts, err := mysql.Classify(tt.sql)
			if err != nil {
				t.Fatal(err)
			}
			blocked := false
			var reasons []string
			for _, st := range sts {
				d := set.Evaluate(policy.Subject{User: "alice"}, policy.Qualify(st, "app"), false)
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
		sts, err := mysql.Classify(sql)
		if err != nil || len(sts) != 1 {
			t.Fatalf("Classify(%q) = %v, %v", sql, sts, err)
		}
		return p.Resolve(sts[0])
	}
	if st := classify("EXECUTE nope"); st.Kind != policy.KindExecute {
		t.Errorf("unknown EXECUTE resolved to %+v", st)
	}
	if st := classify("PREPARE v FROM @text"); st.Kind != policy.KindUnsupported || st.Prepare != "" {
		t.Errorf("PREPARE from a variable classified as %+v", st)
	}
	prep := classify("PREPARE q FROM 'SELECT salary FROM salaries WHERE id = ?'")
	if prep.Kind != "select" || prep.Prepare != "q" {
		t.Errorf("PREPARE classified as %+v", prep)
	}
	got := classify("EXECUTE q USING @id")
	want := policy.Statement{
		Kind:        "select",
		Objects:     []policy.Object{{Table: "salaries", Columns: []string{"salary", "id"}, Access: "read"}},
		Fingerprint: prep.Fingerprint,
		Text:        "EXECUTE q USING @id",
		Execute:     "q",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EXECUTE (-want +got):\n%s", diff)
	}
}

func TestCache(t *testing.T) {
	c := mysql.NewCache()
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
	small := policy.Cache{Classifier: mysql.Classify, MaxBytes: 4000}
	for i := 0; i < 100; i++ {
		if _, err := small.Classify("SELECT " + strings.Repeat("x,", i) + "1 FROM t"); err != nil {
			t.Fatal(err)
		}
	}
	if n := small.Len(); n == 0 || n >= 100 {
		t.Errorf("bounded cache holds %d entries", n)
	}
	long := policy.Cache{Classifier: mysql.Classify, MaxText: 10}
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
		sts, err := mysql.Classify(sql)
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
	const q = "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = ? ORDER BY o.created_at DESC LIMIT 50"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mysql.Classify(q); err != nil {
			b.Fatal(err)
		}
	}
}
