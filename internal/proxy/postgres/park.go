package postgres

import (
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"time"
)

// Parking idle sessions.
//
// A relaying session has one goroutine per direction, and when it is idle each waits in a read.
// Their stacks are most of what an idle session costs: a read through crypto/tls needs a little
// over 2 KiB of frames, which keeps an 8 KiB stack. So a session that has moved no byte for
// Config.ParkAfter gives its goroutines up, and one goroutine per engine (the idler) watches all
// parked sockets:
//
//   - The idler sweeps the engine's sessions every ParkAfter/4 (at most sweepEvery) and sets a
//     read deadline in the past on both connections of a session that has been quiet that long.
//   - A direction whose read then times out between two messages, with nothing buffered, parks:
//     its socket goes into the idler's epoll set (once, EPOLLONESHOT) and its goroutine returns.
//     A timeout anywhere else (in the middle of a message) clears the deadline and reads again.
//   - When the socket becomes readable, or its peer closes it, the idler clears the deadline and
//     starts a new goroutine for that direction, which carries on where the parked one stopped:
//     what a direction keeps from one message to the next is in the session, not on its stack.
//   - Ending a session (closeConns) first takes its parked directions out of the epoll set and
//     restarts them, so that they read from the closed connections and stop as usual; the last
//     direction to stop ends the session (relay.go). Nothing closes a session's connections
//     another way while it relays.
//
// crypto/tls keeps a connection usable after a read times out (a temporary net.Error), and a
// timeout between messages means it holds no whole record: the next byte comes from the socket.
// The relay's own buffers are empty then and back in the pool (buffer.go). An idle session is then
// its TLS state, its session struct and two small read buffers, and no goroutine.
//
// epoll is Linux's; elsewhere sessions do not park.

const (
	// defaultParkAfter is Config.ParkAfter's default.
	defaultParkAfter = time.Second
	// sweepEvery bounds how often the idler looks for quiet sessions.
	sweepEvery = 250 * time.Millisecond
)

// Directions of a relay: the goroutine of each reads from the connection it is named after.
const (
	dirClient   = 0 // client→upstream
	dirUpstream = 1 // upstream→client
)

// aLongTimeAgo is a read deadline that has passed: reads time out at once.
var aLongTimeAgo = time.Unix(1, 0)

// idler is an engine's epoll set of parked directions and the goroutine that waits on it and
// sweeps the sessions. It runs while the engine has sessions.
type idler struct {
	e     *Engine
	ep    *epoll
	every time.Duration

	mu     sync.Mutex
	parked map[uint64]*session // by park id: the session's parkID<<1 | direction

	quiet []*session // the sweep's scratch list; only the idler's goroutine uses it
}

// idlerFor gives s its park id and returns the engine's idler, starting it if need be; nil when
// sessions do not park.
func (e *Engine) idlerFor(s *session) *idler {
	if e.cfg.ParkAfter < 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.idler == nil {
		ep, err := newEpoll()
		if err != nil {
			if !e.parkWarned {
				e.parkWarned = true
				e.logger.Info("idle sessions will not park", "reason", err)
			}
			return nil
		}
		e.idler = &idler{e: e, ep: ep, every: min(e.cfg.ParkAfter/4, sweepEvery), parked: map[uint64]*session{}}
		go e.idler.run()
	}
	e.parkIDs++
	s.parkID = e.parkIDs
	return e.idler
}

// run waits for parked sockets to become readable and sweeps the sessions, until the engine has
// none.
func (d *idler) run() {
	evs := make(epollEvents, 64)
	var ids []uint64
	next := time.Now().Add(d.every)
	for {
		var err error
		ids, err = d.ep.wait(evs, next, ids[:0])
		if err != nil {
			d.e.logger.Error("idle sessions: waiting for parked sockets failed", "err", err)
			time.Sleep(d.every)
		}
		for _, id := range ids {
			d.mu.Lock()
			s := d.parked[id]
			delete(d.parked, id)
			d.mu.Unlock()
			if s != nil {
				s.resume(int(id & 1))
			}
		}
		if now := time.Now(); !now.Before(next) {
			next = now.Add(d.every)
			if !d.sweep(now) {
				d.ep.close()
				return
			}
		}
	}
}

// sweep asks the sessions that have been quiet for ParkAfter to park. It reports false, and
// retires the idler, when the engine has no sessions left.
func (d *idler) sweep(now time.Time) bool {
	e := d.e
	e.mu.Lock()
	if len(e.sessions) == 0 {
		e.idler = nil
		e.mu.Unlock()
		return false
	}
	quiet := d.quiet[:0]
	for s := range e.sessions {
		if !s.relaying.Load() || s.idl == nil {
			continue
		}
		if b := s.bytesUp.Load() + s.bytesDown.Load(); b != s.sweepBytes || s.quietSince.IsZero() {
			s.sweepBytes, s.quietSince, s.parkAsked = b, now, false
			continue
		}
		if !s.parkAsked && now.Sub(s.quietSince) >= e.cfg.ParkAfter {
			s.parkAsked = true
			quiet = append(quiet, s)
		}
	}
	e.mu.Unlock()
	for i, s := range quiet {
		s.askPark()
		quiet[i] = nil
	}
	d.quiet = quiet[:0]
	return true
}

// askPark makes the session's reads time out, so that its directions park between messages.
func (s *session) askPark() {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.closing {
		return
	}
	for d := range 2 {
		if !s.parked[d] {
			s.conn(d).SetReadDeadline(aLongTimeAgo)
		}
	}
}

// conn is the connection direction d reads from.
func (s *session) conn(d int) net.Conn {
	if d == dirClient {
		return s.client
	}
	return s.upstream.conn
}

// park gives up direction d's goroutine until its socket is readable; err is the read's timeout.
// It returns errParked when it did, err when the session is ending, and nil when the direction
// is to read again (its socket cannot be watched).
func (s *session) park(d int, err error) error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.closing {
		return err
	}
	if rc := rawConn(s.conn(d)); rc != nil {
		id := s.parkID<<1 | uint64(d)
		// In the map before the socket is watched: it may fire at once.
		s.idl.mu.Lock()
		s.idl.parked[id] = s
		s.idl.mu.Unlock()
		var aerr error
		cerr := rc.Control(func(fd uintptr) { aerr = s.idl.ep.add(int(fd), id) })
		if cerr == nil && aerr == nil {
			s.parked[d] = true
			s.shed(d)
			if s.parked[dirClient] && s.parked[dirUpstream] {
				s.asleep = true
				s.e.cfg.Quiet.Stop()
			}
			return errParked
		}
		s.idl.mu.Lock()
		delete(s.idl.parked, id)
		s.idl.mu.Unlock()
	}
	s.conn(d).SetReadDeadline(time.Time{})
	return nil
}

// shed lets go of the buffers direction d keeps between messages, now that it is parked: its
// connection's read buffer and the one governance reads its message bodies into. The direction's
// goroutine has returned, so nothing else uses them; they are allocated again as it needs them.
// Called with pmu held.
func (s *session) shed(d int) {
	if d == dirClient {
		s.cr.release()
		if s.gov != nil {
			s.gov.buf = nil
		}
		return
	}
	s.upstream.r.release()
	s.sbuf = nil
}

// resume restarts parked direction d, whose socket is readable.
func (s *session) resume(d int) {
	s.pmu.Lock()
	if !s.parked[d] {
		s.pmu.Unlock()
		return
	}
	s.unpark(d)
	if !s.closing {
		s.conn(d).SetReadDeadline(time.Time{})
	}
	s.pmu.Unlock()
	go s.direction(d)
}

// unpark takes direction d out of the idler's set. Called with pmu held; the caller restarts the
// direction.
func (s *session) unpark(d int) {
	if s.asleep {
		s.asleep = false
		s.e.cfg.Quiet.Start()
	}
	s.parked[d] = false
	if rc := rawConn(s.conn(d)); rc != nil {
		rc.Control(func(fd uintptr) { s.idl.ep.del(int(fd)) })
	}
	s.idl.mu.Lock()
	delete(s.idl.parked, s.parkID<<1|uint64(d))
	s.idl.mu.Unlock()
}

// clearDeadline undoes askPark's deadline for direction d, which timed out inside a message, and
// reports whether to read again: not when the session is ending.
func (s *session) clearDeadline(d int) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.closing {
		return false
	}
	s.conn(d).SetReadDeadline(time.Time{})
	return true
}

// closeConns closes both connections, which stops the relay: parked directions are restarted
// first (taken out of the epoll set while their sockets are open), to read from them and stop.
// From here on nothing parks and no deadline is cleared: a pooled connection's Close wakes its
// reader with one (poolConn).
func (s *session) closeConns() {
	s.pmu.Lock()
	s.closing = true
	var wake [2]bool
	for d := range 2 {
		if s.parked[d] {
			s.unpark(d)
			wake[d] = true
		}
	}
	s.pmu.Unlock()
	for d, w := range wake {
		if w {
			go s.direction(d)
		}
	}
	s.client.Close()
	s.upstream.conn.Close()
}

// rawConn returns the socket under c: through TLS and the pool's wrapper to the TCP connection.
// Nil when there is none (a test's pipe).
func rawConn(c net.Conn) syscall.RawConn {
	for {
		switch x := c.(type) {
		case *tls.Conn:
			c = x.NetConn()
		case *poolConn:
			c = x.Conn
		case syscall.Conn:
			rc, err := x.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		default:
			return nil
		}
	}
}
