package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// benchAuditor is a sidecar's auditor with one access policy on a pgbench-like repository.
// Nothing ships its records, so its spool's limit is set past what a run of a few seconds writes:
// at the default a one-second run could fill it, and statements would be refused.
func benchAuditor(tb testing.TB) *auditor {
	tb.Helper()
	cfg := Config{DataDir: tb.TempDir(), SidecarID: "sc-bench", ActivitySpoolMaxBytes: 64 << 30}
	a, _, err := openAuditor(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.close() })
	a.update(&syncapi.Snapshot{AccessPolicies: []gatehouse.AccessPolicy{{
		Name: "bench", Repository: "bench", Mode: gatehouse.AccessEnforce,
		Rules: []gatehouse.AccessRule{{Effect: gatehouse.EffectAllow, Groups: []string{"analysts"}, Objects: []string{"public.*"}, Operations: []string{gatehouse.OpSelect}}},
	}}})
	return a
}

func benchLogin(tb testing.TB, a *auditor) proxy.StatementAuditor {
	tb.Helper()
	s, err := a.Login(context.Background(), proxy.LoginEvent{
		Login: proxy.Login{Username: "app@bench", ClientAddr: "10.0.0.1:5000"},
		Grant: &proxy.Grant{
			Identity: proxy.Identity{User: "alice@example.com", Groups: []string{"analysts"}},
			Target:   proxy.Target{Repository: gatehouse.Repository{Name: "bench", Type: gatehouse.PostgreSQL}, User: gatehouse.RepositoryUser{Username: "app"}},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	s.SetSchema("public")
	return s
}

// benchStatement is what the PostgreSQL engine asks per statement of pgbench -S on the extended
// protocol: Statement before forwarding, Complete when the server answered.
func benchStatement(tb testing.TB, s proxy.StatementAuditor, m *proxy.Statement) {
	v := s.Statement(context.Background(), m)
	if v.Refusal != 0 || len(v.Refs) != 1 {
		tb.Fatalf("verdict %+v", v)
	}
	s.Complete(v.Refs[0], proxy.Completion{Rows: 1, Duration: 120 * time.Microsecond})
}

var pgbenchSelect = proxy.Statement{Path: proxy.PathExtended, SQL: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"}

func BenchmarkStatement(b *testing.B) {
	s := benchLogin(b, benchAuditor(b))
	m := pgbenchSelect
	b.ReportAllocs()
	for b.Loop() {
		benchStatement(b, s, &m)
	}
}

// BenchmarkStatementParallel is GOMAXPROCS sessions at once (run with -cpu 1,2,8).
func BenchmarkStatementParallel(b *testing.B) {
	a := benchAuditor(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		s := benchLogin(b, a)
		m := pgbenchSelect
		for pb.Next() {
			benchStatement(b, s, &m)
		}
	})
}

// BenchmarkStatementSimpleLiterals is pgbench -S on the simple protocol: a new account number in
// every text, so each statement is found by its shape.
func BenchmarkStatementSimpleLiterals(b *testing.B) {
	s := benchLogin(b, benchAuditor(b))
	texts := make([]proxy.Statement, 1024)
	for i := range texts {
		texts[i] = proxy.Statement{Path: proxy.PathSimple, SQL: fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", i+1)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		benchStatement(b, s, &texts[i%len(texts)])
		i++
	}
}
