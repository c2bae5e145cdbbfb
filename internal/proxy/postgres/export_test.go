package postgres

// Parked returns how many session directions of e are parked now (park.go).
func Parked(e *Engine) int64 { return e.parked.Load() }
