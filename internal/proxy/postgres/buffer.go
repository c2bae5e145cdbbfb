package postgres

import (
	"bufio"
	"errors"
	"io"
	"sync"
)

// Relay buffers. A session's two connections each have a read and a write buffer, and most
// sessions are idle most of the time: holding four 16 KiB buffers per session would make them the
// bulk of what an idle connection costs. So the 16 KiB buffers are borrowed from the Engine's
// pool while data moves and handed back as soon as they are empty:
//
//   - connWriter takes one at the first Write and gives it back when Flush has emptied it.
//   - connReader reads into a small buffer of its own when it has nothing buffered, which is
//     where an idle connection waits, and takes a 16 KiB one only when a message is not whole in
//     what that read returned; it gives it back once everything in it has been consumed. A
//     parked session (park.go) lets go of the small one too, and gets another when it resumes.
//
// A buffer goes back to the pool only when empty, and its borrower never touches it after: the
// next session to take it sees only what it writes or reads itself.

const (
	// bufferSize is the size of the borrowed buffers: reads and writes of bulk data (large
	// results, COPY) are this big.
	bufferSize = 16 << 10
	// idleReadSize is connReader's own buffer. A short answer (a one-row result, a pgbench
	// select-only transaction) or a client's query fits in it whole, so such traffic never borrows.
	idleReadSize = 512
)

// buffer is what the pool holds; a pointer, so putting one back does not allocate.
type buffer = [bufferSize]byte

func newBufferPool() *sync.Pool {
	return &sync.Pool{New: func() any { return new(buffer) }}
}

// connReader is bufio.Reader's Peek/Discard/Read with a borrowed buffer (see above).
// bufio.Reader cannot be used: it owns its buffer for its whole life.
type connReader struct {
	rd   io.Reader
	pool *sync.Pool
	big  *buffer // borrowed; nil while own is in use
	buf  []byte  // big[:] or own[:]
	r, w int     // buf[r:w] is buffered
	err  error
	// Set by the relay (park.go): between messages (parkable, nothing buffered) a read timeout is
	// the idler's cue to park and is returned; anywhere else retry clears the deadline and the
	// read is made again, unless the session is ending.
	parkable bool
	retry    func() bool
	own      *[idleReadSize]byte // nil after release, until the next fill
}

func newConnReader(rd io.Reader, pool *sync.Pool) *connReader {
	b := &connReader{rd: rd, pool: pool, own: new([idleReadSize]byte)}
	b.buf = b.own[:]
	return b
}

// release lets go of the reader's buffers if nothing is buffered: its session is parked, and
// may stay so for hours. The next fill allocates another of its own.
func (b *connReader) release() {
	if b.r == b.w {
		b.giveBack()
		b.own, b.buf, b.r, b.w = nil, nil, 0, 0
	}
}

// Reset discards anything buffered and reads from rd from now on.
func (b *connReader) Reset(rd io.Reader) {
	b.rd, b.r, b.w, b.err = rd, 0, 0, nil
	b.giveBack()
}

// Size is the most Peek may ask for.
func (b *connReader) Size() int { return bufferSize }

// Buffered is the number of bytes that can be read without reading from the connection.
func (b *connReader) Buffered() int { return b.w - b.r }

// Peek returns the next n bytes without consuming them, reading as needed; with fewer, it says
// why. The bytes are valid until the next call that reads.
func (b *connReader) Peek(n int) ([]byte, error) {
	if n > bufferSize {
		return nil, bufio.ErrBufferFull
	}
	for b.w-b.r < n && b.err == nil {
		b.fill(n)
	}
	if b.w-b.r < n {
		return b.buf[b.r:b.w], b.readErr()
	}
	return b.buf[b.r : b.r+n], nil
}

// Discard skips the next n bytes.
func (b *connReader) Discard(n int) (int, error) {
	done := 0
	for {
		k := min(n-done, b.w-b.r)
		b.r += k
		done += k
		if done == n {
			return done, nil
		}
		if b.err != nil {
			return done, b.readErr()
		}
		b.fill(1)
	}
}

// Read reads what is buffered, or else reads once: straight into p when p is larger than the
// reader's own buffer (a large message body), else through the buffer.
func (b *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		if b.w > b.r {
			return 0, nil
		}
		return 0, b.readErr()
	}
	if b.r == b.w {
		if b.err != nil {
			return 0, b.readErr()
		}
		if len(p) >= idleReadSize {
			b.giveBack()
			n, err := b.rd.Read(p)
			if n < 0 {
				panic(errNegativeRead)
			}
			return n, err
		}
		b.fill(1)
		if b.r == b.w {
			return 0, b.readErr()
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

var errNegativeRead = errors.New("postgres: reader returned negative count from Read")

// fill reads once, toward having need bytes buffered. With nothing buffered it reads into the
// reader's own buffer, giving the borrowed one back; with part of a message buffered (more is
// coming, and may be bulk) it reads into a borrowed one.
func (b *connReader) fill(need int) {
	if b.own == nil { // released: nothing is buffered
		b.own = new([idleReadSize]byte)
		b.buf = b.own[:]
	}
	if b.r == b.w {
		b.r, b.w = 0, 0
		b.giveBack()
	}
	if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	if b.big == nil && (b.w > 0 || need > len(b.buf)) {
		b.big = b.pool.Get().(*buffer)
		copy(b.big[:], b.buf[:b.w])
		b.buf = b.big[:]
	}
	for range 100 {
		n, err := b.rd.Read(b.buf[b.w:])
		if n < 0 {
			panic(errNegativeRead)
		}
		b.w += n
		if err != nil {
			if b.retry != nil && !(b.parkable && b.w == 0) && isTimeout(err) && b.retry() {
				if n > 0 {
					return
				}
				continue
			}
			b.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	b.err = io.ErrNoProgress
}

// giveBack returns the borrowed buffer, which must be empty.
func (b *connReader) giveBack() {
	if b.big != nil {
		b.pool.Put(b.big)
		b.big = nil
		b.buf = b.own[:]
	}
}

func (b *connReader) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// connWriter is bufio.Writer's Write/Flush with a borrowed buffer (see above). bufio.Writer
// cannot be used: it allocates its buffer itself and keeps it, Reset included, so it cannot let go
// of it while the connection is idle.
type connWriter struct {
	wr   io.Writer
	pool *sync.Pool
	big  *buffer // borrowed; nil when nothing is buffered
	n    int     // big[:n] is buffered
	err  error
}

func newConnWriter(wr io.Writer, pool *sync.Pool) *connWriter {
	return &connWriter{wr: wr, pool: pool}
}

// Reset discards anything buffered and any error, and writes to wr from now on.
func (w *connWriter) Reset(wr io.Writer) {
	w.wr, w.n, w.err = wr, 0, nil
	w.giveBack()
}

// Buffered is the number of bytes written but not yet flushed.
func (w *connWriter) Buffered() int { return w.n }

// AvailableBuffer returns an empty slice with the free space of the buffer, to append to and
// pass to Write (which then copies nothing).
func (w *connWriter) AvailableBuffer() []byte {
	return w.borrow()[w.n:][:0]
}

// Write buffers p; what does not fit is written out. Like bufio.Writer, a write larger than the
// buffer with nothing buffered goes straight to the connection.
func (w *connWriter) Write(p []byte) (int, error) {
	nn := 0
	for len(p) > bufferSize-w.n && w.err == nil {
		var n int
		if w.n == 0 {
			n, w.err = w.wr.Write(p)
		} else {
			n = copy(w.big[w.n:], p)
			w.n += n
			w.flush()
		}
		nn += n
		p = p[n:]
	}
	if w.err != nil {
		return nn, w.err
	}
	if len(p) > 0 {
		n := copy(w.borrow()[w.n:], p)
		w.n += n
		nn += n
	}
	return nn, nil
}

// Flush writes what is buffered and gives the emptied buffer back.
func (w *connWriter) Flush() error {
	if err := w.flush(); err != nil {
		return err
	}
	w.giveBack()
	return nil
}

// flush writes what is buffered, keeping the buffer. After an error, what was not written stays
// buffered and the buffer is never given back.
func (w *connWriter) flush() error {
	if w.err != nil {
		return w.err
	}
	if w.n == 0 {
		return nil
	}
	n, err := w.wr.Write(w.big[:w.n])
	if n < w.n && err == nil {
		err = io.ErrShortWrite
	}
	if err != nil {
		if n > 0 && n < w.n {
			copy(w.big[:w.n-n], w.big[n:w.n])
		}
		w.n -= n
		w.err = err
		return err
	}
	w.n = 0
	return nil
}

func (w *connWriter) borrow() *buffer {
	if w.big == nil {
		w.big = w.pool.Get().(*buffer)
	}
	return w.big
}

// giveBack returns the buffer, which must be empty.
func (w *connWriter) giveBack() {
	if w.big != nil {
		w.pool.Put(w.big)
		w.big = nil
	}
}
