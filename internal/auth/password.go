package auth

import (
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehousedb/gatehouse"
)

// MinPasswordLength is the shortest password ValidatePassword accepts for a local user.
const MinPasswordLength = 8

// maxPasswordBytes is bcrypt's input limit; longer passwords would be silently truncated by other
// implementations and are refused by golang.org/x/crypto/bcrypt.
const maxPasswordBytes = 72

// ValidatePassword checks a new local user's password, naming field in the error.
func ValidatePassword(field, pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordLength {
		return gatehouse.Invalid(field, "must be at least %d characters", MinPasswordLength)
	}
	if len(pw) > maxPasswordBytes {
		return gatehouse.Invalid(field, "must be at most %d bytes", maxPasswordBytes)
	}
	return nil
}

// HashPassword returns the bcrypt hash of pw.
func HashPassword(pw string) (string, error) {
	if len(pw) > maxPasswordBytes {
		return "", gatehouse.Invalid("password", "must be at most %d bytes", maxPasswordBytes)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether pw matches the bcrypt hash. An empty or malformed hash matches
// nothing.
func CheckPassword(hash, pw string) bool {
	if hash == "" {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}
