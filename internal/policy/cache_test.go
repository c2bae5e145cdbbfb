package policy

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// toy is a classifier for a toy language, counting its calls: "<kind> <table> <n>..." is one
// statement of that kind on that table, "fn ..." calls a function, "a; b" is two statements.
type toy struct{ calls atomic.Int64 }

func (y *toy) classify(sql string) ([]Statement, error) {
	y.calls.Add(1)
	if strings.HasPrefix(sql, "error") {
		return nil, fmt.Errorf("parser broke")
	}
	var out []Statement
	for _, part := range strings.Split(sql, ";") {
		f := strings.Fields(part)
		st := Statement{Kind: KindSelect, Fingerprint: "fp-" + f[0], Text: sql}
		switch f[0] {
		case "select", "insert", "update", "delete", "merge", "copy", "ddl", "function":
			st.Kind = f[0]
		case "fn":
			st.Functions = []string{"f"}
		case "bad":
			st.Kind, st.Unsupported = KindUnsupported, true
		case "prepare":
			st.Prepare = "p"
		case "execute":
			st.Kind, st.Execute = KindExecute, "p"
		case "setpath":
			st.ChangesDefaultSchema = true
		}
		if len(f) > 1 {
			st.Objects = []Object{{Schema: "s", Table: f[1], Columns: []string{"c"}, Access: Read}}
		}
		out = append(out, st)
	}
	if len(out) > 1 {
		for i := range out {
			out[i].Text = strings.TrimSpace(strings.Split(sql, ";")[i])
		}
	}
	return out, nil
}

// toyShape replaces each number (a run of digits after a space) with '#'; it has no shape for
// texts with a '!'.
func toyShape(dst []byte, sql string) ([]byte, bool) {
	if strings.Contains(sql, "!") {
		return dst, false
	}
	for i := 0; i < len(sql); i++ {
		if isDigit(sql[i]) && i > 0 && sql[i-1] == ' ' {
			dst = append(dst, '#')
			for i+1 < len(sql) && isDigit(sql[i+1]) {
				i++
			}
			continue
		}
		dst = append(dst, sql[i])
	}
	return dst, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func newToyCache() (*Cache, *toy) {
	y := &toy{}
	return &Cache{Classifier: y.classify, Shape: toyShape}, y
}

func TestCacheShapeHit(t *testing.T) {
	c, y := newToyCache()
	first, err := c.Classify("select t 1")
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Text != "select t 1" {
		t.Errorf("miss: Text = %q", first[0].Text)
	}
	for _, sql := range []string{"select t 22", "select t 1", "select t 333"} {
		got, err := c.Classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := (&toy{}).classify(sql)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Classify(%q) (-want +got):\n%s", sql, diff)
		}
	}
	if n := y.calls.Load(); n != 1 {
		t.Errorf("classifier called %d times, want 1", n)
	}
	if first[0].Text != "select t 1" {
		t.Errorf("a later hit changed an earlier result: Text = %q", first[0].Text)
	}
	if len(c.m) != 1 || len(c.shapes) != 1 || c.Len() != 2 {
		t.Errorf("%d texts, %d shapes, Len %d; want 1, 1, 2 (the first text and its shape)", len(c.m), len(c.shapes), c.Len())
	}
	if again, _ := c.Classify("select t 1"); &again[0] != &first[0] {
		t.Error("the first text of a shape is not returned from the cache as it is")
	}
	if _, err := c.Classify("select t 4 5"); err != nil {
		t.Fatal(err)
	}
	if n := y.calls.Load(); n != 2 {
		t.Errorf("another shape: classifier called %d times, want 2", n)
	}
}

func TestCacheShapeIneligible(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"function", "fn t 1", "fn t 2"},
		{"unsupported", "bad t 1", "bad t 2"},
		{"prepare", "prepare t 1", "prepare t 2"},
		{"execute", "execute t 1", "execute t 2"},
		{"default schema", "setpath t 1", "setpath t 2"},
		{"merge", "merge t 1", "merge t 2"},
		{"copy", "copy t 1", "copy t 2"},
		{"ddl", "ddl t 1", "ddl t 2"},
		{"function kind", "function t 1", "function t 2"},
		{"several statements", "select t 1; select u 1", "select t 2; select u 2"},
		{"no shape", "select t 1!", "select t 2!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, y := newToyCache()
			for _, sql := range []string{tt.a, tt.b, tt.a, tt.b} {
				got, err := c.Classify(sql)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := (&toy{}).classify(sql)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Classify(%q) (-want +got):\n%s", sql, diff)
				}
			}
			if n := y.calls.Load(); n != 2 {
				t.Errorf("classifier called %d times, want 2 (once per text)", n)
			}
			if len(c.shapes) != 0 || len(c.m) != 2 {
				t.Errorf("%d texts and %d shapes cached, want 2 and 0", len(c.m), len(c.shapes))
			}
		})
	}
}

func TestCacheShapeWithoutLiterals(t *testing.T) {
	c, y := newToyCache()
	a, _ := c.Classify("select t")
	b, _ := c.Classify("select t")
	if &a[0] != &b[0] {
		t.Error("a text that is its own shape key was not returned from the cache as is")
	}
	if len(c.m) != 1 || len(c.shapes) != 0 || y.calls.Load() != 1 {
		t.Errorf("%d texts, %d shapes, %d calls; want 1, 0, 1", len(c.m), len(c.shapes), y.calls.Load())
	}
}

func TestCacheErrorNotCached(t *testing.T) {
	c, y := newToyCache()
	for range 2 {
		if _, err := c.Classify("error 1"); err == nil {
			t.Fatal("no error")
		}
	}
	if c.Len() != 0 || y.calls.Load() != 2 {
		t.Errorf("Len %d, calls %d; want 0, 2", c.Len(), y.calls.Load())
	}
}

func TestCacheShapeMaxText(t *testing.T) {
	y := &toy{}
	c := &Cache{Classifier: y.classify, Shape: toyShape, MaxText: 12}
	c.Classify("select table 1")
	c.Classify("select table 2")
	if c.Len() != 0 || y.calls.Load() != 2 {
		t.Errorf("Len %d, calls %d; want 0, 2", c.Len(), y.calls.Load())
	}
}

// checkAccounting checks the invariants between the list, the two maps and the byte count.
func checkAccounting(t *testing.T, c *Cache, limit int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ll.Len() != len(c.m)+len(c.shapes) {
		t.Errorf("list holds %d entries, maps %d + %d", c.ll.Len(), len(c.m), len(c.shapes))
	}
	sum := 0
	for el := c.ll.Front(); el != nil; el = el.Next() {
		e := el.Value.(*cacheEntry)
		m := c.m
		if e.shape {
			m = c.shapes
		}
		if m[e.key] != el {
			t.Errorf("entry %q (shape %v) is not in its map", e.key, e.shape)
		}
		if e.cost != cost(e.key, e.sts) {
			t.Errorf("entry %q: cost %d, want %d", e.key, e.cost, cost(e.key, e.sts))
		}
		sum += e.cost
	}
	if sum != c.bytes {
		t.Errorf("bytes = %d, entries cost %d", c.bytes, sum)
	}
	if c.ll.Len() > 1 && c.bytes > limit {
		t.Errorf("bytes = %d over the limit %d", c.bytes, limit)
	}
}

func TestCacheShapeEviction(t *testing.T) {
	y := &toy{}
	const limit = 3000
	c := &Cache{Classifier: y.classify, Shape: toyShape, MaxBytes: limit}
	for i := range 200 {
		var sql string
		switch i % 3 {
		case 0:
			sql = fmt.Sprintf("select t%s %d", strings.Repeat("x", i%17), i) // a new shape now and then
		case 1:
			sql = fmt.Sprintf("fn t%d %d", i%5, i) // by text
		default:
			sql = fmt.Sprintf("select t%d", i%7) // its own key
		}
		if _, err := c.Classify(sql); err != nil {
			t.Fatal(err)
		}
		checkAccounting(t, c, limit)
	}
	if len(c.m) == 0 || len(c.shapes) == 0 {
		t.Errorf("%d texts and %d shapes left; want some of each", len(c.m), len(c.shapes))
	}
	// A shape that was evicted is classified again, and cached again.
	before := y.calls.Load()
	c.Classify("select tx 1")
	for range 50 {
		c.Classify(fmt.Sprintf("fn evict%d 1!", y.calls.Load()))
	}
	c.Classify("select tx 2")
	if y.calls.Load() != before+52 {
		t.Errorf("calls = %d, want %d: the shape should have been evicted", y.calls.Load(), before+52)
	}
	checkAccounting(t, c, limit)
}

func TestCacheExactHitAllocations(t *testing.T) {
	c, _ := newToyCache()
	c.Classify("select t")
	if n := testing.AllocsPerRun(100, func() { c.Classify("select t") }); n != 0 {
		t.Errorf("exact hit: %v allocations, want 0", n)
	}
}

// The allocations of a hit by shape are checked in internal/sqlparse/postgres, where the race
// detector (which makes sync.Pool drop buffers) can be told apart.

func TestCacheShapeConcurrent(t *testing.T) {
	y := &toy{}
	c := &Cache{Classifier: y.classify, Shape: toyShape, MaxBytes: 4000}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				var sql string
				switch i % 4 {
				case 0:
					sql = fmt.Sprintf("select t%d %d", i%11, g*1000+i)
				case 1:
					sql = fmt.Sprintf("fn t %d", i%13)
				case 2:
					sql = fmt.Sprintf("update t%d", i%5)
				default:
					sql = fmt.Sprintf("select t %d; delete u %d", i, g)
				}
				got, err := c.Classify(sql)
				if err != nil {
					t.Error(err)
					return
				}
				want, _ := (&toy{}).classify(sql)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Classify(%q) (-want +got):\n%s", sql, diff)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkAccounting(t, c, 4000)
}
