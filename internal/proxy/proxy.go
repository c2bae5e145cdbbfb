// Package proxy holds the protocol-neutral parts of a client session through a sidecar: who may
// connect as whom (Authorizer), where the upstream credential comes from (Credentials), and the
// Engine each wire protocol implements. Engines live in child packages (proxy/postgres, ...); the
// sidecar wires them to its synced configuration.
//
//	client ──TLS, user + token──▶ engine ──Authorize──▶ Grant{Identity, Target}
//	                               │ ──Credential(Target)──▶ secret value (never logged)
//	                               └──dial Target.Repository, authenticate natively, relay
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gatehousedb/gatehouse"
)

// Engine serves client connections of one protocol on one listener port.
type Engine interface {
	// Serve handles one accepted client connection until the session ends or ctx is done, and
	// closes conn.
	Serve(ctx context.Context, conn net.Conn)
}

// Login is what a client presented.
type Login struct {
	Port       int    // listener port the client connected to
	Username   string // as typed: "repo_user" or "repo_user@repository"
	Token      string // the access token the client sent as its password
	ClientAddr string
}

// Identity is the person behind a session.
type Identity struct {
	User           string   // IdP user name, e.g. alice@example.com
	Groups         []string // their groups when the session started
	TokenID        string
	TokenExpiresAt time.Time
}

// Target is where a session goes: the repository and the repository user to impersonate.
type Target struct {
	Repository gatehouse.Repository
	User       gatehouse.RepositoryUser
}

// Grant is a successful authorization.
type Grant struct {
	Identity Identity
	Target   Target
	// Revoked is done (cancelled) when the grant stops being valid before the token's expiry
	// (token revoked, user deactivated, impersonation rule removed). Nil means it never is. A
	// context rather than a channel, so that an engine can have a callback run on revocation
	// (context.AfterFunc) instead of parking a goroutine per session to wait for it.
	Revoked context.Context
}

// Authorizer decides whether a login may proceed. Errors are *AuthError for refusals.
type Authorizer interface {
	Authorize(ctx context.Context, l Login) (*Grant, error)
}

// Credentials fetches the credential for a target's repository user. Invalidate drops a cached
// value after the database rejected it, so the next call fetches it again.
type Credentials interface {
	Credential(ctx context.Context, t Target) (gatehouse.Credential, error)
	Invalidate(t Target)
}

// AuthReason says why a login was refused; engines map it to their protocol's error codes
// (PostgreSQL: TokenInvalid/TokenExpired/TokenRevoked → 28P01, the rest → 28000).
type AuthReason int

// Reasons a login is refused.
const (
	TokenInvalid     AuthReason = iota + 1 // unknown token, malformed, wrong secret
	TokenExpired                           // known token past its expiry
	TokenRevoked                           // revoked, or its owner deactivated
	NotPermitted                           // no impersonation rule allows it
	UnknownUser                            // no such repository user / repository on this port
	ControlPlaneDown                       // token unknown locally and the control plane cannot be asked
)

// AuthError is a refused login. Message is written for the person connecting and never names
// other users or secrets.
type AuthError struct {
	Reason  AuthReason
	Message string
	// User is the IdP user whose valid token was refused (no impersonation rule, say), for the
	// activity record of the refusal; "" when the token itself was not accepted.
	User string
}

func (e *AuthError) Error() string { return e.Message }

// Refuse returns an *AuthError.
func Refuse(r AuthReason, format string, args ...any) *AuthError {
	return &AuthError{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// ErrSessionRevoked ends a live session whose grant was revoked.
var ErrSessionRevoked = errors.New("access token revoked")
