package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// endWriteTimeout bounds how long ending a session waits to get a FATAL message to the client.
const endWriteTimeout = 2 * time.Second

// relay copies messages both ways until either side closes, the token expires, the grant is
// revoked or the engine shuts down. Messages are copied whole and otherwise untouched; only Query
// and Parse are decoded, for OnStatement.
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
	case <-s.grant.Revoked: // nil: never
		reason = endRevoked
	case <-s.stop:
		reason = s.endReason()
		if reason == endNone {
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
	if isEOF(err) || errors.Is(err, errClientTerminated) {
		err = nil
	}
	return reason, err
}

var errClientTerminated = errors.New("client sent Terminate")

// sendEnd tells the client why the sidecar is ending its session, between two messages.
func (s *session) sendEnd(r endReason) {
	var msg string
	switch r {
	case endExpired:
		msg = fmt.Sprintf("access token expired at %s; create a new one (gatehouse token create) and reconnect",
			s.grant.Identity.TokenExpiresAt.UTC().Format(time.RFC3339))
	case endRevoked:
		msg = "access token revoked"
	default:
		msg = messageShuttingDown
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if s.broken {
			return
		}
		s.broken = true // nothing may follow the FATAL
		b, err := fatalResponse(codeAdminShutdown, msg).Encode(nil)
		if err != nil {
			return
		}
		s.client.SetWriteDeadline(time.Now().Add(endWriteTimeout))
		if _, err := s.cw.Write(b); err == nil {
			s.cw.Flush()
		}
	}()
	t := time.NewTimer(endWriteTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// The relay is stuck inside a message (stalled upstream or client); closing both ends
		// below unblocks it.
	}
}

// clientToUpstream forwards client messages. It flushes whenever the client has nothing more
// buffered, so pipelined messages go out together.
func (s *session) clientToUpstream(ctx context.Context) error {
	up := s.upstream
	hook := s.e.cfg.OnStatement
	for {
		typ, n, err := readHeader(s.cr, maxMessageLen)
		if err != nil {
			return err
		}
		s.bytesUp.Add(int64(n) + 5)
		if hook != nil && (typ == 'Q' || typ == 'P') {
			body := make([]byte, n)
			if _, err := io.ReadFull(s.cr, body); err != nil {
				return unexpectedEOF(err)
			}
			st, err := decodeStatement(typ, body)
			if err != nil {
				return err
			}
			st.Grant = s.grant
			hook(ctx, st)
			if err := writeHeader(up.w, typ, n); err != nil {
				return err
			}
			if _, err := up.w.Write(body); err != nil {
				return err
			}
		} else {
			if err := writeHeader(up.w, typ, n); err != nil {
				return err
			}
			if _, err := io.CopyN(up.w, s.cr, int64(n)); err != nil {
				return unexpectedEOF(err)
			}
		}
		if typ == 'X' {
			up.w.Flush()
			return errClientTerminated
		}
		if s.cr.Buffered() == 0 {
			if err := up.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// decodeStatement decodes a Query or Parse body.
func decodeStatement(typ byte, body []byte) (Statement, error) {
	switch typ {
	case 'Q':
		var m pgproto3.Query
		if err := m.Decode(body); err != nil {
			return Statement{}, fmt.Errorf("decode Query: %w", err)
		}
		return Statement{Kind: 'Q', SQL: m.String}, nil
	case 'P':
		var m pgproto3.Parse
		if err := m.Decode(body); err != nil {
			return Statement{}, fmt.Errorf("decode Parse: %w", err)
		}
		return Statement{Kind: 'P', Name: m.Name, SQL: m.Query}, nil
	}
	return Statement{}, fmt.Errorf("message type %q is not a statement", typ)
}

// upstreamToClient forwards server messages, each whole under the write lock.
func (s *session) upstreamToClient() error {
	up := s.upstream
	for {
		typ, n, err := readHeader(up.r, maxMessageLen)
		if err != nil {
			return err
		}
		if err := s.forward(typ, n, up.r); err != nil {
			return err
		}
	}
}

func (s *session) forward(typ byte, n int, r *bufio.Reader) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.broken {
		return errors.New("client stream closed")
	}
	s.bytesDown.Add(int64(n) + 5)
	if err := writeHeader(s.cw, typ, n); err != nil {
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
