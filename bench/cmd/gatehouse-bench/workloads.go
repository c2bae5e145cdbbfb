package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehousedb/gatehouse/internal/activity"
)

const rowCount = 1_000_000

// run is one measurement of one workload on one target. Fields that do not apply stay zero.
type run struct {
	tps        float64 // operations per second: transactions, rows or connects (see the workload)
	latencyMs  float64 // pgbench's average latency; a storm's p50
	cpuUsPerOp float64 // the proxy's CPU per operation; 0 for direct
	failures   int
	extra      map[string]float64
}

// pgbenchResult is what the harness reads from pgbench's report.
type pgbenchResult struct {
	transactions  int64
	failed        int64
	tps           float64
	latencyMs     float64
	initialConnMs float64
}

var (
	reTransactions = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	reFailed       = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	reTPS          = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	reLatency      = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reInitialConn  = regexp.MustCompile(`(?m)^initial connection time = ([0-9.]+) ms`)
)

// parsePgbench reads pgbench's summary (PostgreSQL 13 to 17 wording).
func parsePgbench(out string) (pgbenchResult, error) {
	var r pgbenchResult
	m := reTransactions.FindStringSubmatch(out)
	t := reTPS.FindStringSubmatch(out)
	if m == nil || t == nil {
		return r, errors.New("pgbench printed no transaction count or tps")
	}
	r.transactions, _ = strconv.ParseInt(m[1], 10, 64)
	r.tps, _ = strconv.ParseFloat(t[1], 64)
	if m := reFailed.FindStringSubmatch(out); m != nil {
		r.failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reLatency.FindStringSubmatch(out); m != nil {
		r.latencyMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reInitialConn.FindStringSubmatch(out); m != nil {
		r.initialConnMs, _ = strconv.ParseFloat(m[1], 64)
	}
	return r, nil
}

// pgbenchWorkload is pgbench's built-in select-only script in one query mode.
type pgbenchWorkload struct {
	mode    string // simple, extended, prepared
	clients int
	connect bool // -C: a new connection per transaction
}

func (w pgbenchWorkload) name() string {
	if w.connect {
		return "new connections (-C)"
	}
	return "select-only " + w.mode
}

func (r *runner) pgbench(ctx context.Context, t target, w pgbenchWorkload) (run, error) {
	jobs := min(w.clients, r.cfg.cpus)
	args := []string{"-n", "-S", "-M", w.mode, "-c", strconv.Itoa(w.clients), "-j", strconv.Itoa(jobs), "-T", strconv.Itoa(r.cfg.seconds)}
	if w.connect {
		args = append(args, "-C")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.cfg.seconds)*time.Second+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgbenchPath(), args...)
	cmd.Env = append(cleanEnv(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(t.port), "PGUSER="+benchUser,
		"PGPASSWORD="+t.password(benchUser), "PGDATABASE="+benchDB, "PGSSLMODE=require", "PGCONNECT_TIMEOUT=30")
	var s *cpuSampler
	if t.pid != 0 {
		s = startSampler(t.pid, 50*time.Millisecond)
	}
	// The control plane shares this machine (in production it does not): its CPU is reported too.
	var cp0 time.Duration
	if t.name == "gatehouse" {
		cp0, _ = cpuTime(r.env.cp.pid())
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	end := time.Now()
	var cpEnd time.Duration
	if t.name == "gatehouse" {
		cpEnd, _ = cpuTime(r.env.cp.pid())
	}
	var samples []cpuSample
	if s != nil {
		samples = s.finish()
	}
	if err != nil {
		return run{}, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	res, err := parsePgbench(string(out))
	if err != nil {
		return run{}, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	rr := run{tps: res.tps, latencyMs: res.latencyMs, failures: int(res.failed), extra: map[string]float64{"transactions": float64(res.transactions)}}
	var shipping time.Duration // the sidecar's CPU while its activity of this run was shipped
	if t.name == "gatehouse" {
		if shipping, err = r.settle(ctx); err != nil {
			return run{}, err
		}
		if cp1, err := cpuTime(r.env.cp.pid()); err == nil && res.transactions > 0 {
			rr.extra["control_plane_cpu_us_per_op"] = float64((cp1 - cp0).Microseconds()) / float64(res.transactions)
			// What of it ran while pgbench did, taking CPU from what is measured.
			rr.extra["control_plane_cpu_us_per_op_in_run"] = float64((cpEnd - cp0).Microseconds()) / float64(res.transactions)
		}
	}
	if t.pid == 0 || res.transactions == 0 {
		return rr, nil
	}
	shippingPerOp := float64(shipping.Microseconds()) / float64(res.transactions)
	// Per query: the proxy's CPU rate in the steady part of the run (after the clients have
	// connected, before they disconnect) over the throughput. Per new connection: everything.
	if !w.connect {
		from := start.Add(time.Duration(res.initialConnMs*float64(time.Millisecond)) + 150*time.Millisecond)
		if rate, wall := rateIn(samples, from, end.Add(-250*time.Millisecond)); wall >= 400*time.Millisecond && res.tps > 0 {
			rr.cpuUsPerOp = rate/res.tps*1e6 + shippingPerOp
			return rr, nil
		}
	}
	rr.cpuUsPerOp = float64(total(samples).Microseconds())/float64(res.transactions) + shippingPerOp
	return rr, nil
}

// settle waits, after a workload through the sidecar, until the control plane has taken every
// activity record the workload produced: the sidecar's spool is acknowledged up to its end. The
// control plane runs at low priority (-cp-nice), as if on a machine of its own, so during a run it
// mostly waits; settling makes sure one run's ingest never runs during the next run of any target.
// It returns the sidecar's CPU time meanwhile: shipping is the sidecar's work for the run's
// statements, so the callers count it toward the sidecar's CPU.
func (r *runner) settle(ctx context.Context) (time.Duration, error) {
	pid := r.env.sidecar.pid()
	cpu0, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	// Records completing the run's statements and sessions reach the spool file within its sync
	// interval (50 ms); only then is the end of the file the end of the run's activity.
	time.Sleep(250 * time.Millisecond)
	dir := filepath.Join(r.env.sidecarDataDir, "activity")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		done, err := activity.Shipped(dir)
		if err != nil {
			return 0, err
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the control plane did not take the sidecar's activity within 5 minutes (spool %s)", dir)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	return cpu1 - cpu0, nil
}

// rows reads the 1,000,000-row table with a simple-protocol SELECT or with COPY TO STDOUT and
// throws the data away.
func (r *runner) rows(ctx context.Context, t target, useCopy bool) (run, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := pgconn.Connect(ctx, t.connString(benchUser))
	if err != nil {
		return run{}, err
	}
	defer c.Close(ctx)
	var s *cpuSampler
	var mem0 memory
	if t.pid != 0 {
		if err := resetPeakRSS(t.pid); err != nil {
			return run{}, fmt.Errorf("reset peak RSS: %w", err)
		}
		mem0, _ = processMemory(t.pid)
		s = startSampler(t.pid, 100*time.Millisecond)
	}
	start := time.Now()
	var n int64
	if useCopy {
		tag, err := c.CopyTo(ctx, io.Discard, "COPY "+rowsTable+" TO STDOUT")
		if err != nil {
			return run{}, fmt.Errorf("COPY: %w", err)
		}
		n = tag.RowsAffected()
	} else {
		rr := c.Exec(ctx, "SELECT id, payload, created FROM "+rowsTable)
		for rr.NextResult() {
			res := rr.ResultReader()
			for res.NextRow() {
				n++
			}
			if _, err := res.Close(); err != nil {
				return run{}, fmt.Errorf("SELECT: %w", err)
			}
		}
		if err := rr.Close(); err != nil {
			return run{}, fmt.Errorf("SELECT: %w", err)
		}
	}
	wall := time.Since(start)
	if n != rowCount {
		return run{}, fmt.Errorf("read %d rows; want %d", n, rowCount)
	}
	out := run{tps: float64(n) / wall.Seconds(), extra: map[string]float64{"wall_ms": ms(wall)}}
	if s != nil {
		cpu := total(s.finish())
		// Peak memory of the query itself, before shipping its activity reads the spool.
		if m, err := processMemory(t.pid); err == nil {
			out.extra["peak_rss_growth_kib"] = float64(max(0, m.hwmKiB-mem0.rssKiB))
		}
		if t.name == "gatehouse" {
			c.Close(ctx) // its session.end record is part of the run's activity
			shipping, err := r.settle(ctx)
			if err != nil {
				return run{}, err
			}
			cpu += shipping
		}
		out.cpuUsPerOp = float64(cpu.Microseconds())
		out.extra["cpu_ns_per_row"] = float64(cpu.Nanoseconds()) / float64(n)
	}
	return out, nil
}

// idleSettle is how long the idle workload leaves the proxy without traffic before it reads its
// memory: long enough for the sidecar's sessions to park (one second) and for it to notice that
// none runs (another second or so).
const idleSettle = 5 * time.Second

// idle opens n connections, runs one query on each (as a client pool validating its connections
// does; PgBouncer links a server connection to a client at its first query, not at login), keeps
// them open and idle, and reads the proxy's memory and file descriptors per connection.
//
// Both readings are taken after idleSettle without traffic: what the proxy holds while its
// connections are idle, not the garbage of the work before (the previous workload's, or the
// connections' handshakes), which the sidecar gives back to the system when none of its sessions
// has run for a second and which Go's collector would otherwise keep for minutes.
func (r *runner) idle(ctx context.Context, t target, n int) (run, error) {
	time.Sleep(idleSettle)
	rss0, err := processMemory(t.pid)
	if err != nil {
		return run{}, err
	}
	fds0, err := openFDs(t.pid)
	if err != nil {
		return run{}, err
	}
	conns, failures, firstErr := openMany(ctx, t, n, 32, func(int) string { return benchUser }, "SELECT 1")
	defer closeAll(conns)
	if len(conns) == 0 {
		return run{}, fmt.Errorf("no idle connection opened: %v", firstErr)
	}
	time.Sleep(idleSettle)
	rss1, err := processMemory(t.pid)
	if err != nil {
		return run{}, err
	}
	fds1, err := openFDs(t.pid)
	if err != nil {
		return run{}, err
	}
	if r.env.pprofAddr != "" && t.name == "gatehouse" {
		// With -profile: what the sidecar's heap holds now, and the runtime's own account.
		if err := r.saveHeap(); err != nil {
			say("  sidecar heap profile: %v", err)
		}
	}
	k := float64(len(conns))
	out := run{failures: failures, extra: map[string]float64{
		"connections":      k,
		"rss_kib_per_conn": float64(rss1.rssKiB-rss0.rssKiB) / k,
		"fds_per_conn":     float64(fds1-fds0) / k,
	}}
	if failures > 0 {
		say("  %d of %d idle connections to %s failed; first: %v", failures, n, t.name, firstErr)
	}
	return out, nil
}

// openMany opens n connections, at most par at a time, as user(i), and runs sql on each when it is
// not empty.
func openMany(ctx context.Context, t target, n, par int, user func(int) string, sql string) ([]*pgconn.PgConn, int, error) {
	var (
		mu       sync.Mutex
		conns    []*pgconn.PgConn
		failures int
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, par)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			c, err := pgconn.Connect(cctx, t.connString(user(i)))
			if err == nil && sql != "" {
				if _, err = c.Exec(cctx, sql).ReadAll(); err != nil {
					_ = c.Close(cctx)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	return conns, failures, firstErr
}

func closeAll(conns []*pgconn.PgConn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Close(ctx)
		}()
	}
	wg.Wait()
}

// singleConnect is the median time of one connection made alone (TLS and authentication, no
// query), the yardstick for a storm's p99.
func (r *runner) singleConnect(ctx context.Context, t target) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < 15; i++ {
		start := time.Now()
		c, err := pgconn.Connect(ctx, t.connString(benchUser))
		if err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
		_ = c.Close(ctx)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

// storm opens n connections at the same instant, as stormUsers distinct users whose secrets the
// sidecar has not fetched yet, and counts the sidecar's secret fetches.
func (r *runner) storm(ctx context.Context, t target, n, round int) (run, error) {
	users := stormUserNames(round)
	single, err := r.singleConnect(ctx, t)
	if err != nil {
		return run{}, fmt.Errorf("single connect: %w", err)
	}
	var logOff int64
	if t.name == "gatehouse" {
		logOff = fileSize(r.env.sidecar.log)
	}
	cpu0 := time.Duration(0)
	if t.pid != 0 {
		cpu0, _ = cpuTime(t.pid)
	}
	var (
		wg    sync.WaitGroup
		ready sync.WaitGroup
		gate  = make(chan struct{})
		times = make([]time.Duration, n)
		errs  = make([]error, n)
		conns = make([]*pgconn.PgConn, n)
	)
	ready.Add(n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, err := pgconn.ParseConfig(t.connString(users[i%len(users)]))
			ready.Done()
			if err != nil {
				errs[i] = err
				return
			}
			<-gate
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			start := time.Now()
			conns[i], errs[i] = pgconn.ConnectConfig(cctx, cfg)
			times[i] = time.Since(start)
		}()
	}
	ready.Wait()
	start := time.Now()
	close(gate)
	wg.Wait()
	wall := time.Since(start)
	var cpu time.Duration
	if t.pid != 0 {
		c1, _ := cpuTime(t.pid)
		cpu = c1 - cpu0
	}
	var ok []time.Duration
	var failures int
	var firstErr error
	var open []*pgconn.PgConn
	for i := range n {
		if errs[i] != nil {
			failures++
			if firstErr == nil {
				firstErr = errs[i]
			}
			continue
		}
		ok = append(ok, times[i])
		open = append(open, conns[i])
	}
	closeAll(open)
	if failures > 0 {
		say("  %d of %d simultaneous connects to %s failed; first: %v", failures, n, t.name, firstErr)
	}
	out := run{tps: float64(len(ok)) / wall.Seconds(), failures: failures, extra: map[string]float64{
		"single_connect_ms": ms(single),
		"distinct_users":    float64(len(users)),
	}}
	if len(ok) > 0 {
		slices.Sort(ok)
		out.latencyMs = ms(percentile(ok, 50))
		out.extra["p50_ms"] = ms(percentile(ok, 50))
		out.extra["p99_ms"] = ms(percentile(ok, 99))
		if t.pid != 0 {
			out.cpuUsPerOp = float64(cpu.Microseconds()) / float64(len(ok))
		}
	}
	if t.name == "gatehouse" {
		time.Sleep(200 * time.Millisecond) // the log line is written after the fetch returns
		fetches := countSecretFetches(r.env.sidecar.log, logOff, users)
		out.extra["secret_fetches"] = float64(fetches)
		out.extra["secret_fetches_per_user"] = float64(fetches) / float64(len(users))
		if _, err := r.settle(ctx); err != nil {
			return run{}, err
		}
	}
	return out, nil
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// countSecretFetches counts the sidecar's `msg="secret fetched"` debug lines after offset for the
// given repository users.
func countSecretFetches(logPath string, offset int64, users []string) int {
	f, err := os.Open(logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0
	}
	return countFetchLines(f, users)
}

func countFetchLines(r io.Reader, users []string) int {
	n := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="secret fetched"`) {
			continue
		}
		for _, u := range users {
			if strings.Contains(line, " repository_user="+u+" ") || strings.HasSuffix(line, " repository_user="+u) {
				n++
				break
			}
		}
	}
	return n
}

// waitBackends waits until PostgreSQL has at most n client backends (PgBouncer closes its idle
// server connections after server_idle_timeout), so one target's leftovers do not use up
// max_connections for the next.
func (r *runner) waitBackends(ctx context.Context, n int, within time.Duration) {
	conn, err := pgx.Connect(ctx, r.env.pg.DSN("postgres"))
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var k int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").Scan(&k); err != nil || k <= n {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// saveHeap writes the sidecar's heap profile, with the runtime's memory statistics at its end, to
// sidecar-idle-heap.txt in the output directory, and the same profile for go tool pprof to
// sidecar-idle-heap.pprof.
func (r *runner) saveHeap() error {
	for _, f := range []struct{ query, name string }{
		{"debug=1", "sidecar-idle-heap.txt"},
		{"gc=1", "sidecar-idle-heap.pprof"},
	} {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/heap?%s", r.env.pprofAddr, f.query))
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		path := filepath.Join(r.cfg.out, f.name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
		say("  wrote %s", path)
	}
	return nil
}
