package postgres

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epoll is the readiness set parked sessions wait in (park.go). A registration fires once
// (EPOLLONESHOT) and carries the id it was added with. The set's own descriptor is in Go's
// network poller, so the idler waits for it as a goroutine waits for a socket: no thread is held
// in epoll_wait, and a wakeup is scheduled like any network event.
type epoll struct {
	fd int
	f  *os.File
	rc syscall.RawConn
}

func newEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, &syscallError{"epoll_create1", err}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, &syscallError{"epoll set non-blocking", err}
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &epoll{fd: fd, f: f, rc: rc}, nil
}

// add watches fd for readability (or the peer closing) once, reporting id.
func (p *epoll) add(fd int, id uint64) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return &syscallError{"epoll_ctl", err}
	}
	return nil
}

// del stops watching fd.
func (p *epoll) del(fd int) {
	unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, fd, nil) // ENOENT when fd already fired and was taken out
}

// wait waits until d for registrations to fire and appends their ids to ids.
func (p *epoll) wait(evs []unix.EpollEvent, d time.Time, ids []uint64) ([]uint64, error) {
	p.f.SetReadDeadline(d)
	var n int
	var werr error
	err := p.rc.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), evs, 0)
		if errors.Is(werr, syscall.EINTR) {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ids, nil
		}
		return ids, err
	}
	if werr != nil {
		return ids, &syscallError{"epoll_wait", werr}
	}
	for _, ev := range evs[:n] {
		ids = append(ids, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32)
	}
	return ids, nil
}

func (p *epoll) close() { p.f.Close() }

// epollEvents is the buffer wait fills.
type epollEvents = []unix.EpollEvent

type syscallError struct {
	op  string
	err error
}

func (e *syscallError) Error() string { return e.op + ": " + e.err.Error() }
func (e *syscallError) Unwrap() error { return e.err }
