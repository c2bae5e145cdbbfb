package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatehousedb/gatehouse"
	"github.com/gatehousedb/gatehouse/internal/syncapi"
	"github.com/golang-jwt/jwt/v5"
)

type fakeSidecarStore struct {
	mu       sync.Mutex
	sidecars map[string]*gatehouse.Sidecar
	jtis     map[string]time.Time
}

func (s *fakeSidecarStore) GetSidecar(_ context.Context, id string) (*gatehouse.Sidecar, error) {
	sc, ok := s.sidecars[id]
	if !ok {
		return nil, gatehouse.NotFound("sidecar", id)
	}
	return sc, nil
}

func (s *fakeSidecarStore) UseJTI(_ context.Context, jti string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jtis[jti]; ok {
		return gatehouse.Conflict("jti already used")
	}
	s.jtis[jti] = exp
	return nil
}

func testKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemOf(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	b, err := syncapi.EncodePublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSidecarVerifier(t *testing.T) {
	const aud = "https://cp.example.com"
	first, second, stranger := testKey(t), testKey(t), testKey(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	store := &fakeSidecarStore{
		sidecars: map[string]*gatehouse.Sidecar{
			"sc1": {ID: "sc1", PublicKey: pemOf(t, first), SecondPublicKey: pemOf(t, second)},
		},
		jtis: map[string]time.Time{},
	}
	v := &SidecarVerifier{Store: store, Audiences: []string{aud + "/"}, Now: func() time.Time { return now }}

	claims := func(mod func(c *jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{
			Issuer: "sc1", Subject: "inst-1", Audience: jwt.ClaimStrings{aud},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(30 * time.Second)),
			ID: rand.Text(),
		}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, k any, c jwt.RegisteredClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	replayed := sign(jwt.SigningMethodRS256, first, claims(nil))
	if _, err := v.Verify(context.Background(), replayed); err != nil {
		t.Fatalf("first use: %v", err)
	}

	tests := []struct {
		name   string
		token  string
		refuse bool
	}{
		{"rs256 first key", sign(jwt.SigningMethodRS256, first, claims(nil)), false},
		{"ps256 second key", sign(jwt.SigningMethodPS256, second, claims(nil)), false},
		{"signer helper", mustSign(t, &syncapi.Signer{Key: first, SidecarID: "sc1", InstanceID: "i", Audience: aud, Now: func() time.Time { return now }}), false},
		{"small clock skew", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(3 * time.Second))
		})), false},
		{"wrong key", sign(jwt.SigningMethodRS256, stranger, claims(nil)), true},
		{"unknown sidecar", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) { c.Issuer = "nope" })), true},
		{"no issuer", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) { c.Issuer = "" })), true},
		{"expired", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-50 * time.Second))
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-10 * time.Second))
		})), true},
		{"future iat", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(20 * time.Second))
			c.ExpiresAt = jwt.NewNumericDate(now.Add(50 * time.Second))
		})), true},
		{"lifetime over 60s", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(61 * time.Second))
		})), true},
		{"no exp", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), true},
		{"no iat", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) { c.IssuedAt = nil })), true},
		{"wrong audience", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) {
			c.Audience = jwt.ClaimStrings{"https://other.example.com"}
		})), true},
		{"no jti", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) { c.ID = "" })), true},
		{"no sub", sign(jwt.SigningMethodRS256, first, claims(func(c *jwt.RegisteredClaims) { c.Subject = "" })), true},
		{"replayed jti", replayed, true},
		{"hs256 with public key as secret", sign(jwt.SigningMethodHS256, []byte(pemOf(t, first)), claims(nil)), true},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), true},
		{"garbage", "a.b.c", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tc.token)
			var ae *SidecarAuthError
			if tc.refuse {
				if !errors.As(err, &ae) {
					t.Fatalf("Verify = %v, %v; want a *SidecarAuthError", p, err)
				}
				t.Logf("refused: %v", ae.Reason)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Sidecar.ID != "sc1" || p.InstanceID == "" {
				t.Errorf("principal = %+v", p)
			}
		})
	}
}

func TestSidecarVerifierRequest(t *testing.T) {
	k := testKey(t)
	store := &fakeSidecarStore{sidecars: map[string]*gatehouse.Sidecar{"sc1": {ID: "sc1", PublicKey: pemOf(t, k)}}, jtis: map[string]time.Time{}}
	v := &SidecarVerifier{Store: store, Audiences: []string{"http://127.0.0.1:1"}}
	r := httptest.NewRequest("GET", "/api/v1/sidecar/config", nil)
	if _, err := v.VerifyRequest(r); err == nil {
		t.Fatal("request without a token accepted")
	}
	r.Header.Set("Authorization", "Bearer "+mustSign(t, &syncapi.Signer{Key: k, SidecarID: "sc1", InstanceID: "i", Audience: "http://127.0.0.1:1/"}))
	if _, err := v.VerifyRequest(r); err != nil {
		t.Fatalf("VerifyRequest: %v", err)
	}
}

func TestSidecarVerifierStoreDown(t *testing.T) {
	v := &SidecarVerifier{Store: brokenStore{}, Audiences: []string{"http://x"}}
	k := testKey(t)
	_, err := v.Verify(context.Background(), mustSign(t, &syncapi.Signer{Key: k, SidecarID: "sc1", InstanceID: "i", Audience: "http://x"}))
	var ae *SidecarAuthError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Verify = %v; want an internal error, not a refusal", err)
	}
}

type brokenStore struct{}

func (brokenStore) GetSidecar(context.Context, string) (*gatehouse.Sidecar, error) {
	return nil, errors.New("database is down")
}
func (brokenStore) UseJTI(context.Context, string, time.Time) error { return errors.New("down") }

func mustSign(t *testing.T, s *syncapi.Signer) string {
	t.Helper()
	tok, err := s.Sign()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
