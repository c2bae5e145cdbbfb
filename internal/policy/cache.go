package policy

import (
	"container/list"
	"slices"
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
// With Shape set, texts that differ only in literal values and comments share one entry: clients
// that inline values (the simple query protocol, pgbench -M simple, many ORMs, trace comments) send
// a new text for every execution and would otherwise be parsed every time. A text missing from the
// cache is looked up by its shape key; on a hit Classify returns the cached classification with
// Text set to the text itself (a new one-element slice). A miss is kept by its text as before, and
// also by its shape key if the classification is shapeable: one SELECT, INSERT, UPDATE or DELETE
// that calls no function, is supported, is not PREPARE or EXECUTE and does not change the default
// schema. So each shape costs one parse and one entry by text, its first, and later texts of the
// shape add nothing. Texts without literals or comments, whose key is the text itself, are kept by
// text only.
//
// The returned slices and the Statements in them are shared between callers and must not be
// modified; Qualify copies when it needs to change one.
type Cache struct {
	// Classifier parses one text into its statements (for example sqlparse/postgres.Classify).
	Classifier func(sql string) ([]Statement, error)
	// Shape, if set, appends to dst the shape key of sql and reports whether it has one (for
	// example sqlparse/postgres.Shape). Texts with the same key must get the same classification
	// from Classifier, apart from Statement.Text, whenever that classification is shapeable (see
	// above); a Shape that is not sure of a text returns false.
	Shape func(dst []byte, sql string) ([]byte, bool)
	// MaxBytes bounds the approximate memory of the cache; 0 means DefaultCacheBytes.
	MaxBytes int
	// MaxText is the longest text kept; 0 means DefaultMaxText. Generated bulk statements are long
	// and rarely repeat.
	MaxText int

	keys sync.Pool // *[]byte: buffers for shape keys

	mu     sync.Mutex
	ll     *list.List               // front: most recently used
	m      map[string]*list.Element // by text
	shapes map[string]*list.Element // by shape key
	bytes  int
}

type cacheEntry struct {
	key   string // text, or shape key
	shape bool
	sts   []Statement // by shape: one Statement, without Text
	cost  int
}

// maxKeyBuf is the largest shape key buffer kept for reuse.
const maxKeyBuf = 4 << 10

// Classify returns c.Classifier(sql), from the cache when it can. The result is shared: read it,
// do not modify it.
func (c *Cache) Classify(sql string) ([]Statement, error) { return c.ClassifyInto(nil, sql) }

// ClassifyInto is Classify that may build its result in dst's array instead of a new one (a
// statement found by its shape, which gets its own text): a caller that classifies statement after
// statement with the same small array allocates nothing for them. The result is valid until dst is
// passed again.
func (c *Cache) ClassifyInto(dst []Statement, sql string) ([]Statement, error) {
	c.mu.Lock()
	if el, ok := c.m[sql]; ok {
		c.ll.MoveToFront(el)
		sts := el.Value.(*cacheEntry).sts
		c.mu.Unlock()
		return sts, nil
	}
	c.mu.Unlock()

	maxText := c.MaxText
	if maxText == 0 {
		maxText = DefaultMaxText
	}
	if len(sql) > maxText {
		return c.Classifier(sql)
	}
	if c.Shape == nil {
		return c.classify(dst, sql, nil)
	}
	buf, _ := c.keys.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	// A key is never longer than its text (a literal or comment becomes one byte).
	b, ok := c.Shape(slices.Grow((*buf)[:0], len(sql)), sql)
	key := b
	if !ok || string(key) == sql {
		key = nil // nothing to share: keep it by its text, and return it without a copy
	}
	sts, err := c.classify(dst, sql, key)
	if cap(b) <= maxKeyBuf {
		*buf = b[:0]
		c.keys.Put(buf)
	}
	return sts, err
}

// classify looks sql up by its shape key, if it has one, and classifies it on a miss.
func (c *Cache) classify(dst []Statement, sql string, key []byte) ([]Statement, error) {
	if key != nil {
		c.mu.Lock()
		if el, ok := c.shapes[string(key)]; ok {
			c.ll.MoveToFront(el)
			st := el.Value.(*cacheEntry).sts[0]
			c.mu.Unlock()
			st.Text = sql
			return append(dst[:0], st), nil
		}
		c.mu.Unlock()
	}
	sts, err := c.Classifier(sql)
	if err != nil {
		return nil, err
	}
	if key != nil && Shapeable(sts) {
		st := sts[0]
		st.Text = "" // each hit sets its own
		c.add(string(key), true, []Statement{st})
	}
	// By text too, shapeable or not. For a shape this keeps only its first text, so that a text
	// sent again and again as it is (a prepared statement with a constant in it) keeps its
	// allocation-free hit, while texts that differ in their values do not fill the cache.
	c.add(sql, false, sts)
	return sts, nil
}

// Shapeable reports whether a classification may be shared by every text of one shape: nothing
// in it may depend on the value of a literal. Functions are excluded because a literal argument
// can matter (set_config('search_path', ...), and other functions may take names as text).
func Shapeable(sts []Statement) bool {
	if len(sts) != 1 {
		return false
	}
	st := &sts[0]
	switch st.Kind {
	case KindSelect, KindInsert, KindUpdate, KindDelete:
	default:
		return false
	}
	return len(st.Functions) == 0 && !st.Unsupported && st.Prepare == "" && st.Execute == "" &&
		!st.ChangesDefaultSchema
}

// Len returns the number of entries: texts and shapes.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m) + len(c.shapes)
}

func (c *Cache) add(key string, shape bool, sts []Statement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ll == nil {
		c.m = map[string]*list.Element{}
		c.shapes = map[string]*list.Element{}
		c.ll = list.New()
	}
	m := c.m
	if shape {
		m = c.shapes
	}
	if _, ok := m[key]; ok {
		return // another caller got there first
	}
	e := &cacheEntry{key: key, shape: shape, sts: sts, cost: cost(key, sts)}
	m[key] = c.ll.PushFront(e)
	c.bytes += e.cost
	limit := c.MaxBytes
	if limit == 0 {
		limit = DefaultCacheBytes
	}
	for c.bytes > limit && c.ll.Len() > 1 {
		old := c.ll.Remove(c.ll.Back()).(*cacheEntry)
		if old.shape {
			delete(c.shapes, old.key)
		} else {
			delete(c.m, old.key)
		}
		c.bytes -= old.cost
	}
}

// cost estimates the memory an entry holds; key is its text or shape key.
func cost(key string, sts []Statement) int {
	n := 2*len(key) + 128
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
