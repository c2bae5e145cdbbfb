// Command gatehouse-bench measures what a Gatehouse sidecar costs: it starts a throwaway PostgreSQL,
// PgBouncer (session mode) and a Gatehouse control plane and sidecar, all with client TLS, runs the
// same workloads against the three (direct, pgbouncer, gatehouse) interleaved and repeated, and
// writes bench/out/results.json and bench/out/results.md. `make bench` runs it; docs/performance.md
// says what each workload measures.
//
//	make bench            # full run: 3 rounds of 10 s pgbench runs
//	make bench QUICK=1    # 1 s pgbench runs instead of 10 s: under 5 minutes on 2 cores
//	make bench PIN=1      # proxies on CPU 0; PostgreSQL, pgbench and the harness on CPU 1
//	make bench PROFILE=1  # also take a CPU profile of the sidecar (select-only, extended, 8 clients) and its idle heap
//	make bench RELAY=1    # also measure go-relay and loop-relay, bare Go TLS relays (relay.go, looprelay_linux.go)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	quick, pin, profile bool
	relay               bool // also measure go-relay and loop-relay (relay.go, looprelay_linux.go)
	runs                int  // rounds; each workload is measured once per round on each target
	seconds             int  // pgbench -T
	scale               int  // pgbench -s
	idleConns           int
	stormConns          int
	cpus                int
	out                 string
	binary              string
	sidecarPort         int
	bouncerPort         int
	relayPort           int
	loopRelayPort       int
	pgMajor             string
	only                map[string]bool // workload groups to run; empty: all
	cpNice              int             // niceness of the control plane process
}

// workloadGroups are the names -only accepts.
var workloadGroups = []string{"select", "connect", "rows", "storm", "idle"}

// parseOnly reads -only: comma-separated workload groups; empty selects all (nil).
func parseOnly(list string) (map[string]bool, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	only := map[string]bool{}
	for _, g := range strings.Split(list, ",") {
		g = strings.TrimSpace(g)
		if !slices.Contains(workloadGroups, g) {
			return nil, fmt.Errorf("unknown workload group %q; use %s", g, strings.Join(workloadGroups, ", "))
		}
		only[g] = true
	}
	return only, nil
}

// selected reports whether a workload group is to run.
func (c config) selected(group string) bool { return len(c.only) == 0 || c.only[group] }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		// The go-relay target: the harness runs itself as a separate process (relay.go).
		if err := relayMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "gatehouse-bench:", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	flag.BoolVar(&cfg.quick, "quick", os.Getenv("QUICK") != "", "quick mode: fewer, shorter runs (QUICK=1)")
	flag.BoolVar(&cfg.pin, "pin", os.Getenv("PIN") != "", "pin the proxies to CPU 0 and everything else to CPU 1 (PIN=1)")
	flag.BoolVar(&cfg.relay, "relay", os.Getenv("RELAY") != "", "also measure go-relay and loop-relay, bare Go TLS relays: the floor of a goroutine-per-connection Go proxy, and of one with event loops (RELAY=1)")
	flag.BoolVar(&cfg.profile, "profile", os.Getenv("PROFILE") != "", "take a CPU profile of the sidecar, and its heap with the idle connections open (PROFILE=1)")
	flag.IntVar(&cfg.runs, "runs", 0, "rounds (default 3)")
	flag.IntVar(&cfg.seconds, "seconds", 0, "duration of each pgbench run (default 10, quick 1)")
	flag.IntVar(&cfg.scale, "scale", 10, "pgbench scale factor")
	flag.IntVar(&cfg.idleConns, "idle", 2000, "idle connections to hold open per proxy")
	flag.IntVar(&cfg.stormConns, "storm", 500, "simultaneous connects")
	flag.StringVar(&cfg.out, "out", "bench/out", "output directory")
	flag.StringVar(&cfg.binary, "binary", os.Getenv("BENCH_BINARY"), "gatehouse binary to benchmark (BENCH_BINARY; default: build ./cmd/gatehouse into the output directory)")
	only := flag.String("only", os.Getenv("ONLY"), "comma-separated workload groups to run (ONLY): "+strings.Join(workloadGroups, ", ")+"; default all")
	flag.IntVar(&cfg.cpNice, "cp-nice", 19, "niceness of the control plane process (it is not on the data path; in production it runs elsewhere, so it runs at the lowest priority, in the idle scheduling class where chrt is installed, and the harness waits for it to take each run's activity before the next run); 0 runs it at normal priority")
	flag.Parse()
	var err error
	if cfg.only, err = parseOnly(*only); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-bench: -only:", err)
		os.Exit(2)
	}
	if cfg.cpNice < 0 || cfg.cpNice > 19 {
		fmt.Fprintf(os.Stderr, "gatehouse-bench: -cp-nice must be between 0 and 19, not %d\n", cfg.cpNice)
		os.Exit(2)
	}
	if cfg.runs == 0 {
		cfg.runs = 3
	}
	if cfg.seconds == 0 {
		cfg.seconds = 10
		if cfg.quick {
			cfg.seconds = 1
		}
	}
	cfg.cpus = runtime.NumCPU()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := benchmark(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-bench:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func benchmark(ctx context.Context, cfg config) error {
	began := time.Now()
	if err := os.MkdirAll(filepath.Join(cfg.out, "logs"), 0o755); err != nil {
		return err
	}
	var err error
	if cfg.out, err = filepath.Abs(cfg.out); err != nil {
		return err
	}
	raiseFDLimit()
	if cfg.pin {
		if cfg.cpus < 2 {
			return fmt.Errorf("pinned mode needs 2 CPUs; this machine has %d", cfg.cpus)
		}
		// Everything this process starts inherits CPU 1 (PostgreSQL, pgbench, the control plane);
		// the proxies are started on CPU 0 through taskset.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset: %w: %s", err, out)
		}
	}
	if cfg.binary == "" {
		cfg.binary = filepath.Join(cfg.out, "gatehouse")
		say("building %s ...", cfg.binary)
		build := exec.CommandContext(ctx, "go", "build", "-o", cfg.binary, "./cmd/gatehouse")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build gatehouse: %w (to measure a binary built earlier, set BENCH_BINARY=PATH)", err)
		}
	}
	cfg.sidecarPort, cfg.bouncerPort, cfg.relayPort, cfg.loopRelayPort = freePort(), freePort(), freePort(), freePort()

	e, err := setup(ctx, cfg)
	if err != nil {
		return err
	}
	defer e.close()
	say("policy: %s", e.policy)
	say("activity: %s", e.activity)

	r := &runner{cfg: e.cfg, env: e}
	if err := r.all(ctx); err != nil {
		return err
	}
	if cfg.profile {
		if err := r.profile(ctx); err != nil {
			return err
		}
	}
	rep := newReport(e, r.results, time.Since(began))
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	fmt.Print(rep.markdown())
	say("wrote %s and %s in %s", filepath.Join(cfg.out, "results.json"), filepath.Join(cfg.out, "results.md"), time.Since(began).Round(time.Second))
	return nil
}

// raiseFDLimit lifts the soft open-files limit to the hard one: 2,000 idle connections need about
// 4,000 descriptors in each proxy and 2,000 here. Children inherit it.
func raiseFDLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < 10000 {
		say("warning: open-files limit is %d; 2,000 idle connections need about 10,000 (ulimit -n)", l.Cur)
	}
}

// result is one measurement, labelled.
type result struct {
	target, workload string
	clients          int
	run
}

type runner struct {
	cfg     config
	env     *env
	results []result
}

func (r *runner) add(t target, workload string, clients int, rr run) {
	r.results = append(r.results, result{target: t.name, workload: workload, clients: clients, run: rr})
}

// rotate returns the targets in a different order each round, so no target always runs right
// after the same neighbour (or first, on a cold cache).
func rotate(ts []target, round int) []target {
	out := make([]target, 0, len(ts))
	for i := range ts {
		out = append(out, ts[(i+round)%len(ts)])
	}
	return out
}

func (r *runner) all(ctx context.Context) error {
	targets := r.env.targets()
	for round := 0; round < r.cfg.runs; round++ {
		say("round %d of %d", round+1, r.cfg.runs)
		for _, mode := range []string{"simple", "extended", "prepared"} {
			if !r.cfg.selected("select") {
				break
			}
			for _, clients := range []int{1, 8, 32} {
				w := pgbenchWorkload{mode: mode, clients: clients}
				for _, t := range rotate(targets, round) {
					rr, err := r.pgbench(ctx, t, w)
					if err != nil {
						return r.fail(t, err)
					}
					say("  %-22s %2d clients  %-9s %9.0f tps  %6.1f µs proxy CPU/query", w.name(), clients, t.name, rr.tps, rr.cpuUsPerOp)
					r.add(t, w.name(), clients, rr)
				}
			}
		}
		w := pgbenchWorkload{mode: "simple", clients: 8, connect: true}
		for _, t := range rotate(targets, round) {
			if !r.cfg.selected("connect") {
				break
			}
			rr, err := r.pgbench(ctx, t, w)
			if err != nil {
				return r.fail(t, err)
			}
			say("  %-22s %2d clients  %-9s %9.0f conn/s  %6.1f µs proxy CPU/connection", w.name(), w.clients, t.name, rr.tps, rr.cpuUsPerOp)
			r.add(t, w.name(), w.clients, rr)
		}
		for _, useCopy := range []bool{false, true} {
			if !r.cfg.selected("rows") {
				break
			}
			name := "1M-row SELECT"
			if useCopy {
				name = "1M-row COPY TO STDOUT"
			}
			for _, t := range rotate(targets, round) {
				rr, err := r.rows(ctx, t, useCopy)
				if err != nil {
					return r.fail(t, fmt.Errorf("%s: %w", name, err))
				}
				say("  %-22s    %-9s %9.0f ms wall  %6.0f ns proxy CPU/row", name, t.name, rr.extra["wall_ms"], rr.extra["cpu_ns_per_row"])
				r.add(t, name, 1, rr)
			}
		}
		for _, t := range rotate(targets, round) {
			if !r.cfg.selected("storm") || r.cfg.quick && round > 0 {
				break // quick mode: one storm per target, to stay under five minutes
			}
			rr, err := r.storm(ctx, t, r.cfg.stormConns, round)
			if err != nil {
				return r.fail(t, fmt.Errorf("storm: %w", err))
			}
			say("  %-22s %3d conns  %-9s p50 %.1f ms  p99 %.1f ms  %d failed", "simultaneous connects", r.cfg.stormConns, t.name, rr.extra["p50_ms"], rr.extra["p99_ms"], rr.failures)
			r.add(t, "simultaneous connects", r.cfg.stormConns, rr)
			r.waitBackends(ctx, 50, 30*time.Second)
		}
		if round == 0 && r.cfg.selected("idle") {
			// Memory and descriptors per idle connection barely vary between rounds: measured once.
			for _, t := range targets[1:] {
				if t.name == "go-relay" || t.name == "loop-relay" {
					continue // it keeps two 16 KiB buffers per connection: not a floor for memory
				}
				rr, err := r.idle(ctx, t, r.cfg.idleConns)
				if err != nil {
					return r.fail(t, fmt.Errorf("idle connections: %w", err))
				}
				say("  %-22s %4d conns %-9s %.1f KiB and %.2f fds per connection", "idle connections", r.cfg.idleConns, t.name, rr.extra["rss_kib_per_conn"], rr.extra["fds_per_conn"])
				r.add(t, "idle connections", r.cfg.idleConns, rr)
				r.waitBackends(ctx, 50, 30*time.Second)
			}
		}
	}
	return nil
}

// fail adds the proxy's log to an error.
func (r *runner) fail(t target, err error) error {
	switch t.name {
	case "gatehouse":
		return fmt.Errorf("%s: %w\nsidecar log (%s):\n%s", t.name, err, r.env.sidecar.log, r.env.sidecar.logTail())
	case "pgbouncer":
		return fmt.Errorf("%s: %w\n%s", t.name, err, r.env.bouncer.logTail())
	}
	return fmt.Errorf("%s: %w", t.name, err)
}

// profile takes a CPU profile of the sidecar under select-only, extended protocol, 8 clients, and
// writes it with a `go tool pprof -top` summary to the output directory.
func (r *runner) profile(ctx context.Context) error {
	t := r.env.targets()[2]
	const secs = 10
	say("profiling the sidecar: select-only extended, 8 clients, %d s ...", secs)
	cfg := r.cfg
	cfg.seconds = secs + 4
	pr := &runner{cfg: cfg, env: r.env}
	done := make(chan error, 1)
	go func() {
		_, err := pr.pgbench(ctx, t, pgbenchWorkload{mode: "extended", clients: 8})
		done <- err
	}()
	time.Sleep(2 * time.Second)
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.env.pprofAddr, secs))
	if err != nil {
		<-done
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	path := filepath.Join(r.cfg.out, "sidecar-cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	f.Close()
	if err := <-done; err != nil {
		return err
	}
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("fetch profile: %v (HTTP %d)", err, resp.StatusCode)
	}
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=60", r.cfg.binary, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w\n%s", err, top)
	}
	cum, _ := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=60", r.cfg.binary, path).CombinedOutput()
	out := append(append(top, "\n--- sorted by cumulative ---\n"...), cum...)
	if err := os.WriteFile(filepath.Join(r.cfg.out, "sidecar-cpu-top.txt"), out, 0o644); err != nil {
		return err
	}
	say("wrote %s and sidecar-cpu-top.txt", path)
	return nil
}
