package mysql

import (
	"context"
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/mysql/protocol"
)

// Statement governance. The client→repository direction asks the session's
// proxy.StatementAuditor about each statement before forwarding it; the repository→client
// direction tells it how each one ended. They meet in a queue of the answers the repository owes
// the client, one item per command that gets one, in order:
//
//	command                          item          answer, as the queue reads it
//	COM_QUERY, COM_STMT_EXECUTE,     itemResult    per result: OK | ERR | column count, columns,
//	COM_INIT_DB, COM_PROCESS_INFO                  [EOF], rows, EOF/OK; SERVER_MORE_RESULTS_EXISTS
//	                                               in the final status means another result follows
//	                                               (one per statement of a multi-statement text);
//	                                               0xFB asks for a LOCAL INFILE, then OK | ERR
//	COM_STMT_PREPARE                 itemPrepare   OK (statement id, columns, params), definitions
//	                                               [EOF] | ERR
//	COM_STMT_FETCH, COM_FIELD_LIST   itemUntilEOF  rows or definitions, then EOF/OK | ERR
//	COM_PING, COM_STMT_RESET, ...    itemOne       one packet
//	COM_STMT_CLOSE, SEND_LONG_DATA   —             no answer
//
// Each result of an itemResult completes the next statement record (rows: affected rows of an
// OK, rows of a result set; the MySQL error number of an ERR); an ERR ends the text, and the
// statements after it are recorded as not executed. Only the first bytes of packets are looked
// at, never row contents. A refused statement never reaches the repository and gets no item: the
// client is answered at once (MySQL clients wait for each answer before the next command).

// maxObserved is how much of a packet the queue looks at: enough for an OK packet's header
// (two length-encoded integers and the status flags) and an ERR's number.
const maxObserved = 32

// Error numbers of refused statements.
const (
	errOutOfResources  = mysql.ER_OUT_OF_RESOURCES     // 1041, HY000: the statement could not be recorded
	errUnknownStmt     = mysql.ER_UNKNOWN_STMT_HANDLER // 1243, HY000
	serverMoreResults  = mysql.SERVER_MORE_RESULTS_EXISTS
	serverCursorExists = mysql.SERVER_STATUS_CURSOR_EXISTS
)

type itemKind uint8

const (
	itemNone itemKind = iota
	itemResult
	itemPrepare
	itemUntilEOF
	itemOne
)

// responseKind is how the answer to a command the queue does not govern is shaped.
func responseKind(cmd byte) itemKind {
	switch cmd {
	case mysql.COM_STMT_CLOSE, mysql.COM_STMT_SEND_LONG_DATA, mysql.COM_QUIT:
		return itemNone
	case mysql.COM_STMT_FETCH, mysql.COM_FIELD_LIST:
		return itemUntilEOF
	case mysql.COM_PROCESS_INFO:
		return itemResult
	}
	return itemOne
}

type phase uint8

const (
	phaseStart   phase = iota // the first packet of a result
	phaseColumns              // column definitions; then EOF unless CLIENT_DEPRECATE_EOF
	phaseColumnsEOF
	phaseRows
	phaseSkip // a counted number of packets (prepare definitions)
)

type item struct {
	kind  itemKind
	refs  []uint64 // itemResult: one record per statement
	next  int      // index in refs of the statement running
	start time.Time
	sql   string // itemPrepare: the text
	// schema, when set, is the default database after the command succeeds (COM_INIT_DB, USE).
	schema *string

	phase phase
	count int // columns or packets left
	rows  int64
}

// respQueue is what the repository still owes the client.
type respQueue struct {
	mu    sync.Mutex
	items []item
	// schema is a default database learnt from an answer, for the client→repository direction
	// to pass to StatementAuditor.SetSchema before the next statement.
	schema *string
}

func (s *session) push(it item) {
	s.q.mu.Lock()
	defer s.q.mu.Unlock()
	s.q.items = append(s.q.items, it)
}

// useRE is a text that is exactly one USE statement.
var useRE = regexp.MustCompile("(?is)^\\s*USE\\s+(?:`((?:[^`]|``)+)`|([A-Za-z0-9_$]+))\\s*;?\\s*$")

// govern asks the Auditor about a COM_QUERY, COM_STMT_EXECUTE or COM_INIT_DB (body without the
// command byte, whose last packet had sequence id seq). It returns the item to queue when the
// command is to be forwarded; otherwise the client has been answered.
func (s *session) govern(ctx context.Context, seq, cmd byte, body []byte) (item, bool) {
	it := item{kind: itemResult, start: time.Now()}
	if s.aud == nil {
		return it, true
	}
	// The Auditor is given a pointer, which an interface call lets escape: the session's own
	// Statement saves an allocation per statement. Only the client→repository relay calls govern.
	s.st = proxy.Statement{Path: proxy.PathSimple}
	st := &s.st
	defer func() { s.st = proxy.Statement{} }() // an idle session keeps no statement text
	switch cmd {
	case mysql.COM_QUERY:
		st.SQL = string(body)
		if m := useRE.FindStringSubmatch(st.SQL); m != nil {
			db := m[2]
			if m[1] != "" {
				db = unquoteIdent(m[1])
			}
			it.schema = &db
		}
	case mysql.COM_INIT_DB:
		db := string(body)
		st.SQL = "USE " + quoteIdent(db)
		it.schema = &db
	case mysql.COM_STMT_EXECUTE:
		if len(body) < 4 {
			s.refuse(seq, errUnknownStmt, stateGeneral, "malformed COM_STMT_EXECUTE")
			return it, false
		}
		id := binary.LittleEndian.Uint32(body)
		s.q.mu.Lock()
		sql, ok := s.prepared[id]
		s.q.mu.Unlock()
		if !ok {
			s.refuse(seq, errUnknownStmt, stateGeneral, fmt.Sprintf("Unknown prepared statement handler (%d) given to mysqld_stmt_execute", id))
			return it, false
		}
		st.Path, st.SQL, st.Name = proxy.PathExtended, sql, strconv.FormatUint(uint64(id), 10)
	}
	s.q.mu.Lock()
	learnt := s.q.schema
	s.q.schema = nil
	s.q.mu.Unlock()
	if learnt != nil {
		s.aud.SetSchema(*learnt)
	}
	v := s.aud.Statement(ctx, st)
	switch v.Refusal {
	case proxy.Allowed:
	case proxy.RefusedByPolicy:
		s.refuse(seq, errTableAccess, stateSyntaxAccess, v.Message)
		return it, false
	default:
		s.refuse(seq, errOutOfResources, stateGeneral, v.Message)
		return it, false
	}
	if v.RefreshSchema || it.schema != nil {
		// Until the repository has answered, the default database is not known: unqualified
		// names match only rules for any database.
		s.aud.SetSchema("")
	}
	it.refs = v.Refs
	return it, true
}

func unquoteIdent(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '`' && i+1 < len(s) && s[i+1] == '`' {
			i++
		}
	}
	return string(out)
}

// observe reads the start of a packet the repository sent (n bytes long, head its first bytes),
// already forwarded to the client, and moves the queue on.
func (s *session) observe(head []byte, n int) {
	q := &s.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 || len(head) == 0 {
		return // an unsolicited ERR before the repository closes the connection
	}
	it := &q.items[0]
	deprecateEOF := s.caps&mysql.CLIENT_DEPRECATE_EOF != 0
	// terminator: an EOF packet, or an OK packet with the EOF header under CLIENT_DEPRECATE_EOF.
	terminator := head[0] == protocol.EOFHeader && (n < 9 || deprecateEOF && n < protocol.MaxPayload)
	switch it.kind {
	case itemOne:
		s.pop()
	case itemUntilEOF:
		if head[0] == protocol.ErrHeader || terminator {
			s.pop()
		}
	case itemPrepare:
		switch it.phase {
		case phaseStart:
			if head[0] != protocol.OKHeader || len(head) < 9 {
				s.pop()
				return
			}
			id := binary.LittleEndian.Uint32(head[1:])
			cols := int(binary.LittleEndian.Uint16(head[5:]))
			params := int(binary.LittleEndian.Uint16(head[7:]))
			s.prepared[id] = it.sql
			it.count = cols + params
			if !deprecateEOF {
				if cols > 0 {
					it.count++
				}
				if params > 0 {
					it.count++
				}
			}
			it.phase = phaseSkip
		default:
			it.count--
		}
		if it.count <= 0 {
			s.pop()
		}
	case itemResult:
		s.result(it, head, n, terminator, deprecateEOF)
	}
}

// result moves an itemResult on by one packet. Called with q.mu held.
func (s *session) result(it *item, head []byte, n int, terminator, deprecateEOF bool) {
	switch it.phase {
	case phaseStart:
		switch head[0] {
		case protocol.OKHeader:
			affected, status, _ := okStatus(head)
			s.endResult(it, int64(affected), status)
		case protocol.ErrHeader:
			s.errResult(it, head)
		case 0xFB:
			// LOCAL INFILE request: the client sends the file, then the repository answers.
		default:
			cols, _, ok := protocol.ReadLenEncInt(head)
			if !ok || cols == 0 {
				s.errResult(it, nil)
				return
			}
			it.phase, it.count, it.rows = phaseColumns, int(cols), 0
		}
	case phaseColumns:
		if it.count--; it.count > 0 {
			return
		}
		if deprecateEOF {
			it.phase = phaseRows
		} else {
			it.phase = phaseColumnsEOF
		}
	case phaseColumnsEOF:
		it.phase = phaseRows
		if _, status, ok := eofStatus(head); ok && status&serverCursorExists != 0 {
			// A cursor: rows come with COM_STMT_FETCH.
			s.endResult(it, 0, status&^serverMoreResults)
		}
	case phaseRows:
		switch {
		case head[0] == protocol.ErrHeader:
			s.errResult(it, head)
		case terminator:
			var status uint16
			if deprecateEOF {
				_, status, _ = okStatus(head)
			} else {
				_, status, _ = eofStatus(head)
			}
			s.endResult(it, it.rows, status)
		default:
			it.rows++
		}
	}
}

// endResult completes the statement whose result ended; without SERVER_MORE_RESULTS_EXISTS the
// command's answer is over.
func (s *session) endResult(it *item, rows int64, status uint16) {
	now := time.Now()
	if s.aud != nil && it.next < len(it.refs) {
		s.aud.Complete(it.refs[it.next], proxy.Completion{Rows: rows, Duration: now.Sub(it.start)})
	}
	it.next++
	if status&serverMoreResults != 0 {
		it.phase, it.start, it.rows = phaseStart, now, 0
		return
	}
	if it.schema != nil && it.next >= len(it.refs) {
		s.q.schema = it.schema
	}
	s.pop()
}

// errResult completes the statement that failed and the ones after it, which never ran.
func (s *session) errResult(it *item, head []byte) {
	if s.aud != nil && it.next < len(it.refs) {
		code := ""
		if len(head) >= 3 {
			code = strconv.Itoa(int(binary.LittleEndian.Uint16(head[1:])))
		}
		s.aud.Complete(it.refs[it.next], proxy.Completion{ErrorCode: code, Duration: time.Since(it.start)})
		it.next++
	}
	s.pop()
}

// pop drops the head of the queue, recording its statements that did not run. Called with q.mu
// held.
func (s *session) pop() {
	q := &s.q
	s.notExecuted(&q.items[0])
	q.items[0] = item{}
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = q.items[:0:0]
	}
}

// notExecuted completes the records of an item's statements that never ran.
func (s *session) notExecuted(it *item) {
	if s.aud == nil {
		return
	}
	for ; it.next < len(it.refs); it.next++ {
		s.aud.Complete(it.refs[it.next], proxy.Completion{NotExecuted: true})
	}
}

// drain records the statements still owed an answer when the session ends as not executed.
func (s *session) drain() {
	s.q.mu.Lock()
	defer s.q.mu.Unlock()
	for len(s.q.items) > 0 {
		s.pop()
	}
}

// okStatus reads the affected rows and status flags of an OK packet (header 0x00 or 0xFE).
func okStatus(p []byte) (affected uint64, status uint16, ok bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	rest := p[1:]
	affected, m, ok := protocol.ReadLenEncInt(rest)
	if !ok {
		return 0, 0, false
	}
	rest = rest[m:]
	_, m, ok = protocol.ReadLenEncInt(rest)
	if !ok || len(rest) < m+2 {
		return affected, 0, false
	}
	return affected, binary.LittleEndian.Uint16(rest[m:]), true
}

// eofStatus reads the warnings and status flags of an EOF packet.
func eofStatus(p []byte) (warnings, status uint16, ok bool) {
	if len(p) < 5 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint16(p[1:]), binary.LittleEndian.Uint16(p[3:]), true
}
