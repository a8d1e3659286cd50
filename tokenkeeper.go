// Package tokenkeeper holds the domain types of the tokenkeeper broker and the
// interfaces between its parts: credentials and their tokens, refresh events,
// API keys, the store that keeps them, and the Error type every part returns.
//
// Subpackages speak only these types. internal/sqlstore implements Store
// and AuthStore once, for every SQL database; internal/sqlite and
// internal/postgres are its two dialects (the connection, claims, locks,
// change notification, error codes and the embedded migrations of each)
// and hold the constructors. internal/storetest is the conformance suite
// both dialects pass. internal/refresh drives refreshes through the store
// and internal/http serves it. The public Go library lives in package
// client and does not depend on this package's store.
package tokenkeeper

import (
	"errors"
	"fmt"
)

// Error codes used across tokenkeeper. Each maps to one HTTP status in
// internal/http and to one exit message in the CLI.
const (
	ECONFLICT     = "conflict"     // the action conflicts with the current state
	EINTERNAL     = "internal"     // an internal error; the message is generic
	EINVALID      = "invalid"      // the input is invalid
	ENOTFOUND     = "not_found"    // the entity does not exist (or is not visible)
	EUNAUTHORIZED = "unauthorized" // missing or bad caller credentials
	EFORBIDDEN    = "forbidden"    // the caller may not perform the action
	EUNAVAILABLE  = "unavailable"  // a dependency (the database) is unreachable
	ETOOLARGE     = "too_large"    // a request body exceeds its limit
	ENOTREADY     = "not_ready"    // no valid token can be served in the current status
	EEXPIRED      = "expired"      // the entity (a connect session or link) has expired
)

// Error is an application error with a machine-readable code and a message
// meant for the caller. A message never contains a secret.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("tokenkeeper error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code string, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, or a
// generic message for any other non-nil error, so that internal details never
// reach a caller.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}
