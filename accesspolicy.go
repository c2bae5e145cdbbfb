package gatehouse

import (
	"strings"
	"time"
)

// Access policy modes.
const (
	AccessEnforce = "enforce" // decisions are applied: a denied statement is refused
	AccessMonitor = "monitor" // decisions are recorded in activity, never applied
)

// Access rule effects.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Operations an access rule names. Each is a statement kind a classifier reports, except "*", which
// stands for all of them. OpTransaction statements (BEGIN, COMMIT, SET, SHOW, ...) are always allowed;
// naming it in a rule is accepted but has no effect.
const (
	OpSelect      = "select"
	OpInsert      = "insert"
	OpUpdate      = "update"
	OpDelete      = "delete" // includes TRUNCATE
	OpMerge       = "merge"
	OpCopy        = "copy"
	OpDDL         = "ddl"
	OpDCL         = "dcl" // GRANT, REVOKE, roles, SET ROLE
	OpTransaction = "transaction"
	OpUtility     = "utility"
	OpFunction    = "function" // CALL, DO
	OpUnsupported = "unsupported"
	OpAll         = "*"
)

// AccessOperations lists every operation a rule may name, "*" included.
var AccessOperations = []string{OpSelect, OpInsert, OpUpdate, OpDelete, OpMerge, OpCopy, OpDDL, OpDCL,
	OpTransaction, OpUtility, OpFunction, OpUnsupported, OpAll}

// AccessPolicy is an access management policy: ordered statement-level rules for one repository.
//
// How rules combine (deny wins, every object must be allowed, monitor mode) is described in package
// internal/policy, which evaluates them.
type AccessPolicy struct {
	Name       string       `json:"name"`
	Repository string       `json:"repository"`
	Mode       string       `json:"mode"` // enforce or monitor
	Rules      []AccessRule `json:"rules"`
	CreatedAt  time.Time    `json:"created_at"`
	UpdatedAt  time.Time    `json:"updated_at"`
}

// AccessRule allows or denies operations on objects to users and groups. A rule that names neither
// users nor groups applies to everyone.
type AccessRule struct {
	Effect     string   `json:"effect"` // allow or deny
	Users      []string `json:"users,omitempty"`
	Groups     []string `json:"groups,omitempty"`
	Objects    []string `json:"objects"`    // "*", "schema.table" or "schema.table.column"; '*' is a wildcard within a part
	Operations []string `json:"operations"` // from AccessOperations
}

// Normalize fills defaults: mode "enforce".
func (p *AccessPolicy) Normalize() {
	if p.Mode == "" {
		p.Mode = AccessEnforce
	}
}

// Validate checks the policy's shape; the store checks that the repository exists.
func (p *AccessPolicy) Validate() error {
	if err := ValidateName("name", p.Name); err != nil {
		return err
	}
	if p.Repository == "" {
		return Invalid("repository", "is required")
	}
	if p.Mode != AccessEnforce && p.Mode != AccessMonitor {
		return Invalid("mode", "must be enforce or monitor")
	}
	if len(p.Rules) == 0 {
		return Invalid("rules", "must have at least one rule")
	}
	for i := range p.Rules {
		if err := p.Rules[i].Validate(); err != nil {
			return prefixField("rules["+itoa(i)+"]", err)
		}
	}
	return nil
}

// Validate checks one rule.
func (r *AccessRule) Validate() error {
	if r.Effect != EffectAllow && r.Effect != EffectDeny {
		return Invalid("effect", "must be allow or deny")
	}
	for _, u := range r.Users {
		if err := ValidatePrincipal("users", u); err != nil {
			return err
		}
	}
	for _, g := range r.Groups {
		if err := ValidatePrincipal("groups", g); err != nil {
			return err
		}
	}
	if len(r.Objects) == 0 {
		return Invalid("objects", `must name at least one object pattern ("*" for every object)`)
	}
	for _, o := range r.Objects {
		if err := ValidateObjectPattern("objects", o); err != nil {
			return err
		}
	}
	if len(r.Operations) == 0 {
		return Invalid("operations", `must name at least one operation ("*" for every operation)`)
	}
	for _, op := range r.Operations {
		if !contains(AccessOperations, op) {
			return Invalid("operations", "%q is not an operation; use one of %s", op, strings.Join(AccessOperations, ", "))
		}
	}
	return nil
}

// ValidateObjectPattern checks an object pattern: "*" alone, or two or three dot-separated parts
// (schema.table, schema.table.column). A part may contain '*', which matches any run of characters
// within that part; "public.*" is every table in schema public, "*.salaries.salary" the salary column
// of every table called salaries.
func ValidateObjectPattern(field, p string) error {
	if p == "*" {
		return nil
	}
	if len(p) > 400 {
		return Invalid(field, "pattern must be at most 400 characters")
	}
	parts := strings.Split(p, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Invalid(field, `%q must be "*", "schema.table" or "schema.table.column"`, p)
	}
	for _, part := range parts {
		if part == "" {
			return Invalid(field, "%q has an empty part", p)
		}
		for _, c := range part {
			if c <= ' ' || c == 0x7f || c == '"' || c == '`' || c == '\'' {
				return Invalid(field, "%q must not contain spaces, quotes or control characters", p)
			}
		}
	}
	return nil
}
