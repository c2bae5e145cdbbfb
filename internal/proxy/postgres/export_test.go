package postgres

// Parked returns how many session directions of e wait in its idler's epoll set (park.go).
func Parked(e *Engine) int64 {
	e.mu.Lock()
	d := e.idler
	e.mu.Unlock()
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return int64(len(d.parked))
}
