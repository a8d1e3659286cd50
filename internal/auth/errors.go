package auth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// ETOOMANYREQUESTS is the error code of a *RateLimitError. The HTTP layer
// answers it with 429 and a Retry-After header.
const ETOOMANYREQUESTS = "too_many_requests"

// RateLimitError is returned by Login when the username or the client
// address has used up its attempts. tokenkeeper.ErrorCode reports
// ETOOMANYREQUESTS for it (it unwraps to a *tokenkeeper.Error); use
// errors.As to read RetryAfter.
type RateLimitError struct {
	// RetryAfter is how long until the next attempt is allowed; at least
	// one second.
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many login attempts: retry after %s", e.RetryAfter)
}

// Unwrap returns the *tokenkeeper.Error with code ETOOMANYREQUESTS, so that
// tokenkeeper.ErrorCode and tokenkeeper.ErrorMessage understand the error.
func (e *RateLimitError) Unwrap() error {
	return &tokenkeeper.Error{Code: ETOOMANYREQUESTS, Message: e.userMessage()}
}

func (e *RateLimitError) userMessage() string {
	s := e.RetryAfterSeconds()
	unit := "seconds"
	if s == 1 {
		unit = "second"
	}
	return fmt.Sprintf("Too many login attempts; retry in %d %s.", s, unit)
}

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1,
// as the Retry-After header wants it.
func (e *RateLimitError) RetryAfterSeconds() int64 {
	s := int64((e.RetryAfter + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// ReuseError is returned by Refresh when a refresh token that was already
// rotated is presented again: the token family was revoked. It unwraps to
// the same EUNAUTHORIZED error as any other bad refresh token, so the
// caller's answer reveals nothing; the server uses the user and family it
// names for the audit log (never a token).
type ReuseError struct {
	UserID, Username, FamilyID string
}

// Error implements the error interface.
func (e *ReuseError) Error() string {
	return fmt.Sprintf("refresh token reuse detected: family %s of user %s revoked", e.FamilyID, e.Username)
}

// Unwrap returns the EUNAUTHORIZED error the caller sees.
func (e *ReuseError) Unwrap() error { return unauthorized(msgBadRefreshToken) }

// Messages of the authentication failures. They are the same whatever the
// precise cause, so that a caller learns nothing about which accounts exist.
const (
	msgBadLogin        = "invalid username or password"
	msgBadRefreshToken = "invalid or expired refresh token"
	msgBadClient       = "invalid client credentials"
)

func unauthorized(msg string) error {
	return &tokenkeeper.Error{Code: tokenkeeper.EUNAUTHORIZED, Message: msg}
}

// randomToken returns prefix followed by n random bytes in unpadded
// base64url.
func randomToken(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics if the OS cannot supply randomness)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// newID returns a random identifier with 128 bits of entropy, in hex, so
// that it is a valid name everywhere (a kid, a family id).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
