package api

import (
	"context"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/activity"
)

// Store is what the API needs from persistence; internal/store implements it for SQLite and
// PostgreSQL (the compile-time check lives in internal/controlplane, which wires the two).
//
// Contract, for every method:
//   - errors a user should see are *gatehouse.Error: NotFound ("repository \"x\" not found"),
//     Conflict (duplicates; deletes blocked by dependents, listing them), Invalid (a reference to a
//     missing object, naming the field). Anything else is an internal error.
//   - every multi-row change runs in one transaction; a failed call changes nothing.
//   - every change to something a sidecar syncs (all objects except sessions, settings, instances
//     and JTIs) increments the config version in the same transaction.
//   - Create/Update set CreatedAt/UpdatedAt; lists are ordered by name (tokens and instances by
//     creation time).
type Store interface {
	CreateRepository(ctx context.Context, r *gatehouse.Repository) error
	GetRepository(ctx context.Context, name string) (*gatehouse.Repository, error)
	UpdateRepository(ctx context.Context, r *gatehouse.Repository) error // by r.Name; refused (409) if type/version change breaks a binding
	// DeleteRepository refuses (Conflict listing bindings, impersonation policies and repository
	// users... other than its own users, which go with it) unless cascade, which deletes the
	// repository's bindings and policies too.
	DeleteRepository(ctx context.Context, name string, cascade bool) error
	ListRepositories(ctx context.Context) ([]gatehouse.Repository, error)

	CreateRepositoryUser(ctx context.Context, u *gatehouse.RepositoryUser) error // Invalid("repository") if missing
	GetRepositoryUser(ctx context.Context, repo, username string) (*gatehouse.RepositoryUser, error)
	UpdateRepositoryUser(ctx context.Context, u *gatehouse.RepositoryUser) error
	// DeleteRepositoryUser refuses when impersonation rules name the user, unless cascade (which
	// removes the name from those rules, and rules left with no repository user).
	DeleteRepositoryUser(ctx context.Context, repo, username string, cascade bool) error
	ListRepositoryUsers(ctx context.Context, repo string) ([]gatehouse.RepositoryUser, error)

	CreateSidecar(ctx context.Context, s *gatehouse.Sidecar) error // assigns s.ID (random, URL-safe)
	GetSidecar(ctx context.Context, id string) (*gatehouse.Sidecar, error)
	UpdateSidecar(ctx context.Context, s *gatehouse.Sidecar) error
	DeleteSidecar(ctx context.Context, id string, cascade bool) error // refuses with ports/bindings unless cascade
	ListSidecars(ctx context.Context) ([]gatehouse.Sidecar, error)

	CreateListenerPort(ctx context.Context, p *gatehouse.ListenerPort) error // 409 if the port exists on the sidecar
	GetListenerPort(ctx context.Context, sidecarID string, port int) (*gatehouse.ListenerPort, error)
	UpdateListenerPort(ctx context.Context, p *gatehouse.ListenerPort) error // refused if it breaks its bindings
	DeleteListenerPort(ctx context.Context, sidecarID string, port int, cascade bool) error
	ListListenerPorts(ctx context.Context, sidecarID string) ([]gatehouse.ListenerPort, error)

	// CreateBinding checks gatehouse.CheckBinding inside the transaction; 409 if the same
	// (sidecar, port, repository) exists.
	CreateBinding(ctx context.Context, b *gatehouse.Binding) error
	DeleteBinding(ctx context.Context, sidecarID string, port int, repository string) error
	ListBindings(ctx context.Context, sidecarID string) ([]gatehouse.Binding, error) // sidecarID "" = all

	// Impersonation policies: the repository and every repository user a rule names must exist
	// (Invalid with field "repository" or "rules[i].repository_users").
	CreateImpersonationPolicy(ctx context.Context, p *gatehouse.ImpersonationPolicy) error
	GetImpersonationPolicy(ctx context.Context, name string) (*gatehouse.ImpersonationPolicy, error)
	UpdateImpersonationPolicy(ctx context.Context, p *gatehouse.ImpersonationPolicy) error
	DeleteImpersonationPolicy(ctx context.Context, name string) error
	ListImpersonationPolicies(ctx context.Context, repository string) ([]gatehouse.ImpersonationPolicy, error) // "" = all

	// Users. Groups on a returned user are filled from memberships.
	CreateUser(ctx context.Context, u *gatehouse.User) error
	GetUser(ctx context.Context, name string) (*gatehouse.User, error)
	UpdateUser(ctx context.Context, u *gatehouse.User) error
	DeleteUser(ctx context.Context, name string) error // also revokes their tokens and ends their API sessions
	ListUsers(ctx context.Context) ([]gatehouse.User, error)
	SetUserPassword(ctx context.Context, name, passwordHash string) error // bcrypt hash; "" disables password login
	UserPasswordHash(ctx context.Context, name string) (string, error)

	// Groups. Members must be existing users (Invalid "members").
	CreateGroup(ctx context.Context, g *gatehouse.Group) error
	GetGroup(ctx context.Context, name string) (*gatehouse.Group, error)
	UpdateGroup(ctx context.Context, g *gatehouse.Group) error // replaces members
	DeleteGroup(ctx context.Context, name string) error
	ListGroups(ctx context.Context) ([]gatehouse.Group, error)

	// Access tokens: only the hash is stored.
	CreateToken(ctx context.Context, t *gatehouse.AccessToken) error // t.ID set by caller
	GetToken(ctx context.Context, id string) (*gatehouse.AccessToken, error)
	TokenByHash(ctx context.Context, hash string) (*gatehouse.AccessToken, error)
	ListTokens(ctx context.Context, owner string) ([]gatehouse.AccessToken, error) // owner "" = all
	RevokeToken(ctx context.Context, id string, at time.Time) error

	// API sessions (bearer tokens from POST /api/v1/login); stored by hash.
	CreateSession(ctx context.Context, s *gatehouse.LoginSession) error
	SessionByHash(ctx context.Context, hash string) (*gatehouse.LoginSession, error) // NotFound when absent or expired
	DeleteSession(ctx context.Context, hash string) error

	// Single sign-on (sso.go). Grants are single-use: Consume deletes what it returns, NotFound when
	// absent, expired or used. RevokeUserAccess revokes a user's access tokens and ends their
	// sessions and refresh tokens; SetUserGroups replaces a user's memberships, creating missing
	// groups.
	CreateSSOGrant(ctx context.Context, g *gatehouse.SSOGrant) error
	ConsumeSSOGrant(ctx context.Context, kind, hash string) (*gatehouse.SSOGrant, error)
	DeleteSessionGrants(ctx context.Context, sessionHash string) error
	RevokeUserAccess(ctx context.Context, name string) error
	SetUserGroups(ctx context.Context, user string, groups []string) error
	CreateSCIMToken(ctx context.Context, t *gatehouse.SCIMToken) error // assigns t.ID
	ListSCIMTokens(ctx context.Context) ([]gatehouse.SCIMToken, error)
	RevokeSCIMToken(ctx context.Context, id string, at time.Time) error

	// Settings: small key/value strings (e.g. "max_token_ttl" = "24h0m0s"). Missing key: "", nil.
	Setting(ctx context.Context, key string) (string, error)
	SetSetting(ctx context.Context, key, value string) error

	// ConfigVersion is the number of the last change a sidecar would see; it only grows.
	ConfigVersion(ctx context.Context) (int64, error)

	// Sidecar instances report in on every sync (issue 3).
	UpsertInstance(ctx context.Context, in *gatehouse.SidecarInstance) error
	ListInstances(ctx context.Context, sidecarID string) ([]gatehouse.SidecarInstance, error)
	// Access management policies: the repository must exist (Invalid "repository"). Changes bump
	// the config version.
	CreateAccessPolicy(ctx context.Context, p *gatehouse.AccessPolicy) error
	GetAccessPolicy(ctx context.Context, name string) (*gatehouse.AccessPolicy, error)
	UpdateAccessPolicy(ctx context.Context, p *gatehouse.AccessPolicy) error
	DeleteAccessPolicy(ctx context.Context, name string) error
	ListAccessPolicies(ctx context.Context, repository string) ([]gatehouse.AccessPolicy, error) // "" = all

	// Activity: records kept byte for byte as received, unique by (instance, seq).
	AddActivity(ctx context.Context, recs []activity.Stored) (stored, duplicates int, err error)
	ListActivity(ctx context.Context, f activity.Filter) ([]activity.Stored, error)
	PurgeActivity(ctx context.Context, before time.Time) (int64, error)

	// UseJTI records a sidecar JWT's jti until exp; a second use of the same jti is a Conflict.
	// Expired entries are purged as it goes.
	UseJTI(ctx context.Context, jti string, exp time.Time) error
}
