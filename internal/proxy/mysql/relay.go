package mysql

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/gatehousedb/gatehouse/internal/proxy/mysql/protocol"
)

// endWriteTimeout bounds how long ending a session waits to get its ERR to the client.
const endWriteTimeout = 2 * time.Second

// maxInspected bounds the commands read whole for OnStatement and KILL routing (MySQL's
// max_allowed_packet is at most 1 GiB).
const maxInspected = 1 << 30

var errClientQuit = errors.New("client sent COM_QUIT")

// relay copies packets both ways until either side closes, the token expires, the grant is revoked
// or the engine shuts down. Packets are copied whole and otherwise untouched, except commands: the
// first packet of each (sequence id 0) is looked at for statements, KILL and commands Gatehouse
// refuses.
func (s *session) relay(ctx context.Context) (endReason, error) {
	s.relaying.Store(true)
	s.client.SetDeadline(time.Time{})
	up := s.upstream

	errc := make(chan error, 2)
	go func() { errc <- s.clientToUpstream(ctx) }()
	go func() { errc <- s.upstreamToClient() }()

	var expiry <-chan time.Time
	if exp := s.grant.Identity.TokenExpiresAt; !exp.IsZero() {
		t := time.NewTimer(time.Until(exp))
		defer t.Stop()
		expiry = t.C
	}
	reason := endNone
	var err error
	select {
	case err = <-errc:
	case <-expiry:
		reason = endExpired
	case <-revokedDone(s.grant.Revoked):
		reason = endRevoked
	case <-s.stop:
		if reason = s.endReason(); reason == endNone {
			reason = endShutdown
		}
	}
	if reason == endNone {
		select {
		case <-s.stop:
			if reason = s.endReason(); reason == endNone {
				reason = endShutdown
			}
		default:
		}
	}
	if reason != endNone {
		s.sendEnd(reason)
	}
	s.client.Close()
	up.conn.Close()
	if err == nil {
		err = <-errc
	}
	<-errc
	if isEOF(err) || errors.Is(err, errClientQuit) {
		err = nil
	}
	return reason, err
}

// sendEnd tells the client why the sidecar is ending its session: an unsolicited ERR (sequence id
// 0, as MySQL 8 sends when it closes an idle session), between two packets.
func (s *session) sendEnd(r endReason) {
	e := &protocol.Error{Code: errServerShutdown, State: stateConnection, Message: messageShuttingDown}
	switch r {
	case endExpired:
		e = &protocol.Error{Code: errConnectionKilled, State: stateKilled, Message: fmt.Sprintf(
			"access token expired at %s; create a new one (gatehouse token create) and reconnect",
			s.grant.Identity.TokenExpiresAt.UTC().Format(time.RFC3339))}
	case endRevoked:
		e = &protocol.Error{Code: errConnectionKilled, State: stateKilled, Message: "access token revoked"}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if s.broken {
			return
		}
		s.broken = true
		s.client.SetWriteDeadline(time.Now().Add(endWriteTimeout))
		if _, err := protocol.WriteMessage(s.cw, 0, e.Encode()); err == nil {
			s.cw.Flush()
		}
	}()
	t := time.NewTimer(endWriteTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// clientToUpstream forwards client packets. It flushes whenever the client has nothing more
// buffered, so pipelined packets go out together.
func (s *session) clientToUpstream(ctx context.Context) error {
	up := s.upstream
	var h [protocol.HeaderLen]byte
	for {
		n, seq, err := protocol.ReadHeader(s.cr)
		if err != nil {
			return err
		}
		s.bytesUp.Add(int64(n) + protocol.HeaderLen)
		if seq != 0 || n == 0 {
			// Continuation of a long command, LOCAL INFILE data, or an empty packet.
			protocol.PutHeader(h[:], n, seq)
			if _, err := up.w.Write(h[:]); err != nil {
				return err
			}
			if _, err := io.CopyN(up.w, s.cr, int64(n)); err != nil {
				return unexpectedEOF(err)
			}
		} else if err := s.command(ctx, n); err != nil {
			return err
		}
		if s.cr.Buffered() == 0 {
			if err := up.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// command handles the first packet of a command, n bytes long, whose header has been read.
func (s *session) command(ctx context.Context, n int) error {
	up := s.upstream
	var first [1]byte
	if _, err := io.ReadFull(s.cr, first[:]); err != nil {
		return unexpectedEOF(err)
	}
	cmd := first[0]
	switch cmd {
	case mysql.COM_QUERY, mysql.COM_STMT_PREPARE, mysql.COM_STMT_EXECUTE, mysql.COM_INIT_DB, mysql.COM_PROCESS_KILL,
		mysql.COM_STMT_CLOSE, mysql.COM_CHANGE_USER, mysql.COM_BINLOG_DUMP, mysql.COM_BINLOG_DUMP_GTID,
		mysql.COM_REGISTER_SLAVE, mysql.COM_TABLE_DUMP, mysql.COM_QUIT:
	default:
		// Everything else (PING, STMT_RESET, STMT_FETCH, SEND_LONG_DATA, SET_OPTION,
		// RESET_CONNECTION, FIELD_LIST, STATISTICS, ...) is relayed unread; the queue only
		// learns what kind of answer it gets.
		if k := responseKind(cmd); k != itemNone {
			s.push(item{kind: k})
		}
		var h [protocol.HeaderLen + 1]byte
		protocol.PutHeader(h[:], n, 0)
		h[protocol.HeaderLen] = cmd
		if _, err := up.w.Write(h[:]); err != nil {
			return err
		}
		if _, err := io.CopyN(up.w, s.cr, int64(n-1)); err != nil {
			return unexpectedEOF(err)
		}
		return nil
	}
	// Read the whole command, with its continuation packets.
	body := make([]byte, n-1, n)
	if _, err := io.ReadFull(s.cr, body); err != nil {
		return unexpectedEOF(err)
	}
	seq := byte(0)
	for last := n; last == protocol.MaxPayload; {
		m, sq, err := protocol.ReadHeader(s.cr)
		if err != nil {
			return unexpectedEOF(err)
		}
		if len(body)+m > maxInspected {
			return fmt.Errorf("command longer than %d bytes", maxInspected)
		}
		start := len(body)
		body = append(body, make([]byte, m)...)
		if _, err := io.ReadFull(s.cr, body[start:]); err != nil {
			return unexpectedEOF(err)
		}
		s.bytesUp.Add(int64(m) + protocol.HeaderLen)
		last, seq = m, sq
	}
	payload := append([]byte{cmd}, body...)

	switch cmd {
	case mysql.COM_QUIT:
		if _, err := protocol.WriteMessage(up.w, 0, payload); err != nil {
			return err
		}
		up.w.Flush()
		return errClientQuit
	case mysql.COM_CHANGE_USER:
		s.refuse(seq, errNotSupported, stateSyntaxAccess,
			"COM_CHANGE_USER is not supported through Gatehouse: reconnect as the other repository user")
		return errors.New("client sent COM_CHANGE_USER")
	case mysql.COM_BINLOG_DUMP, mysql.COM_BINLOG_DUMP_GTID, mysql.COM_REGISTER_SLAVE, mysql.COM_TABLE_DUMP:
		s.refuse(seq, errNotSupported, stateSyntaxAccess, "replication is not supported through Gatehouse")
		return nil
	case mysql.COM_STMT_CLOSE:
		if len(body) >= 4 {
			s.q.mu.Lock()
			delete(s.prepared, binary.LittleEndian.Uint32(body))
			s.q.mu.Unlock()
		}
	case mysql.COM_PROCESS_KILL:
		if len(body) < 4 {
			break
		}
		target, ok := s.routeKill(seq, binary.LittleEndian.Uint32(body))
		if !ok {
			return nil
		}
		payload = binary.LittleEndian.AppendUint32([]byte{cmd}, target)
	case mysql.COM_QUERY, mysql.COM_STMT_EXECUTE, mysql.COM_INIT_DB:
		it, ok := s.govern(ctx, seq, cmd, body)
		if !ok {
			return nil
		}
		if cmd == mysql.COM_QUERY {
			if id, query, ok := parseKill(string(body)); ok {
				target, ok := s.routeKill(seq, id)
				if !ok {
					s.notExecuted(&it)
					return nil
				}
				payload = append([]byte{cmd}, killStatement(query, target)...)
			}
		}
		s.push(it)
		_, err := protocol.WriteMessage(up.w, 0, payload)
		return err
	case mysql.COM_STMT_PREPARE:
		s.push(item{kind: itemPrepare, sql: string(body)})
		_, err := protocol.WriteMessage(up.w, 0, payload)
		return err
	}
	if k := responseKind(cmd); k != itemNone {
		s.push(item{kind: k})
	}
	_, err := protocol.WriteMessage(up.w, 0, payload)
	return err
}

// refuse answers the command that ended with sequence id seq with an ERR, without forwarding it.
func (s *session) refuse(seq byte, code uint16, state, msg string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.broken {
		return
	}
	if _, err := protocol.WriteMessage(s.cw, seq+1, (&protocol.Error{Code: code, State: state, Message: msg}).Encode()); err != nil {
		s.broken = true
		return
	}
	if err := s.cw.Flush(); err != nil {
		s.broken = true
	}
}

var killRE = regexp.MustCompile(`(?is)^\s*KILL\s+(?:(?:HARD|SOFT)\s+)?(QUERY\s+|CONNECTION\s+)?(\d+)\s*;?\s*$`)

// parseKill recognises KILL [HARD|SOFT] [QUERY|CONNECTION] <id>.
func parseKill(sql string) (id uint32, query bool, ok bool) {
	m := killRE.FindStringSubmatch(sql)
	if m == nil {
		return 0, false, false
	}
	n, err := strconv.ParseUint(m[2], 10, 32)
	if err != nil {
		return 0, false, false
	}
	return uint32(n), len(m[1]) > 0 && (m[1][0] == 'q' || m[1][0] == 'Q'), true
}

func killStatement(query bool, id uint32) []byte {
	if query {
		return []byte("KILL QUERY " + strconv.FormatUint(uint64(id), 10))
	}
	return []byte("KILL CONNECTION " + strconv.FormatUint(uint64(id), 10))
}

// routeKill maps a connection id this sidecar gave to the repository's thread id of that session.
// Only the same person's sessions on the same repository can be killed; otherwise the client gets
// MySQL's own errors and false.
func (s *session) routeKill(seq byte, id uint32) (uint32, bool) {
	target := s.e.lookup(id)
	if target == nil || target.upstream == nil || !target.relaying.Load() {
		s.refuse(seq, errNoSuchThread, stateGeneral, fmt.Sprintf("Unknown thread id: %d", id))
		return 0, false
	}
	if target.grant.Identity.User != s.grant.Identity.User {
		s.refuse(seq, errKillDenied, stateGeneral, fmt.Sprintf("You are not owner of thread %d", id))
		return 0, false
	}
	if target.grant.Target.Repository.Name != s.grant.Target.Repository.Name {
		s.refuse(seq, errKillDenied, stateGeneral, fmt.Sprintf(
			"thread %d is connected to repository %s; run KILL through a connection to that repository", id, target.grant.Target.Repository.Name))
		return 0, false
	}
	s.logger.Info("kill routed", "target_session_id", id, "upstream_connection_id", target.upstream.connectionID)
	return target.upstream.connectionID, true
}

func quoteIdent(s string) string {
	out := []byte{'`'}
	for i := 0; i < len(s); i++ {
		if s[i] == '`' {
			out = append(out, '`')
		}
		out = append(out, s[i])
	}
	return string(append(out, '`'))
}

// upstreamToClient forwards repository packets, each whole under the write lock. The first bytes
// of each packet that starts one (not a continuation of a packet over 16 MiB) go to the response
// queue, which completes statements and learns prepared statement ids (govern.go).
func (s *session) upstreamToClient() error {
	up := s.upstream
	var head [maxObserved]byte
	cont := false
	for {
		n, seq, err := protocol.ReadHeader(up.r)
		if err != nil {
			return err
		}
		if cont {
			cont = n == protocol.MaxPayload
			if err := s.forward(n, seq, up.r); err != nil {
				return err
			}
			continue
		}
		cont = n == protocol.MaxPayload
		p, err := up.r.Peek(min(n, maxObserved))
		if err != nil {
			return unexpectedEOF(err)
		}
		h := head[:copy(head[:], p)]
		if err := s.forward(n, seq, up.r); err != nil {
			return err
		}
		s.observe(h, n)
	}
}

func (s *session) forward(n int, seq byte, r *bufio.Reader) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.broken {
		return errors.New("client stream closed")
	}
	s.bytesDown.Add(int64(n) + protocol.HeaderLen)
	var h [protocol.HeaderLen]byte
	protocol.PutHeader(h[:], n, seq)
	if _, err := s.cw.Write(h[:]); err != nil {
		s.broken = true
		return err
	}
	if _, err := io.CopyN(s.cw, r, int64(n)); err != nil {
		s.broken = true
		return unexpectedEOF(err)
	}
	if r.Buffered() == 0 {
		if err := s.cw.Flush(); err != nil {
			s.broken = true
			return err
		}
	}
	return nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// revokedDone is the Done channel of a grant's Revoked context; nil (never ready) without one.
func revokedDone(revoked context.Context) <-chan struct{} {
	if revoked == nil {
		return nil
	}
	return revoked.Done()
}
