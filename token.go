package gatehouse

import (
	"strings"
	"time"
)

// TokenPrefix starts every access token: "gh1_" + base62 random. Tokens are at most 64 ASCII letters,
// digits and '_', so every database protocol and client accepts them as a password.
const TokenPrefix = "gh1_"

// AccessToken is the stored record of an access token. The secret is shown once, at creation; the
// store keeps only its SHA-256 (Hash, hex).
type AccessToken struct {
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Owner     string     `json:"owner"`
	Hash      string     `json:"-"` // hex SHA-256 of the secret; never served by the API
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Active reports whether the token is neither expired nor revoked at now.
func (t *AccessToken) Active(now time.Time) bool {
	return t.RevokedAt == nil && now.Before(t.ExpiresAt)
}

// LooksLikeToken reports whether s has the shape of an access token (it does not check the secret).
func LooksLikeToken(s string) bool {
	if !strings.HasPrefix(s, TokenPrefix) || len(s) > 64 || len(s) < len(TokenPrefix)+20 {
		return false
	}
	for _, c := range s[len(TokenPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidateTokenName checks an optional token name.
func ValidateTokenName(field, name string) error {
	if len(name) > 100 {
		return Invalid(field, "must be at most 100 characters")
	}
	for _, c := range name {
		if c < ' ' || c == 0x7f {
			return Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// DefaultMaxTokenTTL is the longest lifetime an access token may have unless an admin changes it.
const DefaultMaxTokenTTL = 24 * time.Hour

// Connection is what a data consumer types into a SQL client to reach a repository as a repository
// user: the reference's "Users tab" drawer.
type Connection struct {
	Repository     string       `json:"repository"`
	Type           DatabaseType `json:"type"`
	Database       string       `json:"database,omitempty"`
	RepositoryUser string       `json:"repository_user"`
	SidecarID      string       `json:"sidecar_id"`
	SidecarHost    string       `json:"sidecar_hostname"`
	Port           int          `json:"port"`
	Username       string       `json:"username"` // repository user, or user@repository on shared ports
}
