package gatehouse_test

import (
	"encoding/json"
	"testing"

	"github.com/gatehousedb/gatehouse"
)

func validAccessPolicy() gatehouse.AccessPolicy {
	return gatehouse.AccessPolicy{
		Name:       "no-salaries",
		Repository: "hr",
		Mode:       gatehouse.AccessEnforce,
		Rules: []gatehouse.AccessRule{
			{Effect: "allow", Groups: []string{"analysts"}, Objects: []string{"public.*"}, Operations: []string{"select"}},
			{Effect: "deny", Objects: []string{"*.salaries.salary"}, Operations: []string{"*"}},
		},
	}
}

func TestAccessPolicyValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(p *gatehouse.AccessPolicy)
		field  string
	}{
		{"valid", func(p *gatehouse.AccessPolicy) {}, ""},
		{"monitor", func(p *gatehouse.AccessPolicy) { p.Mode = "monitor" }, ""},
		{"everyone", func(p *gatehouse.AccessPolicy) { p.Rules[0].Groups = nil }, ""},
		{"star object", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = []string{"*"} }, ""},
		{"glob in part", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = []string{"sales_*.order*"} }, ""},
		{"bad name", func(p *gatehouse.AccessPolicy) { p.Name = "No Salaries" }, "name"},
		{"no repository", func(p *gatehouse.AccessPolicy) { p.Repository = "" }, "repository"},
		{"empty mode", func(p *gatehouse.AccessPolicy) { p.Mode = "" }, "mode"},
		{"bad mode", func(p *gatehouse.AccessPolicy) { p.Mode = "audit" }, "mode"},
		{"no rules", func(p *gatehouse.AccessPolicy) { p.Rules = nil }, "rules"},
		{"bad effect", func(p *gatehouse.AccessPolicy) { p.Rules[1].Effect = "block" }, "rules[1].effect"},
		{"empty user", func(p *gatehouse.AccessPolicy) { p.Rules[0].Users = []string{" "} }, "rules[0].users"},
		{"control char group", func(p *gatehouse.AccessPolicy) { p.Rules[0].Groups = []string{"a\nb"} }, "rules[0].groups"},
		{"no objects", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = nil }, "rules[0].objects"},
		{"one part", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = []string{"salaries"} }, "rules[0].objects"},
		{"four parts", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = []string{"db.public.t.c"} }, "rules[0].objects"},
		{"empty part", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = []string{"public..c"} }, "rules[0].objects"},
		{"space", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = []string{"public.my table"} }, "rules[0].objects"},
		{"quote", func(p *gatehouse.AccessPolicy) { p.Rules[0].Objects = []string{`public."T"`} }, "rules[0].objects"},
		{"no operations", func(p *gatehouse.AccessPolicy) { p.Rules[1].Operations = nil }, "rules[1].operations"},
		{"unknown operation", func(p *gatehouse.AccessPolicy) { p.Rules[1].Operations = []string{"read"} }, "rules[1].operations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validAccessPolicy()
			tt.change(&p)
			if got := fieldOf(t, p.Validate()); got != tt.field {
				t.Errorf("field = %q, want %q (err %v)", got, tt.field, p.Validate())
			}
		})
	}
}

func TestAccessPolicyNormalize(t *testing.T) {
	p := validAccessPolicy()
	p.Mode = ""
	p.Normalize()
	if p.Mode != gatehouse.AccessEnforce {
		t.Errorf("mode = %q, want enforce", p.Mode)
	}
	p.Mode = gatehouse.AccessMonitor
	p.Normalize()
	if p.Mode != gatehouse.AccessMonitor {
		t.Errorf("Normalize changed mode monitor to %q", p.Mode)
	}
}

func TestAccessPolicyJSON(t *testing.T) {
	const in = `{"name":"p","repository":"hr","mode":"monitor","rules":[{"effect":"deny","users":["bob@example.com"],"objects":["public.*"],"operations":["delete"]}]}`
	var p gatehouse.AccessPolicy
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.Rules[0].Users[0] != "bob@example.com" || p.Rules[0].Operations[0] != "delete" {
		t.Errorf("decoded %+v", p)
	}
}
