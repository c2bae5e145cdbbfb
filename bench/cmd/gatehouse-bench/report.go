package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row is one target × workload in results.json: medians over the rounds.
type row struct {
	Target           string             `json:"target"`
	Workload         string             `json:"workload"`
	Clients          int                `json:"clients"`
	TPS              *float64           `json:"tps"` // operations per second: transactions, connections, rows (1M-row workloads)
	RatioVsDirect    *float64           `json:"ratio_vs_direct"`
	RatioVsPgBouncer *float64           `json:"ratio_vs_pgbouncer"`
	CPUUsPerQuery    *float64           `json:"cpu_us_per_query"` // the proxy's CPU per operation (whole query for 1M-row workloads); null for direct
	LatencyMs        *float64           `json:"latency_ms,omitempty"`
	Failures         int                `json:"failures"`
	Runs             int                `json:"runs"`
	Details          map[string]float64 `json:"details,omitempty"`
}

type report struct {
	Generated string   `json:"generated"`
	Mode      string   `json:"mode"`
	Duration  string   `json:"duration"`
	Machine   []string `json:"machine"`
	Policy    string   `json:"policy"`
	Activity  string   `json:"activity"`
	Results   []row    `json:"results"`
	Targets   []check  `json:"targets"`
}

// check is one of the targets with the measured value.
type check struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      string `json:"met"` // yes, no, n/a
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ptr(f float64) *float64 { return &f }

// aggregate turns the measurements into rows, in the order workloads were first measured, with
// medians over rounds and ratios against direct and PgBouncer from the same run.
func aggregate(results []result) []row {
	type key struct {
		workload string
		clients  int
		target   string
	}
	var order []key
	groups := map[key][]result{}
	for _, r := range results {
		k := key{r.workload, r.clients, r.target}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	targetRank := map[string]int{"direct": 0, "pgbouncer": 1, "gatehouse": 2, "go-relay": 3, "loop-relay": 4}
	slices.SortStableFunc(order, func(a, b key) int {
		ia := slices.IndexFunc(order, func(k key) bool { return k.workload == a.workload && k.clients == a.clients })
		ib := slices.IndexFunc(order, func(k key) bool { return k.workload == b.workload && k.clients == b.clients })
		if ia != ib {
			return ia - ib
		}
		return targetRank[a.target] - targetRank[b.target]
	})
	rows := map[key]*row{}
	var out []row
	for _, k := range order {
		rs := groups[k]
		var tps, lat, cpu []float64
		extras := map[string][]float64{}
		failures := 0
		for _, r := range rs {
			tps = append(tps, r.tps)
			lat = append(lat, r.latencyMs)
			cpu = append(cpu, r.cpuUsPerOp)
			failures += r.failures
			for name, v := range r.extra {
				extras[name] = append(extras[name], v)
			}
		}
		rw := row{Target: k.target, Workload: k.workload, Clients: k.clients, Failures: failures, Runs: len(rs)}
		if m := median(tps); m > 0 {
			rw.TPS = ptr(m)
		}
		if m := median(lat); m > 0 {
			rw.LatencyMs = ptr(m)
		}
		if k.target != "direct" {
			rw.CPUUsPerQuery = ptr(median(cpu))
		}
		if len(extras) > 0 {
			rw.Details = map[string]float64{}
			for name, vs := range extras {
				rw.Details[name] = median(vs)
			}
		}
		out = append(out, rw)
		rows[k] = &out[len(out)-1]
	}
	for i := range out {
		rw := &out[i]
		if rw.TPS == nil {
			continue
		}
		if d := rows[key{rw.Workload, rw.Clients, "direct"}]; d != nil && d.TPS != nil {
			rw.RatioVsDirect = ptr(*rw.TPS / *d.TPS)
		}
		if p := rows[key{rw.Workload, rw.Clients, "pgbouncer"}]; p != nil && p.TPS != nil {
			rw.RatioVsPgBouncer = ptr(*rw.TPS / *p.TPS)
		}
	}
	return out
}

func newReport(e *env, results []result, took time.Duration) *report {
	mode := "full"
	if e.cfg.quick {
		mode = "quick"
	}
	mode += fmt.Sprintf(" (%d rounds, pgbench -T %d, scale %d)", e.cfg.runs, e.cfg.seconds, e.cfg.scale)
	if e.cfg.pin {
		mode += ", pinned: proxies on CPU 0, PostgreSQL + pgbench + harness on CPU 1"
	} else {
		mode += ", not pinned"
	}
	if len(e.cfg.only) > 0 {
		var groups []string
		for _, g := range workloadGroups {
			if e.cfg.only[g] {
				groups = append(groups, g)
			}
		}
		mode += "; only " + strings.Join(groups, ", ")
	}
	if e.cfg.cpNice > 0 {
		mode += fmt.Sprintf("; control plane at nice %d", e.cfg.cpNice)
		if e.cpIdleClass {
			mode += " in the idle scheduling class"
		}
	}
	rep := &report{
		Generated: time.Now().UTC().Format(time.RFC3339),
		Mode:      mode,
		Duration:  took.Round(time.Second).String(),
		Machine:   machine(e),
		Policy:    e.policy,
		Activity:  e.activity,
		Results:   aggregate(results),
	}
	rep.Targets = checks(rep.Results)
	return rep
}

func machine(e *env) []string {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	cpu := "?"
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Model name" {
				cpu = strings.TrimSpace(v)
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	pgBin := filepath.Dir(pgbenchPath())
	return []string{
		fmt.Sprintf("CPU: %s, %d CPUs; memory %s", cpu, e.cfg.cpus, mem),
		"kernel: " + first("uname", "-sr"),
		"PostgreSQL: " + first(filepath.Join(pgBin, "postgres"), "--version"),
		"pgbench: " + first(pgbenchPath(), "--version"),
		"PgBouncer: " + first("pgbouncer", "--version"),
		"Go: " + runtime.Version() + " (the sidecar's GOMAXPROCS defaults to its CPU affinity)",
		"load average at the end: " + strings.Join(strings.Fields(string(load))[:3], " "),
	}
}

func (rep *report) write(dir string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(rep.markdown()), 0o644)
}

func f1(p *float64, format string) string {
	if p == nil || math.IsNaN(*p) {
		return "—"
	}
	return fmt.Sprintf(format, *p)
}

func details(r row) string {
	d := r.Details
	var parts []string
	switch {
	case strings.HasPrefix(r.Workload, "1M-row"):
		parts = append(parts, fmt.Sprintf("wall %.0f ms", d["wall_ms"]))
		if r.Target != "direct" {
			parts = append(parts, fmt.Sprintf("%.0f ns CPU/row", d["cpu_ns_per_row"]), fmt.Sprintf("peak RSS +%.1f MiB", d["peak_rss_growth_kib"]/1024))
		}
	case r.Workload == "simultaneous connects":
		parts = append(parts, fmt.Sprintf("p50 %.1f ms, p99 %.1f ms (single %.1f ms)", d["p50_ms"], d["p99_ms"], d["single_connect_ms"]))
		if v, ok := d["secret_fetches"]; ok {
			parts = append(parts, fmt.Sprintf("%.0f secret fetches for %.0f users", v, d["distinct_users"]))
		}
	case strings.HasPrefix(r.Workload, "select-only"), strings.HasPrefix(r.Workload, "new connections"):
		if v, ok := d["control_plane_cpu_us_per_op"]; ok {
			cp := fmt.Sprintf("control plane %.1f µs CPU/op", v)
			if in, ok := d["control_plane_cpu_us_per_op_in_run"]; ok {
				cp += fmt.Sprintf(" (%.1f during the run)", in)
			}
			parts = append(parts, cp)
		}
	case r.Workload == "idle connections":
		parts = append(parts, fmt.Sprintf("%.1f KiB and %.2f fds per connection", d["rss_kib_per_conn"], d["fds_per_conn"]))
	}
	if r.Failures > 0 {
		parts = append(parts, fmt.Sprintf("%d failures", r.Failures))
	}
	return strings.Join(parts, "; ")
}

func (rep *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Gatehouse benchmark — %s\n\n", rep.Generated)
	fmt.Fprintf(&b, "Mode: %s; took %s.\n\n", rep.Mode, rep.Duration)
	for _, m := range rep.Machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	fmt.Fprintf(&b, "- policy: %s\n- activity: %s\n\n", rep.Policy, rep.Activity)
	b.WriteString("| workload | clients | target | tps | × direct | × PgBouncer | proxy CPU µs/op | latency ms | details |\n")
	b.WriteString("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range rep.Results {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", r.Workload, r.Clients, r.Target,
			f1(r.TPS, "%.0f"), f1(r.RatioVsDirect, "%.2f"), f1(r.RatioVsPgBouncer, "%.2f"), f1(r.CPUUsPerQuery, "%.1f"),
			f1(r.LatencyMs, "%.3f"), details(r))
	}
	b.WriteString("\ntps: transactions/s for pgbench workloads (one query each; with -C one new connection each), rows/s for the 1M-row ones, connections/s for simultaneous connects. " +
		"Proxy CPU µs/op: the sidecar's or PgBouncer's utime+stime from /proc per transaction, per new connection (-C, connects) or per whole 1M-row query. Medians over rounds.\n\n")
	b.WriteString("## Targets (issue 9)\n\n| target | measured | met |\n| --- | --- | --- |\n")
	for _, c := range rep.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.Target, c.Measured, c.Met)
	}
	return b.String()
}

// checks compares the gatehouse rows with the targets.
func checks(rows []row) []check {
	find := func(workload string, clients int, target string) *row {
		for i := range rows {
			if rows[i].Workload == workload && (clients == 0 || rows[i].Clients == clients) && rows[i].Target == target {
				return &rows[i]
			}
		}
		return nil
	}
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no"
	}
	var out []check
	// Throughput at 8 and 32 clients.
	for _, clients := range []int{8, 32} {
		var parts []string
		ok, seen := true, false
		for _, mode := range []string{"simple", "extended", "prepared"} {
			g := find("select-only "+mode, clients, "gatehouse")
			if g == nil || g.RatioVsPgBouncer == nil {
				continue
			}
			seen = true
			parts = append(parts, fmt.Sprintf("%s %.2f×", mode, *g.RatioVsPgBouncer))
			ok = ok && *g.RatioVsPgBouncer >= 1.1
		}
		c := check{Target: fmt.Sprintf("select-only throughput at %d clients ≥ 1.1× PgBouncer", clients), Measured: strings.Join(parts, ", "), Met: "n/a"}
		if seen {
			c.Met = yes(ok)
		}
		out = append(out, c)
	}
	// CPU per query.
	{
		var parts []string
		ok, seen := true, false
		for _, mode := range []string{"simple", "extended", "prepared"} {
			for _, clients := range []int{1, 8, 32} {
				g, p := find("select-only "+mode, clients, "gatehouse"), find("select-only "+mode, clients, "pgbouncer")
				if g == nil || p == nil || g.CPUUsPerQuery == nil || p.CPUUsPerQuery == nil {
					continue
				}
				seen = true
				if clients == 8 {
					parts = append(parts, fmt.Sprintf("%s/8: %.1f vs %.1f µs", mode, *g.CPUUsPerQuery, *p.CPUUsPerQuery))
				}
				ok = ok && *g.CPUUsPerQuery <= *p.CPUUsPerQuery
			}
		}
		c := check{Target: "proxy CPU per query ≤ PgBouncer's (all modes and client counts)", Measured: strings.Join(parts, ", "), Met: "n/a"}
		if seen {
			c.Met = yes(ok)
		}
		out = append(out, c)
	}
	// Added latency at 1 client.
	{
		var parts []string
		ok, seen := true, false
		for _, mode := range []string{"simple", "extended", "prepared"} {
			d, p, g := find("select-only "+mode, 1, "direct"), find("select-only "+mode, 1, "pgbouncer"), find("select-only "+mode, 1, "gatehouse")
			if d == nil || p == nil || g == nil || d.LatencyMs == nil || p.LatencyMs == nil || g.LatencyMs == nil {
				continue
			}
			seen = true
			ga, pa := (*g.LatencyMs-*d.LatencyMs)*1000, (*p.LatencyMs-*d.LatencyMs)*1000
			parts = append(parts, fmt.Sprintf("%s: +%.0f µs vs +%.0f µs", mode, ga, pa))
			ok = ok && ga <= pa+5
		}
		c := check{Target: "added latency at 1 client ≤ PgBouncer's + 5 µs", Measured: strings.Join(parts, ", "), Met: "n/a"}
		if seen {
			c.Met = yes(ok)
		}
		out = append(out, c)
	}
	if g, p := find("new connections (-C)", 0, "gatehouse"), find("new connections (-C)", 0, "pgbouncer"); g != nil && p != nil && g.RatioVsPgBouncer != nil {
		out = append(out, check{Target: "new-connection rate ≥ PgBouncer's (both with client TLS)",
			Measured: fmt.Sprintf("%.0f vs %.0f conn/s (%.2f×); proxy CPU %.0f vs %.0f µs per connection", *g.TPS, *p.TPS, *g.RatioVsPgBouncer, *g.CPUUsPerQuery, *p.CPUUsPerQuery),
			Met:      yes(*g.RatioVsPgBouncer >= 1)})
	}
	for _, w := range []string{"1M-row SELECT", "1M-row COPY TO STDOUT"} {
		g, d := find(w, 0, "gatehouse"), find(w, 0, "direct")
		if g == nil || d == nil || g.Details == nil || d.Details == nil {
			continue
		}
		wall := g.Details["wall_ms"] / d.Details["wall_ms"]
		ns := g.Details["cpu_ns_per_row"]
		grow := g.Details["peak_rss_growth_kib"] / 1024
		out = append(out,
			check{Target: w + " wall time ≤ 1.05× direct", Measured: fmt.Sprintf("%.2f× (%.0f vs %.0f ms)", wall, g.Details["wall_ms"], d.Details["wall_ms"]), Met: yes(wall <= 1.05)},
			check{Target: w + " proxy CPU ≤ 150 ns per row", Measured: fmt.Sprintf("%.0f ns", ns), Met: yes(ns <= 150)},
			check{Target: w + " memory flat", Measured: fmt.Sprintf("peak RSS +%.1f MiB during the query", grow), Met: yes(grow <= 16)})
	}
	if g := find("idle connections", 0, "gatehouse"); g != nil && g.Details != nil {
		kib, fds := g.Details["rss_kib_per_conn"], g.Details["fds_per_conn"]
		pg := ""
		if p := find("idle connections", 0, "pgbouncer"); p != nil && p.Details != nil {
			pg = fmt.Sprintf(" (PgBouncer: %.1f KiB, %.2f fds)", p.Details["rss_kib_per_conn"], p.Details["fds_per_conn"])
		}
		out = append(out, check{Target: "≤ 16 KiB and ≤ 2 file descriptors per idle client connection",
			Measured: fmt.Sprintf("%.1f KiB, %.2f fds%s", kib, fds, pg), Met: yes(kib <= 16 && fds <= 2)})
	}
	if g := find("simultaneous connects", 0, "gatehouse"); g != nil && g.Details != nil {
		d := g.Details
		out = append(out,
			check{Target: "500 simultaneous connects: zero failures", Measured: fmt.Sprintf("%d failures", g.Failures), Met: yes(g.Failures == 0)},
			check{Target: "500 simultaneous connects: p99 ≤ 2× a single connect", Measured: fmt.Sprintf("p99 %.1f ms, single %.1f ms (%.1f×)", d["p99_ms"], d["single_connect_ms"], d["p99_ms"]/d["single_connect_ms"]), Met: yes(d["p99_ms"] <= 2*d["single_connect_ms"])})
		if v, ok := d["secret_fetches_per_user"]; ok {
			out = append(out, check{Target: "500 simultaneous connects: one secret fetch per repository user", Measured: fmt.Sprintf("%.0f fetches for %.0f users (%.2f per user)", d["secret_fetches"], d["distinct_users"], v), Met: yes(v <= 1.0001)})
		}
	}
	return out
}
