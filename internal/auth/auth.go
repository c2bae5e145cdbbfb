package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/token"
)

// Store is the persistence auth needs. internal/store implements it.
type Store interface {
	CreateUser(ctx context.Context, u *gatehouse.User) error
	GetUser(ctx context.Context, name string) (*gatehouse.User, error)
	GetGroup(ctx context.Context, name string) (*gatehouse.Group, error)
	SetUserPassword(ctx context.Context, name, passwordHash string) error
	UserPasswordHash(ctx context.Context, name string) (string, error)
	CreateSession(ctx context.Context, s *gatehouse.LoginSession) error
	SessionByHash(ctx context.Context, hash string) (*gatehouse.LoginSession, error)
	DeleteSession(ctx context.Context, hash string) error
}

// SessionPrefix starts every login-session bearer secret, so that it is never mistaken for an access
// token ("gh1_").
const SessionPrefix = "ghs_"

// DefaultSessionTTL is how long a login session lasts unless Config.SessionTTL says otherwise.
const DefaultSessionTTL = 12 * time.Hour

// Config configures an Authenticator. Zero values: SessionTTL DefaultSessionTTL, Now time.Now,
// Logger discards.
type Config struct {
	Store      Store
	Logger     *slog.Logger
	SessionTTL time.Duration
	Now        func() time.Time

	// DisableLocalLogin refuses password sign-in (single sign-on only); re-enable it, by restarting
	// without it, as the break-glass way in.
	DisableLocalLogin bool
	// SecureCookies marks browser-session cookies Secure and "__Host-" (the control plane is served
	// over HTTPS).
	SecureCookies bool
}

// Authenticator signs local users in and resolves API callers.
type Authenticator struct {
	store  Store
	logger *slog.Logger
	ttl    time.Duration
	now    func() time.Time

	localDisabled bool
	secureCookies bool

	dummyOnce sync.Once
	dummyHash string // compared against when the user is unknown, so timing does not tell
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Store == nil {
		return nil, errors.New("auth: Config.Store is required")
	}
	a := &Authenticator{store: cfg.Store, logger: cfg.Logger, ttl: cfg.SessionTTL, now: cfg.Now,
		localDisabled: cfg.DisableLocalLogin, secureCookies: cfg.SecureCookies}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.ttl <= 0 {
		a.ttl = DefaultSessionTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a, nil
}

var errLocalDisabled = &gatehouse.Error{Code: gatehouse.ECodeForbidden, Message: "sign-in with a password is disabled on this control plane; sign in with single sign-on (gatehouse login --sso)"}

var forbiddenCSRF = gatehouse.Error{Code: gatehouse.ECodeForbidden, Message: "this request changes state and is authenticated by the session cookie: it needs the session's CSRF token in the X-CSRF-Token header"}

var errBadLogin = &gatehouse.Error{Code: gatehouse.ECodeUnauthenticated, Message: "invalid username or password"}

// Login checks a local user's password and opens a login session. It returns the bearer secret
// (shown once; only its SHA-256 is stored) and when it expires. Any failure a caller could learn
// from — unknown user, wrong password, inactive user, no password set — is the same
// unauthenticated error.
func (a *Authenticator) Login(ctx context.Context, username, password string) (token.Secret, time.Time, error) {
	if a.localDisabled {
		return token.Secret{}, time.Time{}, errLocalDisabled
	}
	u, err := a.store.GetUser(ctx, username)
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		a.burnTime(password)
		return token.Secret{}, time.Time{}, errBadLogin
	}
	if err != nil {
		return token.Secret{}, time.Time{}, fmt.Errorf("login %q: %w", username, err)
	}
	hash, err := a.store.UserPasswordHash(ctx, u.Name)
	if err != nil && gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
		return token.Secret{}, time.Time{}, fmt.Errorf("login %q: %w", username, err)
	}
	if hash == "" {
		a.burnTime(password)
		return token.Secret{}, time.Time{}, errBadLogin
	}
	if !CheckPassword(hash, password) || !u.Active {
		return token.Secret{}, time.Time{}, errBadLogin
	}
	return a.NewSession(ctx, u.Name)
}

// NewSession opens a login session for user without checking a password (for SSO callers).
func (a *Authenticator) NewSession(ctx context.Context, user string) (token.Secret, time.Time, error) {
	r, err := token.Random(token.SecretChars)
	if err != nil {
		return token.Secret{}, time.Time{}, fmt.Errorf("new session: %w", err)
	}
	secret := SessionPrefix + r
	now := a.now().UTC()
	s := &gatehouse.LoginSession{Hash: token.Hash(secret), User: user, CreatedAt: now, ExpiresAt: now.Add(a.ttl)}
	if err := a.store.CreateSession(ctx, s); err != nil {
		return token.Secret{}, time.Time{}, fmt.Errorf("new session for %q: %w", user, err)
	}
	return token.NewSecret(secret), s.ExpiresAt, nil
}

func (a *Authenticator) burnTime(password string) {
	a.dummyOnce.Do(func() {
		h, err := HashPassword("gatehouse-timing-equaliser")
		if err == nil {
			a.dummyHash = h
		}
	})
	CheckPassword(a.dummyHash, password)
}

func unauthenticated(format string, args ...any) error {
	return gatehouse.Errorf(gatehouse.ECodeUnauthenticated, format, args...)
}

// bearer returns the bearer secret of r, or an unauthenticated error.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", unauthenticated("sign in first: send Authorization: Bearer TOKEN with a token from POST /api/v1/login")
	}
	scheme, secret, ok := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", unauthenticated("the Authorization header must be \"Bearer TOKEN\"")
	}
	return secret, nil
}

// Authenticate returns the user an API request comes from, with Role set to the effective role
// (ADMIN if the user or any of their groups is ADMIN). It fails with an unauthenticated
// *gatehouse.Error when the request carries no valid, unexpired session of an active user.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request) (*gatehouse.User, error) {
	secret, err := a.credential(r)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(secret, gatehouse.TokenPrefix) {
		return nil, unauthenticated("access tokens are database passwords for sidecars, not API credentials; sign in with POST /api/v1/login")
	}
	s, err := a.store.SessionByHash(ctx, token.Hash(secret))
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		return nil, unauthenticated("the session is unknown or has expired; sign in again")
	}
	if err != nil {
		return nil, fmt.Errorf("look up session: %w", err)
	}
	if !a.now().Before(s.ExpiresAt) {
		return nil, unauthenticated("the session is unknown or has expired; sign in again")
	}
	u, err := a.store.GetUser(ctx, s.User)
	if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
		return nil, unauthenticated("the session's user no longer exists")
	}
	if err != nil {
		return nil, fmt.Errorf("look up session user %q: %w", s.User, err)
	}
	if !u.Active {
		return nil, unauthenticated("user %q is deactivated", u.Name)
	}
	role, err := a.effectiveRole(ctx, u)
	if err != nil {
		return nil, err
	}
	u.Role = role
	return u, nil
}

func (a *Authenticator) effectiveRole(ctx context.Context, u *gatehouse.User) (gatehouse.Role, error) {
	if u.Role == gatehouse.RoleAdmin {
		return gatehouse.RoleAdmin, nil
	}
	for _, name := range u.Groups {
		g, err := a.store.GetGroup(ctx, name)
		if gatehouse.ErrorCode(err) == gatehouse.ECodeNotFound {
			continue // removed since the user was read
		}
		if err != nil {
			return "", fmt.Errorf("look up group %q of %q: %w", name, u.Name, err)
		}
		if g.Role == gatehouse.RoleAdmin {
			return gatehouse.RoleAdmin, nil
		}
	}
	return gatehouse.RoleDataConsumer, nil
}

// Logout ends the session the request carries. Ending an unknown session is not an error.
func (a *Authenticator) Logout(ctx context.Context, r *http.Request) error {
	secret, err := a.credential(r)
	if err != nil {
		return err
	}
	err = a.store.DeleteSession(ctx, token.Hash(secret))
	if err != nil && gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// Bootstrap creates the administrator gatehouse.BootstrapAdmin on first start. If password is empty
// it generates one and prints it once to w. When the user exists with a password it changes
// nothing; when it exists without one (a first start interrupted between creating the user and
// setting the password) it sets the password.
func Bootstrap(ctx context.Context, st Store, password string, w io.Writer) error {
	_, err := st.GetUser(ctx, gatehouse.BootstrapAdmin)
	exists := err == nil
	if err != nil && gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if exists {
		hash, err := st.UserPasswordHash(ctx, gatehouse.BootstrapAdmin)
		if err != nil && gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		if hash != "" {
			return nil
		}
	}
	generated := password == ""
	if generated {
		if password, err = token.Random(24); err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
	} else if len(password) > maxPasswordBytes {
		return fmt.Errorf("bootstrap admin: the password must be at most %d bytes", maxPasswordBytes)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if !exists {
		u := &gatehouse.User{Name: gatehouse.BootstrapAdmin, DisplayName: "Administrator", Role: gatehouse.RoleAdmin, Active: true}
		if err := st.CreateUser(ctx, u); err != nil {
			if gatehouse.ErrorCode(err) == gatehouse.ECodeConflict {
				return nil // another replica won the race
			}
			return fmt.Errorf("bootstrap admin: %w", err)
		}
	}
	if err := st.SetUserPassword(ctx, gatehouse.BootstrapAdmin, hash); err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if generated && w != nil {
		fmt.Fprintf(w, "Created the administrator %q with the generated password:\n\n    %s\n\nIt is shown only this once. Sign in with: gatehouse login --username %s\n",
			gatehouse.BootstrapAdmin, password, gatehouse.BootstrapAdmin)
	}
	return nil
}
