//go:build !linux

package postgres

import (
	"errors"
	"time"
)

// epoll exists only on Linux; elsewhere sessions do not park (park.go).
type epoll struct{}

type epollEvents = []struct{}

func newEpoll() (*epoll, error) { return nil, errors.New("parking idle sessions needs epoll (Linux)") }

func (p *epoll) add(fd int, id uint64) error { return errors.New("no epoll") }
func (p *epoll) del(fd int)                  {}
func (p *epoll) wait(evs epollEvents, d time.Time, ids []uint64) ([]uint64, error) {
	return ids, errors.New("no epoll")
}
func (p *epoll) close() {}
