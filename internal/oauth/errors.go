package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Error is a failed token request: an OAuth error response (RFC 6749 §5.2),
// an unexpected HTTP status, a malformed response, a network failure or an
// invalid Config. Every failure of a grant method is an *Error.
//
// No field and no part of Error() contains a secret: what a provider sends
// back is sanitized and scrubbed of the request's secrets and of token-like
// values before it is stored here.
type Error struct {
	// Code is the RFC 6749 §5.2 error code (invalid_grant, ...), lower-cased;
	// "" for non-OAuth failures and for a code that is not a plausible OAuth
	// error code.
	Code string
	// Description is the provider's error_description (or, for a non-OAuth
	// JSON error body, its message), sanitized and shortened.
	Description string
	// URI is the provider's error_uri, sanitized.
	URI string
	// StatusCode is the HTTP status; 0 when no response was received.
	StatusCode int
	// RetryAfter is the delay from a Retry-After header (seconds or an HTTP
	// date), capped at MaxRetryAfter; 0 if absent.
	RetryAfter time.Duration
	// Excerpt is a short, sanitized excerpt of a body that is not a parseable
	// token response (an HTML error page, plain text); never a token.
	Excerpt string
	// Err is the underlying error: a network or context error, or an error
	// wrapping ErrMalformedResponse or ErrInvalidConfig.
	Err error
}

// ErrMalformedResponse is wrapped by the Err of an *Error for a response that
// cannot be used: no access_token, a body that is neither a JSON object nor a
// form, a body larger than MaxResponseSize.
var ErrMalformedResponse = errors.New("malformed token response")

// Sentinel errors carrying only an RFC 6749 §5.2 code, for errors.Is:
//
//	if errors.Is(err, oauth.ErrInvalidGrant) { ... }
var (
	// ErrInvalidGrant: the grant (refresh token, code) is invalid, expired
	// or revoked. Permanent.
	ErrInvalidGrant = &Error{Code: "invalid_grant"}
	// ErrInvalidClient: client authentication failed. Permanent.
	ErrInvalidClient = &Error{Code: "invalid_client"}
	// ErrUnauthorizedClient: the client may not use this grant. Permanent.
	ErrUnauthorizedClient = &Error{Code: "unauthorized_client"}
	// ErrUnsupportedGrantType: the server does not support the grant.
	// Permanent.
	ErrUnsupportedGrantType = &Error{Code: "unsupported_grant_type"}
	// ErrInvalidRequest: the request is malformed. Temporary.
	ErrInvalidRequest = &Error{Code: "invalid_request"}
	// ErrInvalidScope: the requested scope is invalid. Temporary.
	ErrInvalidScope = &Error{Code: "invalid_scope"}
	// ErrAccessDenied: the resource owner or server denied the request.
	// Temporary.
	ErrAccessDenied = &Error{Code: "access_denied"}
)

// Error describes the failure. It never contains a secret.
func (e *Error) Error() string {
	if e == nil {
		return "oauth: <nil>"
	}
	var b strings.Builder
	b.WriteString("oauth: ")
	switch {
	case e.Code != "":
		b.WriteString(e.Code)
		if e.StatusCode != 0 {
			fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
		}
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "token endpoint answered HTTP %d", e.StatusCode)
	default:
		b.WriteString("token request failed")
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.URI != "" {
		fmt.Fprintf(&b, " (see %s)", e.URI)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "oauth: "))
	}
	if e.Excerpt != "" {
		fmt.Fprintf(&b, "; body: %q", e.Excerpt)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same non-empty Code, so
// that errors.Is(err, ErrInvalidGrant) matches any invalid_grant failure.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil || e == nil {
		return false
	}
	return t.Code != "" && e.Code == t.Code
}

// Permanent reports whether retrying cannot help until someone acts: the
// provider answered invalid_grant, invalid_client, unauthorized_client or
// unsupported_grant_type, or the Config (or an argument) is invalid and
// nothing was sent. Every other failure (5xx, 429, network errors, timeouts,
// malformed responses, other OAuth codes) is temporary.
func (e *Error) Permanent() bool {
	if e == nil {
		return false
	}
	switch e.Code {
	case "invalid_grant", "invalid_client", "unauthorized_client", "unsupported_grant_type":
		return true
	}
	return errors.Is(e.Err, ErrInvalidConfig)
}

// IsPermanent reports whether err is an *Error whose Permanent reports true.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent()
}

// RetryAfter returns the Retry-After delay of the *Error in err's chain, or
// 0 if there is none.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// Class returns a short class of err for events and
// metrics, never containing a secret:
//
//   - "" for nil;
//   - "canceled" when a context was canceled;
//   - "timeout" when a deadline or timeout expired;
//   - the OAuth error code, such as "invalid_grant";
//   - "invalid_config" when the request was not sent because the Config or
//     an argument is invalid;
//   - "http_503" (for example) for a non-2xx status without an OAuth code;
//   - "malformed_response" for an unusable 2xx response;
//   - "network" for other transport failures;
//   - "unknown" for anything else.
func Class(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	var e *Error
	if !errors.As(err, &e) {
		if errors.As(err, &ne) {
			return "network"
		}
		return "unknown"
	}
	switch {
	case e.Code != "":
		return e.Code
	case errors.Is(e.Err, ErrInvalidConfig):
		return "invalid_config"
	case e.StatusCode != 0 && !is2xx(e.StatusCode):
		return fmt.Sprintf("http_%d", e.StatusCode)
	case errors.Is(e.Err, ErrMalformedResponse):
		return "malformed_response"
	case e.Err != nil:
		return "network"
	case e.StatusCode != 0:
		return "malformed_response"
	}
	return "unknown"
}

// is2xx reports whether status is a success status.
func is2xx(status int) bool { return status >= 200 && status <= 299 }
