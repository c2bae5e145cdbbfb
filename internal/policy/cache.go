package policy

import (
	"container/list"
	"sync"
)

// Cache defaults.
const (
	DefaultCacheBytes = 32 << 20 // 32 MiB of statement text and classifications
	DefaultMaxText    = 64 << 10 // longer texts are classified every time, not kept
)

// Cache classifies statements with a dialect's classifier, remembering the result per distinct
// text (least recently used entries go first), so that the hot path parses each distinct statement
// once. Classifier is required; the other zero values are the defaults. It is safe for concurrent
// use. The dialect packages (internal/sqlparse/...) return one ready to use from NewCache.
//
// The returned slices and the Statements in them are shared between callers and must not be
// modified; Qualify copies when it needs to change one.
type Cache struct {
	// Classifier parses one text into its statements (for example sqlparse/postgres.Classify).
	Classifier func(sql string) ([]Statement, error)
	// MaxBytes bounds the approximate memory of the cache; 0 means DefaultCacheBytes.
	MaxBytes int
	// MaxText is the longest text kept; 0 means DefaultMaxText. Generated bulk statements are long
	// and rarely repeat.
	MaxText int

	mu    sync.Mutex
	ll    *list.List // front: most recently used
	m     map[string]*list.Element
	bytes int
}

type cacheEntry struct {
	text string
	sts  []Statement
	cost int
}

// Classify returns c.Classifier(sql), from the cache when it can.
func (c *Cache) Classify(sql string) ([]Statement, error) {
	c.mu.Lock()
	if el, ok := c.m[sql]; ok {
		c.ll.MoveToFront(el)
		sts := el.Value.(*cacheEntry).sts
		c.mu.Unlock()
		return sts, nil
	}
	c.mu.Unlock()

	sts, err := c.Classifier(sql)
	if err != nil {
		return nil, err
	}
	maxText := c.MaxText
	if maxText == 0 {
		maxText = DefaultMaxText
	}
	if len(sql) > maxText {
		return sts, nil
	}
	c.add(sql, sts)
	return sts, nil
}

// Len returns the number of texts cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *Cache) add(sql string, sts []Statement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*list.Element{}
		c.ll = list.New()
	}
	if _, ok := c.m[sql]; ok {
		return // another caller got there first
	}
	e := &cacheEntry{text: sql, sts: sts, cost: cost(sql, sts)}
	c.m[sql] = c.ll.PushFront(e)
	c.bytes += e.cost
	limit := c.MaxBytes
	if limit == 0 {
		limit = DefaultCacheBytes
	}
	for c.bytes > limit && c.ll.Len() > 1 {
		old := c.ll.Remove(c.ll.Back()).(*cacheEntry)
		delete(c.m, old.text)
		c.bytes -= old.cost
	}
}

// cost estimates the memory an entry holds.
func cost(sql string, sts []Statement) int {
	n := 2*len(sql) + 128
	for _, st := range sts {
		n += 200 + len(st.Fingerprint)
		if len(sts) > 1 {
			n += len(st.Text)
		}
		for _, o := range st.Objects {
			n += 80 + len(o.Schema) + len(o.Table)
			for _, col := range o.Columns {
				n += 16 + len(col)
			}
		}
		for _, f := range st.Functions {
			n += 16 + len(f)
		}
	}
	return n
}

// Prepared tracks the statements a session prepares with SQL PREPARE (PostgreSQL) or PREPARE ...
// FROM (MySQL), so that an EXECUTE is evaluated and recorded as the statement it runs. Use one per
// session; it is not safe for concurrent use. (Protocol-level prepared statements — PostgreSQL's
// Parse/Bind/Execute, MySQL's COM_STMT_PREPARE/EXECUTE — need no help: the engines keep the text
// of each statement by name or id.)
type Prepared struct {
	m map[string]Statement
}

// Resolve passes each classified statement of a session through in order. It remembers PREPAREs and
// returns them unchanged; for EXECUTE name it returns the prepared statement's classification
// (with Execute, Text and any objects read by the parameters of the EXECUTE itself); an EXECUTE of
// a name it never saw prepared comes back unchanged, and policy evaluation treats it as
// unsupported.
func (p *Prepared) Resolve(st Statement) Statement {
	switch {
	case st.Prepare != "":
		if p.m == nil {
			p.m = map[string]Statement{}
		}
		p.m[st.Prepare] = st
		return st
	case st.Kind == KindExecute:
		prep, ok := p.m[st.Execute]
		if !ok {
			return st
		}
		out := prep
		out.Prepare = ""
		out.Execute = st.Execute
		out.Text = st.Text
		if len(st.Objects) > 0 {
			out.Objects = append(append([]Object(nil), prep.Objects...), st.Objects...)
		}
		if len(st.Functions) > 0 {
			out.Functions = append(append([]string(nil), prep.Functions...), st.Functions...)
		}
		return out
	}
	return st
}
