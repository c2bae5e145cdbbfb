package postgres_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/gatehousedb/gatehouse/internal/sqlparse/postgres"
	"github.com/google/go-cmp/cmp"
)

// countingCache is NewCache with a count of the texts actually parsed.
func countingCache() (*policy.Cache, *atomic.Int64) {
	var n atomic.Int64
	c := postgres.NewCache()
	c.Classifier = func(sql string) ([]policy.Statement, error) {
		n.Add(1)
		return postgres.Classify(sql)
	}
	return c, &n
}

func TestCacheShape(t *testing.T) {
	set, err := policy.Compile([]gatehouse.AccessPolicy{{
		Name: "hr", Repository: "hr", Mode: "enforce",
		Rules: []gatehouse.AccessRule{
			{Effect: "allow", Objects: []string{"public.*"}, Operations: []string{"select", "update"}},
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
		{"pgbench select", []string{
			"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
			"SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
			"SELECT abalance FROM pgbench_accounts WHERE aid = 99999999999;",
		}, 1},
		{"pgbench update", []string{
			"UPDATE pgbench_accounts SET abalance = abalance + -2765 WHERE aid = 48213;",
			"UPDATE pgbench_accounts SET abalance = abalance + -12 WHERE aid = 1;",
		}, 1},
		{"pgbench insert", []string{
			"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -2765, CURRENT_TIMESTAMP);",
			"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 5, -100, CURRENT_TIMESTAMP);",
		}, 1},
		{"strings and trace comments", []string{
			"/* traceparent='00-4bf92f3577b34da6-01' */ SELECT salary FROM salaries WHERE name = 'ann' AND id > 3",
			"/* traceparent='00-a3ce929d0e0e4736-01' */ SELECT salary FROM salaries WHERE name = 'bo''b' AND id > 1.5",
		}, 1},
		{"delete", []string{"DELETE FROM orders WHERE id = 1 -- retry 1", "DELETE FROM orders WHERE id = 2 -- retry 2"}, 1},
		{"set_config", []string{
			"SELECT set_config('search_path', 'x', false)",
			"SELECT set_config('search_path', 'y', false)",
		}, 2},
		{"set search_path", []string{"SET search_path = 'a'", "SET search_path = 'b'"}, 2},
		{"copy", []string{"COPY t FROM '/f'", "COPY t FROM '/g'"}, 2},
		{"several statements", []string{"SELECT 1; SELECT * FROM salaries WHERE id = 2", "SELECT 3; SELECT * FROM salaries WHERE id = 4"}, 2},
		{"functions", []string{"SELECT lower(name) FROM t WHERE id = 1", "SELECT lower(name) FROM t WHERE id = 2"}, 2},
		{"prepare", []string{"PREPARE p AS SELECT * FROM t WHERE id = 1", "PREPARE p AS SELECT * FROM t WHERE id = 2"}, 2},
		{"execute", []string{"EXECUTE p(1)", "EXECUTE p(2)"}, 2},
		{"merge", []string{
			"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET v = 1",
			"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET v = 2",
		}, 2},
		{"unsupported", []string{"SELECT FROM WHERE 1", "SELECT FROM WHERE 2"}, 2},
		{"no shape", []string{"SELECT E'a' FROM t", "SELECT E'b' FROM t"}, 2},
		{"fetch", []string{"FETCH 5 FROM c", "FETCH 6 FROM c"}, 2},
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
					want, err := postgres.Classify(sql)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("Classify(%q) from the cache (-want +got):\n%s", sql, diff)
					}
					for i := range want {
						sub := policy.Subject{User: "ann"}
						wd := set.Evaluate(sub, policy.Qualify(want[i], "public"), false)
						gd := set.Evaluate(sub, policy.Qualify(got[i], "public"), false)
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
	c := postgres.NewCache()
	c.Classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1;")
	c.Classify("SELECT * FROM pgbench_accounts")
	aid := 0
	texts := []string{"SELECT abalance FROM pgbench_accounts WHERE aid = 2;", "SELECT abalance FROM pgbench_accounts WHERE aid = 3;"}
	if n := testing.AllocsPerRun(100, func() { aid++; c.Classify(texts[aid%2]) }); n > want {
		t.Errorf("hit by shape: %v allocations, want %v (the returned slice)", n, want)
	}
	// With an array of the caller's, which the sidecar keeps per session, there is none.
	var dst [1]policy.Statement
	if n := testing.AllocsPerRun(100, func() {
		aid++
		sts, err := c.ClassifyInto(dst[:], texts[aid%2])
		if err != nil || len(sts) != 1 || &sts[0] != &dst[0] || sts[0].Text != texts[aid%2] {
			t.Fatalf("ClassifyInto: %+v, %v; want the statement with its own text, in dst", sts, err)
		}
	}); n > want-1 {
		t.Errorf("hit by shape into an array of the caller's: %v allocations, want %v", n, want-1)
	}
	if n := testing.AllocsPerRun(100, func() { c.Classify("SELECT * FROM pgbench_accounts") }); n != 0 {
		t.Errorf("hit by text: %v allocations, want 0", n)
	}
}

// BenchmarkCacheSimpleLiterals classifies pgbench -M simple's SELECT with a new account number
// each time: by text every one is a miss, by shape every one after the first a hit.
func BenchmarkCacheSimpleLiterals(b *testing.B) {
	texts := make([]string, 1<<17)
	for i := range texts {
		texts[i] = fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", (i*7919)%100000+1)
	}
	for _, bc := range []struct {
		name  string
		cache *policy.Cache
	}{
		{"text", &policy.Cache{Classifier: postgres.Classify}},
		{"shape", postgres.NewCache()},
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
	texts := make([]string, 1<<17)
	for i := range texts {
		texts[i] = fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", (i*7919)%100000+1)
	}
	c := postgres.NewCache()
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
