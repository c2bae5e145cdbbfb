package postgres

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// epoll is the readiness set parked sessions wait in (park.go). One goroutine waits on it; a
// registration fires once (EPOLLONESHOT) and carries the id it was added with.
type epoll struct{ fd int }

func newEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, &syscallError{"epoll_create1", err}
	}
	return &epoll{fd: fd}, nil
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

// wait waits up to ms milliseconds for registrations to fire and appends their ids to ids.
func (p *epoll) wait(evs []unix.EpollEvent, ms int, ids []uint64) ([]uint64, error) {
	n, err := unix.EpollWait(p.fd, evs, ms)
	if err != nil {
		if errors.Is(err, syscall.EINTR) {
			return ids, nil
		}
		return ids, &syscallError{"epoll_wait", err}
	}
	for _, ev := range evs[:n] {
		ids = append(ids, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32)
	}
	return ids, nil
}

func (p *epoll) close() { unix.Close(p.fd) }

// epollEvents is the buffer wait fills.
type epollEvents = []unix.EpollEvent

type syscallError struct {
	op  string
	err error
}

func (e *syscallError) Error() string { return e.op + ": " + e.err.Error() }
func (e *syscallError) Unwrap() error { return e.err }
