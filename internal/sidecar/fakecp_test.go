package sidecar

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// fakeControlPlane serves the sidecar routes from an in-memory snapshot. It checks only that a
// bearer token is present: JWT verification is tested in internal/auth and end to end.
type fakeControlPlane struct {
	t    *testing.T
	addr string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	snap    syncapi.Snapshot
	lookup  map[string]syncapi.TokenLookup
	lookups int
	reports []syncapi.Report
	srv     *http.Server
	ln      net.Listener
}

func newFakeControlPlane(t *testing.T) *fakeControlPlane {
	t.Helper()
	cp := &fakeControlPlane{t: t, changed: make(chan struct{}), lookup: map[string]syncapi.TokenLookup{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = ln.Addr().String()
	cp.serve(ln)
	t.Cleanup(cp.stop)
	return cp
}

func (cp *fakeControlPlane) url() string { return "http://" + cp.addr }

func (cp *fakeControlPlane) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+syncapi.ConfigPath, cp.config)
	mux.HandleFunc("POST "+syncapi.ReportPath, cp.report)
	mux.HandleFunc("GET "+syncapi.TokenLookupPath+"{hash}", cp.token)
	srv := &http.Server{Handler: mux}
	cp.mu.Lock()
	cp.srv, cp.ln = srv, ln
	cp.mu.Unlock()
	go srv.Serve(ln)
}

// stop takes the control plane down (an outage); start brings it back on the same address.
func (cp *fakeControlPlane) stop() {
	cp.mu.Lock()
	srv := cp.srv
	cp.srv = nil
	cp.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (cp *fakeControlPlane) start() {
	cp.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", cp.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cp.t.Fatal(err)
	}
	cp.serve(ln)
}

func authorized(w http.ResponseWriter, r *http.Request) bool {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ey") {
		w.WriteHeader(http.StatusUnauthorized)
		return false
	}
	return true
}

// update changes the snapshot and bumps its version.
func (cp *fakeControlPlane) update(f func(s *syncapi.Snapshot)) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	f(&cp.snap)
	cp.snap.Version++
	close(cp.changed)
	cp.changed = make(chan struct{})
}

func (cp *fakeControlPlane) config(w http.ResponseWriter, r *http.Request) {
	if !authorized(w, r) {
		return
	}
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	deadline := time.After(wait)
	for {
		cp.mu.Lock()
		snap, changed := cp.snap, cp.changed
		cp.mu.Unlock()
		if snap.Version > since {
			json.NewEncoder(w).Encode(snap)
			return
		}
		select {
		case <-changed:
		case <-deadline:
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (cp *fakeControlPlane) report(w http.ResponseWriter, r *http.Request) {
	if !authorized(w, r) {
		return
	}
	var rep syncapi.Report
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	cp.mu.Lock()
	cp.reports = append(cp.reports, rep)
	cp.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (cp *fakeControlPlane) token(w http.ResponseWriter, r *http.Request) {
	if !authorized(w, r) {
		return
	}
	cp.mu.Lock()
	cp.lookups++
	l, ok := cp.lookup[r.PathValue("hash")]
	cp.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	json.NewEncoder(w).Encode(l)
}

func (cp *fakeControlPlane) lastReport() (syncapi.Report, bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.reports) == 0 {
		return syncapi.Report{}, false
	}
	return cp.reports[len(cp.reports)-1], true
}

func (cp *fakeControlPlane) lookupCount() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.lookups
}
