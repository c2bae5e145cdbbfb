package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehousedb/gatehouse"
)

// Username claims an OIDC user's Gatehouse name may come from.
const (
	UsernameEmail             = "email"              // the default: the e-mail address, which SCIM's userName usually is too
	UsernamePreferredUsername = "preferred_username" // for IdPs whose users have no e-mail address
)

// DefaultOIDCScopes are requested unless OIDCConfig.Scopes says otherwise. "groups" is what Okta
// (and Dex-like IdPs) need to put the groups claim in; IdPs that refuse unknown scopes need
// --oidc-scopes without it.
var DefaultOIDCScopes = []string{oidc.ScopeOpenID, "email", "profile", "groups"}

// OIDCConfig configures the OpenID Connect relying party. Issuer, ClientID and RedirectURL are
// required, and at least one of AdminGroups and ConsumerGroups ("*" in ConsumerGroups admits
// every user the IdP signs in). Zero values: Scopes DefaultOIDCScopes, GroupsClaim "groups",
// UsernameClaim UsernameEmail, HTTPClient http.DefaultClient, Now time.Now.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string // never logged
	RedirectURL  string // the control plane's callback, registered at the IdP
	Scopes       []string

	GroupsClaim    string
	UsernameClaim  string
	AdminGroups    []string
	ConsumerGroups []string
	AllowedDomains []string // e-mail domains allowed to sign in; empty allows any

	HTTPClient *http.Client
	Now        func() time.Time
}

// String and LogValue keep the client secret out of logs.
func (c OIDCConfig) String() string {
	return fmt.Sprintf("issuer=%s client_id=%s client_secret=[REDACTED]", c.Issuer, c.ClientID)
}

// LogValue implements slog.LogValuer.
func (c OIDCConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

// OIDC signs users in with an OpenID Provider: authorization code flow with PKCE (S256), nonce, ID
// token verification (signature, issuer, audience, expiry) and group-to-role mapping.
type OIDC struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider // discovered on first use, so the control plane starts while the IdP is down
}

// NewOIDC checks cfg and returns a relying party. It does not contact the IdP.
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("oidc: the issuer, client ID and redirect URL are required")
	}
	if len(cfg.AdminGroups) == 0 && len(cfg.ConsumerGroups) == 0 {
		return nil, errors.New("oidc: name the IdP groups whose members may sign in (admin groups, consumer groups, or \"*\" for everyone)")
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultOIDCScopes
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	switch cfg.UsernameClaim {
	case "":
		cfg.UsernameClaim = UsernameEmail
	case UsernameEmail, UsernamePreferredUsername:
	default:
		return nil, fmt.Errorf("oidc: the username claim must be %q or %q", UsernameEmail, UsernamePreferredUsername)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for i, d := range cfg.AllowedDomains {
		cfg.AllowedDomains[i] = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
	}
	return &OIDC{cfg: cfg}, nil
}

func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.cfg.HTTPClient), o.cfg.Issuer)
	if err != nil {
		// An issuer mismatch is the IdP (or someone in between) claiming to be another issuer.
		return nil, fmt.Errorf("discover the OpenID Provider %s: %w", o.cfg.Issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *OIDC) oauth2Config(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret,
		Endpoint: p.Endpoint(), RedirectURL: o.cfg.RedirectURL, Scopes: o.cfg.Scopes,
	}
}

// AuthCodeURL returns the IdP URL that starts a login with state, nonce and the S256 challenge of
// verifier.
func (o *OIDC) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	return o.oauth2Config(p).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// Identity is who the IdP says signed in, and what Gatehouse makes of it.
type Identity struct {
	Subject     string
	Name        string // the Gatehouse user name (from UsernameClaim)
	Email       string
	DisplayName string
	Groups      []string
	Role        gatehouse.Role
}

type idClaims struct {
	Email             string `json:"email"`
	EmailVerified     *bool  `json:"email_verified"`
	PreferredUsername string `json:"preferred_username"`
	Name              string `json:"name"`
}

func unauthenticatedf(format string, args ...any) error {
	return gatehouse.Errorf(gatehouse.ECodeUnauthenticated, format, args...)
}

// Exchange redeems an authorization code (with the PKCE verifier), verifies the ID token against the
// nonce, reads the user's claims (ID token, then userinfo for what it lacks) and maps their groups to
// a role. Refusals are *gatehouse.Error: unauthenticated for a bad code or token, forbidden for a
// user Gatehouse does not admit.
func (o *OIDC) Exchange(ctx context.Context, code, verifier, nonce string) (*Identity, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return nil, err
	}
	ctx = oidc.ClientContext(ctx, o.cfg.HTTPClient)
	tok, err := o.oauth2Config(p).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, unauthenticatedf("the identity provider refused the authorization code (%s); start the sign-in again", re.ErrorCode)
		}
		return nil, fmt.Errorf("redeem authorization code: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return nil, unauthenticatedf("the identity provider answered without an ID token; is the openid scope allowed for this client?")
	}
	idt, err := o.VerifyIDToken(ctx, raw, nonce)
	if err != nil {
		return nil, err
	}
	return o.signedIn(ctx, p, idt, tok)
}

// signedIn reads the claims of a verified ID token, then those of userinfo (with the access token
// of tok) that the ID token lacks, and maps them to an Identity.
func (o *OIDC) signedIn(ctx context.Context, p *oidc.Provider, idt *oidc.IDToken, tok *oauth2.Token) (*Identity, error) {
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, unauthenticatedf("the ID token's claims do not decode: %v", err)
	}
	// Claims the ID token leaves out (many IdPs put profile and groups only in userinfo).
	if p.UserInfoEndpoint() != "" {
		ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return nil, fmt.Errorf("read userinfo: %w", err)
		}
		if ui.Subject != idt.Subject {
			return nil, unauthenticatedf("the userinfo subject does not match the ID token's")
		}
		more := map[string]any{}
		if err := ui.Claims(&more); err != nil {
			return nil, unauthenticatedf("the userinfo claims do not decode: %v", err)
		}
		for k, v := range more {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	return o.identity(idt.Subject, claims)
}

// VerifyIDToken checks an ID token's signature (the IdP's published keys), issuer, audience (this
// client), expiry and nonce.
func (o *OIDC) VerifyIDToken(ctx context.Context, raw, nonce string) (*oidc.IDToken, error) {
	idt, err := o.verifyIDToken(ctx, raw)
	if err != nil {
		return nil, err
	}
	if nonce == "" || idt.Nonce != nonce {
		return nil, unauthenticatedf("the ID token's nonce does not match this sign-in; start the sign-in again")
	}
	return idt, nil
}

// verifyIDToken checks everything VerifyIDToken does but the nonce, which only the authorization
// code flow has.
func (o *OIDC) verifyIDToken(ctx context.Context, raw string) (*oidc.IDToken, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return nil, err
	}
	v := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.cfg.Now})
	idt, err := v.Verify(oidc.ClientContext(ctx, o.cfg.HTTPClient), raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return nil, unauthenticatedf("the ID token expired at %s; check the clocks of Gatehouse and the identity provider, then sign in again", expired.Expiry.UTC().Format(time.RFC3339))
		}
		return nil, unauthenticatedf("the ID token is not valid: %v", err)
	}
	return idt, nil
}

func (o *OIDC) identity(subject string, claims map[string]any) (*Identity, error) {
	var c idClaims
	c.Email, _ = claims["email"].(string)
	c.PreferredUsername, _ = claims["preferred_username"].(string)
	c.Name, _ = claims["name"].(string)
	if b, ok := claims["email_verified"].(bool); ok {
		c.EmailVerified = &b
	}
	id := &Identity{Subject: subject, Email: strings.TrimSpace(c.Email), DisplayName: c.Name}
	if id.Email != "" && c.EmailVerified != nil && !*c.EmailVerified {
		return nil, gatehouse.Errorf(gatehouse.ECodeForbidden, "the identity provider has not verified the e-mail address %s", id.Email)
	}
	switch o.cfg.UsernameClaim {
	case UsernamePreferredUsername:
		id.Name = strings.TrimSpace(c.PreferredUsername)
	default:
		id.Name = strings.ToLower(id.Email)
	}
	if id.Name == "" {
		return nil, gatehouse.Errorf(gatehouse.ECodeForbidden, "the identity provider sent no %s claim; Gatehouse names users by it (see --oidc-username-claim and --oidc-scopes)", o.cfg.UsernameClaim)
	}
	if len(o.cfg.AllowedDomains) > 0 {
		_, domain, _ := strings.Cut(strings.ToLower(id.Email), "@")
		if domain == "" || !slices.Contains(o.cfg.AllowedDomains, domain) {
			return nil, gatehouse.Errorf(gatehouse.ECodeForbidden, "%s is not assigned to Gatehouse: e-mail domain %q is not allowed to sign in", id.Name, domain)
		}
	}
	id.Groups = stringList(claims[o.cfg.GroupsClaim])
	role, ok := o.Role(id.Groups)
	if !ok {
		return nil, &gatehouse.Error{Code: gatehouse.ECodeForbidden, Message: fmt.Sprintf(
			"%s is not assigned to Gatehouse: none of their groups (%s) is an admin or data consumer group; ask your administrator to assign you",
			id.Name, groupList(id.Groups))}
	}
	id.Role = role
	return id, nil
}

func groupList(gs []string) string {
	if len(gs) == 0 {
		return "none"
	}
	return strings.Join(gs, ", ")
}

// stringList reads a claim that is a list of strings, or one string.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Role maps IdP groups to a role: ADMIN if any is an admin group, DATA_CONSUMER if any is a
// consumer group (or consumer groups include "*"), and false when the user is in neither.
func (o *OIDC) Role(groups []string) (gatehouse.Role, bool) {
	for _, g := range groups {
		if slices.Contains(o.cfg.AdminGroups, g) {
			return gatehouse.RoleAdmin, true
		}
	}
	if slices.Contains(o.cfg.ConsumerGroups, "*") {
		return gatehouse.RoleDataConsumer, true
	}
	for _, g := range groups {
		if slices.Contains(o.cfg.ConsumerGroups, g) {
			return gatehouse.RoleDataConsumer, true
		}
	}
	return "", false
}

// AdminGroup reports whether name is one of the IdP groups whose members are admins.
func (o *OIDC) AdminGroup(name string) bool { return slices.Contains(o.cfg.AdminGroups, name) }

// S256 returns the PKCE S256 challenge of verifier (RFC 7636).
func S256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
