package api

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehousedb/gatehouse"
)

func TestDecodeStrict(t *testing.T) {
	type out struct{ Code, Field, Contains string }
	tests := []struct {
		name string
		body string
		into func() any
		want out
	}{
		{"secret pasted into a reference", `{"username":"u","secret":{"source":"env","name":"X","password":"hunter2"}}`,
			func() any { return &gatehouse.RepositoryUser{} }, out{"invalid", "secret.password", "never accepts"}},
		{"unknown top-level field", `{"name":"sales","colour":"red"}`,
			func() any { return &gatehouse.Repository{} }, out{"invalid", "colour", "not a known field"}},
		{"unknown field in a rule", `{"name":"p","repository":"r","rules":[{"users":["a"],"repository_users":["u"]},{"users":["b"],"repository_users":["u"],"extra":1}]}`,
			func() any { return &gatehouse.ImpersonationPolicy{} }, out{"invalid", "rules[1].extra", "not a known field"}},
		{"wrong type", `{"name":"sales","port":"5432"}`,
			func() any { return &gatehouse.Repository{} }, out{"invalid", "port", "must be an integer, not string"}},
		{"wrong nested type", `{"username":"u","secret":{"source":"env","name":5}}`,
			func() any { return &gatehouse.RepositoryUser{} }, out{"invalid", "secret.name", "must be a string"}},
		{"two values", `{"name":"a"} {"name":"b"}`,
			func() any { return &gatehouse.Repository{} }, out{"invalid", "", "exactly one JSON object"}},
		{"not an object", `["name"]`,
			func() any { return &gatehouse.Repository{} }, out{"invalid", "", "must be a JSON object"}},
		{"empty", ``,
			func() any { return &gatehouse.Repository{} }, out{"invalid", "", "body is required"}},
		{"broken JSON", `{"name":`,
			func() any { return &gatehouse.Repository{} }, out{"invalid", "", "not valid JSON"}},
		{"embedded request type", `{"name":"alice","role":"ADMIN","pasword":"x"}`,
			func() any { return &userRequest{} }, out{"invalid", "pasword", "not a known field"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeBytes([]byte(tc.body), tc.into())
			e, ok := err.(*gatehouse.Error)
			if !ok {
				t.Fatalf("decode = %v, want *gatehouse.Error", err)
			}
			got := out{e.Code, e.Field, tc.want.Contains}
			if diff := cmp.Diff(tc.want, got); diff != "" || !strings.Contains(e.Message, tc.want.Contains) {
				t.Errorf("decode error %q (-want +got):\n%s", e.Message, diff)
			}
		})
	}
}

func TestMergeCopiesOnlyPresentFields(t *testing.T) {
	cur := &userRequest{User: gatehouse.User{Name: "alice", Email: "a@example.com", Role: gatehouse.RoleAdmin}}
	in := &userRequest{}
	present, err := decodeBytes([]byte(`{"display_name":"Alice","active":false}`), in)
	if err != nil {
		t.Fatal(err)
	}
	merge(cur, in, present)
	f := false
	want := &userRequest{User: gatehouse.User{Name: "alice", DisplayName: "Alice", Email: "a@example.com", Role: gatehouse.RoleAdmin}, Active: &f}
	if diff := cmp.Diff(want, cur); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
}

func TestFormatTTL(t *testing.T) {
	for in, want := range map[string]string{"24h": "24h", "1h30m": "1h30m", "90s": "1m30s", "7d": "168h", "45m": "45m"} {
		d, err := parseTTL(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := formatTTL(d); got != want {
			t.Errorf("formatTTL(%s) = %s, want %s", in, got, want)
		}
	}
}
