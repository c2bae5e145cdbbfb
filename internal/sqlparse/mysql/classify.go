package mysql

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	// Value expressions of the parse tree need a driver; the test driver is the parser's own.
	_ "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/gatehousedb/gatehouse/internal/policy"
)

// parsers are reused: a Parser is not safe for concurrent use and costs allocations to make.
var parsers = sync.Pool{New: func() any { return parser.New() }}

// fingerprintLen is the length of a fingerprint in hex digits, as for PostgreSQL.
const fingerprintLen = 16

// Classify parses sql, which may hold several statements (a COM_QUERY with multi-statements), and
// returns one Statement per statement, in order. Text the grammar rejects is one Statement of kind
// "unsupported". An empty or comment-only text gives no statements.
//
// The error is for failures of the parser itself, not of the input; an engine treats it like an
// unsupported statement.
func Classify(sql string) (sts []policy.Statement, err error) {
	defer func() {
		if r := recover(); r != nil {
			sts, err = nil, fmt.Errorf("parse statement: parser panicked: %v", r)
		}
	}()
	unsupported := []policy.Statement{{Kind: policy.KindUnsupported, Unsupported: true, Text: sql}}
	if strings.Contains(sql, "/*M!") {
		return unsupported, nil
	}
	p := parsers.Get().(*parser.Parser)
	defer parsers.Put(p)
	nodes, _, perr := p.Parse(sql, "", "")
	if perr != nil {
		return unsupported, nil
	}
	out := make([]policy.Statement, 0, len(nodes))
	for _, n := range nodes {
		text := sql
		if len(nodes) > 1 {
			text = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(n.OriginalText()), ";"))
		}
		st := classifyStmt(n)
		st.Text = text
		if !st.Unsupported {
			st.Fingerprint = fingerprint(text)
		}
		out = append(out, st)
	}
	return out, nil
}

// fingerprint is the parser's digest of the normalized text: literals replaced, case and spaces
// folded, so that the same statement with other values has the same fingerprint.
func fingerprint(text string) string {
	_, d := parser.NormalizeDigest(text)
	if d == nil {
		return ""
	}
	s := d.String()
	if len(s) > fingerprintLen {
		s = s[:fingerprintLen]
	}
	return s
}

func classifyStmt(n ast.StmtNode) policy.Statement {
	c := &classifier{index: map[objKey]int{}}
	kind := c.top(n)
	st := policy.Statement{Kind: kind, Prepare: c.prepare, Execute: c.execute, ChangesDefaultSchema: c.schemaChange}
	if kind == policy.KindUnsupported {
		st.Unsupported = true
		return st
	}
	for i := range c.objs {
		if c.objs[i].Op == st.Kind || c.objs[i].Access == policy.Read {
			c.objs[i].Op = ""
		}
	}
	if len(c.objs) > 0 {
		st.Objects = c.objs
	}
	if len(c.funcs) > 0 {
		st.Functions = c.funcs
	}
	return st
}

type objKey struct{ schema, table, access, op string }

type classifier struct {
	objs   []policy.Object
	index  map[objKey]int
	funcs  []string
	scopes []*scope
	access string // access of a table name met outside a FROM clause (DDL, GRANT, ...)
	op     string // operation of such a table name
	// targets: the FROM clause being added names the targets of an UPDATE or DELETE, which are
	// written rather than read as a whole.
	targets bool

	prepare      string
	execute      string
	schemaChange bool
}

// scope is one query level: the tables its FROM clause (or a DML target) brings into view.
type scope struct {
	entries []entry
	ctes    []string
}

type entry struct {
	name          string // alias, or the table's name
	schema, table string
	derived       bool // a subquery or CTE: its own columns were recorded inside it
}

// top classifies one statement and returns its kind.
func (c *classifier) top(n ast.StmtNode) string {
	c.access, c.op = policy.Write, policy.KindDDL
	switch x := n.(type) {
	case *ast.SelectStmt:
		c.walk(x)
		if x.SelectIntoOpt != nil && x.SelectIntoOpt.Tp != ast.SelectIntoVars {
			return policy.KindCopy
		}
		return policy.KindSelect
	case *ast.SetOprStmt:
		c.walk(x)
		return policy.KindSelect
	case *ast.DoStmt:
		c.push()
		defer c.pop()
		c.walk(x)
		return policy.KindSelect
	case *ast.InsertStmt:
		c.walk(x)
		return policy.KindInsert
	case *ast.UpdateStmt:
		c.walk(x)
		return policy.KindUpdate
	case *ast.DeleteStmt:
		c.walk(x)
		return policy.KindDelete
	case *ast.TruncateTableStmt:
		c.op = policy.KindDelete
		c.walk(x.Table)
		return policy.KindDelete
	case *ast.LoadDataStmt:
		cols := columnNames(x.Columns)
		if len(cols) == 0 {
			cols = []string{"*"}
		}
		if x.Table != nil {
			c.addObject(x.Table.Schema.O, x.Table.Name.O, policy.Write, policy.KindCopy, cols...)
		}
		return policy.KindCopy
	case *ast.ExplainStmt:
		if x.Stmt == nil {
			return policy.KindUtility
		}
		return c.top(x.Stmt)
	case *ast.PrepareStmt:
		if x.SQLVar != nil || x.SQLText == "" {
			// The text is in a variable: what it does cannot be known here.
			return policy.KindUnsupported
		}
		inner, err := Classify(x.SQLText)
		if err != nil || len(inner) != 1 || inner[0].Unsupported {
			return policy.KindUnsupported
		}
		c.prepare = x.Name
		c.objs = inner[0].Objects
		c.funcs = inner[0].Functions
		c.schemaChange = inner[0].ChangesDefaultSchema
		return inner[0].Kind
	case *ast.ExecuteStmt:
		c.execute = x.Name
		c.push()
		defer c.pop()
		for _, e := range x.UsingVars {
			c.walk(e)
		}
		return policy.KindExecute
	case *ast.CallStmt:
		c.push()
		defer c.pop()
		c.walk(x.Procedure)
		return policy.KindFunction
	case *ast.UseStmt:
		c.schemaChange = true
		return policy.KindTransaction
	case *ast.ShowStmt:
		return c.show(x)
	case *ast.BeginStmt, *ast.CommitStmt, *ast.RollbackStmt, *ast.SavepointStmt, *ast.ReleaseSavepointStmt,
		*ast.SetStmt, *ast.DeallocateStmt:
		return policy.KindTransaction
	case *ast.GrantStmt:
		c.grantLevel(x.Level)
		return policy.KindDCL
	case *ast.RevokeStmt:
		c.grantLevel(x.Level)
		return policy.KindDCL
	case *ast.GrantRoleStmt, *ast.RevokeRoleStmt, *ast.GrantProxyStmt, *ast.CreateUserStmt, *ast.AlterUserStmt,
		*ast.DropUserStmt, *ast.RenameUserStmt, *ast.SetPwdStmt, *ast.SetRoleStmt, *ast.SetDefaultRoleStmt:
		return policy.KindDCL
	case *ast.AnalyzeTableStmt, *ast.FlushStmt, *ast.KillStmt, *ast.LockTablesStmt, *ast.UnlockTablesStmt,
		*ast.HelpStmt, *ast.BinlogStmt, *ast.ShutdownStmt, *ast.OptimizeTableStmt, *ast.RepairTableStmt:
		c.access, c.op = policy.Write, policy.KindUtility
		c.walk(x)
		return policy.KindUtility
	case *ast.DropDatabaseStmt:
		c.addObject(x.Name.O, "*", policy.Write, policy.KindDDL)
		return policy.KindDDL
	case *ast.DropTableStmt:
		for _, t := range x.Tables {
			c.addObject(t.Schema.O, t.Name.O, policy.Write, policy.KindDDL)
		}
		return policy.KindDDL
	case *ast.CreateViewStmt:
		if x.ViewName != nil {
			c.addObject(x.ViewName.Schema.O, x.ViewName.Name.O, policy.Write, policy.KindDDL)
		}
		c.walk(x.Select)
		return policy.KindDDL
	case *ast.CreateTableStmt:
		if x.Table != nil {
			c.addObject(x.Table.Schema.O, x.Table.Name.O, policy.Write, policy.KindDDL)
		}
		if x.ReferTable != nil {
			c.addObject(x.ReferTable.Schema.O, x.ReferTable.Name.O, policy.Read, "", "*")
		}
		if x.Select != nil {
			c.walk(x.Select)
		}
		return policy.KindDDL
	case nil:
		return policy.KindUnsupported
	}
	// Everything else changes the schema: CREATE, ALTER, RENAME, ...
	c.walk(n)
	return policy.KindDDL
}

// show classifies SHOW: session and server information is transaction control, as PostgreSQL's
// SHOW is; SHOW about a table (COLUMNS, CREATE TABLE, INDEX; DESCRIBE) reads the table as a whole,
// so a rule that denies reading the table denies it.
func (c *classifier) show(x *ast.ShowStmt) string {
	if x.Table == nil {
		return policy.KindTransaction
	}
	schema := x.Table.Schema.O
	if schema == "" {
		schema = x.DBName
	}
	c.addObject(schema, x.Table.Name.O, policy.Read, "")
	return policy.KindSelect
}

// grantLevel records what a GRANT or REVOKE is about: db.table, db.* or *.*.
func (c *classifier) grantLevel(l *ast.GrantLevel) {
	if l == nil {
		return
	}
	switch l.Level {
	case ast.GrantLevelTable:
		c.addObject(l.DBName, l.TableName, policy.Write, policy.KindDCL)
	case ast.GrantLevelDB:
		if l.DBName == "" {
			c.addObject("", "*", policy.Write, policy.KindDCL)
		} else {
			c.addObject(l.DBName, "*", policy.Write, policy.KindDCL)
		}
	case ast.GrantLevelGlobal:
		c.addObject("*", "*", policy.Write, policy.KindDCL)
	}
}

func columnNames(cols []*ast.ColumnName) []string {
	out := make([]string, 0, len(cols))
	for _, col := range cols {
		out = append(out, col.Name.O)
	}
	return out
}

// walk visits n with the classifier as visitor. Optional clauses are nil pointers in the tree,
// which arrive here as non-nil interfaces.
func (c *classifier) walk(n ast.Node) {
	if n == nil {
		return
	}
	if v := reflect.ValueOf(n); v.Kind() == reflect.Pointer && v.IsNil() {
		return
	}
	n.Accept(c)
}

// Enter implements ast.Visitor: it handles the nodes that name tables, columns and functions and
// the ones that open a query level, and lets the parser descend into everything else.
func (c *classifier) Enter(n ast.Node) (ast.Node, bool) {
	switch x := n.(type) {
	case *ast.SelectStmt:
		c.selectStmt(x)
		return n, true
	case *ast.SetOprStmt:
		c.push()
		defer c.pop()
		c.with(x.With)
		c.walk(x.SelectList)
		c.walk(x.OrderBy)
		c.walk(x.Limit)
		return n, true
	case *ast.InsertStmt:
		c.insertStmt(x)
		return n, true
	case *ast.UpdateStmt:
		c.updateStmt(x)
		return n, true
	case *ast.DeleteStmt:
		c.deleteStmt(x)
		return n, true
	case *ast.ColumnNameExpr:
		c.columnRef(x.Name)
		return n, true
	case *ast.FuncCallExpr:
		// Function names are case-insensitive in MySQL; report them folded, like PostgreSQL's.
		name := x.FnName.L
		if x.Schema.O != "" {
			name = x.Schema.O + "." + name
		}
		c.addFunc(name)
	case *ast.AggregateFuncExpr:
		c.addFunc(strings.ToLower(x.F))
	case *ast.WindowFuncExpr:
		c.addFunc(strings.ToLower(x.Name))
	case *ast.TableName:
		if !c.isCTE(x) {
			c.addObject(x.Schema.O, x.Name.O, c.access, c.op)
		}
		return n, true
	case *ast.TableSource, *ast.Join:
		// A FROM clause outside a query (multi-table DDL and utility statements): each table
		// is touched as a whole.
		if len(c.scopes) == 0 {
			c.push()
			c.fromItem(x.(ast.ResultSetNode))
			c.pop()
			return n, true
		}
	}
	return n, false
}

// Leave implements ast.Visitor.
func (c *classifier) Leave(n ast.Node) (ast.Node, bool) { return n, true }

func (c *classifier) push() *scope {
	s := &scope{}
	c.scopes = append(c.scopes, s)
	return s
}

func (c *classifier) pop() { c.scopes = c.scopes[:len(c.scopes)-1] }

func (c *classifier) cur() *scope { return c.scopes[len(c.scopes)-1] }

// with registers a WITH clause's names in the current scope and walks their queries.
func (c *classifier) with(w *ast.WithClause) {
	if w == nil {
		return
	}
	s := c.cur()
	for _, cte := range w.CTEs {
		s.ctes = append(s.ctes, cte.Name.L)
	}
	for _, cte := range w.CTEs {
		if cte.Query != nil {
			c.walk(cte.Query.Query)
		}
	}
}

// isCTE reports whether an unqualified table name refers to a WITH query in view.
func (c *classifier) isCTE(t *ast.TableName) bool {
	if t.Schema.O != "" {
		return false
	}
	for i := len(c.scopes) - 1; i >= 0; i-- {
		for _, name := range c.scopes[i].ctes {
			if name == t.Name.L {
				return true
			}
		}
	}
	return false
}

func (c *classifier) selectStmt(s *ast.SelectStmt) {
	c.push()
	defer c.pop()
	c.with(s.With)
	if s.Kind == ast.SelectStmtKindTable && s.From == nil {
		// TABLE t is parsed with the table in From in recent grammars; older ones may not.
		return
	}
	if s.From != nil && s.From.TableRefs != nil {
		c.fromItem(s.From.TableRefs)
	}
	if s.Kind == ast.SelectStmtKindTable {
		c.scopeColumn(c.cur(), "*")
	}
	if s.Fields != nil {
		for _, f := range s.Fields.Fields {
			if f.WildCard != nil {
				c.wildcard(f.WildCard)
				continue
			}
			c.walk(f.Expr)
		}
	}
	c.walk(s.Where)
	c.walk(s.GroupBy)
	c.walk(s.Having)
	for i := range s.WindowSpecs {
		c.walk(&s.WindowSpecs[i])
	}
	for _, row := range s.Lists {
		c.walk(row)
	}
	c.walk(s.OrderBy)
	c.walk(s.Limit)
}

// wildcard records "*" (every table in the query level) or "t.*".
func (c *classifier) wildcard(w *ast.WildCardField) {
	if w.Table.O == "" {
		c.scopeColumn(c.cur(), "*")
		return
	}
	c.qualified(w.Schema.O, w.Table.L, "*")
}

// fromItem adds one FROM-clause item to the current scope.
func (c *classifier) fromItem(n ast.ResultSetNode) {
	s := c.cur()
	switch x := n.(type) {
	case nil:
	case *ast.Join:
		c.fromItem(x.Left)
		c.fromItem(x.Right)
		for _, u := range x.Using {
			c.unqualified(u.Name.O)
		}
		if x.On != nil {
			c.walk(x.On.Expr)
		}
	case *ast.TableSource:
		switch src := x.Source.(type) {
		case *ast.TableName:
			name := src.Name.L
			if x.AsName.O != "" {
				name = x.AsName.L
			}
			if c.isCTE(src) {
				s.entries = append(s.entries, entry{name: name, derived: true})
				return
			}
			if !c.targets {
				c.addObject(src.Schema.O, src.Name.O, policy.Read, "")
			}
			s.entries = append(s.entries, entry{name: name, schema: src.Schema.O, table: src.Name.O})
		default:
			c.walk(x.Source)
			s.entries = append(s.entries, entry{name: x.AsName.L, derived: true})
		}
	case *ast.TableName:
		c.fromItem(&ast.TableSource{Source: x})
	default:
		c.walk(n)
		s.entries = append(s.entries, entry{derived: true})
	}
}

// targets adds the tables of a DML statement's table references to the current scope (as read),
// and returns the entries added.
func (c *classifier) tableRefs(refs *ast.TableRefsClause) []entry {
	if refs == nil || refs.TableRefs == nil {
		return nil
	}
	s := c.cur()
	before := len(s.entries)
	c.targets = true
	c.fromItem(refs.TableRefs)
	c.targets = false
	return s.entries[before:]
}

// touchOthers records the tables of a DML statement's references that it does not write as read
// as a whole.
func (c *classifier) touchOthers(entries []entry, written map[entry]bool) {
	for _, e := range entries {
		if !e.derived && !written[e] {
			c.addObject(e.schema, e.table, policy.Read, "")
		}
	}
}

// resolveEntries returns the table entries of the current scope a column qualifier names, or all of
// them for an unqualified column.
func (c *classifier) resolveEntries(schema, qual string) []entry {
	var out []entry
	for _, e := range c.cur().entries {
		if e.derived {
			continue
		}
		if qual == "" || (e.name == qual && (schema == "" || strings.EqualFold(e.schema, schema))) {
			out = append(out, e)
		}
	}
	return out
}

func (c *classifier) insertStmt(x *ast.InsertStmt) {
	c.push()
	defer c.pop()
	// INSERT ... SET a = 1 comes with its columns in Columns and its values as one row.
	cols := columnNames(x.Columns)
	// The source is walked before the target joins the scope: VALUES and SELECT cannot see it.
	if x.Select != nil {
		c.walk(x.Select)
	}
	for _, row := range x.Lists {
		for _, e := range row {
			c.walk(e)
		}
	}
	var target *ast.TableName
	if x.Table != nil && x.Table.TableRefs != nil {
		if ts, ok := x.Table.TableRefs.Left.(*ast.TableSource); ok {
			target, _ = ts.Source.(*ast.TableName)
		}
	}
	if target == nil {
		return
	}
	if len(cols) == 0 {
		cols = []string{"*"}
	}
	c.addObject(target.Schema.O, target.Name.O, policy.Write, policy.KindInsert, cols...)
	c.cur().entries = append(c.cur().entries, entry{name: target.Name.L, schema: target.Schema.O, table: target.Name.O})
	if len(x.OnDuplicate) > 0 {
		var set []string
		for _, a := range x.OnDuplicate {
			set = append(set, a.Column.Name.O)
		}
		c.addObject(target.Schema.O, target.Name.O, policy.Write, policy.KindUpdate, set...)
		for _, a := range x.OnDuplicate {
			c.walk(a.Expr)
		}
	}
}

func (c *classifier) updateStmt(x *ast.UpdateStmt) {
	c.push()
	defer c.pop()
	c.with(x.With)
	entries := c.tableRefs(x.TableRefs)
	written := map[entry]bool{}
	for _, a := range x.List {
		for _, e := range c.resolveEntries(a.Column.Schema.O, a.Column.Table.L) {
			written[e] = true
			c.addObject(e.schema, e.table, policy.Write, policy.KindUpdate, a.Column.Name.O)
		}
	}
	c.touchOthers(entries, written)
	for _, a := range x.List {
		c.walk(a.Expr)
	}
	c.walk(x.Where)
	c.walk(x.Order)
	c.walk(x.Limit)
}

func (c *classifier) deleteStmt(x *ast.DeleteStmt) {
	c.push()
	defer c.pop()
	entries := c.tableRefs(x.TableRefs)
	written := map[entry]bool{}
	if x.IsMultiTable && x.Tables != nil {
		for _, t := range x.Tables.Tables {
			for _, e := range c.resolveEntries(t.Schema.O, t.Name.L) {
				written[e] = true
				c.addObject(e.schema, e.table, policy.Write, policy.KindDelete)
			}
		}
	} else {
		for _, e := range entries {
			if !e.derived {
				written[e] = true
				c.addObject(e.schema, e.table, policy.Write, policy.KindDelete)
			}
		}
	}
	c.touchOthers(entries, written)
	c.walk(x.Where)
	c.walk(x.Order)
	c.walk(x.Limit)
}

func (c *classifier) columnRef(x *ast.ColumnName) {
	col := x.Name.O
	if x.Table.O == "" {
		c.unqualified(col)
		return
	}
	c.qualified(x.Schema.O, x.Table.L, col)
}

// qualified attributes qual.col (or schema.qual.col) to the table qual names in the nearest query
// level that has it.
func (c *classifier) qualified(schema, qual, col string) {
	for i := len(c.scopes) - 1; i >= 0; i-- {
		for _, e := range c.scopes[i].entries {
			if e.name != qual || (schema != "" && !e.derived && !strings.EqualFold(e.schema, schema)) {
				continue
			}
			if !e.derived {
				c.addObject(e.schema, e.table, policy.Read, "", col)
			}
			return
		}
	}
	// Not a table in view (a name the classifier cannot place): attribute it to every table.
	c.unqualified(col)
}

// unqualified attributes a column without a qualifier to every table of every query level in view.
func (c *classifier) unqualified(col string) {
	if col == "" {
		return
	}
	for _, s := range c.scopes {
		c.scopeColumn(s, col)
	}
}

func (c *classifier) scopeColumn(s *scope, col string) {
	for _, e := range s.entries {
		if !e.derived {
			c.addObject(e.schema, e.table, policy.Read, "", col)
		}
	}
}

func (c *classifier) addFunc(name string) {
	if name == "" {
		return
	}
	for _, f := range c.funcs {
		if f == name {
			return
		}
	}
	c.funcs = append(c.funcs, name)
}

// addObject records access to schema.table, adding cols (deduplicated) to what is recorded.
func (c *classifier) addObject(schema, table, access, op string, cols ...string) {
	if table == "" {
		return
	}
	if access == policy.Read {
		op = ""
	}
	k := objKey{schema, table, access, op}
	i, ok := c.index[k]
	if !ok {
		i = len(c.objs)
		c.index[k] = i
		c.objs = append(c.objs, policy.Object{Schema: schema, Table: table, Access: access, Op: op})
	}
	o := &c.objs[i]
outer:
	for _, col := range cols {
		for _, have := range o.Columns {
			if have == col {
				continue outer
			}
		}
		o.Columns = append(o.Columns, col)
	}
}
