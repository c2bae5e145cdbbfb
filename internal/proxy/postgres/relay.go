package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// endWriteTimeout bounds how long ending a session waits to get a FATAL message to the client.
const endWriteTimeout = 2 * time.Second

// relay copies messages both ways until either side closes, the token expires, the grant is
// revoked or the engine shuts down. Messages are copied whole and otherwise untouched; with an
// Auditor, statement messages are governed on the way (govern.go).
//
// Each direction has a goroutine: client→upstream carries on on the session's, the other gets one
// of its own. Whichever stops first closes both connections (closeConns), which stops the other,
// and the last to stop ends the session (ended). Nothing else waits: the token's expiry is a timer,
// and the grant's revocation and the engine's shutdown are context callbacks, each of which ends the
// session through end and interrupt. A quiet session parks: its directions give up their goroutines
// until there is something to read (park.go). relay returns when the session has ended, or when
// the session's goroutine has parked.
func (s *session) relay(ctx context.Context) {
	s.client.SetDeadline(time.Time{})
	s.ctx, s.relayStart, s.done = ctx, time.Now(), make(chan struct{})
	if exp := s.grant.Identity.TokenExpiresAt; !exp.IsZero() {
		s.expiry = time.AfterFunc(time.Until(exp), func() { s.end(endExpired) })
	}
	if revoked := s.grant.Revoked; revoked != nil {
		s.stopRevoked = context.AfterFunc(revoked, func() { s.end(endRevoked) })
	}
	s.idl = s.e.idlerFor(s)
	if s.idl != nil {
		s.cr.retry = func() bool { return s.clearDeadline(dirClient) }
		s.upstream.r.retry = func() bool { return s.clearDeadline(dirUpstream) }
	}
	s.live.Store(2)
	s.relaying.Store(true)
	if s.endReason() != endNone {
		// Ended just before relaying was set: end found it false and left the interrupting to
		// us.
		s.interrupt()
	}
	go s.direction(dirUpstream)
	if s.direction(dirClient) {
		<-s.done
	}
}

// errParked is how a direction's loop says its goroutine has parked (park.go).
var errParked = errors.New("parked")

// direction runs direction d's loop on the calling goroutine until it stops or parks, and
// reports whether it stopped. The last direction to stop ends the session.
func (s *session) direction(d int) bool {
	var err error
	if d == dirClient {
		err = s.clientToUpstream(s.ctx)
	} else {
		err = s.upstreamToClient()
	}
	if err == errParked {
		return false // the session may already be running on another goroutine: hands off
	}
	if d == dirUpstream && s.gov != nil {
		close(s.gov.upDone)
	}
	s.reasonMu.Lock()
	if !s.errSet {
		s.firstErr, s.errSet = err, true
	}
	s.reasonMu.Unlock()
	s.closeConns()
	if s.live.Add(-1) == 0 {
		s.ended()
	}
	return true
}

// ended finishes the session once both directions have stopped.
func (s *session) ended() {
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if s.stopRevoked != nil {
		s.stopRevoked()
	}
	// Wait for an interrupt under way (its FATAL written or given up on); none can start after.
	s.interruptOnce.Do(func() {})
	s.cr.retry, s.upstream.r.retry = nil, nil

	s.reasonMu.Lock()
	err := s.firstErr
	s.reasonMu.Unlock()
	if isEOF(err) || errors.Is(err, errClientTerminated) {
		err = nil
	}
	s.finish(s.ctx, time.Since(s.relayStart), s.endReason(), err)
	s.upstream.conn.Close()
	s.close()
	close(s.done)
}

// interrupt ends a relaying session from outside, for the reason given to end: it tells the
// client why, between two messages, and closes both connections, which stops the relay. It runs
// once, and not after the relay has stopped by itself.
func (s *session) interrupt() {
	s.interruptOnce.Do(func() {
		r := s.endReason()
		if r == endNone {
			r = endShutdown
		}
		s.sendEnd(r)
		s.closeConns()
	})
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
// buffered, so pipelined messages go out together. With an Auditor, statement messages go through
// the session's governance first (govern.go).
func (s *session) clientToUpstream(ctx context.Context) error {
	up := s.upstream
	g := s.gov
	for {
		s.cr.parkable = true
		typ, n, err := readHeader(s.cr, maxMessageLen)
		s.cr.parkable = false
		if err != nil {
			if isTimeout(err) {
				if err = s.park(dirClient, err); err == nil {
					continue
				}
			}
			return err
		}
		s.bytesUp.Add(int64(n) + 5)
		switch {
		case g != nil && governed(typ):
			if err := s.clientMessage(ctx, typ, n); err != nil {
				return err
			}
		case g != nil && g.discarding && typ != 'X':
			if _, err := io.CopyN(io.Discard, s.cr, int64(n)); err != nil {
				return unexpectedEOF(err)
			}
		default:
			if err := writeHeader(up.w, typ, n); err != nil {
				return err
			}
			if err := copyBody(up.w, s.cr, n); err != nil {
				return err
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

// upstreamToClient forwards server messages, each whole under the write lock.
func (s *session) upstreamToClient() error {
	up := s.upstream
	for {
		if err := s.relayBuffered(); err != nil {
			return err
		}
		up.r.parkable = true
		typ, n, err := readHeader(up.r, maxMessageLen)
		up.r.parkable = false
		if err != nil {
			if isTimeout(err) {
				if err = s.park(dirUpstream, err); err == nil {
					continue
				}
			}
			return err
		}
		if s.gov != nil {
			err = s.serverMessage(typ, n, up.r)
		} else {
			err = s.forward(typ, n, up.r)
		}
		if err != nil {
			return err
		}
	}
}

// forward writes one server message, whose body is read from r, to the client. It flushes when
// the upstream has nothing more buffered.
func (s *session) forward(typ byte, n int, r *connReader) error {
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
	if err := copyBody(s.cw, r, n); err != nil {
		s.broken = true
		return err
	}
	if s.upstream.r.Buffered() == 0 {
		if err := s.cw.Flush(); err != nil {
			s.broken = true
			return err
		}
	}
	return nil
}

// forwardBody is forward for a message whose body has been read already.
func (s *session) forwardBody(typ byte, body []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.broken {
		return errors.New("client stream closed")
	}
	s.bytesDown.Add(int64(len(body)) + 5)
	if err := writeHeader(s.cw, typ, len(body)); err != nil {
		s.broken = true
		return err
	}
	if _, err := s.cw.Write(body); err != nil {
		s.broken = true
		return err
	}
	if s.upstream.r.Buffered() == 0 {
		if err := s.cw.Flush(); err != nil {
			s.broken = true
			return err
		}
	}
	return nil
}

// relayBuffered forwards, under one hold of the write lock and straight out of the read buffer,
// the whole server messages already buffered that governance does not look at: every message
// without an Auditor, DataRow and CopyData (the bulk of a result) with one. It stops at the first
// other message, or one not wholly buffered, which the caller reads as usual.
//
// With an Auditor, nothing is relayed in bulk while the engine's own schema query is answered
// (its DataRow is not the client's). The check is made after the buffered bytes were received, and
// the loop never reads more: an answer to a schema query asked after the check cannot be among them.
func (s *session) relayBuffered() error {
	up := s.upstream
	if up.r.Buffered() < 5 {
		return nil
	}
	if s.gov != nil {
		q := &s.q
		q.mu.Lock()
		internal := len(q.items) > 0 && q.items[0].kind == itemInternal
		q.mu.Unlock()
		if internal {
			return nil
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.broken {
		return errors.New("client stream closed")
	}
	// Find the run of whole messages to relay, then write it in one piece.
	buf, _ := up.r.Peek(up.r.Buffered())
	run := 0
	for len(buf)-run >= 5 {
		hdr := buf[run : run+5]
		if s.gov != nil && hdr[0] != 'D' && hdr[0] != 'd' {
			break
		}
		l := int(binary.BigEndian.Uint32(hdr[1:]))
		if l < 4 || l > maxMessageLen || l+1 > len(buf)-run {
			break // readHeader reports bad framing; a partial message takes the usual path
		}
		run += l + 1
	}
	if run == 0 {
		return nil
	}
	if _, err := s.cw.Write(buf[:run]); err != nil {
		s.broken = true
		return err
	}
	up.r.Discard(run)
	s.bytesDown.Add(int64(run))
	if up.r.Buffered() == 0 {
		if err := s.cw.Flush(); err != nil {
			s.broken = true
			return err
		}
	}
	return nil
}

// copyBody copies a message body of n bytes from r to w, out of r's buffer.
func copyBody(w *connWriter, br *connReader, n int) error {
	for n > 0 {
		want := min(n, br.Size())
		b, err := br.Peek(want)
		if len(b) > 0 {
			if _, werr := w.Write(b); werr != nil {
				return werr
			}
			br.Discard(len(b))
			n -= len(b)
		}
		if err != nil && len(b) < want {
			return unexpectedEOF(err)
		}
	}
	return nil
}
