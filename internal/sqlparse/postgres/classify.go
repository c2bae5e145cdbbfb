package postgres

import (
	"errors"
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gatehousedb/gatehouse/internal/policy"
)

// Classify parses sql, which may hold several statements (a simple Query message), and returns one
// Statement per statement, in order. Text PostgreSQL's grammar rejects is one Statement of kind
// "unsupported". An empty or comment-only text gives no statements.
//
// The error is for failures of the parser itself, not of the input; an engine treats it like an
// unsupported statement.
func Classify(sql string) ([]policy.Statement, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		var perr *parser.Error
		if errors.As(err, &perr) {
			return []policy.Statement{{Kind: policy.KindUnsupported, Unsupported: true, Text: sql}}, nil
		}
		return nil, fmt.Errorf("parse statement: %w", err)
	}
	out := make([]policy.Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		text := sql
		if len(tree.Stmts) > 1 {
			text = stmtText(sql, raw)
		}
		st := classifyStmt(raw.GetStmt())
		st.Text = text
		if fp, err := pg.Fingerprint(text); err == nil {
			st.Fingerprint = fp
		}
		out = append(out, st)
	}
	return out, nil
}

// stmtText cuts one statement's text out of the input. Locations are byte offsets; a length of 0
// means "to the end".
func stmtText(sql string, raw *pg.RawStmt) string {
	start := int(raw.GetStmtLocation())
	end := len(sql)
	if l := int(raw.GetStmtLen()); l > 0 && start+l <= len(sql) {
		end = start + l
	}
	if start < 0 || start > end {
		return strings.TrimSpace(sql)
	}
	return strings.TrimSpace(sql[start:end])
}

func classifyStmt(n *pg.Node) policy.Statement {
	c := &classifier{index: map[objKey]int{}}
	kind := c.top(n)
	st := policy.Statement{Kind: kind, Prepare: c.prepare, Execute: c.execute, ChangesDefaultSchema: c.schemaChange}
	for _, f := range c.funcs {
		if f == "set_config" || f == "pg_catalog.set_config" {
			st.ChangesDefaultSchema = true
		}
	}
	if kind == policy.KindSelect && c.firstWrite != "" {
		st.Kind = c.firstWrite
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
	objs       []policy.Object
	index      map[objKey]int
	funcs      []string
	scopes     []*scope
	access     string // access of a RangeVar met outside a FROM clause (DDL, LOCK, GRANT ...)
	op         string // operation of such a RangeVar
	firstWrite string // kind of the first data-modifying statement met
	prepare    string
	execute    string
	// schemaChange: the statement may change search_path.
	schemaChange bool
}

// scope is one query level: the relations its FROM clause (or a DML target) brings into view.
type scope struct {
	entries []entry
	ctes    []string
}

type entry struct {
	name          string // alias, or the relation's name
	schema, table string
	kind          entryKind
}

type entryKind uint8

const (
	entryTable   entryKind = iota
	entryDerived           // subquery, CTE, function: its own columns were recorded inside it
	entryJoin              // alias of a join: stands for the tables of its scope
)

// top classifies one statement and returns its kind.
func (c *classifier) top(n *pg.Node) string {
	c.access, c.op = policy.Write, policy.KindDDL
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		c.walk(x.SelectStmt)
		if x.SelectStmt.GetIntoClause() != nil {
			return policy.KindDDL
		}
		return policy.KindSelect
	case *pg.Node_InsertStmt:
		c.walk(x.InsertStmt)
		return policy.KindInsert
	case *pg.Node_UpdateStmt:
		c.walk(x.UpdateStmt)
		return policy.KindUpdate
	case *pg.Node_DeleteStmt:
		c.walk(x.DeleteStmt)
		return policy.KindDelete
	case *pg.Node_MergeStmt:
		c.walk(x.MergeStmt)
		return policy.KindMerge
	case *pg.Node_CopyStmt:
		c.copyStmt(x.CopyStmt)
		return policy.KindCopy
	case *pg.Node_ExplainStmt:
		return c.top(x.ExplainStmt.GetQuery())
	case *pg.Node_DeclareCursorStmt:
		return c.top(x.DeclareCursorStmt.GetQuery())
	case *pg.Node_PrepareStmt:
		c.prepare = x.PrepareStmt.GetName()
		return c.top(x.PrepareStmt.GetQuery())
	case *pg.Node_ExecuteStmt:
		c.execute = x.ExecuteStmt.GetName()
		c.walkNodes(x.ExecuteStmt.GetParams())
		return policy.KindExecute
	case *pg.Node_CallStmt:
		c.schemaChange = true
		c.walk(x.CallStmt.GetFunccall())
		return policy.KindFunction
	case *pg.Node_DoStmt:
		c.schemaChange = true
		return policy.KindFunction
	case *pg.Node_TruncateStmt:
		c.op = policy.KindDelete
		c.walkNodes(x.TruncateStmt.GetRelations())
		return policy.KindDelete
	case *pg.Node_FetchStmt:
		return policy.KindSelect
	case *pg.Node_DiscardStmt:
		c.schemaChange = x.DiscardStmt.GetTarget() == pg.DiscardMode_DISCARD_ALL
		return policy.KindTransaction
	case *pg.Node_TransactionStmt, *pg.Node_VariableShowStmt, *pg.Node_DeallocateStmt, *pg.Node_ClosePortalStmt:
		// ROLLBACK (TO SAVEPOINT) can undo a SET search_path too.
		if t, ok := x.(*pg.Node_TransactionStmt); ok {
			switch t.TransactionStmt.GetKind() {
			case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO,
				pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED, pg.TransactionStmtKind_TRANS_STMT_COMMIT:
				c.schemaChange = true
			}
		}
		return policy.KindTransaction
	case *pg.Node_VariableSetStmt:
		switch x.VariableSetStmt.GetName() {
		case "role", "session_authorization":
			return policy.KindDCL
		case "search_path":
			c.schemaChange = true
		}
		if x.VariableSetStmt.GetKind() == pg.VariableSetKind_VAR_RESET_ALL {
			c.schemaChange = true
		}
		return policy.KindTransaction
	case *pg.Node_DropStmt:
		c.dropStmt(x.DropStmt)
		return policy.KindDDL
	case *pg.Node_GrantStmt, *pg.Node_GrantRoleStmt, *pg.Node_CreateRoleStmt, *pg.Node_AlterRoleStmt,
		*pg.Node_AlterRoleSetStmt, *pg.Node_DropRoleStmt, *pg.Node_AlterDefaultPrivilegesStmt,
		*pg.Node_ReassignOwnedStmt, *pg.Node_DropOwnedStmt, *pg.Node_CreateUserMappingStmt,
		*pg.Node_AlterUserMappingStmt, *pg.Node_DropUserMappingStmt:
		c.op = policy.KindDCL
		c.walk(n)
		return policy.KindDCL
	case *pg.Node_VacuumStmt, *pg.Node_LockStmt, *pg.Node_ListenStmt, *pg.Node_UnlistenStmt,
		*pg.Node_NotifyStmt, *pg.Node_CheckPointStmt, *pg.Node_LoadStmt, *pg.Node_ClusterStmt,
		*pg.Node_ReindexStmt, *pg.Node_ConstraintsSetStmt:
		c.op = policy.KindUtility
		c.walk(n)
		return policy.KindUtility
	case nil:
		return policy.KindUnsupported
	}
	// Everything else changes the schema: CREATE, ALTER, COMMENT, SECURITY LABEL, REFRESH, ...
	c.walk(n)
	return policy.KindDDL
}

func (c *classifier) walkNodes(ns []*pg.Node) {
	for _, n := range ns {
		c.walk(n)
	}
}

// walk visits a parse tree node, handling the node types that name relations, columns and
// functions, and descending into every other message field.
func (c *classifier) walk(m proto.Message) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return
	}
	switch x := m.(type) {
	case *pg.SelectStmt:
		c.selectStmt(x)
		return
	case *pg.InsertStmt:
		c.insertStmt(x)
		return
	case *pg.UpdateStmt:
		c.updateStmt(x)
		return
	case *pg.DeleteStmt:
		c.deleteStmt(x)
		return
	case *pg.MergeStmt:
		c.mergeStmt(x)
		return
	case *pg.ColumnRef:
		c.columnRef(x)
		return
	case *pg.FuncCall:
		c.addFunc(x.GetFuncname())
	case *pg.RangeVar:
		if !c.isCTE(x) {
			c.addObject(x.GetSchemaname(), x.GetRelname(), c.access, c.op)
		}
		return
	case *pg.ViewStmt:
		// The view's query reads; the view itself is written.
		c.addObject(x.GetView().GetSchemaname(), x.GetView().GetRelname(), policy.Write, c.op)
		c.walk(x.GetQuery())
		return
	case *pg.IntoClause:
		if rel := x.GetRel(); rel != nil {
			c.addObject(rel.GetSchemaname(), rel.GetRelname(), policy.Write, policy.KindDDL)
		}
		return
	}
	c.children(m)
}

// children walks every message-typed field of m.
func (c *classifier) children(m proto.Message) {
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.walk(l.Get(i).Message().Interface())
			}
			return true
		}
		c.walk(v.Message().Interface())
		return true
	})
}

func (c *classifier) push() *scope {
	s := &scope{}
	c.scopes = append(c.scopes, s)
	return s
}

func (c *classifier) pop() { c.scopes = c.scopes[:len(c.scopes)-1] }

func (c *classifier) cur() *scope { return c.scopes[len(c.scopes)-1] }

// with registers a WITH clause's names in the current scope and walks their queries.
func (c *classifier) with(w *pg.WithClause) {
	if w == nil {
		return
	}
	s := c.cur()
	for _, n := range w.GetCtes() {
		if cte := n.GetCommonTableExpr(); cte != nil {
			s.ctes = append(s.ctes, cte.GetCtename())
		}
	}
	for _, n := range w.GetCtes() {
		if cte := n.GetCommonTableExpr(); cte != nil {
			c.walk(cte.GetCtequery())
		}
	}
}

// isCTE reports whether an unqualified relation name refers to a WITH query in view.
func (c *classifier) isCTE(rv *pg.RangeVar) bool {
	if rv.GetSchemaname() != "" || rv.GetCatalogname() != "" {
		return false
	}
	for i := len(c.scopes) - 1; i >= 0; i-- {
		for _, name := range c.scopes[i].ctes {
			if name == rv.GetRelname() {
				return true
			}
		}
	}
	return false
}

func (c *classifier) selectStmt(s *pg.SelectStmt) {
	c.push()
	defer c.pop()
	c.with(s.GetWithClause())
	if s.GetOp() != pg.SetOperation_SETOP_NONE && s.GetOp() != pg.SetOperation_SET_OPERATION_UNDEFINED {
		c.walk(s.GetLarg())
		c.walk(s.GetRarg())
		c.walkNodes(s.GetSortClause())
		c.walk(s.GetLimitOffset())
		c.walk(s.GetLimitCount())
		return
	}
	for _, f := range s.GetFromClause() {
		c.fromItem(f)
	}
	c.walkNodes(s.GetDistinctClause())
	c.walkNodes(s.GetTargetList())
	c.walk(s.GetWhereClause())
	c.walkNodes(s.GetGroupClause())
	c.walk(s.GetHavingClause())
	c.walkNodes(s.GetWindowClause())
	c.walkNodes(s.GetValuesLists())
	c.walkNodes(s.GetSortClause())
	c.walk(s.GetLimitOffset())
	c.walk(s.GetLimitCount())
	if into := s.GetIntoClause(); into != nil {
		c.walk(into)
	}
	// Locking clauses name relations already in FROM; they add nothing.
}

// fromItem adds one FROM-clause item to the current scope.
func (c *classifier) fromItem(n *pg.Node) {
	s := c.cur()
	switch x := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		name := rv.GetRelname()
		if a := rv.GetAlias().GetAliasname(); a != "" {
			name = a
		}
		if c.isCTE(rv) {
			s.entries = append(s.entries, entry{name: name, kind: entryDerived})
			return
		}
		c.addObject(rv.GetSchemaname(), rv.GetRelname(), policy.Read, "")
		s.entries = append(s.entries, entry{name: name, schema: rv.GetSchemaname(), table: rv.GetRelname()})
	case *pg.Node_RangeSubselect:
		c.walk(x.RangeSubselect.GetSubquery())
		s.entries = append(s.entries, entry{name: x.RangeSubselect.GetAlias().GetAliasname(), kind: entryDerived})
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		c.fromItem(j.GetLarg())
		c.fromItem(j.GetRarg())
		for _, u := range j.GetUsingClause() {
			c.unqualified(u.GetString_().GetSval())
		}
		c.walk(j.GetQuals())
		if a := j.GetAlias().GetAliasname(); a != "" {
			s.entries = append(s.entries, entry{name: a, kind: entryJoin})
		}
	case *pg.Node_RangeTableSample:
		c.fromItem(x.RangeTableSample.GetRelation())
		c.walkNodes(x.RangeTableSample.GetArgs())
		c.walk(x.RangeTableSample.GetRepeatable())
	case *pg.Node_RangeFunction:
		c.walk(x.RangeFunction)
		s.entries = append(s.entries, entry{name: x.RangeFunction.GetAlias().GetAliasname(), kind: entryDerived})
	default:
		c.walk(n)
		s.entries = append(s.entries, entry{kind: entryDerived})
	}
}

// target adds a DML statement's target relation to the current scope, so that its columns read in
// WHERE, SET expressions and RETURNING are attributed to it.
func (c *classifier) target(rv *pg.RangeVar, op string, cols []string) {
	if rv == nil {
		return
	}
	if c.firstWrite == "" {
		c.firstWrite = op
	}
	c.addObject(rv.GetSchemaname(), rv.GetRelname(), policy.Write, op, cols...)
	name := rv.GetRelname()
	if a := rv.GetAlias().GetAliasname(); a != "" {
		name = a
	}
	s := c.cur()
	s.entries = append(s.entries, entry{name: name, schema: rv.GetSchemaname(), table: rv.GetRelname()})
}

func resTargetNames(ns []*pg.Node) []string {
	var out []string
	for _, n := range ns {
		if rt := n.GetResTarget(); rt != nil && rt.GetName() != "" {
			out = append(out, rt.GetName())
		}
	}
	return out
}

func (c *classifier) walkResTargetValues(ns []*pg.Node) {
	for _, n := range ns {
		if rt := n.GetResTarget(); rt != nil {
			c.walkNodes(rt.GetIndirection())
			c.walk(rt.GetVal())
			continue
		}
		c.walk(n)
	}
}

func (c *classifier) insertStmt(x *pg.InsertStmt) {
	c.push()
	defer c.pop()
	c.with(x.GetWithClause())
	cols := resTargetNames(x.GetCols())
	if len(cols) == 0 {
		cols = []string{"*"}
	}
	// The source is walked before the target joins the scope: VALUES and SELECT cannot see it.
	c.walk(x.GetSelectStmt())
	c.target(x.GetRelation(), policy.KindInsert, cols)
	if oc := x.GetOnConflictClause(); oc != nil {
		if set := resTargetNames(oc.GetTargetList()); len(set) > 0 {
			rv := x.GetRelation()
			c.addObject(rv.GetSchemaname(), rv.GetRelname(), policy.Write, policy.KindUpdate, set...)
		}
		c.walk(oc.GetInfer())
		c.walkResTargetValues(oc.GetTargetList())
		c.walk(oc.GetWhereClause())
	}
	c.walkNodes(x.GetReturningList())
}

func (c *classifier) updateStmt(x *pg.UpdateStmt) {
	c.push()
	defer c.pop()
	c.with(x.GetWithClause())
	c.target(x.GetRelation(), policy.KindUpdate, resTargetNames(x.GetTargetList()))
	for _, f := range x.GetFromClause() {
		c.fromItem(f)
	}
	c.walkResTargetValues(x.GetTargetList())
	c.walk(x.GetWhereClause())
	c.walkNodes(x.GetReturningList())
}

func (c *classifier) deleteStmt(x *pg.DeleteStmt) {
	c.push()
	defer c.pop()
	c.with(x.GetWithClause())
	c.target(x.GetRelation(), policy.KindDelete, nil)
	for _, f := range x.GetUsingClause() {
		c.fromItem(f)
	}
	c.walk(x.GetWhereClause())
	c.walkNodes(x.GetReturningList())
}

func (c *classifier) mergeStmt(x *pg.MergeStmt) {
	c.push()
	defer c.pop()
	c.with(x.GetWithClause())
	var cols []string
	for _, n := range x.GetMergeWhenClauses() {
		w := n.GetMergeWhenClause()
		switch w.GetCommandType() {
		case pg.CmdType_CMD_UPDATE:
			cols = append(cols, resTargetNames(w.GetTargetList())...)
		case pg.CmdType_CMD_INSERT:
			if names := resTargetNames(w.GetTargetList()); len(names) > 0 {
				cols = append(cols, names...)
			} else {
				cols = append(cols, "*")
			}
		}
	}
	c.target(x.GetRelation(), policy.KindMerge, cols)
	c.fromItem(x.GetSourceRelation())
	c.walk(x.GetJoinCondition())
	for _, n := range x.GetMergeWhenClauses() {
		w := n.GetMergeWhenClause()
		c.walk(w.GetCondition())
		c.walkResTargetValues(w.GetTargetList())
		c.walkNodes(w.GetValues())
	}
	c.walkNodes(x.GetReturningList())
}

func (c *classifier) copyStmt(x *pg.CopyStmt) {
	c.push()
	defer c.pop()
	if q := x.GetQuery(); q != nil {
		c.walk(q)
		return
	}
	rv := x.GetRelation()
	if rv == nil {
		return
	}
	var cols []string
	for _, a := range x.GetAttlist() {
		if s := a.GetString_(); s != nil {
			cols = append(cols, s.GetSval())
		}
	}
	if len(cols) == 0 {
		cols = []string{"*"}
	}
	access := policy.Read
	if x.GetIsFrom() {
		access = policy.Write
	}
	c.addObject(rv.GetSchemaname(), rv.GetRelname(), access, policy.KindCopy, cols...)
	c.cur().entries = append(c.cur().entries, entry{name: rv.GetRelname(), schema: rv.GetSchemaname(), table: rv.GetRelname()})
	c.walk(x.GetWhereClause())
}

// dropStmt records the relations a DROP removes. DROP SCHEMA removes every table in it (with
// CASCADE), recorded as table "*".
func (c *classifier) dropStmt(x *pg.DropStmt) {
	switch x.GetRemoveType() {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_SEQUENCE, pg.ObjectType_OBJECT_FOREIGN_TABLE:
		for _, o := range x.GetObjects() {
			names := stringList(o.GetList().GetItems())
			switch len(names) {
			case 0:
			case 1:
				c.addObject("", names[0], policy.Write, policy.KindDDL)
			default:
				c.addObject(names[len(names)-2], names[len(names)-1], policy.Write, policy.KindDDL)
			}
		}
	case pg.ObjectType_OBJECT_SCHEMA:
		for _, o := range x.GetObjects() {
			if s := o.GetString_(); s != nil {
				c.addObject(s.GetSval(), "*", policy.Write, policy.KindDDL)
			}
		}
	}
}

func stringList(ns []*pg.Node) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		if s := n.GetString_(); s != nil {
			out = append(out, s.GetSval())
		}
	}
	return out
}

func (c *classifier) columnRef(x *pg.ColumnRef) {
	fields := x.GetFields()
	if len(fields) == 0 {
		return
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		if f.GetAStar() != nil {
			names[i] = "*"
		} else {
			names[i] = f.GetString_().GetSval()
		}
	}
	col := names[len(names)-1]
	if len(names) == 1 {
		c.unqualified(col)
		return
	}
	qual := names[len(names)-2]
	schema := ""
	if len(names) >= 3 {
		schema = names[len(names)-3]
	}
	for i := len(c.scopes) - 1; i >= 0; i-- {
		s := c.scopes[i]
		for _, e := range s.entries {
			if e.name != qual || (schema != "" && e.kind == entryTable && e.schema != schema) {
				continue
			}
			switch e.kind {
			case entryTable:
				c.addObject(e.schema, e.table, policy.Read, "", col)
			case entryJoin:
				c.scopeColumn(s, col)
			}
			return
		}
	}
	// Not a relation in view: a composite-typed column or a name the classifier cannot place.
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
		if e.kind == entryTable {
			c.addObject(e.schema, e.table, policy.Read, "", col)
		}
	}
}

func (c *classifier) addFunc(names []*pg.Node) {
	name := strings.Join(stringList(names), ".")
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
