package postgres

import (
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxSharedParams bounds a paramTable. Servers report a dozen or so parameters, most with the
// same value on every connection; the rest (application_name, a session's own settings) vary.
const maxSharedParams = 1024

// paramTable shares decoded ParameterStatus messages between an engine's upstream connections.
// A connection keeps the parameters its server reported for as long as it lives (a pooled one
// tells each new client), and nearly all of them are the same for every connection: shared, an
// idle session does not keep its own dozen copies of server_version and TimeZone. Shared
// messages are never modified.
type paramTable struct {
	mu sync.Mutex
	m  map[string]*pgproto3.ParameterStatus // by message body
}

// get returns the ParameterStatus whose body is body.
func (t *paramTable) get(body []byte) (*pgproto3.ParameterStatus, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.m[string(body)]; ok {
		return m, nil
	}
	m := new(pgproto3.ParameterStatus)
	if err := m.Decode(body); err != nil {
		return nil, err
	}
	if t.m == nil {
		t.m = make(map[string]*pgproto3.ParameterStatus)
	}
	if len(t.m) < maxSharedParams {
		t.m[string(body)] = m
	}
	return m, nil
}
