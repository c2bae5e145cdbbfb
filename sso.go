package gatehouse

import "time"

// SSO grant kinds: short-lived, single-use secrets of the single sign-on flows, stored by hash.
const (
	GrantOIDCState = "oidc_state" // a browser's pending OIDC login (state, nonce, PKCE verifier)
	GrantCLICode   = "cli_code"   // one-time code handed to a CLI's loopback redirect
	GrantRefresh   = "refresh"    // a CLI session's refresh token
	GrantDevice    = "device"     // a CLI's pending device authorization (the IdP's device code)
)

// SSOGrant is one pending step of a single sign-on flow. Only the SHA-256 of its secret is stored;
// it is consumed (deleted) on first use.
type SSOGrant struct {
	Hash        string // hex SHA-256 of the secret
	Kind        string // GrantOIDCState, GrantCLICode, GrantRefresh or GrantDevice
	User        string // "" for GrantOIDCState and GrantDevice
	SessionHash string // GrantRefresh: the login session it renews, ended on logout
	Data        string // JSON, private to the flow that made it (e.g. the PKCE verifier of an OIDC login)
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// SCIMToken is a bearer token an identity provider's provisioning uses against /scim/v2. The secret
// is shown once, at creation; only its SHA-256 is stored.
type SCIMToken struct {
	ID        string     `json:"id"`
	Hash      string     `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}
