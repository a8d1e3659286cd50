package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// BrokerConfig names a credential kept by a tokenkeeper broker and how to
// reach it. Named fields, so that the URL, the key and the name cannot be
// swapped unnoticed.
type BrokerConfig struct {
	// URL is the broker's base URL, e.g. "https://broker.example.com" or
	// "http://127.0.0.1:8080" (plain http only to loopback, unless
	// WithInsecureBroker).
	URL string
	// APIKey authenticates to the broker: a consumer key granted the
	// credential (or an admin key). A secret: never logged.
	APIKey string
	// Credential is the name of the credential whose token is served.
	Credential string
}

// Environment variables read by BrokerFromEnv: the same as the CLI's.
const (
	EnvServer = "TOKENKEEPER_SERVER"
	EnvAPIKey = "TOKENKEEPER_API_KEY"
	// DefaultBrokerURL is the broker BrokerFromEnv uses when $TOKENKEEPER_SERVER
	// is not set, as the CLI does.
	DefaultBrokerURL = "http://127.0.0.1:8080"
)

// BrokerFromEnv is NewBroker with the broker's URL from $TOKENKEEPER_SERVER
// (DefaultBrokerURL when unset) and the API key from $TOKENKEEPER_API_KEY,
// the variables the tokenkeeper CLI reads.
func BrokerFromEnv(credential string, opts ...Option) (*TokenSource, error) {
	server := os.Getenv(EnvServer)
	if server == "" {
		server = DefaultBrokerURL
	}
	key := os.Getenv(EnvAPIKey)
	if key == "" {
		return nil, errors.New("client: broker: $" + EnvAPIKey + " is not set")
	}
	return NewBroker(BrokerConfig{URL: server, APIKey: key, Credential: credential}, opts...)
}

// Broker is NewBroker(BrokerConfig{URL: brokerURL, APIKey: apiKey,
// Credential: credential}, opts...).
//
// Deprecated: three strings in a row are easy to swap; use NewBroker with a
// BrokerConfig, or BrokerFromEnv. Broker keeps working.
func Broker(brokerURL, apiKey, credential string, opts ...Option) (*TokenSource, error) {
	return NewBroker(BrokerConfig{URL: brokerURL, APIKey: apiKey, Credential: credential}, opts...)
}

// NewBroker returns a TokenSource that reads the access token of the
// credential cfg names, kept by a tokenkeeper broker.
//
// It asks GET {brokerURL}/v1/credentials/{credential}/token and refreshes
// ahead of the token's advertised expiry (expires_at, or now+expires_in if
// earlier: the broker advertises the moment it will replace the token, which
// a provider may revoke then) like any other source. It never asks for
// min_ttl: until the broker replaces its token a refresh ahead gets the same
// token back, and the first one after gets the new one; the broker answers
// a read in the token's last second once the new token is there (at most a
// few seconds later). Invalidate (and so the
// Transport's 401 path) sends POST {brokerURL}/v1/credentials/{credential}/refresh
// with the rejected token: the broker refreshes only if that token is still
// its current one, so many consumers reporting it cause one refresh.
//
// Failures are *BrokerError values. 401, 403 and 404 (a bad API key, or a
// credential that does not exist or was not granted to it) are permanent;
// 409 (the credential needs re-authorization or is failing; the broker
// serves no expired token), 429 and 5xx are temporary and retried with
// backoff.
func NewBroker(cfg BrokerConfig, opts ...Option) (*TokenSource, error) {
	brokerURL, apiKey, credential := cfg.URL, cfg.APIKey, cfg.Credential
	set := defaultSettings()
	if err := set.apply(opts); err != nil {
		return nil, err
	}
	u, err := url.Parse(brokerURL)
	switch {
	case brokerURL == "":
		return nil, errors.New("client: broker: empty broker URL")
	case err != nil:
		return nil, fmt.Errorf("client: broker: invalid broker URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("client: broker: broker URL must be http or https, got scheme %q", u.Scheme)
	case u.Host == "":
		return nil, errors.New("client: broker: broker URL has no host")
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()) && !set.insecureBroker: // insecure.go
		return nil, errors.New("client: broker: plain http to a broker that is not on loopback sends the API key and tokens unencrypted: use https, or WithInsecureBroker for a test setup")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, errors.New("client: broker: broker URL must not have a query, fragment or user info")
	case apiKey == "":
		return nil, errors.New("client: broker: empty API key")
	case strings.ContainsFunc(apiKey, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return nil, errors.New("client: broker: API key contains spaces or control characters")
	case credential == "":
		return nil, errors.New("client: broker: empty credential name")
	}
	base := strings.TrimSuffix(u.String(), "/") + "/v1/credentials/" + url.PathEscape(credential)
	hc := set.httpClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	b := &brokerClient{
		tokenURL:   base + "/token",
		refreshURL: base + "/refresh",
		apiKey:     apiKey,
		hc:         hc,
		now:        set.clock.Now,
	}
	set.logger = set.logger.With("credential", credential)
	return newSource("broker", b.fetch, nil, set), nil
}

// brokerClient speaks the broker's token API for one credential.
type brokerClient struct {
	tokenURL   string
	refreshURL string
	apiKey     string // secret
	hc         *http.Client
	now        func() time.Time
}

// maxBrokerBody bounds what is read of a broker response.
const maxBrokerBody = 1 << 20

func (b *brokerClient) fetch(ctx context.Context, req fetchRequest) (*oauth2.Token, error) {
	var (
		r   *http.Request
		err error
	)
	if req.rejected != "" {
		body, _ := json.Marshal(struct {
			RejectedToken string `json:"rejected_token"`
		}{req.rejected})
		r, err = http.NewRequestWithContext(ctx, http.MethodPost, b.refreshURL, bytes.NewReader(body))
		if err == nil {
			r.Header.Set("Content-Type", "application/json")
		}
	} else {
		// No min_ttl, even when refreshing ahead: the broker advertises the
		// moment it replaces its token and hands out the new one from then
		// on; asking for more life would make it replace the token at once,
		// before the expiry it advertised to every other consumer.
		r, err = http.NewRequestWithContext(ctx, http.MethodGet, b.tokenURL, nil)
	}
	if err != nil {
		return nil, &BrokerError{Err: fmt.Errorf("build request: %w", err)}
	}
	r.Header.Set("Authorization", "Bearer "+b.apiKey)
	r.Header.Set("Accept", "application/json")
	resp, err := b.hc.Do(r)
	if err != nil {
		return nil, &BrokerError{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBrokerBody+1))
	if err != nil {
		return nil, &BrokerError{StatusCode: resp.StatusCode, Err: fmt.Errorf("read response: %w", err)}
	}
	if len(body) > maxBrokerBody {
		return nil, &BrokerError{StatusCode: resp.StatusCode, Err: fmt.Errorf("response larger than %d bytes", maxBrokerBody)}
	}
	now := b.now()
	if resp.StatusCode != http.StatusOK {
		return nil, parseBrokerError(resp.StatusCode, resp.Header, body, now)
	}
	t, err := parseBrokerToken(body, now)
	if err != nil {
		return nil, &BrokerError{StatusCode: resp.StatusCode, Err: err}
	}
	return t, nil
}

// brokerToken is the JSON body of a broker's token response.
type brokerToken struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresAt   string          `json:"expires_at"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
}

// parseBrokerToken parses a 200 answer of the broker's token or refresh
// endpoint. The expiry is the broker's advertised one: the earlier of
// expires_at and now+expires_in when both are present (so that a clock
// ahead of the broker's does not keep the token past the moment the broker
// replaces it), else whichever is present, else zero (the source applies
// its default lifetime). Errors never quote the body.
func parseBrokerToken(body []byte, now time.Time) (*oauth2.Token, error) {
	var bt brokerToken
	if err := json.Unmarshal(body, &bt); err != nil {
		return nil, errors.New("malformed token response: not a JSON object with the expected members")
	}
	if bt.AccessToken == "" {
		return nil, errors.New("malformed token response: no access_token")
	}
	t := &oauth2.Token{AccessToken: bt.AccessToken, TokenType: bt.TokenType}
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	var expiresIn int64
	if len(bt.ExpiresIn) > 0 && string(bt.ExpiresIn) != "null" {
		f, err := strconv.ParseFloat(strings.Trim(string(bt.ExpiresIn), `"`), 64)
		if err != nil || f < 0 || f > 1e12 {
			return nil, errors.New("malformed token response: invalid expires_in")
		}
		expiresIn = int64(f)
	}
	if bt.ExpiresAt != "" {
		at, err := time.Parse(time.RFC3339Nano, bt.ExpiresAt)
		if err != nil {
			return nil, errors.New("malformed token response: expires_at is not RFC 3339")
		}
		t.Expiry = at
	}
	if expiresIn > 0 {
		if in := now.Add(time.Duration(expiresIn) * time.Second); t.Expiry.IsZero() || in.Before(t.Expiry) {
			t.Expiry = in
		}
	}
	t.ExpiresIn = expiresIn
	return t, nil
}

// BrokerError is a failure reported by a tokenkeeper broker, or of the
// request to it. Its message never contains the API key or a token.
type BrokerError struct {
	// StatusCode is the HTTP status; 0 if no response was received.
	StatusCode int
	// Type, Title and Detail come from the RFC 9457 problem document.
	Type   string
	Title  string
	Detail string
	// CredentialStatus and LastErrorCode come with a 409: the credential's
	// status ("needs_reauth", "error") and the error of its last refresh
	// (an OAuth code such as "invalid_grant", or a class like "http_503").
	CredentialStatus string
	LastErrorCode    string
	// RetryAfter is the delay asked for with Retry-After; 0 if none.
	RetryAfter time.Duration
	// Err is the underlying error (network, timeout, malformed response).
	Err error
}

// Error describes the failure.
func (e *BrokerError) Error() string {
	var b strings.Builder
	b.WriteString("broker")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	}
	if e.Title != "" {
		b.WriteString(": " + e.Title)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.CredentialStatus != "" {
		fmt.Fprintf(&b, " (credential status %s", e.CredentialStatus)
		if e.LastErrorCode != "" {
			fmt.Fprintf(&b, ", last error %s", e.LastErrorCode)
		}
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Err.
func (e *BrokerError) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot help: the broker refused the API
// key (401), the key may not read the credential (403), the credential does
// not exist or is not visible (404), or another 4xx except 408, 409, 425
// and 429.
func (e *BrokerError) Permanent() bool {
	switch s := e.StatusCode; {
	case s == http.StatusRequestTimeout, s == http.StatusConflict, s == http.StatusTooEarly, s == http.StatusTooManyRequests:
		return false
	case s >= 400 && s < 500:
		return true
	}
	return false
}

// class returns a short class for logs.
func (e *BrokerError) class() string {
	switch {
	case e.StatusCode == http.StatusConflict && e.CredentialStatus != "":
		return "broker_" + e.CredentialStatus
	case e.StatusCode != 0 && e.StatusCode != http.StatusOK:
		return "broker_http_" + strconv.Itoa(e.StatusCode)
	case errors.Is(e.Err, context.Canceled):
		return "canceled"
	case errors.Is(e.Err, context.DeadlineExceeded):
		return "timeout"
	case e.StatusCode == http.StatusOK:
		return "broker_malformed_response"
	}
	return "broker_network"
}

// problem is an RFC 9457 problem document with the broker's extensions.
type problem struct {
	Type             string `json:"type"`
	Title            string `json:"title"`
	Status           int    `json:"status"`
	Detail           string `json:"detail"`
	CredentialStatus string `json:"credential_status"`
	LastErrorCode    string `json:"last_error_code"`
}

// maxDetail bounds the length of the texts a BrokerError takes from a body.
const maxDetail = 200

// parseBrokerError builds the error for a non-200 broker answer.
func parseBrokerError(status int, h http.Header, body []byte, now time.Time) *BrokerError {
	e := &BrokerError{StatusCode: status, RetryAfter: parseRetryAfter(h.Get("Retry-After"), now)}
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	var p problem
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(body, &p) == nil {
		e.Type = clip(p.Type)
		e.Title = clip(p.Title)
		e.Detail = clip(p.Detail)
		e.CredentialStatus = clip(p.CredentialStatus)
		e.LastErrorCode = clip(p.LastErrorCode)
	}
	if e.Title == "" {
		e.Title = http.StatusText(status)
	}
	return e
}

// clip shortens s to maxDetail bytes and drops control characters.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > maxDetail {
		s = strings.ToValidUTF8(s[:maxDetail], "") + "…"
	}
	return s
}

// parseRetryAfter parses a Retry-After value: delay seconds or an HTTP date.
// It returns 0 for an absent, invalid or past value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}
