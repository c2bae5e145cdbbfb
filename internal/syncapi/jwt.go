package syncapi

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTokenLifetime is how long the JWTs a Signer makes live. Each request gets a fresh one.
const DefaultTokenLifetime = 30 * time.Second

// Signer makes the JWT a sidecar instance sends with each request.
type Signer struct {
	Key        *rsa.PrivateKey
	SidecarID  string // iss
	InstanceID string // sub
	Audience   string // aud: the control-plane URL (normalized with Audience)
	// Lifetime of each token; DefaultTokenLifetime when zero. Must not exceed MaxTokenLifetime.
	Lifetime time.Duration
	// Method is jwt.SigningMethodRS256 when nil; jwt.SigningMethodPS256 works too.
	Method jwt.SigningMethod
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Sign returns a fresh signed token.
func (s *Signer) Sign() (string, error) {
	if s.Key == nil || s.SidecarID == "" || s.InstanceID == "" || s.Audience == "" {
		return "", errors.New("sign sidecar token: key, sidecar ID, instance ID and audience are required")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	life := s.Lifetime
	if life == 0 {
		life = DefaultTokenLifetime
	}
	if life > MaxTokenLifetime {
		return "", errors.New("sign sidecar token: lifetime exceeds 60s")
	}
	method := s.Method
	if method == nil {
		method = jwt.SigningMethodRS256
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	t := now().Truncate(time.Second)
	claims := jwt.RegisteredClaims{
		Issuer:    s.SidecarID,
		Subject:   s.InstanceID,
		Audience:  jwt.ClaimStrings{Audience(s.Audience)},
		IssuedAt:  jwt.NewNumericDate(t),
		ExpiresAt: jwt.NewNumericDate(t.Add(life)),
		ID:        base64.RawURLEncoding.EncodeToString(jti),
	}
	return jwt.NewWithClaims(method, claims).SignedString(s.Key)
}

// Audience normalizes a control-plane URL for use as, and comparison with, the aud claim: no
// trailing slash.
func Audience(controlPlaneURL string) string {
	return strings.TrimRight(strings.TrimSpace(controlPlaneURL), "/")
}
