package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestErrorsIsMatchesByCode(t *testing.T) {
	sentinels := []*Error{
		ErrInvalidGrant, ErrInvalidClient, ErrUnauthorizedClient, ErrUnsupportedGrantType,
		ErrInvalidRequest, ErrInvalidScope, ErrAccessDenied,
	}
	for _, s := range sentinels {
		body := fmt.Sprintf(`{"error":%q}`, s.Code)
		_, err := ParseTokenResponse(400, nil, []byte(body), testNow, 0)
		wrapped := fmt.Errorf("refresh credential github: %w", err)
		for _, other := range sentinels {
			if got, want := errors.Is(wrapped, other), other == s; got != want {
				t.Errorf("%s: errors.Is(err, %s) = %v, want %v", s.Code, other.Code, got, want)
			}
		}
		var e *Error
		if !errors.As(wrapped, &e) || e.Code != s.Code || e.StatusCode != 400 {
			t.Errorf("%s: errors.As gave %#v", s.Code, e)
		}
	}

	// An *Error without a code matches no sentinel, and no *Error matches an
	// empty-code target.
	noCode := &Error{StatusCode: 503}
	if errors.Is(noCode, ErrInvalidGrant) || errors.Is(noCode, &Error{}) || errors.Is(ErrInvalidGrant, &Error{}) {
		t.Error("an empty Code matched")
	}
	if errors.Is(ErrInvalidGrant, io.EOF) {
		t.Error("an *Error matched a non-*Error target")
	}
	// The underlying error is reachable.
	under := &Error{Err: fmt.Errorf("post token request: %w", io.ErrUnexpectedEOF)}
	if !errors.Is(under, io.ErrUnexpectedEOF) || under.Unwrap() == nil {
		t.Error("Unwrap does not reach the underlying error")
	}
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&Error{Code: "invalid_grant"}, true},
		{&Error{Code: "invalid_client", StatusCode: 401}, true},
		{&Error{Code: "unauthorized_client"}, true},
		{&Error{Code: "unsupported_grant_type"}, true},
		{fmt.Errorf("wrapped: %w", ErrInvalidGrant), true},
		{&Error{Err: fmt.Errorf("%w: TokenURL is empty", ErrInvalidConfig)}, true},
		{&Error{Code: "invalid_request"}, false},
		{&Error{Code: "invalid_scope"}, false},
		{&Error{Code: "access_denied"}, false},
		{&Error{Code: "server_error", StatusCode: 500}, false},
		{&Error{Code: "temporarily_unavailable", StatusCode: 503}, false},
		{&Error{StatusCode: 500}, false},
		{&Error{StatusCode: 429, RetryAfter: time.Second}, false},
		{&Error{StatusCode: 200, Err: ErrMalformedResponse}, false},
		{&Error{Err: context.DeadlineExceeded}, false},
		{&Error{Err: &net.OpError{Op: "dial", Err: os.ErrNotExist}}, false},
		{io.EOF, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	var nilErr *Error
	if nilErr.Permanent() {
		t.Error("nil *Error is permanent")
	}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClass(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&Error{Code: "invalid_grant", StatusCode: 400}, "invalid_grant"},
		{&Error{Code: "slow_down", StatusCode: 429}, "slow_down"},
		{&Error{StatusCode: 503, RetryAfter: 2 * time.Second}, "http_503"},
		{&Error{StatusCode: 429}, "http_429"},
		{&Error{StatusCode: 502, Err: fmt.Errorf("%w: x", ErrMalformedResponse)}, "http_502"},
		{&Error{StatusCode: 200, Err: fmt.Errorf("%w: x", ErrMalformedResponse)}, "malformed_response"},
		{&Error{StatusCode: 200}, "malformed_response"},
		{&Error{StatusCode: 200, Err: io.ErrUnexpectedEOF}, "network"},
		{&Error{Err: &net.OpError{Op: "dial", Err: os.ErrNotExist}}, "network"},
		{&Error{Err: timeoutErr{}}, "timeout"},
		{&Error{Err: fmt.Errorf("post: %w", context.DeadlineExceeded)}, "timeout"},
		{&Error{Err: fmt.Errorf("post: %w", context.Canceled)}, "canceled"},
		{&Error{Err: fmt.Errorf("%w: x", ErrInvalidConfig)}, "invalid_config"},
		{&Error{}, "unknown"},
		{context.Canceled, "canceled"},
		{timeoutErr{}, "timeout"},
		{&net.OpError{Op: "dial", Err: os.ErrNotExist}, "network"},
		{io.EOF, "unknown"},
	}
	for _, tt := range tests {
		if got := Class(tt.err); got != tt.want {
			t.Errorf("Class(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestRetryAfterHelper(t *testing.T) {
	if got := RetryAfter(fmt.Errorf("x: %w", &Error{StatusCode: 503, RetryAfter: 3 * time.Second})); got != 3*time.Second {
		t.Errorf("RetryAfter = %v", got)
	}
	if got := RetryAfter(io.EOF); got != 0 {
		t.Errorf("RetryAfter(non-*Error) = %v", got)
	}
	if got := RetryAfter(nil); got != 0 {
		t.Errorf("RetryAfter(nil) = %v", got)
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{ErrInvalidGrant, "oauth: invalid_grant"},
		{&Error{Code: "invalid_grant", StatusCode: 400, Description: "Token revoked", URI: "https://idp.example.com/e"},
			"oauth: invalid_grant (HTTP 400): Token revoked (see https://idp.example.com/e)"},
		{&Error{StatusCode: 503, RetryAfter: 2 * time.Second, Excerpt: "Service Unavailable"},
			`oauth: token endpoint answered HTTP 503; body: "Service Unavailable"; retry after 2s`},
		{&Error{StatusCode: 200, Err: fmt.Errorf("%w: no access_token", ErrMalformedResponse)},
			"oauth: token endpoint answered HTTP 200: malformed token response: no access_token"},
		{&Error{Err: fmt.Errorf("%w: TokenURL is empty", ErrInvalidConfig)},
			"oauth: token request failed: invalid config: TokenURL is empty"},
		{&Error{Err: fmt.Errorf("post token request: %w", io.ErrUnexpectedEOF)},
			"oauth: token request failed: post token request: unexpected EOF"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	var nilErr *Error
	if !strings.Contains(nilErr.Error(), "nil") {
		t.Error("nil *Error message")
	}
}
