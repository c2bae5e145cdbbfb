package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
	"github.com/golang-jwt/jwt/v5"
)

// SidecarStore is what sidecar authentication needs from persistence.
type SidecarStore interface {
	GetSidecar(ctx context.Context, id string) (*gatehouse.Sidecar, error)
	// UseJTI records jti until exp; a second use is a *gatehouse.Error with code conflict. Backed
	// by the shared store, so a token replayed to another replica is refused too.
	UseJTI(ctx context.Context, jti string, exp time.Time) error
}

// DefaultSidecarLeeway is the clock skew tolerated between a sidecar and the control plane.
const DefaultSidecarLeeway = 5 * time.Second

// SidecarVerifier checks the JWT a sidecar instance sends with each request (see package syncapi
// for the claims).
type SidecarVerifier struct {
	Store SidecarStore
	// Audiences are the accepted aud values: the control plane's public URL(s), compared after
	// syncapi.Audience normalization. At least one is required.
	Audiences []string
	// Leeway for iat and exp; DefaultSidecarLeeway when zero.
	Leeway time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// SidecarPrincipal is an authenticated sidecar instance.
type SidecarPrincipal struct {
	Sidecar    *gatehouse.Sidecar
	InstanceID string
}

// SidecarAuthError is a refused sidecar token. Reason is for the control plane's log, never for
// the response.
type SidecarAuthError struct{ Reason string }

func (e *SidecarAuthError) Error() string { return "sidecar authentication refused: " + e.Reason }

func refuse(format string, args ...any) error {
	return &SidecarAuthError{Reason: fmt.Sprintf(format, args...)}
}

// VerifyRequest checks the request's "Authorization: Bearer" JWT. Refusals are *SidecarAuthError;
// any other error is a failure of the control plane itself (the store is down).
func (v *SidecarVerifier) VerifyRequest(r *http.Request) (*SidecarPrincipal, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return nil, refuse("no bearer token")
	}
	return v.Verify(r.Context(), strings.TrimSpace(raw))
}

// Verify checks a raw sidecar JWT: signature by either of the sidecar's registered public keys
// (RS256 or PS256), audience, issued-at not in the future, expiry, a lifetime of at most
// syncapi.MaxTokenLifetime, and a jti not seen before. The jti is recorded only after everything
// else passed, so unauthenticated callers cannot fill the replay table.
func (v *SidecarVerifier) Verify(ctx context.Context, raw string) (*SidecarPrincipal, error) {
	if len(v.Audiences) == 0 {
		return nil, errors.New("sidecar verifier has no audience configured")
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	leeway := v.Leeway
	if leeway == 0 {
		leeway = DefaultSidecarLeeway
	}
	auds := make([]string, len(v.Audiences))
	for i, a := range v.Audiences {
		auds[i] = syncapi.Audience(a)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodPS256.Alg()}),
		jwt.WithAudience(auds...),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	)
	var (
		claims   jwt.RegisteredClaims
		sc       *gatehouse.Sidecar
		storeErr error
	)
	_, err := p.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		if claims.Issuer == "" {
			return nil, errors.New("no iss claim")
		}
		s, err := v.Store.GetSidecar(ctx, claims.Issuer)
		if err != nil {
			if gatehouse.ErrorCode(err) != gatehouse.ECodeNotFound {
				storeErr = err
			}
			return nil, fmt.Errorf("unknown sidecar %q", claims.Issuer)
		}
		sc = s
		var keys jwt.VerificationKeySet
		for _, pem := range []string{s.PublicKey, s.SecondPublicKey} {
			if pem == "" {
				continue
			}
			k, err := gatehouse.ParseRSAPublicKey(pem)
			if err != nil {
				continue // validated on registration; a bad key simply never matches
			}
			keys.Keys = append(keys.Keys, k)
		}
		if len(keys.Keys) == 0 {
			return nil, fmt.Errorf("sidecar %q has no usable public key", s.ID)
		}
		return keys, nil
	})
	if storeErr != nil {
		return nil, fmt.Errorf("look up sidecar: %w", storeErr)
	}
	if err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) && sc != nil {
			return nil, refuse("sidecar %q (instance %q): signature does not match a registered public key, or algorithm not RS256/PS256: %v", sc.ID, claims.Subject, err)
		}
		return nil, refuse("sidecar %q (instance %q): %v", claims.Issuer, claims.Subject, err)
	}
	if claims.IssuedAt == nil {
		return nil, refuse("sidecar %q: no iat claim", sc.ID)
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life > syncapi.MaxTokenLifetime {
		return nil, refuse("sidecar %q (instance %q): token lifetime %s exceeds %s", sc.ID, claims.Subject, life, syncapi.MaxTokenLifetime)
	}
	if claims.Subject == "" || len(claims.Subject) > 128 {
		return nil, refuse("sidecar %q: sub (instance ID) missing or longer than 128 characters", sc.ID)
	}
	if claims.ID == "" || len(claims.ID) > 128 {
		return nil, refuse("sidecar %q (instance %q): jti missing or longer than 128 characters", sc.ID, claims.Subject)
	}
	if err := v.Store.UseJTI(ctx, sc.ID+"/"+claims.ID, claims.ExpiresAt.Add(leeway)); err != nil {
		if gatehouse.ErrorCode(err) == gatehouse.ECodeConflict {
			return nil, refuse("sidecar %q (instance %q): replayed jti %q", sc.ID, claims.Subject, claims.ID)
		}
		return nil, fmt.Errorf("record sidecar jti: %w", err)
	}
	return &SidecarPrincipal{Sidecar: sc, InstanceID: claims.Subject}, nil
}
