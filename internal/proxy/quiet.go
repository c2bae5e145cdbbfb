package proxy

import "sync/atomic"

// Quiet counts a sidecar's running sessions across its engines, so that the sidecar knows when
// none is running and it can give the memory its sessions' traffic left behind back to the
// system. A session runs from when it is accepted until it ends, except while it is parked
// (proxy/postgres parks a session that has been idle: it then has no goroutine and does nothing
// until one side sends something).
//
// Engines call Start when a session starts running and Stop when it stops: as often as it
// parks and wakes, and once more when it ends. A nil *Quiet counts nothing.
type Quiet struct {
	running atomic.Int64
	stops   atomic.Uint64
}

// Start counts a session that starts running: accepted, or woken from parking.
func (q *Quiet) Start() {
	if q != nil {
		q.running.Add(1)
	}
}

// Stop counts a running session that parked or ended.
func (q *Quiet) Stop() {
	if q != nil {
		q.stops.Add(1)
		q.running.Add(-1)
	}
}

// State returns how many sessions are running and how many times one has stopped. Two equal
// readings, both with none running, mean nothing ran in between.
func (q *Quiet) State() (running int64, stops uint64) {
	// stops first: a session that stops between the two loads is then seen as having stopped
	// later, never as not having run.
	stops = q.stops.Load()
	return q.running.Load(), stops
}
