package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"

	"github.com/gatehousedb/gatehouse"
)

// SecretChars is the number of base62 characters after the prefix of an access token: 43 characters
// carry 256 bits (43 × log2 62 ≈ 256.0), and the whole token is 47 characters, well inside the
// 64-character limit of gatehouse.LooksLikeToken.
const SecretChars = 43

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Random returns n base62 characters from crypto/rand, each uniformly distributed.
func Random(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random bytes: %w", err)
		}
		for _, b := range buf {
			// 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out), nil
}

// Mint returns a new access token secret (gatehouse.TokenPrefix + 43 base62 characters) and the hex
// SHA-256 under which it is stored. Show the secret once; keep only the hash.
func Mint() (secret, hash string, err error) {
	r, err := Random(SecretChars)
	if err != nil {
		return "", "", fmt.Errorf("mint access token: %w", err)
	}
	secret = gatehouse.TokenPrefix + r
	return secret, Hash(secret), nil
}

// Hash returns the hex SHA-256 of a secret, the form in which tokens and sessions are stored.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Verify reports whether secret hashes to hash, comparing in constant time.
func Verify(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(Hash(secret)), []byte(hash)) == 1
}

// Secret carries a secret value (an access token, a session token, a password) through code that
// might print or log it. Every formatting path redacts; call Reveal where the value must go out.
type Secret struct{ value string }

// NewSecret wraps a secret value.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.value == "" }

const redacted = "[REDACTED]"

// String redacts.
func (s Secret) String() string { return redacted }

// GoString redacts.
func (s Secret) GoString() string { return redacted }

// Format redacts for every verb, including %x and %q.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue redacts for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON redacts, so a secret is never serialised by accident; responses that must carry it
// copy Reveal into a plain string field on purpose.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
