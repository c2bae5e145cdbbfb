package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParsePgbench(t *testing.T) {
	// pgbench 15's summary, as printed for select-only and for -C.
	cases := []struct {
		name string
		out  string
		want pgbenchResult
	}{
		{"select-only", `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: extended
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 255290
number of failed transactions: 0 (0.000%)
latency average = 0.313 ms
initial connection time = 12.345 ms
tps = 25529.012345 (without initial connection time)
`, pgbenchResult{transactions: 255290, tps: 25529.012345, latencyMs: 0.313, initialConnMs: 12.345}},
		{"new connections", `transaction type: <builtin: select only>
number of transactions actually processed: 700
number of failed transactions: 3 (0.427%)
latency average = 114.798 ms
average connection time = 14.100 ms
tps = 69.688000 (including reconnection times)
`, pgbenchResult{transactions: 700, failed: 3, tps: 69.688, latencyMs: 114.798}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePgbench(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(pgbenchResult{})); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
	if _, err := parsePgbench("pgbench: error: connection to server failed\n"); err == nil {
		t.Error("no error for output without a summary")
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses; utime=150, stime=25 ticks.
	line := "4242 (gate house) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 25 0 0 20 0 12 0 100 2000000 3000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1750 * time.Millisecond; got != want {
		t.Errorf("parseStatCPU = %s; want %s", got, want)
	}
	if _, err := parseStatCPU([]byte("4242 (short) S 1")); err == nil {
		t.Error("no error for a truncated line")
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tgatehouse\nVmPeak:\t 2000000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\nThreads:\t12\n"
	got, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if want := (memory{rssKiB: 70000, hwmKiB: 81234}); got != want {
		t.Errorf("parseStatus = %+v; want %+v", got, want)
	}
}

func TestCountFetchLines(t *testing.T) {
	log := `time=2026-11-23T11:28:50Z level=DEBUG msg="secret fetched" secret_ref=env:X repository=bench repository_user=bench_s0_1 duration=12µs
time=2026-11-23T11:28:50Z level=DEBUG msg="secret fetched" secret_ref=env:Y repository=bench repository_user=bench_s0_10 duration=9µs
time=2026-11-23T11:28:50Z level=INFO msg="session started" repository_user=bench_s0_2
time=2026-11-23T11:28:51Z level=DEBUG msg="secret fetched" secret_ref=env:Z repository=bench repository_user=bench_s0_2 duration=9µs
`
	if got := countFetchLines(strings.NewReader(log), []string{"bench_s0_1", "bench_s0_2"}); got != 2 {
		t.Errorf("countFetchLines = %d; want 2 (bench_s0_10 is another user)", got)
	}
}

func TestAggregate(t *testing.T) {
	var results []result
	for i, tps := range []float64{100, 300, 200} {
		results = append(results,
			result{target: "direct", workload: "w", clients: 8, run: run{tps: tps * 2}},
			result{target: "gatehouse", workload: "w", clients: 8, run: run{tps: tps, cpuUsPerOp: float64(10 + i)}},
			result{target: "pgbouncer", workload: "w", clients: 8, run: run{tps: tps / 2, cpuUsPerOp: 5}},
		)
	}
	rows := aggregate(results)
	var got []string
	for _, r := range rows {
		got = append(got, r.Target)
	}
	if diff := cmp.Diff([]string{"direct", "pgbouncer", "gatehouse"}, got); diff != "" {
		t.Errorf("order (-want +got)\n%s", diff)
	}
	g := rows[2]
	if *g.TPS != 200 || *g.RatioVsDirect != 0.5 || *g.RatioVsPgBouncer != 2 || *g.CPUUsPerQuery != 11 || g.Runs != 3 {
		t.Errorf("gatehouse row: tps %v ×direct %v ×pgbouncer %v cpu %v runs %d; want 200 0.5 2 11 3",
			*g.TPS, *g.RatioVsDirect, *g.RatioVsPgBouncer, *g.CPUUsPerQuery, g.Runs)
	}
	if rows[0].CPUUsPerQuery != nil {
		t.Error("direct has a proxy CPU figure")
	}
}

func TestParseOnly(t *testing.T) {
	got, err := parseOnly(" select, rows")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]bool{"select": true, "rows": true}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	cfg := config{only: got}
	if !cfg.selected("rows") || cfg.selected("idle") {
		t.Errorf("selected: rows %v, idle %v; want true, false", cfg.selected("rows"), cfg.selected("idle"))
	}
	if all, err := parseOnly(""); err != nil || all != nil || !(config{only: all}).selected("storm") {
		t.Errorf(`parseOnly("") = %v, %v; want every group selected`, all, err)
	}
	if _, err := parseOnly("select,selects"); err == nil || !strings.Contains(err.Error(), `"selects"`) {
		t.Errorf("an unknown group: err = %v, want one naming it", err)
	}
}
