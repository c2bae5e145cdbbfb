package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
)

// shutdowner is implemented by engines that can drain their sessions.
type shutdowner interface {
	Shutdown(ctx context.Context) error
}

// listeners opens and closes listener ports to match the applied snapshot.
type listeners struct {
	host    string
	engine  func(gatehouse.ListenerPort) (proxy.Engine, error) // nil engine: accept and close
	logger  *slog.Logger
	wg      sync.WaitGroup // accept loops and connections
	mu      sync.Mutex
	want    map[int]gatehouse.ListenerPort
	open    map[int]*portListener
	errs    map[int]string // port -> why it is not open
	stopped bool
}

type portListener struct {
	port   gatehouse.ListenerPort
	ln     net.Listener
	engine proxy.Engine
	cancel context.CancelFunc
}

func newListeners(host string, engine func(gatehouse.ListenerPort) (proxy.Engine, error), logger *slog.Logger) *listeners {
	return &listeners{
		host:   host,
		engine: engine,
		logger: logger,
		want:   map[int]gatehouse.ListenerPort{},
		open:   map[int]*portListener{},
		errs:   map[int]string{},
	}
}

// set records the ports a snapshot asks for and reconciles.
func (m *listeners) set(ctx context.Context, want map[int]gatehouse.ListenerPort) {
	m.mu.Lock()
	m.want = want
	m.mu.Unlock()
	m.reconcile(ctx)
}

// reconcile closes ports no longer wanted (or whose type or version changed) and opens wanted
// ports that are not open, including ports that failed to bind before.
func (m *listeners) reconcile(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	for n, pl := range m.open {
		if w, ok := m.want[n]; !ok || w.Type != pl.port.Type || w.Version != pl.port.Version {
			m.closePort(pl, removedPortGrace)
			delete(m.open, n)
			m.logger.Info("listener closed", "port", n)
		}
	}
	for n := range m.errs {
		if _, ok := m.want[n]; !ok {
			delete(m.errs, n)
		}
	}
	for n, p := range m.want {
		if _, ok := m.open[n]; ok {
			continue
		}
		pl, err := m.openPort(ctx, p)
		if err != nil {
			if m.errs[n] != err.Error() {
				m.logger.Error("cannot open listener port", "port", n, "err", err)
			}
			m.errs[n] = err.Error()
			continue
		}
		delete(m.errs, n)
		m.open[n] = pl
		m.logger.Info("listener opened", "port", n, "type", p.Type, "version", p.Version, "addr", pl.ln.Addr().String())
	}
}

func (m *listeners) openPort(ctx context.Context, p gatehouse.ListenerPort) (*portListener, error) {
	var engine proxy.Engine
	if m.engine != nil {
		e, err := m.engine(p)
		if err != nil {
			return nil, fmt.Errorf("port %d: start %s engine: %w", p.Port, p.Type, err)
		}
		engine = e
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(m.host, strconv.Itoa(p.Port)))
	if err != nil {
		return nil, fmt.Errorf("port %d: %w", p.Port, err)
	}
	// Sessions outlive the sidecar's context: when it ends, stop drains them (see closePort) rather
	// than cutting them off.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pl := &portListener{port: p, ln: ln, engine: engine, cancel: cancel}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.accept(pctx, pl)
	}()
	return pl, nil
}

func (m *listeners) accept(ctx context.Context, pl *portListener) {
	for {
		c, err := pl.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			m.logger.Warn("accept failed", "port", pl.port.Port, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if pl.engine == nil {
				// No engine for this database type in this build yet: the port is open (so
				// operators can check it) but serves nothing.
				c.Close()
				return
			}
			pl.engine.Serve(ctx, c)
		}()
	}
}

// removedPortGrace is how long sessions on a port removed from the configuration may finish.
const removedPortGrace = time.Second

// closePort stops accepting at once and ends the port's sessions in the background: engines that
// drain get grace, then the port's context is cancelled. Called with m.mu held.
func (m *listeners) closePort(pl *portListener, grace time.Duration) {
	pl.ln.Close()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer pl.cancel()
		if s, ok := pl.engine.(shutdowner); ok {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				m.logger.Warn("engine shutdown", "port", pl.port.Port, "err", err)
			}
		}
	}()
}

// status returns the ports open and the errors of ports that are not.
func (m *listeners) status() (ports []int, errs []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ports = make([]int, 0, len(m.open))
	for n := range m.open {
		ports = append(ports, n)
	}
	slices.Sort(ports)
	errs = make([]string, 0, len(m.errs))
	for _, e := range m.errs {
		errs = append(errs, e)
	}
	slices.Sort(errs)
	return ports, errs
}

// stop closes every port, lets sessions finish for up to drain, then ends the rest and waits for
// accept loops and sessions to return.
func (m *listeners) stop(drain time.Duration) {
	m.mu.Lock()
	m.stopped = true
	for n, pl := range m.open {
		m.closePort(pl, drain)
		delete(m.open, n)
	}
	m.mu.Unlock()
	m.wg.Wait()
}
