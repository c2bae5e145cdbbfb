package syncapi

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// Routes served by the control plane for sidecars.
const (
	ConfigPath      = "/api/v1/sidecar/config"
	ReportPath      = "/api/v1/sidecar/report"
	TokenLookupPath = "/api/v1/sidecar/tokens/" // + hex SHA-256 of the token secret
)

// Long-poll limits. A sidecar asks for DefaultWait; the control plane caps any wait at MaxWait.
const (
	DefaultWait = 25 * time.Second
	MaxWait     = 30 * time.Second
)

// MaxTokenLifetime is the longest a sidecar JWT may live (exp - iat).
const MaxTokenLifetime = 60 * time.Second

// Snapshot is everything one sidecar needs to serve connections, at one config version. It holds
// only what concerns this sidecar: its ports and bindings, the repositories bound to them, their
// repository users (secret references only), impersonation and access policies, the verifiers of active
// tokens of active users, and those users' groups.
type Snapshot struct {
	Version               int64                           `json:"version"`
	Sidecar               Settings                        `json:"sidecar"`
	Ports                 []gatehouse.ListenerPort        `json:"ports"`
	Bindings              []gatehouse.Binding             `json:"bindings"`
	Repositories          []gatehouse.Repository          `json:"repositories"`
	RepositoryUsers       []gatehouse.RepositoryUser      `json:"repository_users"`
	ImpersonationPolicies []gatehouse.ImpersonationPolicy `json:"impersonation_policies"`
	AccessPolicies        []gatehouse.AccessPolicy        `json:"access_policies"`
	Tokens                []TokenVerifier                 `json:"tokens"`
	Users                 []User                          `json:"users"`
}

// Settings are the sidecar's own settings.
type Settings struct {
	ID                      string `json:"id"`
	AllowUnsupportedQueries bool   `json:"allow_unsupported_queries"`
}

// TokenVerifier is what a sidecar needs to check an access token without ever seeing it again.
type TokenVerifier struct {
	ID        string      `json:"id"`
	Hash      string      `json:"hash"` // hex SHA-256 of the secret, as HashToken returns
	Owner     string      `json:"owner"`
	ExpiresAt time.Time   `json:"expires_at"`
	Scope     *TokenScope `json:"scope,omitempty"`
}

// TokenScope narrows a token. Nil or empty fields mean no narrowing. Tokens are not narrowed by the
// control plane yet; the sidecar already enforces a scope when one is sent.
type TokenScope struct {
	Repositories []string `json:"repositories,omitempty"`
}

// User is a token owner as the sidecar sees them.
type User struct {
	Name   string   `json:"name"`
	Active bool     `json:"active"`
	Groups []string `json:"groups,omitempty"`
}

// TokenLookup answers the lookup of a token the sidecar did not have in its snapshot.
// ConfigVersion is the control plane's config version at the time of the answer: a snapshot of
// at least that version carries the same facts, so the sidecar may drop its cached answer then.
type TokenLookup struct {
	Token         TokenVerifier `json:"token"`
	User          User          `json:"user"`
	ConfigVersion int64         `json:"config_version"`
}

// Report is what an instance says about itself on every heartbeat.
type Report struct {
	InstanceID    string    `json:"instance_id"`
	Hostname      string    `json:"hostname"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	Ports         []int     `json:"ports"`          // listener ports actually open
	ConfigVersion int64     `json:"config_version"` // the snapshot version it runs
	Errors        []string  `json:"errors"`         // ports it could not bind, sources it could not reach
}

// HashToken returns the hex SHA-256 of an access token's secret: the form verifiers are kept in.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ValidHash reports whether s is a lowercase hex SHA-256.
func ValidHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
