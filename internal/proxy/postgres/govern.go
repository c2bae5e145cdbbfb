package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// Statement governance. The client→upstream direction asks the session's proxy.StatementAuditor
// about each statement before forwarding it; the upstream→client direction tells it how each one
// ended. The two meet in a queue of the responses the client's messages are owed, in order:
//
//	client message            queue item        ends at (server message)
//	Query, FunctionCall       itemQuery         CommandComplete / EmptyQuery / FunctionCallResponse
//	                                            per statement, ErrorResponse; popped at ReadyForQuery
//	Parse, Bind, Close        itemParse, ...    ParseComplete, BindComplete, CloseComplete
//	Describe                  itemDescribe      RowDescription or NoData
//	Execute                   itemExecute       CommandComplete, EmptyQuery, PortalSuspended, ErrorResponse
//	Sync                      itemSync          ReadyForQuery
//
// An ErrorResponse in the extended protocol makes the server skip to the next Sync: the items
// before it are dropped (their statements never ran). A refused statement never reaches the
// server; the client gets an ErrorResponse (42501) at the place in the response stream where the
// server's answer would have been: a synthetic item that is written as soon as it reaches the head
// of the queue. A refused Query is answered with ErrorResponse and ReadyForQuery; after a refused
// Execute the client's messages are dropped up to its Sync, which is forwarded so that the server
// answers what came before and ends the batch. The upstream transaction is not touched, so the
// next statement works, inside a transaction block too.
//
// Only Query, Parse, Bind, Execute, FunctionCall and Sync are decoded; Describe and Close are
// counted by their type byte; everything else is copied through. On the way back only
// CommandComplete and ErrorResponse bodies are read (rows and SQLSTATE), never DataRows.

// SQLSTATEs of refused statements.
const (
	codeInsufficientPrivilege = "42501"
	codeInsufficientResources = "53000"
)

type itemKind uint8

const (
	itemQuery itemKind = iota + 1
	itemParse
	itemBind
	itemClose
	itemDescribe
	itemExecute
	itemSync
	itemDenied      // synthetic ErrorResponse in an extended-protocol batch
	itemDeniedQuery // synthetic ErrorResponse + ReadyForQuery for a refused Query
	itemInternal    // the engine's own query for the default schema
)

type item struct {
	kind  itemKind
	ref   uint64   // itemExecute: the statement record; 0 for a portal's continuation
	refs  []uint64 // itemQuery: one record per statement of the message
	next  int      // itemQuery: index in refs of the statement running
	start time.Time
	err   *pgproto3.ErrorResponse // synthetic items
}

// respQueue is what the server (or the engine, for synthetic items) still owes the client.
type respQueue struct {
	mu    sync.Mutex
	items []item // items[0] is the head; a window of store
	// store is the array items lives in, from its start: once the queue is empty, items starts
	// again at its front, so that a session's queries do not each allocate one (a long pipelined
	// batch's array is let go instead: an idle session keeps at most maxKeptItems).
	store    []item
	skipping bool // the server is skipping to the next Sync and no Sync is queued yet
	status   byte // transaction status of the last ReadyForQuery
}

// maxKeptItems is the largest queue array an emptied queue keeps.
const maxKeptItems = 8

// portal is a bound portal as the governance sees it.
type portal struct {
	sql, stmt string
	params    []string
	evaluated bool
}

// governor is a session's statement state, used by the client→upstream direction only.
type governor struct {
	aud        proxy.StatementAuditor
	stmts      map[string]string  // prepared statement name -> text ("" is the unnamed one); made on first use
	portals    map[string]*portal // named portals; made on first use
	unnamed    portal
	inBatch    bool // extended messages were forwarded since the last Sync
	discarding bool // a refused Execute: drop messages up to Sync
	refresh    bool // the default schema must be asked for before the next statement
	buf        []byte
	// st is the statement being asked about: the Auditor is given a pointer, which an interface
	// call lets escape, so a Statement of the call's own would be allocated per statement.
	st proxy.Statement

	schemaResult chan string
	upDone       chan struct{} // closed when the upstream→client direction stops
}

// ask asks the Auditor about a statement.
func (g *governor) ask(ctx context.Context, st proxy.Statement) proxy.Verdict {
	g.st = st
	v := g.aud.Statement(ctx, &g.st)
	g.st = proxy.Statement{} // an idle session keeps no statement text
	return v
}

func newGovernor(aud proxy.StatementAuditor) *governor {
	return &governor{
		aud: aud, refresh: true,
		schemaResult: make(chan string, 1), upDone: make(chan struct{}),
	}
}

// bodyBuffer returns a buffer for a message body of n bytes that governance reads whole. A short
// one is *own, kept and grown up to idleReadSize; a longer one is borrowed from the pool (the
// caller puts it back once nothing refers to it), or allocated beyond bufferSize. So an idle
// session does not keep a buffer the size of the longest statement it ever sent.
func (e *Engine) bodyBuffer(own *[]byte, n int) (body []byte, borrowed *buffer) {
	switch {
	case n <= idleReadSize:
		if cap(*own) < n {
			*own = make([]byte, min(max(n, 2*cap(*own)), idleReadSize))
		}
		return (*own)[:n], nil
	case n <= bufferSize:
		b := e.bufs.Get().(*buffer)
		return b[:n], b
	}
	return make([]byte, n), nil
}

// governed reports whether a client message type takes part in governance.
func governed(typ byte) bool {
	switch typ {
	case 'Q', 'P', 'B', 'E', 'F', 'S', 'D', 'C':
		return true
	}
	return false
}

// cstr splits a NUL-terminated string off b.
func cstr(b []byte) ([]byte, []byte, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, errors.New("malformed message: unterminated string")
	}
	return b[:i], b[i+1:], nil
}

// clientMessage handles one governed client message. It returns errClientTerminated-free errors
// only for broken connections or framing.
func (s *session) clientMessage(ctx context.Context, typ byte, n int) error {
	g := s.gov
	up := s.upstream
	body, borrowed := s.e.bodyBuffer(&g.buf, n)
	if borrowed != nil {
		defer s.e.bufs.Put(borrowed)
	}
	if _, err := io.ReadFull(s.cr, body); err != nil {
		return unexpectedEOF(err)
	}
	if g.discarding {
		if typ != 'S' {
			return nil
		}
		g.discarding = false
	}
	forward := func() error {
		if err := writeHeader(up.w, typ, n); err != nil {
			return err
		}
		_, err := up.w.Write(body)
		return err
	}
	switch typ {
	case 'Q':
		sql, _, err := cstr(body)
		if err != nil {
			return err
		}
		if err := s.refreshSchema(ctx); err != nil {
			return err
		}
		v := g.ask(ctx, proxy.Statement{Path: proxy.PathSimple, SQL: string(sql)})
		if v.Refusal != proxy.Allowed {
			return s.deny(refusalResponse(v), true)
		}
		if v.RefreshSchema {
			g.aud.SetSchema("")
			g.refresh = true
		}
		if s.push(item{kind: itemQuery, refs: v.Refs, start: time.Now()}) {
			return forward()
		}
		return nil
	case 'F':
		if len(body) < 4 {
			return errors.New("malformed FunctionCall")
		}
		if err := s.refreshSchema(ctx); err != nil {
			return err
		}
		oid := binary.BigEndian.Uint32(body)
		v := g.ask(ctx, proxy.Statement{Path: proxy.PathFunction, SQL: "-- function call: oid " + strconv.FormatUint(uint64(oid), 10)})
		if v.Refusal != proxy.Allowed {
			return s.deny(refusalResponse(v), true)
		}
		s.push(item{kind: itemQuery, refs: v.Refs, start: time.Now()})
		return forward()
	case 'P':
		if err := s.refreshSchema(ctx); err != nil {
			return err
		}
		name, rest, err := cstr(body)
		if err != nil {
			return err
		}
		sql, _, err := cstr(rest)
		if err != nil {
			return err
		}
		if old, ok := g.stmts[string(name)]; !ok || old != string(sql) {
			if g.stmts == nil {
				g.stmts = map[string]string{}
			}
			g.stmts[string(name)] = string(sql)
		}
		g.inBatch = true
		s.push(item{kind: itemParse})
		return forward()
	case 'B':
		if err := s.refreshSchema(ctx); err != nil {
			return err
		}
		name, rest, err := cstr(body)
		if err != nil {
			return err
		}
		stmt, rest, err := cstr(rest)
		if err != nil {
			return err
		}
		p := &g.unnamed
		if len(name) > 0 {
			if p = g.portals[string(name)]; p == nil {
				p = &portal{}
				if g.portals == nil {
					g.portals = map[string]*portal{}
				}
				g.portals[string(name)] = p
			}
		}
		stmtName := p.stmt // a client binding one statement over and over: no new string per Bind
		if stmtName != string(stmt) {
			stmtName = string(stmt)
		}
		*p = portal{sql: g.stmts[string(stmt)], stmt: stmtName}
		if g.aud.RecordParams() {
			p.params = bindParams(rest)
		}
		g.inBatch = true
		s.push(item{kind: itemBind})
		return forward()
	case 'E':
		name, _, err := cstr(body)
		if err != nil {
			return err
		}
		p := &g.unnamed
		if len(name) > 0 {
			if p = g.portals[string(name)]; p == nil {
				p = &portal{}
			}
		}
		g.inBatch = true
		var ref uint64
		if !p.evaluated {
			p.evaluated = true
			v := g.ask(ctx, proxy.Statement{Path: proxy.PathExtended, SQL: p.sql, Name: p.stmt, Params: p.params})
			if v.Refusal != proxy.Allowed {
				g.discarding = true
				if err := s.deny(refusalResponse(v), false); err != nil {
					return err
				}
				// Let the server answer what came before now, in case the client waits for it
				// (Flush) before it sends Sync.
				return writeHeader(up.w, 'H', 0)
			}
			if v.RefreshSchema {
				g.aud.SetSchema("")
				g.refresh = true
			}
			if len(v.Refs) > 0 {
				ref = v.Refs[0]
			}
		}
		s.push(item{kind: itemExecute, ref: ref, start: time.Now()})
		return forward()
	case 'D':
		g.inBatch = true
		s.push(item{kind: itemDescribe})
		return forward()
	case 'C':
		g.inBatch = true
		s.push(item{kind: itemClose})
		return forward()
	case 'S':
		g.inBatch = false
		s.push(item{kind: itemSync})
		return forward()
	}
	return forward()
}

// Limits on recorded bind parameter values (only when the repository opts in): they are kept in
// the activity spool ahead of the statement, so one huge Bind must not fill it.
const (
	maxParamBytes       = 1024      // text value; longer ones are cut
	maxParamHexBytes    = 64        // binary value shown as hex; longer ones only by size
	maxParamsTotalBytes = 16 * 1024 // all values of one Bind; the rest are counted
)

// bindParams returns a Bind's parameter values for the activity record: text-format values as
// text (cut at maxParamBytes), binary-format values as \x hex when short and "<binary N bytes>"
// otherwise, NULL as "NULL".
func bindParams(b []byte) []string {
	var m pgproto3.Bind
	// Decode wants the whole body; rebuild the two names we cut off as empty strings.
	full := append([]byte{0, 0}, b...)
	if err := m.Decode(full); err != nil {
		return nil
	}
	out := make([]string, 0, len(m.Parameters))
	total := 0
	for i, p := range m.Parameters {
		var v string
		switch {
		case p == nil:
			v = "NULL"
		case formatCode(m.ParameterFormatCodes, i) == 1:
			if len(p) <= maxParamHexBytes {
				v = fmt.Sprintf("\\x%x", p)
			} else {
				v = fmt.Sprintf("<binary %d bytes>", len(p))
			}
		default:
			v = strings.ToValidUTF8(string(p), "\uFFFD")
			if len(v) > maxParamBytes {
				cut := maxParamBytes
				for cut > 0 && !utf8.RuneStart(v[cut]) {
					cut--
				}
				v = fmt.Sprintf("%s…[truncated, %d bytes]", v[:cut], len(p))
			}
		}
		if total+len(v) > maxParamsTotalBytes {
			out = append(out, fmt.Sprintf("<%d more parameters not recorded>", len(m.Parameters)-i))
			break
		}
		total += len(v)
		out = append(out, v)
	}
	return out
}

func formatCode(codes []int16, i int) int16 {
	switch len(codes) {
	case 0:
		return 0
	case 1:
		return codes[0]
	}
	if i < len(codes) {
		return codes[i]
	}
	return 0
}

func refusalResponse(v proxy.Verdict) *pgproto3.ErrorResponse {
	code := codeInsufficientPrivilege
	if v.Refusal == proxy.NotRecorded {
		code = codeInsufficientResources
	}
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: v.Message}
}

// push queues the response owed for a message about to be forwarded. It reports false when the
// server is skipping to the next Sync anyway (the caller still forwards, which is harmless).
func (s *session) push(it item) bool {
	q := &s.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.skipping && it.kind != itemSync {
		s.notExecuted(&it)
		return true
	}
	if it.kind == itemSync {
		q.skipping = false
	}
	q.add(it)
	return true
}

// deny queues a refusal; with ready, it is answered with ReadyForQuery too (a refused Query or
// FunctionCall). When nothing is owed before it, it is written at once.
func (s *session) deny(resp *pgproto3.ErrorResponse, ready bool) error {
	kind := itemDenied
	if ready {
		kind = itemDeniedQuery
	}
	q := &s.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.skipping && !ready {
		return nil // the server's own error is what the client gets
	}
	q.add(item{kind: kind, err: resp})
	return s.emitSynthetic()
}

// emitSynthetic writes the synthetic items at the head of the queue. Called with q.mu held.
func (s *session) emitSynthetic() error {
	q := &s.q
	for len(q.items) > 0 {
		it := &q.items[0]
		if it.kind != itemDenied && it.kind != itemDeniedQuery {
			return nil
		}
		msgs := []interface{ Encode([]byte) ([]byte, error) }{it.err}
		if it.kind == itemDeniedQuery {
			msgs = append(msgs, &pgproto3.ReadyForQuery{TxStatus: q.status})
		}
		q.pop()
		if err := s.send(msgs...); err != nil {
			return err
		}
	}
	return nil
}

// add puts it at the tail of the queue.
func (q *respQueue) add(it item) {
	if len(q.items) == cap(q.items) {
		if n := len(q.items); n < len(q.store) {
			// Room at the front of store, where popped items were: move the queue there.
			copy(q.store, q.items)
			clear(q.store[n:])
			q.items = q.store[:n]
		} else {
			q.items = append(q.items, it)
			q.store = q.items[:cap(q.items)]
			return
		}
	}
	q.items = append(q.items, it)
}

func (q *respQueue) pop() {
	q.items[0] = item{}
	q.items = q.items[1:]
	if len(q.items) == 0 {
		if cap(q.store) > maxKeptItems {
			q.store = nil
		}
		q.items = q.store[:0]
	}
}

// notExecuted completes the records of an item whose statements never ran.
func (s *session) notExecuted(it *item) {
	switch it.kind {
	case itemExecute:
		if it.ref != 0 {
			s.gov.aud.Complete(it.ref, proxy.Completion{NotExecuted: true})
		}
	case itemQuery:
		for _, r := range it.refs[it.next:] {
			s.gov.aud.Complete(r, proxy.Completion{NotExecuted: true})
		}
		it.next = len(it.refs)
	}
}

// refreshSchema asks the server for the session's default schema when that is due and the
// server owes the client nothing (so the answer cannot mix with the client's).
func (s *session) refreshSchema(ctx context.Context) error {
	g := s.gov
	if !g.refresh || g.inBatch {
		return nil
	}
	q := &s.q
	q.mu.Lock()
	if len(q.items) > 0 {
		q.mu.Unlock()
		return nil
	}
	q.add(item{kind: itemInternal})
	q.mu.Unlock()
	g.refresh = false
	b, err := (&pgproto3.Query{String: "SELECT pg_catalog.current_schemas(false)"}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := s.upstream.w.Write(b); err != nil {
		return err
	}
	if err := s.upstream.w.Flush(); err != nil {
		return err
	}
	select {
	case schema := <-g.schemaResult:
		g.aud.SetSchema(schema)
		return nil
	case <-g.upDone:
		return io.ErrUnexpectedEOF
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serverMessage reads one server message whose header has been read and forwards it to the client,
// completing statements on the way.
func (s *session) serverMessage(typ byte, n int, r *connReader) error {
	q := &s.q
	q.mu.Lock()
	internal := len(q.items) > 0 && q.items[0].kind == itemInternal
	q.mu.Unlock()
	if internal && typ != 'S' && typ != 'A' && typ != 'N' {
		return s.internalMessage(typ, n, r)
	}
	switch typ {
	case 'C', 'E', 'Z', 'I', 's', 'V', '1', '2', '3', 'T', 'n':
	default:
		return s.forward(typ, n, r)
	}
	var body []byte
	if typ == 'C' || typ == 'E' || typ == 'Z' {
		var borrowed *buffer
		body, borrowed = s.e.bodyBuffer(&s.sbuf, n)
		if borrowed != nil {
			defer s.e.bufs.Put(borrowed)
		}
		if _, err := io.ReadFull(r, body); err != nil {
			return unexpectedEOF(err)
		}
		if err := s.forwardBody(typ, body); err != nil {
			return err
		}
	} else if err := s.forward(typ, n, r); err != nil {
		return err
	}
	return s.observe(typ, body)
}

// observe updates the queue for a server message already forwarded.
func (s *session) observe(typ byte, body []byte) error {
	q := &s.q
	aud := s.gov.aud
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		if typ == 'Z' && len(body) > 0 {
			q.status = body[0]
		}
		return nil
	}
	head := &q.items[0]
	now := time.Now()
	switch typ {
	case 'Z':
		if len(body) > 0 {
			q.status = body[0]
		}
		for len(q.items) > 0 {
			it := &q.items[0]
			k := it.kind
			if k == itemDenied || k == itemDeniedQuery {
				break
			}
			s.notExecuted(it)
			q.pop()
			if k == itemSync || k == itemQuery {
				break
			}
		}
	case 'C', 'I', 's', 'V':
		var rows int64
		if typ == 'C' {
			rows = commandRows(body)
		}
		switch head.kind {
		case itemQuery:
			if head.next < len(head.refs) {
				aud.Complete(head.refs[head.next], proxy.Completion{Rows: rows, Duration: now.Sub(head.start)})
				head.next++
				head.start = now
			}
		case itemExecute:
			if head.ref != 0 {
				aud.Complete(head.ref, proxy.Completion{Rows: rows, Duration: now.Sub(head.start)})
			}
			q.pop()
		}
	case 'E':
		code := errorCode(body)
		switch head.kind {
		case itemQuery:
			if head.next < len(head.refs) {
				aud.Complete(head.refs[head.next], proxy.Completion{ErrorCode: code, Duration: now.Sub(head.start)})
				head.next++
			}
			s.notExecuted(head)
		case itemSync:
			// An error the server sends at Sync (a failed implicit COMMIT): nothing to skip.
		default:
			if head.kind == itemExecute && head.ref != 0 {
				aud.Complete(head.ref, proxy.Completion{ErrorCode: code, Duration: now.Sub(head.start)})
				head.ref = 0
			}
			q.pop()
			// The server skips to the next Sync.
			for len(q.items) > 0 && q.items[0].kind != itemSync {
				s.notExecuted(&q.items[0])
				q.pop()
			}
			if len(q.items) == 0 {
				q.skipping = true
			}
		}
	case '1':
		if head.kind == itemParse {
			q.pop()
		}
	case '2':
		if head.kind == itemBind {
			q.pop()
		}
	case '3':
		if head.kind == itemClose {
			q.pop()
		}
	case 'T', 'n':
		if head.kind == itemDescribe {
			q.pop()
		}
	}
	return s.emitSynthetic()
}

// internalMessage consumes the answer to the engine's own schema query.
func (s *session) internalMessage(typ byte, n int, r *connReader) error {
	body, borrowed := s.e.bodyBuffer(&s.sbuf, n)
	if borrowed != nil {
		defer s.e.bufs.Put(borrowed)
	}
	if _, err := io.ReadFull(r, body); err != nil {
		return unexpectedEOF(err)
	}
	switch typ {
	case 'D':
		s.internalSchema = schemaFromRow(body)
	case 'E':
		s.internalSchema = ""
	case 'Z':
		q := &s.q
		q.mu.Lock()
		if len(body) > 0 {
			q.status = body[0]
		}
		q.pop()
		err := s.emitSynthetic()
		q.mu.Unlock()
		s.gov.schemaResult <- s.internalSchema
		s.internalSchema = ""
		return err
	}
	return nil
}

// schemaFromRow reads current_schemas(false) from a DataRow: the one schema unqualified names
// resolve to, or "" when there are several or none (names then count as of unknown schema).
func schemaFromRow(b []byte) string {
	if len(b) < 6 || binary.BigEndian.Uint16(b) != 1 {
		return ""
	}
	l := int32(binary.BigEndian.Uint32(b[2:]))
	if l < 0 || int(l) > len(b)-6 {
		return ""
	}
	v := string(b[6 : 6+l])
	v = strings.TrimSuffix(strings.TrimPrefix(v, "{"), "}")
	if v == "" || strings.Contains(v, ",") {
		return ""
	}
	if strings.HasPrefix(v, `"`) {
		v = strings.ReplaceAll(strings.Trim(v, `"`), `\"`, `"`)
	}
	return v
}

// commandRows reads the row count at the end of a CommandComplete tag ("SELECT 5", "INSERT 0 5").
func commandRows(body []byte) int64 {
	tag, _, err := cstr(body)
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(tag, ' ')
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseInt(string(tag[i+1:]), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// errorCode reads the SQLSTATE field of an ErrorResponse.
func errorCode(body []byte) string {
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		v, rest, err := cstr(body[1:])
		if err != nil {
			return ""
		}
		if f == 'C' {
			return string(v)
		}
		body = rest
	}
	return ""
}
