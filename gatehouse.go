// Package gatehouse holds Gatehouse's domain types — repositories, repository users and their secret
// references, sidecars, listener ports, bindings, impersonation policies, users, groups and access
// tokens — with their validation rules and the error kinds every layer reports. It imports only the
// standard library; everything else in the module imports it.
//
// Validation lives here, next to the types, so that the API, the CLI, the store and the sidecar all
// apply the same rules and name the same fields in their errors.
package gatehouse

import (
	"errors"
	"fmt"
)

// Error codes. They are part of the API: the JSON error body carries one of them in "code".
const (
	ECodeInvalid         = "invalid"         // 400: a field breaks a rule
	ECodeUnauthenticated = "unauthenticated" // 401
	ECodeForbidden       = "forbidden"       // 403
	ECodeNotFound        = "not_found"       // 404
	ECodeConflict        = "conflict"        // 409: duplicate, or dependents block a delete
	ECodeInternal        = "internal"        // 500
)

// Error is a domain error that knows how it is shown to a user: a code, the field it concerns (if any)
// and a message written for the person who has to fix it.
type Error struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error for field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: ECodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound returns a not_found error: "repository "sales" not found".
func NotFound(kind, name string) *Error {
	return &Error{Code: ECodeNotFound, Message: fmt.Sprintf("%s %q not found", kind, name)}
}

// Conflict returns a conflict error.
func Conflict(format string, args ...any) *Error {
	return &Error{Code: ECodeConflict, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or ECodeInternal.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ECodeInternal
}

// prefixField returns err with its field prefixed ("rules[0]." + "users"), for nested validation.
func prefixField(prefix string, err error) error {
	var e *Error
	if errors.As(err, &e) && e.Code == ECodeInvalid {
		f := prefix
		if e.Field != "" {
			f = prefix + "." + e.Field
		}
		return &Error{Code: e.Code, Field: f, Message: e.Message}
	}
	return err
}
