package postgres_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/proxy/postgres"
)

// What an idle client session costs the engine. The client connections are held by a child
// process (this test binary again, see idleClients), so only the engine's side of each session
// is in this process: the client TLS connection, the session, its relay goroutines and buffers,
// and the upstream connection to PostgreSQL. The numbers are deltas of this process's runtime
// statistics between before the clients connect and after they have each run SELECT 1 and gone
// idle, divided by the number of sessions:
//
//	B/idle-conn           heap in use + goroutine stacks (HeapInuse + StackInuse): what the Go
//	                      runtime holds for the sessions, close to their share of RSS
//	heap-B/idle-conn      live heap objects (HeapAlloc)
//	stack-B/idle-conn     goroutine stacks (StackInuse)
//	goroutines/idle-conn  goroutines
//	fds/idle-conn         open file descriptors
//
// Run it with: go test -run '^$' -bench IdleSessionMemory -benchtime 1x ./internal/proxy/postgres/
// With GH_BENCH_IDLE_HEAP=file and -memprofilerate 1, the heap profile of the idle sessions is
// written to file (go tool pprof -sample_index=inuse_space).

const (
	// idleClientsEnv, set in a child process, makes TestMain hold that many client connections
	// (to idleDSNEnv) instead of running tests.
	idleClientsEnv = "GH_BENCH_IDLE_CLIENTS"
	idleDSNEnv     = "GH_BENCH_IDLE_DSN"
	// idleHeapEnv names a file for the heap profile taken while the sessions are idle (with
	// -memprofilerate 1 it counts every allocation): where an idle session's bytes are.
	idleHeapEnv = "GH_BENCH_IDLE_HEAP"
	// idleBenchConns is how many sessions the benchmark holds open; the test server's
	// max_connections leaves room for them.
	idleBenchConns = 200
	// idleGCs is how many collections run before each reading: each one halves goroutine stacks
	// that use less than a quarter of theirs, and an idle session lives through many.
	idleGCs = 5
)

func BenchmarkIdleSessionMemory(b *testing.B) {
	for _, bc := range []struct {
		name      string
		auditor   proxy.Auditor
		revocable bool // as in the sidecar: every grant can be revoked

		parkAfter time.Duration
	}{
		{"relay", nil, true, 0},
		{"governed", nopAuditor{}, true, 0},
		{"relay-irrevocable", nil, false, 0},
		{"governed-unparked", nopAuditor{}, true, -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sc := startProxy(b, proxyOptions{
				auditor:   bc.auditor,
				parkAfter: bc.parkAfter,
				// As in the sidecar: a structured logger that does not keep what it writes.
				logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
			})
			if bc.revocable {
				revoked, revoke := context.WithCancel(context.Background())
				b.Cleanup(revoke)
				sc.auth.set(func(a *authorizer) { a.revoked = revoked })
			}
			// A first round warms up the pools and the runtime's spans and stacks.
			measureIdle(b, sc, idleBenchConns, bc.parkAfter >= 0)
			var sum idleCost
			for b.Loop() {
				sum = sum.add(measureIdle(b, sc, idleBenchConns, bc.parkAfter >= 0))
			}
			n := float64(b.N * idleBenchConns)
			b.ReportMetric(float64(sum.heapInuse+sum.stack)/n, "B/idle-conn")
			b.ReportMetric(float64(sum.heapAlloc)/n, "heap-B/idle-conn")
			b.ReportMetric(float64(sum.stack)/n, "stack-B/idle-conn")
			b.ReportMetric(float64(sum.goroutines)/n, "goroutines/idle-conn")
			b.ReportMetric(float64(sum.fds)/n, "fds/idle-conn")
		})
	}
}

// idleCost is what n idle sessions cost, in total.
type idleCost struct {
	heapInuse, heapAlloc, stack int64
	goroutines, fds             int
}

func (c idleCost) add(o idleCost) idleCost {
	return idleCost{c.heapInuse + o.heapInuse, c.heapAlloc + o.heapAlloc, c.stack + o.stack,
		c.goroutines + o.goroutines, c.fds + o.fds}
}

type idleSnapshot struct {
	mem        runtime.MemStats
	goroutines int
	fds        int
}

func snapshot(b *testing.B) idleSnapshot {
	for range idleGCs {
		runtime.GC()
	}
	var s idleSnapshot
	runtime.ReadMemStats(&s.mem)
	s.goroutines = runtime.NumGoroutine()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	s.fds = len(fds)
	return s
}

// measureIdle has a child process open n sessions through sc, run SELECT 1 on each and hold them
// idle (parked, when park says they do), and returns what they cost this process.
func measureIdle(b *testing.B, sc *sidecar, n int, park bool) idleCost {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := snapshot(b)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleClientsEnv+"="+strconv.Itoa(n),
		idleDSNEnv+"="+sc.connString("scram_user", aliceToken, "database=app"))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("client process: %q, %v", line, err)
	}
	if park {
		// Idle sessions park (park.go): measure them parked.
		for deadline := time.Now().Add(30 * time.Second); postgres.Parked(sc.engine) < int64(2*n); {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d session directions parked", postgres.Parked(sc.engine), 2*n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	after := snapshot(b)
	if path := os.Getenv(idleHeapEnv); path != "" {
		writeHeapProfile(b, path)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("client process: %v", err)
	}
	// Let the sessions end before the next round measures its baseline.
	for deadline := time.Now().Add(30 * time.Second); runtime.NumGoroutine() > before.goroutines+2; {
		if time.Now().After(deadline) {
			b.Fatalf("%d goroutines left after the clients closed, %d before", runtime.NumGoroutine(), before.goroutines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return idleCost{
		heapInuse:  int64(after.mem.HeapInuse) - int64(before.mem.HeapInuse),
		heapAlloc:  int64(after.mem.HeapAlloc) - int64(before.mem.HeapAlloc),
		stack:      int64(after.mem.StackInuse) - int64(before.mem.StackInuse),
		goroutines: after.goroutines - before.goroutines,
		fds:        after.fds - before.fds,
	}
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// idleClients is the child process of measureIdle: it opens the connections, runs SELECT 1 on
// each, says "ready" and holds them until its standard input closes.
func idleClients() int {
	n, err := strconv.Atoi(os.Getenv(idleClientsEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conns := make([]*pgconn.PgConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := pgconn.Connect(ctx, os.Getenv(idleDSNEnv))
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = c
			_, errs[i] = c.Exec(ctx, "SELECT 1").ReadAll()
		})
	}
	wg.Wait()
	code := 0
	for i, err := range errs {
		if err != nil {
			fmt.Fprintf(os.Stderr, "connection %d: %v\n", i, err)
			code = 1
		}
	}
	if code == 0 {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	}
	for _, c := range conns {
		if c != nil {
			c.Close(context.Background())
		}
	}
	return code
}

// nopAuditor governs every statement and allows it, keeping nothing.
type nopAuditor struct{}

func (nopAuditor) Login(context.Context, proxy.LoginEvent) (proxy.StatementAuditor, error) {
	return nopAuditor{}, nil
}
func (nopAuditor) Statement(context.Context, *proxy.Statement) proxy.Verdict { return proxy.Verdict{} }
func (nopAuditor) Complete(uint64, proxy.Completion)                         {}
func (nopAuditor) SetSchema(string)                                          {}
func (nopAuditor) RecordParams() bool                                        { return false }
func (nopAuditor) Close(context.Context, proxy.SessionEnd)                   {}
