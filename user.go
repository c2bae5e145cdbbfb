package gatehouse

import (
	"strings"
	"time"
)

// Role is what a user may do in Gatehouse.
type Role string

// Roles.
const (
	RoleAdmin        Role = "ADMIN"         // manages every object
	RoleDataConsumer Role = "DATA_CONSUMER" // makes tokens and connects
)

// Validate reports whether r is a known role.
func (r Role) Validate(field string) error {
	if r == RoleAdmin || r == RoleDataConsumer {
		return nil
	}
	return Invalid(field, "must be ADMIN or DATA_CONSUMER")
}

// BootstrapAdmin is the name of the local administrator created on first start.
const BootstrapAdmin = "admin"

// User is a person who signs in to Gatehouse: a local user, or one provisioned by SSO/SCIM.
type User struct {
	Name        string    `json:"name"` // unique; usually the IdP user name (an e-mail address)
	DisplayName string    `json:"display_name,omitempty"`
	Email       string    `json:"email,omitempty"`
	Role        Role      `json:"role"`
	Active      bool      `json:"active"`
	Groups      []string  `json:"groups,omitempty"` // read-only: group memberships
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Validate checks the user's fields.
func (u *User) Validate() error {
	if err := ValidatePrincipal("name", u.Name); err != nil {
		return err
	}
	if strings.ContainsAny(u.Name, " \t") {
		return Invalid("name", "must not contain spaces")
	}
	if len(u.DisplayName) > 200 {
		return Invalid("display_name", "must be at most 200 characters")
	}
	if u.Email != "" && (!strings.Contains(u.Email, "@") || strings.ContainsAny(u.Email, " \t<>")) {
		return Invalid("email", "must be an e-mail address")
	}
	return u.Role.Validate("role")
}

// Group is a set of users, named as in the IdP.
type Group struct {
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name,omitempty"`
	Role        Role      `json:"role,omitempty"` // optional: members get this role
	Members     []string  `json:"members"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Validate checks the group's fields.
func (g *Group) Validate() error {
	if err := ValidatePrincipal("name", g.Name); err != nil {
		return err
	}
	if len(g.DisplayName) > 200 {
		return Invalid("display_name", "must be at most 200 characters")
	}
	if g.Role != "" {
		if err := g.Role.Validate("role"); err != nil {
			return err
		}
	}
	for _, m := range g.Members {
		if err := ValidatePrincipal("members", m); err != nil {
			return err
		}
	}
	return nil
}

// LoginSession is a control-plane login session (CLI or API bearer token).
type LoginSession struct {
	Hash      string // hex SHA-256 of the bearer secret
	User      string
	CreatedAt time.Time
	ExpiresAt time.Time
}
