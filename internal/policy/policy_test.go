package policy_test

import (
	"testing"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/policy"
	"github.com/google/go-cmp/cmp"
)

func ap(name, mode string, rules ...gatehouse.AccessRule) gatehouse.AccessPolicy {
	return gatehouse.AccessPolicy{Name: name, Repository: "hr", Mode: mode, Rules: rules}
}

func allow(objects []string, ops ...string) gatehouse.AccessRule {
	return gatehouse.AccessRule{Effect: "allow", Objects: objects, Operations: ops}
}

func deny(objects []string, ops ...string) gatehouse.AccessRule {
	return gatehouse.AccessRule{Effect: "deny", Objects: objects, Operations: ops}
}

func forGroups(r gatehouse.AccessRule, groups ...string) gatehouse.AccessRule {
	r.Groups = groups
	return r
}

func forUsers(r gatehouse.AccessRule, users ...string) gatehouse.AccessRule {
	r.Users = users
	return r
}

func obj(schema, table, access string, cols ...string) policy.Object {
	return policy.Object{Schema: schema, Table: table, Access: access, Columns: cols}
}

func sel(objs ...policy.Object) policy.Statement {
	return policy.Statement{Kind: "select", Objects: objs}
}

var (
	alice = policy.Subject{User: "alice@example.com", Groups: []string{"analysts"}}
	bob   = policy.Subject{User: "bob@example.com", Groups: []string{"engineering"}}

	// The policies most tests use: analysts read public, nobody reads salaries.salary, engineering
	// may write public.orders, and bob may call procedures in ops.
	hr = []gatehouse.AccessPolicy{
		ap("analysts", "enforce",
			forGroups(allow([]string{"public.*"}, "select"), "analysts"),
			forGroups(allow([]string{"public.orders"}, "insert", "update", "delete"), "engineering"),
			forUsers(allow([]string{"ops.*"}, "function"), "BOB@example.com"),
		),
		ap("no-salaries", "enforce", deny([]string{"*.salaries.salary"}, "select")),
	}
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name        string
		policies    []gatehouse.AccessPolicy
		subject     policy.Subject
		st          policy.Statement
		unsupported bool // allow_unsupported_queries
		want        policy.Decision
	}{
		{
			name:    "no policies allow everything",
			subject: alice,
			st:      policy.Statement{Kind: "ddl", Objects: []policy.Object{obj("public", "t", "write")}},
			want:    policy.Decision{Allowed: true, Reason: "no access policy applies to this repository"},
		},
		{
			name:    "no policies allow unsupported statements",
			subject: alice,
			st:      policy.Statement{Kind: "unsupported", Unsupported: true},
			want:    policy.Decision{Allowed: true, Reason: "no access policy applies to this repository"},
		},
		{
			name:     "allowed by group rule",
			policies: hr,
			subject:  alice,
			st:       sel(obj("public", "orders", "read", "id", "total")),
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "analysts#0", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "implicit deny for other group",
			policies: hr,
			subject:  bob,
			st:       sel(obj("public", "orders", "read", "id")),
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows select on public.orders.id"},
		},
		{
			name:     "implicit deny outside the allowed schema",
			policies: hr,
			subject:  alice,
			st:       sel(obj("public", "orders", "read", "id"), obj("hr", "reviews", "read", "*")),
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows select on hr.reviews.*"},
		},
		{
			name:     "deny wins over allow on the denied column",
			policies: hr,
			subject:  alice,
			st:       sel(obj("public", "salaries", "read", "name", "salary")),
			want:     policy.Decision{Enforced: true, Mode: "enforce", Rule: "no-salaries#0", Reason: "rule no-salaries#0 denies select on public.salaries.salary"},
		},
		{
			name:     "select star touches the denied column",
			policies: hr,
			subject:  alice,
			st:       sel(obj("public", "salaries", "read", "*")),
			want:     policy.Decision{Enforced: true, Mode: "enforce", Rule: "no-salaries#0", Reason: "rule no-salaries#0 denies select on public.salaries.*"},
		},
		{
			name:     "other columns of the table are fine",
			policies: hr,
			subject:  alice,
			st:       sel(obj("public", "salaries", "read", "name")),
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "analysts#0", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "count star touches no column",
			policies: hr,
			subject:  alice,
			st:       sel(obj("public", "salaries", "read")),
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "analysts#0", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "reading the denied column inside an insert",
			policies: hr,
			subject:  policy.Subject{User: "carol", Groups: []string{"analysts", "engineering"}},
			st: policy.Statement{Kind: "insert", Objects: []policy.Object{
				obj("public", "orders", "write", "*"), obj("public", "salaries", "read", "salary")}},
			want: policy.Decision{Enforced: true, Mode: "enforce", Rule: "no-salaries#0", Reason: "rule no-salaries#0 denies insert (reading) on public.salaries.salary"},
		},
		{
			name:     "update with where clause needs only the update rule",
			policies: hr,
			subject:  bob,
			st: policy.Statement{Kind: "update", Objects: []policy.Object{
				obj("public", "orders", "write", "status"), obj("public", "orders", "read", "id")}},
			want: policy.Decision{Allowed: true, Enforced: true, Rule: "analysts#1", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "update of another table is not allowed",
			policies: hr,
			subject:  bob,
			st:       policy.Statement{Kind: "update", Objects: []policy.Object{obj("public", "customers", "write", "name")}},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows update on public.customers.name"},
		},
		{
			name:     "select without objects is allowed by any select rule",
			policies: hr,
			subject:  alice,
			st:       policy.Statement{Kind: "select", Functions: []string{"now"}},
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "analysts#0", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "select without objects needs some select rule",
			policies: hr,
			subject:  bob,
			st:       policy.Statement{Kind: "select"},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows select"},
		},
		{
			name:     "transaction control needs no rule",
			policies: hr,
			subject:  bob,
			st:       policy.Statement{Kind: "transaction"},
			want:     policy.Decision{Allowed: true, Enforced: true, Mode: "enforce", Reason: "transaction and session control is always allowed"},
		},
		{
			name:     "transaction control is not denied by deny all",
			policies: []gatehouse.AccessPolicy{ap("lockdown", "enforce", deny([]string{"*"}, "*"))},
			subject:  bob,
			st:       policy.Statement{Kind: "transaction"},
			want:     policy.Decision{Allowed: true, Enforced: true, Mode: "enforce", Reason: "transaction and session control is always allowed"},
		},
		{
			name:     "deny all",
			policies: []gatehouse.AccessPolicy{ap("lockdown", "enforce", allow([]string{"*"}, "*"), deny([]string{"*"}, "*"))},
			subject:  bob,
			st:       policy.Statement{Kind: "select"},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Rule: "lockdown#1", Reason: "rule lockdown#1 denies select on no object"},
		},
		{
			name:     "unsupported denied where policies exist",
			policies: hr,
			subject:  alice,
			st:       policy.Statement{Kind: "unsupported", Unsupported: true},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "statement could not be classified, no rule allows unsupported statements and the sidecar does not allow unsupported queries"},
		},
		{
			name:        "unsupported allowed by the sidecar setting",
			policies:    hr,
			subject:     alice,
			st:          policy.Statement{Kind: "unsupported", Unsupported: true},
			unsupported: true,
			want:        policy.Decision{Allowed: true, Enforced: true, Mode: "enforce", Reason: "statement could not be classified; allowed because the sidecar allows unsupported queries"},
		},
		{
			name:     "unsupported allowed by an explicit rule over all objects",
			policies: []gatehouse.AccessPolicy{ap("dba", "enforce", forGroups(allow([]string{"*"}, "*"), "dba"))},
			subject:  policy.Subject{User: "dora", Groups: []string{"dba"}},
			st:       policy.Statement{Kind: "unsupported", Unsupported: true},
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "dba#0", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "unsupported not allowed by a rule over some objects",
			policies: []gatehouse.AccessPolicy{ap("dba", "enforce", allow([]string{"public.*"}, "*"))},
			subject:  bob,
			st:       policy.Statement{Kind: "unsupported", Unsupported: true},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "statement could not be classified, no rule allows unsupported statements and the sidecar does not allow unsupported queries"},
		},
		{
			name:     "unsupported denied by any deny naming the operation",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce", allow([]string{"*"}, "*"), deny([]string{"hr.*"}, "unsupported"))},
			subject:  bob,
			st:       policy.Statement{Kind: "unsupported", Unsupported: true},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Rule: "p#1", Reason: "rule p#1 denies unsupported statements"},
		},
		{
			name:     "unresolved execute is unsupported",
			policies: hr,
			subject:  alice,
			st:       policy.Statement{Kind: "execute", Execute: "s1"},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "statement could not be classified, no rule allows unsupported statements and the sidecar does not allow unsupported queries"},
		},
		{
			name:     "monitor only: denial recorded, not enforced",
			policies: []gatehouse.AccessPolicy{ap("trial", "monitor", allow([]string{"public.*"}, "select"), deny([]string{"public.salaries"}, "*"))},
			subject:  alice,
			st:       sel(obj("public", "salaries", "read", "id")),
			want:     policy.Decision{Mode: "monitor", Rule: "trial#1", Reason: "monitor mode, not enforced: rule trial#1 denies select on public.salaries.id"},
		},
		{
			name:     "monitor only: implicit denial recorded",
			policies: []gatehouse.AccessPolicy{ap("trial", "monitor", allow([]string{"public.*"}, "select"))},
			subject:  alice,
			st:       sel(obj("hr", "reviews", "read", "text")),
			want:     policy.Decision{Mode: "monitor", Reason: "monitor mode, not enforced: no rule allows select on hr.reviews.text"},
		},
		{
			name:     "monitor only: allowed",
			policies: []gatehouse.AccessPolicy{ap("trial", "monitor", allow([]string{"public.*"}, "select"))},
			subject:  alice,
			st:       sel(obj("public", "orders", "read", "id")),
			want:     policy.Decision{Allowed: true, Mode: "monitor", Rule: "trial#0", Reason: "allowed by rule"},
		},
		{
			name: "monitor deny next to enforcing allow",
			policies: []gatehouse.AccessPolicy{
				ap("base", "enforce", allow([]string{"public.*"}, "select")),
				ap("trial", "monitor", deny([]string{"public.orders.total"}, "select")),
			},
			subject: alice,
			st:      sel(obj("public", "orders", "read", "total")),
			want:    policy.Decision{Mode: "monitor", Rule: "trial#0", Reason: "monitor mode, not enforced: rule trial#0 denies select on public.orders.total"},
		},
		{
			name: "enforcing deny beats monitor",
			policies: []gatehouse.AccessPolicy{
				ap("trial", "monitor", allow([]string{"*"}, "*")),
				ap("base", "enforce", deny([]string{"public.orders"}, "delete")),
			},
			subject: alice,
			st:      policy.Statement{Kind: "delete", Objects: []policy.Object{obj("public", "orders", "write")}},
			want:    policy.Decision{Enforced: true, Mode: "enforce", Rule: "base#0", Reason: "rule base#0 denies delete on public.orders"},
		},
		{
			name:     "unqualified name is covered only by a schema wildcard",
			policies: hr,
			subject:  alice,
			st:       sel(obj("", "orders", "read", "id")),
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows select on orders.id"},
		},
		{
			name: "unqualified name matches any deny",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce",
				allow([]string{"*"}, "select"), deny([]string{"hr.salaries"}, "select"))},
			subject: alice,
			st:      sel(obj("", "salaries", "read", "id")),
			want:    policy.Decision{Enforced: true, Mode: "enforce", Rule: "p#1", Reason: "rule p#1 denies select on salaries.id"},
		},
		{
			name:     "column allow does not cover select star",
			policies: []gatehouse.AccessPolicy{ap("cols", "enforce", allow([]string{"public.people.name", "public.people.id"}, "select"))},
			subject:  alice,
			st:       sel(obj("public", "people", "read", "*")),
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows select on public.people.*"},
		},
		{
			name:     "column allows cover listed columns",
			policies: []gatehouse.AccessPolicy{ap("cols", "enforce", allow([]string{"public.people.name"}, "select"), allow([]string{"public.people.i*"}, "select"))},
			subject:  alice,
			st:       sel(obj("public", "people", "read", "id", "name")),
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "cols#1", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "deny select stops copy to",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce", allow([]string{"*"}, "*"), deny([]string{"public.salaries"}, "select"))},
			subject:  alice,
			st:       policy.Statement{Kind: "copy", Objects: []policy.Object{obj("public", "salaries", "read", "*")}},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Rule: "p#1", Reason: "rule p#1 denies copy (reading) on public.salaries.*"},
		},
		{
			name:     "deny copy stops copy to",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce", allow([]string{"*"}, "*"), deny([]string{"public.salaries"}, "copy"))},
			subject:  alice,
			st:       policy.Statement{Kind: "copy", Objects: []policy.Object{obj("public", "salaries", "read", "*")}},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Rule: "p#1", Reason: "rule p#1 denies copy (reading) on public.salaries.*"},
		},
		{
			name:     "deny update does not stop reading the table in another update",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce", allow([]string{"*"}, "*"), deny([]string{"public.salaries"}, "update"))},
			subject:  alice,
			st: policy.Statement{Kind: "update", Objects: []policy.Object{
				obj("public", "bonus", "write", "amount"), obj("public", "salaries", "read", "salary")}},
			want: policy.Decision{Allowed: true, Enforced: true, Rule: "p#0", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "delete inside a select is a delete",
			policies: hr,
			subject:  alice,
			st: policy.Statement{Kind: "delete", Objects: []policy.Object{
				obj("public", "orders", "write"), obj("public", "orders", "read", "id")}},
			want: policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows delete on public.orders"},
		},
		{
			name:     "object operation differs from statement kind",
			policies: hr,
			subject:  policy.Subject{User: "carol", Groups: []string{"analysts", "engineering"}},
			st: policy.Statement{Kind: "insert", Objects: []policy.Object{
				{Schema: "public", Table: "orders", Access: "write", Op: "delete"},
				{Schema: "public", Table: "audit", Access: "write", Columns: []string{"*"}}}},
			want: policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows insert on public.audit.*"},
		},
		{
			name:     "object operation is checked against its own rules",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce", allow([]string{"*"}, "select", "insert"))},
			subject:  alice,
			st: policy.Statement{Kind: "insert", Objects: []policy.Object{
				{Schema: "public", Table: "orders", Access: "write", Op: "delete"}}},
			want: policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows delete on public.orders"},
		},
		{
			name:     "unknown kind is unsupported",
			policies: hr,
			subject:  alice,
			st:       policy.Statement{Kind: "frobnicate"},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "statement could not be classified, no rule allows unsupported statements and the sidecar does not allow unsupported queries"},
		},
		{
			name:     "dropping a schema touches every table in it",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce", allow([]string{"*"}, "*"), deny([]string{"hr.salaries"}, "ddl"))},
			subject:  alice,
			st:       policy.Statement{Kind: "ddl", Objects: []policy.Object{obj("hr", "*", "write")}},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Rule: "p#1", Reason: "rule p#1 denies ddl on hr.*"},
		},
		{
			name:     "a table allow does not cover a whole schema",
			policies: []gatehouse.AccessPolicy{ap("p", "enforce", allow([]string{"hr.salaries", "hr.s*"}, "ddl"))},
			subject:  alice,
			st:       policy.Statement{Kind: "ddl", Objects: []policy.Object{obj("hr", "*", "write")}},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows ddl on hr.*"},
		},
		{
			name:     "call needs a function rule on the procedure",
			policies: hr,
			subject:  bob,
			st:       policy.Statement{Kind: "function", Functions: []string{"ops.rotate_logs"}},
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "analysts#2", Mode: "enforce", Reason: "allowed by rule"},
		},
		{
			name:     "call of another procedure",
			policies: hr,
			subject:  bob,
			st:       policy.Statement{Kind: "function", Functions: []string{"public.drop_all"}},
			want:     policy.Decision{Enforced: true, Mode: "enforce", Reason: "no rule allows function on public.drop_all"},
		},
		{
			name:     "case-insensitive objects and users",
			policies: hr,
			subject:  policy.Subject{User: "Bob@Example.com"},
			st:       policy.Statement{Kind: "function", Functions: []string{"OPS.Rotate"}},
			want:     policy.Decision{Allowed: true, Enforced: true, Rule: "analysts#2", Mode: "enforce", Reason: "allowed by rule"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := policy.Evaluate(tt.policies, tt.subject, tt.st, tt.unsupported)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
			if got.Blocks() != (!tt.want.Allowed && tt.want.Enforced) {
				t.Errorf("Blocks() = %v", got.Blocks())
			}
		})
	}
}

func TestEvaluateInvalidPolicyDenies(t *testing.T) {
	bad := []gatehouse.AccessPolicy{ap("bad", "enforce", allow([]string{"nodots"}, "select"))}
	d := policy.Evaluate(bad, alice, sel(), false)
	if !d.Blocks() {
		t.Fatalf("invalid policy did not block: %+v", d)
	}
	if _, err := policy.Compile(bad); err == nil {
		t.Fatal("Compile accepted an invalid policy")
	}
}

func TestNilSet(t *testing.T) {
	var s *policy.Set
	if d := s.Evaluate(alice, sel(), false); !d.Allowed || d.Enforced {
		t.Errorf("nil set: %+v", d)
	}
}

func TestCompileByRepository(t *testing.T) {
	ps := append([]gatehouse.AccessPolicy{}, hr...)
	other := ap("lockdown", "enforce", deny([]string{"*"}, "*"))
	other.Repository = "sales"
	ps = append(ps, other)
	sets, err := policy.CompileByRepository(ps)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 {
		t.Fatalf("got %d sets", len(sets))
	}
	st := sel(obj("public", "orders", "read", "id"))
	if d := sets["hr"].Evaluate(alice, st, false); !d.Allowed {
		t.Errorf("hr: %+v", d)
	}
	if d := sets["sales"].Evaluate(alice, st, false); d.Allowed {
		t.Errorf("sales: %+v", d)
	}
}

func TestQualify(t *testing.T) {
	st := sel(obj("", "orders", "read", "id"), obj("hr", "reviews", "read"))
	got := policy.Qualify(st, "public")
	want := sel(obj("public", "orders", "read", "id"), obj("hr", "reviews", "read"))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Qualify (-want +got):\n%s", diff)
	}
	if st.Objects[0].Schema != "" {
		t.Error("Qualify modified its argument")
	}
	same := policy.Qualify(want, "public")
	if &same.Objects[0] != &want.Objects[0] {
		t.Error("Qualify copied a statement that needed no change")
	}
	if d := policy.Evaluate(hr, alice, policy.Qualify(sel(obj("", "orders", "read", "id")), "public"), false); !d.Allowed {
		t.Errorf("qualified statement: %+v", d)
	}
}

func TestEvaluateAllocations(t *testing.T) {
	s, err := policy.Compile(hr)
	if err != nil {
		t.Fatal(err)
	}
	st := sel(obj("public", "orders", "read", "id", "total"), obj("public", "customers", "read", "name"))
	allocs := testing.AllocsPerRun(100, func() {
		if d := s.Evaluate(alice, st, false); !d.Allowed {
			t.Fatal(d)
		}
	})
	if allocs != 0 {
		t.Errorf("allowed path allocates %v times", allocs)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	s, err := policy.Compile(hr)
	if err != nil {
		b.Fatal(err)
	}
	st := sel(obj("public", "orders", "read", "id", "total"), obj("public", "customers", "read", "name"))
	b.ReportAllocs()
	for b.Loop() {
		s.Evaluate(alice, st, false)
	}
}

func TestObjectNames(t *testing.T) {
	st := policy.Statement{Kind: "update", Objects: []policy.Object{
		obj("public", "orders", "write", "status"), obj("public", "orders", "read", "id", "status"), obj("", "audit", "read")}}
	want := []string{"public.orders.status", "public.orders.id", "audit"}
	if diff := cmp.Diff(want, st.ObjectNames()); diff != "" {
		t.Errorf("ObjectNames (-want +got):\n%s", diff)
	}
}
