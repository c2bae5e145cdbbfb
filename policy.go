package gatehouse

import (
	"strings"
	"time"
)

// ImpersonationPolicy lets IdP users and groups connect to a repository as given repository users.
type ImpersonationPolicy struct {
	Name        string              `json:"name"`
	DisplayName string              `json:"display_name,omitempty"`
	Repository  string              `json:"repository"`
	Rules       []ImpersonationRule `json:"rules"`
	CreatedAt   time.Time           `json:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at"`
}

// ImpersonationRule allows each listed user and each member of each listed group to impersonate each
// listed repository user.
type ImpersonationRule struct {
	Users           []string `json:"users,omitempty"`  // IdP user names (usually e-mail addresses)
	Groups          []string `json:"groups,omitempty"` // IdP group names
	RepositoryUsers []string `json:"repository_users"`
}

// Validate checks the policy's shape; references to the repository and its users are checked by the
// store, which knows what exists.
func (p *ImpersonationPolicy) Validate() error {
	if err := ValidateName("name", p.Name); err != nil {
		return err
	}
	if len(p.DisplayName) > 200 {
		return Invalid("display_name", "must be at most 200 characters")
	}
	if p.Repository == "" {
		return Invalid("repository", "is required")
	}
	if len(p.Rules) == 0 {
		return Invalid("rules", "must have at least one rule")
	}
	for i, r := range p.Rules {
		if err := r.Validate(); err != nil {
			return prefixField("rules["+itoa(i)+"]", err)
		}
	}
	return nil
}

// Validate checks one rule.
func (r *ImpersonationRule) Validate() error {
	if len(r.Users) == 0 && len(r.Groups) == 0 {
		return Invalid("", "must name at least one user or group")
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
	if len(r.RepositoryUsers) == 0 {
		return Invalid("repository_users", "must name at least one repository user")
	}
	for _, u := range r.RepositoryUsers {
		if err := ValidateDBUsername("repository_users", u); err != nil {
			return err
		}
	}
	return nil
}

// Allows reports whether the rule lets user (a member of groups) impersonate repoUser.
func (r *ImpersonationRule) Allows(user string, groups []string, repoUser string) bool {
	if !contains(r.RepositoryUsers, repoUser) {
		return false
	}
	for _, u := range r.Users {
		if strings.EqualFold(u, user) {
			return true
		}
	}
	for _, g := range r.Groups {
		if contains(groups, g) {
			return true
		}
	}
	return false
}

// ValidatePrincipal checks a user or group name: 1 to 256 characters, no control characters, not
// only spaces.
func ValidatePrincipal(field, name string) error {
	if strings.TrimSpace(name) == "" {
		return Invalid(field, "must not be empty")
	}
	if len(name) > 256 {
		return Invalid(field, "must be at most 256 characters")
	}
	for _, c := range name {
		if c < ' ' || c == 0x7f {
			return Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
