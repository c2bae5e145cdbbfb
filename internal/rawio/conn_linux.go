package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// WrapConn returns c with its Read and Write made as raw system calls. Anything that is not a
// *net.TCPConn is returned as it is.
func WrapConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	conn := &Conn{TCPConn: tc, rc: rc}
	conn.r.fn = conn.r.read
	conn.w.fn = conn.w.write
	return conn
}

// Conn is a *net.TCPConn whose Read and Write are raw system calls. Everything else (Close,
// deadlines, addresses, keep-alive) is the TCPConn's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	r  call // guarded by rmu
	w  call // guarded by wmu

	rmu, wmu sync.Mutex
}

// call is one Read or Write in progress. fn is bound once so that a call does not allocate a
// closure.
type call struct {
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// read makes one read(2); false asks the poller to wait until the socket is readable.
func (c *call) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(c.buf))), uintptr(len(c.buf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.n, c.errno = int(n), e
		if e == 0 && n > 0 {
			acquireIO(fd)
		}
		return true
	}
}

// write makes write(2)s until buf is written or an error; false asks the poller to wait until the
// socket is writable, and the next call carries on from c.n.
func (c *call) write(fd uintptr) bool {
	releaseIO(fd)
	for c.n < len(c.buf) {
		rest := c.buf[c.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)))
		switch e {
		case 0:
			c.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.errno = e
			return true
		}
	}
	return true
}

// Read reads into p.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.r.buf, c.r.n, c.r.errno = p, 0, 0
	err := c.rc.Read(c.r.fn)
	n, errno := c.r.n, c.r.errno
	c.r.buf = nil
	switch {
	case err != nil: // closed, deadline exceeded: already a *net.OpError
		return 0, err
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w.buf, c.w.n, c.w.errno = p, 0, 0
	err := c.rc.Write(c.w.fn)
	n, errno := c.w.n, c.w.errno
	c.w.buf = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// File is an *os.File whose Write is raw write(2)s. Only the file's Write goes through it; close
// the *os.File as usual, after the last Write.
type File struct {
	f  *os.File
	rc syscall.RawConn
	mu sync.Mutex
	w  call // guarded by mu
}

// NewFile wraps f.
func NewFile(f *os.File) (*File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	file := &File{f: f, rc: rc}
	file.w.fn = file.w.write
	return file, nil
}

// Write writes all of b, as (*os.File).Write does.
func (f *File) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.w.buf, f.w.n, f.w.errno = b, 0, 0
	err := f.rc.Write(f.w.fn) // holds the file's write lock: a concurrent Close waits for it
	n, errno := f.w.n, f.w.errno
	f.w.buf = nil
	switch {
	case err != nil:
		// The file is closed (or cannot be written raw): the ordinary call reports it the way
		// callers expect (os.ErrClosed), or writes the rest.
		m, err := f.f.Write(b[n:])
		return n + m, err
	case errno != 0:
		return n, &os.PathError{Op: "write", Path: f.f.Name(), Err: errno}
	}
	return n, nil
}
