package policy

import (
	"fmt"
	"strings"

	"github.com/gatehousedb/gatehouse"
)

// Statement kinds. They are the operations of gatehouse.AccessRule plus KindExecute.
const (
	KindSelect      = gatehouse.OpSelect
	KindInsert      = gatehouse.OpInsert
	KindUpdate      = gatehouse.OpUpdate
	KindDelete      = gatehouse.OpDelete
	KindMerge       = gatehouse.OpMerge
	KindCopy        = gatehouse.OpCopy
	KindDDL         = gatehouse.OpDDL
	KindDCL         = gatehouse.OpDCL
	KindTransaction = gatehouse.OpTransaction
	KindUtility     = gatehouse.OpUtility
	KindFunction    = gatehouse.OpFunction
	KindUnsupported = gatehouse.OpUnsupported
	// KindExecute is EXECUTE of a named prepared statement. The engine evaluates the prepared
	// statement's classification instead; one that reaches Evaluate is treated as unsupported.
	KindExecute = "execute"
)

// Object access.
const (
	Read  = "read"
	Write = "write"
)

// Statement is one classified statement, the same for every SQL dialect. Classifiers share
// Statements between callers (they are cached): treat them as immutable.
type Statement struct {
	Kind    string   `json:"kind"`
	Objects []Object `json:"objects,omitempty"`
	// Functions are the functions and procedures called, as written ("lower", "pg_catalog.now").
	Functions   []string `json:"functions,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	// Text is this statement's text when the input held several; the whole input otherwise.
	Text string `json:"text,omitempty"`
	// Prepare is set for PREPARE name AS ...: the name, while Kind and Objects describe the inner
	// statement.
	Prepare string `json:"prepare,omitempty"`
	// Execute is set for EXECUTE name: the prepared statement's name.
	Execute     string `json:"execute,omitempty"`
	Unsupported bool   `json:"unsupported,omitempty"`
	// ChangesDefaultSchema is set when the statement may change how unqualified names resolve
	// (PostgreSQL SET/RESET search_path, set_config, DISCARD ALL, DO, CALL; MySQL USE): the engine
	// refreshes the schema it passes to Qualify after running it.
	ChangesDefaultSchema bool `json:"changes_default_schema,omitempty"`
}

// Object is a table (or view, sequence, ...) a statement reads or writes. Columns lists the columns
// named or implied: "*" for all of them, none when the object is touched as a whole (see the package
// documentation). Schema is empty for names written without one. Table "*" stands for every table
// of the schema (DROP SCHEMA ... CASCADE).
type Object struct {
	Schema  string   `json:"schema,omitempty"`
	Table   string   `json:"table"`
	Columns []string `json:"columns,omitempty"`
	Access  string   `json:"access"` // Read or Write
	// Op is the operation applied to a written object when it differs from the statement's kind,
	// as in WITH d AS (DELETE FROM t RETURNING *) SELECT ...; empty otherwise.
	Op string `json:"op,omitempty"`
}

// String returns "schema.table" or "table".
func (o Object) String() string {
	if o.Schema == "" {
		return o.Table
	}
	return o.Schema + "." + o.Table
}

// ObjectNames lists what st touches as activity records name it: "schema.table" for an object
// touched as a whole, "schema.table.column" for each column, without duplicates, in order.
func (st Statement) ObjectNames() []string {
	var out []string
	add := func(name string) {
		for _, have := range out {
			if have == name {
				return
			}
		}
		out = append(out, name)
	}
	for _, o := range st.Objects {
		if len(o.Columns) == 0 {
			add(o.String())
			continue
		}
		for _, c := range o.Columns {
			add(o.String() + "." + c)
		}
	}
	return out
}

// Subject is who runs a statement.
type Subject struct {
	User   string
	Groups []string
}

// Decision is the outcome of evaluating a statement.
type Decision struct {
	// Allowed is the verdict of the policies that decided. When Enforced is false a denial is only
	// recorded: the statement runs (monitor mode).
	Allowed  bool
	Enforced bool
	// Rule names the rule that decided, "policy#index"; empty when no rule did (no policies, implicit
	// denial, transaction control, allowed unsupported statement).
	Rule string
	// Mode is "enforce" or "monitor": the mode of the policies that decided; empty without policies.
	Mode   string
	Reason string
}

// Blocks reports whether the engine must refuse the statement.
func (d Decision) Blocks() bool { return !d.Allowed && d.Enforced }

// Evaluate compiles policies and evaluates one statement. Engines on the hot path compile once with
// Compile and call Set.Evaluate. Policies that do not compile (they are validated when written, so
// this means a bug or a corrupted store) deny everything.
func Evaluate(policies []gatehouse.AccessPolicy, subject Subject, st Statement, allowUnsupported bool) Decision {
	s, err := Compile(policies)
	if err != nil {
		return Decision{Enforced: true, Mode: gatehouse.AccessEnforce, Reason: err.Error()}
	}
	return s.Evaluate(subject, st, allowUnsupported)
}

// Qualify returns st with every object that has no schema given schema. It returns st itself when
// nothing changes, and a copy otherwise: cached statements are not modified.
func Qualify(st Statement, schema string) Statement {
	n := 0
	for _, o := range st.Objects {
		if o.Schema == "" {
			n++
		}
	}
	if n == 0 || schema == "" {
		return st
	}
	objs := make([]Object, len(st.Objects))
	copy(objs, st.Objects)
	for i := range objs {
		if objs[i].Schema == "" {
			objs[i].Schema = schema
		}
	}
	st.Objects = objs
	return st
}

// Set is a compiled list of access policies for one repository. It is immutable and safe for
// concurrent use; a sidecar builds a new one when policies change and swaps it in.
type Set struct {
	rules      []rule
	hasEnforce bool
	hasMonitor bool
}

type rule struct {
	name     string // policy#index
	enforce  bool
	deny     bool
	everyone bool
	users    []string
	groups   []string
	ops      opSet
	objects  []pattern
}

type pattern struct {
	all                   bool // "*"
	schema, table, column string
	hasColumn             bool
}

type opSet uint16

const opAll opSet = 1<<16 - 1

func opBit(op string) opSet {
	switch op {
	case KindSelect:
		return 1 << 0
	case KindInsert:
		return 1 << 1
	case KindUpdate:
		return 1 << 2
	case KindDelete:
		return 1 << 3
	case KindMerge:
		return 1 << 4
	case KindCopy:
		return 1 << 5
	case KindDDL:
		return 1 << 6
	case KindDCL:
		return 1 << 7
	case KindTransaction:
		return 1 << 8
	case KindUtility:
		return 1 << 9
	case KindFunction:
		return 1 << 10
	case KindUnsupported:
		return 1 << 11
	case gatehouse.OpAll:
		return opAll
	}
	return 0
}

func opName(b opSet) string {
	for _, op := range gatehouse.AccessOperations {
		if opBit(op) == b {
			return op
		}
	}
	return "?"
}

// Compile validates and compiles policies, keeping their order. Pass the policies of one repository;
// see CompileByRepository.
func Compile(policies []gatehouse.AccessPolicy) (*Set, error) {
	s := &Set{}
	for pi := range policies {
		p := &policies[pi]
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("access policy %q: %w", p.Name, err)
		}
		enforce := p.Mode == gatehouse.AccessEnforce
		if enforce {
			s.hasEnforce = true
		} else {
			s.hasMonitor = true
		}
		for ri, r := range p.Rules {
			cr := rule{
				name:     p.Name + "#" + fmt.Sprint(ri),
				enforce:  enforce,
				deny:     r.Effect == gatehouse.EffectDeny,
				everyone: len(r.Users) == 0 && len(r.Groups) == 0,
				users:    r.Users,
				groups:   r.Groups,
			}
			for _, op := range r.Operations {
				cr.ops |= opBit(op)
			}
			for _, o := range r.Objects {
				cr.objects = append(cr.objects, compilePattern(o))
			}
			s.rules = append(s.rules, cr)
		}
	}
	return s, nil
}

// CompileByRepository compiles policies grouped by repository.
func CompileByRepository(policies []gatehouse.AccessPolicy) (map[string]*Set, error) {
	byRepo := map[string][]gatehouse.AccessPolicy{}
	for _, p := range policies {
		byRepo[p.Repository] = append(byRepo[p.Repository], p)
	}
	sets := make(map[string]*Set, len(byRepo))
	for repo, ps := range byRepo {
		s, err := Compile(ps)
		if err != nil {
			return nil, err
		}
		sets[repo] = s
	}
	return sets, nil
}

func compilePattern(s string) pattern {
	if s == "*" {
		return pattern{all: true}
	}
	parts := strings.Split(s, ".")
	p := pattern{schema: parts[0], table: parts[1]}
	if len(parts) == 3 {
		p.column, p.hasColumn = parts[2], true
	}
	return p
}

// unit is one access unit of a statement.
type unit struct {
	kind                  unitKind
	schema, table, column string
	read                  bool
	op                    opSet // the statement's kind, or the object's own operation
}

type unitKind uint8

const (
	unitObject  unitKind = iota
	unitNone             // touches no object
	unitUnknown          // touches objects nobody knows (unsupported statements)
)

func (u *unit) String() string {
	switch u.kind {
	case unitNone:
		return "no object"
	case unitUnknown:
		return "unknown objects"
	}
	s := u.table
	if u.schema != "" {
		s = u.schema + "." + s
	}
	if u.column != "" {
		s += "." + u.column
	}
	return s
}

// Reasons that need no formatting.
const (
	reasonNoPolicy    = "no access policy applies to this repository"
	reasonTransaction = "transaction and session control is always allowed"
	reasonUnsupported = "statement could not be classified; allowed because the sidecar allows unsupported queries"
	reasonAllowed     = "allowed by rule"
	reasonNoRule      = "allowed: no enforcing access policy applies"
)

// Evaluate decides whether subject may run st. allowUnsupported is the sidecar's
// allow_unsupported_queries setting. A nil Set has no policies.
func (s *Set) Evaluate(subject Subject, st Statement, allowUnsupported bool) Decision {
	if s == nil || len(s.rules) == 0 {
		return Decision{Allowed: true, Reason: reasonNoPolicy}
	}
	mode := gatehouse.AccessMonitor
	if s.hasEnforce {
		mode = gatehouse.AccessEnforce
	}
	unsupported := st.Unsupported || st.Kind == KindUnsupported || opBit(st.Kind) == 0 // KindExecute too
	if !unsupported && st.Kind == KindTransaction {
		return Decision{Allowed: true, Enforced: s.hasEnforce, Mode: mode, Reason: reasonTransaction}
	}
	if unsupported && allowUnsupported {
		return Decision{Allowed: true, Enforced: s.hasEnforce, Mode: mode, Reason: reasonUnsupported}
	}
	kind := opBit(st.Kind)
	if unsupported {
		kind = opBit(KindUnsupported)
	}

	e := s.decide(subject, &st, kind, unsupported, true)
	if !s.hasEnforce {
		e.uncovered = false // with no enforcing policy nothing is denied for want of an allow
	}
	if e.denied() {
		return Decision{Enforced: true, Mode: gatehouse.AccessEnforce, Rule: e.ruleName(), Reason: e.reason(&st, unsupported)}
	}
	if s.hasMonitor {
		a := s.decide(subject, &st, kind, unsupported, false)
		if a.denied() {
			return Decision{Mode: gatehouse.AccessMonitor, Rule: a.ruleName(), Reason: "monitor mode, not enforced: " + a.reason(&st, unsupported)}
		}
		if !s.hasEnforce {
			return Decision{Allowed: true, Mode: mode, Rule: a.ruleName(), Reason: reasonAllowed}
		}
	}
	if !s.hasEnforce {
		return Decision{Allowed: true, Mode: mode, Reason: reasonNoRule}
	}
	return Decision{Allowed: true, Enforced: true, Mode: mode, Rule: e.ruleName(), Reason: reasonAllowed}
}

// verdict is the outcome of one pass over the units.
type verdict struct {
	deny      *rule // explicit denial
	denyUnit  unit
	uncovered bool // a unit no allow rule covers
	openUnit  unit
	allow     *rule // first allow rule that covered a unit
}

func (v *verdict) denied() bool { return v.deny != nil || v.uncovered }

func (v *verdict) ruleName() string {
	if v.deny != nil {
		return v.deny.name
	}
	if v.uncovered {
		return ""
	}
	if v.allow != nil {
		return v.allow.name
	}
	return ""
}

func (v *verdict) reason(st *Statement, unsupported bool) string {
	op := st.Kind
	if v.deny != nil {
		if unsupported {
			return "rule " + v.deny.name + " denies unsupported statements"
		}
		if v.denyUnit.op != 0 && v.denyUnit.op != opBit(op) {
			op = opName(v.denyUnit.op)
		}
		if v.denyUnit.read && op != KindSelect {
			op += " (reading)"
		}
		return "rule " + v.deny.name + " denies " + op + " on " + v.denyUnit.String()
	}
	if unsupported {
		return "statement could not be classified, no rule allows unsupported statements and the sidecar does not allow unsupported queries"
	}
	if v.openUnit.op != 0 && v.openUnit.op != opBit(op) {
		op = opName(v.openUnit.op)
	}
	if v.openUnit.kind == unitNone {
		return "no rule allows " + op
	}
	return "no rule allows " + op + " on " + v.openUnit.String()
}

// decide runs one pass: over enforcing rules only, or over all rules as if all were enforced.
func (s *Set) decide(sub Subject, st *Statement, kind opSet, unsupported, enforceOnly bool) verdict {
	var v verdict
	visit := func(u unit) bool { // returns false to stop: an explicit denial was found
		if u.op == 0 {
			u.op = kind
		}
		covered := false
		for i := range s.rules {
			r := &s.rules[i]
			if enforceOnly && !r.enforce {
				continue
			}
			if !r.matchesOp(u.op, u.read) {
				continue
			}
			if !r.appliesTo(sub) {
				continue
			}
			if r.deny {
				if r.overlaps(&u) {
					v.deny, v.denyUnit = r, u
					return false
				}
			} else if !covered && r.covers(&u) {
				covered = true
				if v.allow == nil {
					v.allow = r
				}
			}
		}
		if !covered && !v.uncovered {
			v.uncovered, v.openUnit = true, u
		}
		return true
	}
	if unsupported {
		visit(unit{kind: unitUnknown})
		return v
	}
	n := 0
	for _, o := range st.Objects {
		read := o.Access == Read
		var op opSet
		if o.Op != "" && !read {
			if op = opBit(o.Op); op == 0 {
				op = opBit(KindUnsupported)
			}
		}
		if len(o.Columns) == 0 {
			n++
			if !visit(unit{schema: o.Schema, table: o.Table, read: read, op: op}) {
				return v
			}
			continue
		}
		for _, c := range o.Columns {
			n++
			if !visit(unit{schema: o.Schema, table: o.Table, column: c, read: read, op: op}) {
				return v
			}
		}
	}
	if st.Kind == KindFunction {
		for _, f := range st.Functions {
			n++
			schema, name := "", f
			if i := strings.LastIndexByte(f, '.'); i >= 0 {
				schema, name = f[:i], f[i+1:]
			}
			if !visit(unit{schema: schema, table: name}) {
				return v
			}
		}
	}
	if n == 0 {
		visit(unit{kind: unitNone})
	}
	return v
}

// writeKinds are the kinds whose read units are incidental reads: "deny update on t" is about
// updating t, not about reading t inside someone else's UPDATE.
const writeKinds = 1<<1 | 1<<2 | 1<<3 | 1<<4 // insert, update, delete, merge

// matchesOp reports whether r's operations match a unit of a statement of the given kind. A read
// unit also matches "select". Allow rules match read units through the statement's kind too, so an
// UPDATE's WHERE clause needs no separate select rule; deny rules do so only for kinds that are not
// writes (COPY TO, CREATE VIEW AS SELECT, ...).
func (r *rule) matchesOp(kind opSet, read bool) bool {
	if read && r.ops&opBit(KindSelect) != 0 {
		return true
	}
	if r.ops&kind == 0 {
		return false
	}
	return !read || !r.deny || kind&writeKinds == 0
}

func (r *rule) appliesTo(sub Subject) bool {
	if r.everyone {
		return true
	}
	for _, u := range r.users {
		if strings.EqualFold(u, sub.User) {
			return true
		}
	}
	for _, g := range r.groups {
		for _, sg := range sub.Groups {
			if g == sg {
				return true
			}
		}
	}
	return false
}

// overlaps reports whether a deny rule matches u: u may touch something a pattern names.
func (r *rule) overlaps(u *unit) bool {
	for i := range r.objects {
		p := &r.objects[i]
		switch {
		case u.kind == unitUnknown, p.all:
			return true
		case u.kind == unitNone:
			continue
		}
		if u.schema != "" && !glob(p.schema, u.schema) || u.table != "*" && !glob(p.table, u.table) {
			continue
		}
		if !p.hasColumn || u.column == "*" || (u.column == "" && p.column == "*") ||
			(u.column != "" && glob(p.column, u.column)) {
			return true
		}
	}
	return false
}

// covers reports whether an allow rule covers u: everything u touches is named by a pattern.
func (r *rule) covers(u *unit) bool {
	for i := range r.objects {
		p := &r.objects[i]
		switch {
		case p.all, u.kind == unitNone:
			return true
		case u.kind == unitUnknown:
			continue
		}
		if u.schema == "" && p.schema != "*" || u.schema != "" && !glob(p.schema, u.schema) ||
			u.table == "*" && p.table != "*" || u.table != "*" && !glob(p.table, u.table) {
			continue
		}
		if !p.hasColumn || u.column == "" || p.column == "*" || (u.column != "*" && glob(p.column, u.column)) {
			return true
		}
	}
	return false
}

// glob matches s against pattern, where '*' matches any run of characters, ASCII case-insensitively.
// It does not allocate.
func glob(pattern, s string) bool {
	if pattern == "*" {
		return true
	}
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(pattern) {
			c := pattern[px]
			if c == '*' {
				starP, starS = px, sx
				px++
				continue
			}
			if lower(c) == lower(s[sx]) {
				px++
				sx++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		px, sx = starP+1, starS
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
