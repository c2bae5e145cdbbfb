package main

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The loop-relay target (make bench RELAY=1, with go-relay) is go-relay built the way PgBouncer is:
// after the TLS handshake its sockets leave Go's network poller, and one event loop per processor
// serves them all. A loop waits in its own epoll set (level-triggered) for any of its sockets, then
// makes exactly one read per readable socket and one write per burst: no goroutine per connection
// or direction is woken, and no read returns EAGAIN. crypto/tls runs over an in-memory connection
// that says "try again later" (a temporary net.Error, which crypto/tls does not treat as fatal)
// when the loop has no more bytes for it.
//
// Each loop has a thread of its own and blocks in epoll_wait there, as PgBouncer's one thread does.
// A loop whose epoll descriptor waits in Go's poller instead (as a socket would) was measured too,
// and cost more at 1 client: see docs/performance.md, "An event loop instead of goroutines". This
// target is there to show what rewriting the sidecar's relay that way would save, before anyone
// does.

// loopRelay is one relay's event loops.
type loopRelay struct {
	loops []*eventLoop
	next  atomic.Uint64 // connections handed over so far: the next goes to loops[next % len]
}

func newLoopRelay() (*loopRelay, error) {
	r := &loopRelay{}
	for range runtime.GOMAXPROCS(0) {
		l, err := newEventLoop()
		if err != nil {
			return nil, err
		}
		r.loops = append(r.loops, l)
		go l.run()
	}
	return r, nil
}

// handOver moves a client connection whose TLS handshake is done, and its upstream connection,
// into one of the loops.
func (r *loopRelay) handOver(tc *tls.Conn, lc *loopConn, client, up net.Conn) error {
	cfd, err := detach(client)
	if err != nil {
		return err
	}
	ufd, err := detach(up)
	if err != nil {
		unix.Close(cfd)
		return err
	}
	lc.Conn = nil
	l := r.loops[(r.next.Add(1)-1)%uint64(len(r.loops))]
	return l.add(&pair{cfd: cfd, ufd: ufd, tc: tc, lc: lc})
}

// detach takes a connection's socket out of Go's network poller: it duplicates the descriptor,
// makes the duplicate non-blocking and closes the original.
func detach(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("loop-relay: not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	c.Close()
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// errWouldBlock is what a loopConn's Read returns when the loop has no more bytes for crypto/tls:
// a temporary error, which crypto/tls returns without remembering it.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// loopConn is the connection under a client's tls.Conn: the real socket during the handshake,
// then the loop's buffers.
type loopConn struct {
	net.Conn        // the socket, until the handshake is done
	inLoop   bool   // handed over: Read and Write use in and out
	in       []byte // ciphertext read from the socket that crypto/tls has not taken yet
	out      []byte // ciphertext crypto/tls wrote that is not on the socket yet
}

func (c *loopConn) Read(p []byte) (int, error) {
	if !c.inLoop {
		return c.Conn.Read(p)
	}
	if len(c.in) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *loopConn) Write(p []byte) (int, error) {
	if !c.inLoop {
		return c.Conn.Write(p)
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

func (c *loopConn) Close() error {
	if !c.inLoop {
		return c.Conn.Close()
	}
	return nil
}

// pair is a client socket (TLS) and its upstream socket (plain), with what each side has not
// been able to take yet.
type pair struct {
	cfd, ufd int
	tc       *tls.Conn
	lc       *loopConn // lc.out: pending for the client
	toUp     []byte    // plaintext pending for upstream

	// A side is stalled while the socket has not taken all that is pending for it: then it is
	// watched for EPOLLOUT and the other side is not read.
	upStalled, clientStalled bool
}

// eventLoop owns the pairs it was given: only its goroutine reads, writes or closes their sockets.
type eventLoop struct {
	epfd  int
	mu    sync.Mutex
	byFD  map[int]*pair
	buf   []byte
	plain []byte
}

func newEventLoop() (*eventLoop, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &eventLoop{epfd: fd, byFD: map[int]*pair{}, buf: make([]byte, 64<<10), plain: make([]byte, 64<<10)}, nil
}

func (l *eventLoop) add(p *pair) error {
	l.mu.Lock()
	l.byFD[p.cfd], l.byFD[p.ufd] = p, p
	l.mu.Unlock()
	for _, fd := range []int{p.cfd, p.ufd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			l.close(p)
			return err
		}
	}
	return nil
}

// run serves the loop's sockets on a thread of its own, waiting in epoll_wait.
func (l *eventLoop) run() {
	runtime.LockOSThread()
	evs := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(l.epfd, evs, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic(err)
		}
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			l.mu.Lock()
			p := l.byFD[fd]
			l.mu.Unlock()
			if p == nil {
				continue // closed earlier in this batch
			}
			if !l.handle(p, fd, ev.Events) {
				l.close(p)
			}
		}
	}
}

// handle serves one event on fd and reports whether the pair lives on.
func (l *eventLoop) handle(p *pair, fd int, events uint32) bool {
	if events&unix.EPOLLOUT != 0 && !l.flush(p, fd) {
		return false
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return true
	}
	n, err := unix.Read(fd, l.buf)
	if err == unix.EAGAIN {
		return true
	}
	if err != nil || n == 0 {
		return false
	}
	if fd == p.cfd {
		p.lc.in = l.buf[:n]
		for {
			m, err := p.tc.Read(l.plain)
			p.toUp = append(p.toUp, l.plain[:m]...)
			if err == errWouldBlock {
				break
			}
			if err != nil {
				return false
			}
		}
		// Reading may have made crypto/tls answer (a key update), so both sides are flushed.
		return l.flush(p, p.ufd) && l.flush(p, p.cfd)
	}
	if _, err := p.tc.Write(l.buf[:n]); err != nil {
		return false
	}
	return l.flush(p, p.cfd)
}

// flush writes what is pending for fd. When the socket takes only part, the rest waits for
// EPOLLOUT and the other side's socket is not read meanwhile; the registrations change only then,
// and back once the rest is written.
func (l *eventLoop) flush(p *pair, fd int) bool {
	pending, stalled := &p.toUp, &p.upStalled
	if fd == p.cfd {
		pending, stalled = &p.lc.out, &p.clientStalled
	}
	if len(*pending) == 0 {
		return true
	}
	n, err := unix.Write(fd, *pending)
	if err != nil && err != unix.EAGAIN {
		return false
	}
	n = max(n, 0)
	*pending = append((*pending)[:0], (*pending)[n:]...)
	if now := len(*pending) > 0; now != *stalled {
		*stalled = now
		l.watch(p.cfd, p.clientStalled, p.upStalled)
		l.watch(p.ufd, p.upStalled, p.clientStalled)
	}
	return true
}

// watch registers fd for writability while it is stalled itself, and for readability unless the
// other side is stalled.
func (l *eventLoop) watch(fd int, stalled, otherStalled bool) {
	events := uint32(unix.EPOLLRDHUP)
	if stalled {
		events |= unix.EPOLLOUT
	}
	if !otherStalled {
		events |= unix.EPOLLIN
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

func (l *eventLoop) close(p *pair) {
	l.mu.Lock()
	delete(l.byFD, p.cfd)
	delete(l.byFD, p.ufd)
	l.mu.Unlock()
	unix.Close(p.cfd) // closing takes the descriptor out of the epoll set
	unix.Close(p.ufd)
}

// handleLoop is handle for the loop relay: the same SSLRequest and handshake, then the handover.
func (r *relay) handleLoop(raw net.Conn) {
	lc := &loopConn{Conn: raw}
	client, up, err := r.open(raw, lc)
	if err != nil {
		raw.Close()
		return
	}
	// The handshake's last read may have taken the client's first message too, which crypto/tls
	// keeps: no readiness event will come for it, so it goes upstream now.
	lc.inLoop = true
	var first []byte
	plain := make([]byte, 16<<10)
	for {
		n, rerr := client.Read(plain)
		first = append(first, plain[:n]...)
		if rerr == errWouldBlock {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	if err == nil {
		_, err = up.Write(first)
	}
	if err == nil {
		err = r.loop.handOver(client, lc, raw, up)
	}
	if err != nil {
		raw.Close()
		up.Close()
	}
}
