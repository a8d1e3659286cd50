package client

import (
	"errors"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// Error is a failure at the token endpoint: an OAuth error response (RFC
// 6749 §5.2), an unexpected HTTP status, a malformed response or a network
// error. Its Code field holds the OAuth error code, and its message never
// contains a secret. Test for a code with errors.Is and one of the sentinel
// errors below, or inspect the details with errors.As:
//
//	var e *client.Error
//	if errors.As(err, &e) { log.Println(e.StatusCode, e.RetryAfter) }
type Error = oauth.Error

// Sentinel errors that match an Error with the same code under errors.Is:
// errors.Is(err, client.ErrInvalidGrant) reports that the provider refused
// the refresh token (or other grant) for good.
var (
	ErrInvalidGrant         = oauth.ErrInvalidGrant
	ErrInvalidClient        = oauth.ErrInvalidClient
	ErrUnauthorizedClient   = oauth.ErrUnauthorizedClient
	ErrUnsupportedGrantType = oauth.ErrUnsupportedGrantType
	ErrInvalidRequest       = oauth.ErrInvalidRequest
	ErrInvalidScope         = oauth.ErrInvalidScope
	ErrAccessDenied         = oauth.ErrAccessDenied
)

// IsPermanent reports whether err is a failure that retrying cannot fix: an
// Error with code invalid_grant, invalid_client, unauthorized_client or
// unsupported_grant_type (or for a request that could not be sent because
// of an invalid configuration), or a BrokerError that says the request itself
// is refused (401, 403, 404 or another 4xx except 408, 409, 425 and 429). A
// TokenSource stops its background attempts after such a failure.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// RetryAfter returns the delay the server asked for with Retry-After in the
// response that caused err, or 0.
func RetryAfter(err error) time.Duration { return retryAfter(err) }

func retryAfter(err error) time.Duration {
	var be *BrokerError
	if errors.As(err, &be) {
		return be.RetryAfter
	}
	return oauth.RetryAfter(err)
}

// errorClass returns a short class of err for logs: the OAuth error code,
// "http_503", "network", ...
func errorClass(err error) string {
	var be *BrokerError
	if errors.As(err, &be) {
		return be.class()
	}
	return oauth.Class(err)
}
