package sidecar

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/gatehousedb/gatehouse/internal/proxy"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
)

// TestStatementRecordsAcrossSchemas: a statement run again, after the default schema changed and
// in a message with others, is recorded with the objects policy.Qualify and ObjectNames give (the
// session's cache of them changes nothing), and every Verdict gets refs of its own.
func TestStatementRecordsAcrossSchemas(t *testing.T) {
	a := benchAuditor(t)
	a.update(&syncapi.Snapshot{AccessPolicies: []gatehouse.AccessPolicy{{
		Name: "all", Repository: "bench", Mode: gatehouse.AccessEnforce,
		Rules: []gatehouse.AccessRule{{Effect: gatehouse.EffectAllow, Objects: []string{"*"}, Operations: []string{gatehouse.OpSelect}}},
	}}})
	s := benchLogin(t, a)
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
	want := func(text, schema string) [][]string {
		sts, err := a.pg.Classify(text)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]string
		for _, st := range sts {
			out = append(out, policy.Qualify(st, schema).ObjectNames())
		}
		return out
	}

	var wantObjects [][]string
	var refs [][]uint64
	for _, step := range []struct {
		schema, sql string
	}{
		{"public", sql},
		{"public", sql},
		{"bench", sql},
		{"bench", sql},
		{"public", sql + "; SELECT bid FROM pgbench_branches, pgbench_accounts"},
		{"public", sql},
	} {
		s.SetSchema(step.schema)
		v := s.Statement(context.Background(), &proxy.Statement{Path: proxy.PathSimple, SQL: step.sql})
		if v.Refusal != 0 {
			t.Fatalf("%s: refused: %s", step.sql, v.Message)
		}
		refs = append(refs, v.Refs)
		wantObjects = append(wantObjects, want(step.sql, step.schema)...)
		for _, ref := range v.Refs {
			s.Complete(ref, proxy.Completion{Rows: 1, Duration: time.Millisecond})
		}
	}

	var got [][]string
	var gotRefs []uint64
	recs, _, err := a.spool.Read(activity.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type == activity.TypeStatement {
			got = append(got, r.Objects)
			gotRefs = append(gotRefs, r.Seq)
		}
	}
	if diff := cmp.Diff(wantObjects, got); diff != "" {
		t.Errorf("recorded objects (-want +got):\n%s", diff)
	}
	var all []uint64
	for _, r := range refs {
		all = append(all, r...)
	}
	if diff := cmp.Diff(gotRefs, all); diff != "" {
		t.Errorf("refs (-statement seqs +refs):\n%s", diff)
	}
	if p := activity.Verify(recs); len(p) != 0 {
		t.Errorf("Verify: %+v", p)
	}
}

// TestStatementsOfOneShapeKeepTheirTexts: statements that differ only in their literals are
// classified once, by shape, into the session's own array; each is recorded with its own text.
func TestStatementsOfOneShapeKeepTheirTexts(t *testing.T) {
	a := benchAuditor(t)
	s := benchLogin(t, a)
	var texts []string
	for i := range 5 {
		sql := fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d", 1000+i)
		texts = append(texts, sql)
		v := s.Statement(context.Background(), &proxy.Statement{Path: proxy.PathSimple, SQL: sql})
		if v.Refusal != 0 {
			t.Fatalf("%s: refused: %s", sql, v.Message)
		}
		s.Complete(v.Refs[0], proxy.Completion{Rows: 1, Duration: time.Millisecond})
	}
	recs, _, err := a.spool.Read(activity.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Type == activity.TypeStatement {
			got = append(got, r.Statement)
			if diff := cmp.Diff([]string{"public.pgbench_accounts.abalance", "public.pgbench_accounts.aid"}, r.Objects); diff != "" {
				t.Errorf("%s: objects (-want +got):\n%s", r.Statement, diff)
			}
		}
	}
	if diff := cmp.Diff(texts, got); diff != "" {
		t.Errorf("recorded texts (-want +got):\n%s", diff)
	}
}
