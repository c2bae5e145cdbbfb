package mysql_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/gatehousedb/gatehouse/internal/sqlparse/mysql"
	"github.com/google/go-cmp/cmp"
)

// countingCache is NewCache with a count of the texts actually parsed.
func countingCache() (*policy.Cache, *atomic.Int64) {
	var n atomic.Int64
	c := mysql.NewCache()
	c.Classifier = func(sql string) ([]policy.Statement, error) {
		n.Add(1)
		return mysql.Classify(sql)
	}
	return c, &n
}

func TestCacheShape(t *testing.T) {
	set, err := policy.Compile([]gatehouse.AccessPolicy{{
		Name: "hr", Repository: "hr", Mode: "enforce",
		Rules: []gatehouse.AccessRule{
			{Effect: "allow", Objects: []string{"app.*"}, Operations: []string{"select", "update"}},
			{Effect: "deny", Objects: []string{"*.salaries.salary"}, Operations: []string{"select"}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		texts  []string
		parsed int // texts parsed: 1 when all share one cache entry
	}{
		{"sysbench point select", []string{
			"SELECT c FROM sbtest1 WHERE id=48213",
			"SELECT c FROM sbtest1 WHERE id=7",
			"SELECT c FROM sbtest1 WHERE id=99999999999",
		}, 1},
		{"sysbench update", []string{
			"UPDATE sbtest1 SET c='0474-8461' WHERE id=5",
			"UPDATE sbtest1 SET c='it''s' WHERE id=48213",
		}, 1},
		{"sysbench insert", []string{
			"INSERT INTO sbtest1 (id, k, c, pad) VALUES (48213, 4, '8461-0474', '3371-0064')",
			"INSERT INTO sbtest1 (id, k, c, pad) VALUES (5, 12, '', 'x')",
		}, 1},
		{"strings and trace comments", []string{
			"/* traceparent='00-4bf92f3577b34da6-01' */ SELECT salary FROM salaries WHERE name = 'ann' AND id > 3",
			"/* traceparent='00-a3ce929d0e0e4736-01' */ SELECT salary FROM salaries WHERE name = 'bo''b' AND id > 1",
		}, 1},
		{"pagination", []string{
			"SELECT * FROM orders WHERE status = 'open' ORDER BY id LIMIT 20 OFFSET 0",
			"SELECT * FROM orders WHERE status = 'done' ORDER BY id LIMIT 20 OFFSET 40",
		}, 1},
		{"delete", []string{"DELETE FROM orders WHERE id = 1 -- retry 1", "DELETE FROM orders WHERE id = 2 # retry 2"}, 1},
		{"integer and decimal", []string{"SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a = 1.5"}, 2},
		{"limit decimal", []string{"SELECT * FROM t LIMIT 1", "SELECT * FROM t LIMIT 1.5"}, 2},
		{"order by position", []string{"SELECT a, b FROM t ORDER BY 1", "SELECT a, b FROM t ORDER BY 2"}, 2},
		{"escape", []string{"SELECT * FROM t WHERE a LIKE 'x' ESCAPE '!'", "SELECT * FROM t WHERE a LIKE 'x' ESCAPE '!!'"}, 2},
		{"collate", []string{"SELECT a COLLATE 'utf8mb4_bin' FROM t", "SELECT a COLLATE 'nope' FROM t"}, 2},
		{"cast length", []string{"SELECT CAST(a AS CHAR(3)) FROM t", "SELECT CAST(a AS CHAR(4)) FROM t"}, 2},
		{"set", []string{"SET @a = 1", "SET @a = 2"}, 2},
		{"several statements", []string{"SELECT 1; SELECT * FROM salaries WHERE id = 2", "SELECT 3; SELECT * FROM salaries WHERE id = 4"}, 2},
		{"functions", []string{"SELECT lower(name) FROM t WHERE id = 1", "SELECT lower(name) FROM t WHERE id = 2"}, 2},
		{"prepare", []string{"PREPARE p FROM 'SELECT * FROM t WHERE id = 1'", "PREPARE p FROM 'SELECT * FROM t WHERE id = 2'"}, 2},
		{"explain", []string{"EXPLAIN SELECT * FROM t WHERE id = 1", "EXPLAIN SELECT * FROM t WHERE id = 2"}, 2},
		{"outfile", []string{"SELECT * FROM t INTO OUTFILE '/tmp/a'", "SELECT * FROM t INTO OUTFILE '/tmp/b'"}, 2},
		{"unsupported", []string{"SELECT FROM WHERE 1", "SELECT FROM WHERE 2"}, 2},
		{"no shape", []string{`SELECT "a" FROM t`, `SELECT "b" FROM t`}, 2},
		{"backslash", []string{`SELECT 'a\'' FROM t`, `SELECT 'b\'' FROM t`}, 2},
		{"executable comment", []string{"SELECT /*!50000 1 */ FROM t", "SELECT /*!50000 2 */ FROM t"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, parsed := countingCache()
			for round := 0; round < 2; round++ {
				for _, sql := range tt.texts {
					got, err := c.Classify(sql)
					if err != nil {
						t.Fatal(err)
					}
					want, err := mysql.Classify(sql)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("Classify(%q) from the cache (-want +got):\n%s", sql, diff)
					}
					for i := range want {
						sub := policy.Subject{User: "ann"}
						wd := set.Evaluate(sub, policy.Qualify(want[i], "app"), false)
						gd := set.Evaluate(sub, policy.Qualify(got[i], "app"), false)
						if wd != gd {
							t.Errorf("Evaluate(%q): %+v from the cache, %+v parsed", sql, gd, wd)
						}
					}
				}
			}
			if n := int(parsed.Load()); n != tt.parsed {
				t.Errorf("parsed %d texts, want %d", n, tt.parsed)
			}
		})
	}
}

func TestCacheShapeAllocations(t *testing.T) {
	// Under the race detector sync.Pool drops a quarter of the buffers put back, at random: each
	// costs a new buffer and its growth.
	want := 1.0
	if raceEnabled {
		want = 3
	}
	c := mysql.NewCache()
	c.Classify("SELECT c FROM sbtest1 WHERE id=1")
	c.Classify("SELECT * FROM sbtest1")
	id := 0
	texts := []string{"SELECT c FROM sbtest1 WHERE id=2", "SELECT c FROM sbtest1 WHERE id=3"}
	if n := testing.AllocsPerRun(100, func() { id++; c.Classify(texts[id%2]) }); n > want {
		t.Errorf("hit by shape: %v allocations, want %v (the returned slice)", n, want)
	}
	if n := testing.AllocsPerRun(100, func() { c.Classify("SELECT * FROM sbtest1") }); n != 0 {
		t.Errorf("hit by text: %v allocations, want 0", n)
	}
}

// sysbenchTexts are sysbench's point select with a new id each time, as a client that inlines
// values sends it.
func sysbenchTexts() []string {
	texts := make([]string, 1<<17)
	for i := range texts {
		texts[i] = fmt.Sprintf("SELECT c FROM sbtest1 WHERE id=%d", (i*7919)%100000+1)
	}
	return texts
}

// BenchmarkCacheSimpleLiterals classifies sysbench's point select with a new id each time: by
// text every one is a miss, by shape every one after the first a hit.
func BenchmarkCacheSimpleLiterals(b *testing.B) {
	texts := sysbenchTexts()
	for _, bc := range []struct {
		name  string
		cache *policy.Cache
	}{
		{"text", &policy.Cache{Classifier: mysql.Classify}},
		{"shape", mysql.NewCache()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := bc.cache.Classify(texts[i%len(texts)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkCacheSimpleLiteralsParallel(b *testing.B) {
	texts := sysbenchTexts()
	c := mysql.NewCache()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if _, err := c.Classify(texts[int(i)%len(texts)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
