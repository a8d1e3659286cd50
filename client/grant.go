package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// AuthStyle is how the client authenticates to the token endpoint. It must
// be set explicitly: a TokenSource never probes, so one refresh is one
// request and a refresh token is never presented twice.
type AuthStyle int

// Client authentication styles (RFC 6749 §2.3.1). The zero value is invalid.
const (
	// AuthStyleHeader sends the client id and secret in an HTTP Basic
	// Authorization header (client_secret_basic).
	AuthStyleHeader AuthStyle = iota + 1
	// AuthStyleBody sends them as client_id and client_secret form
	// parameters (client_secret_post).
	AuthStyleBody
)

// String returns "header", "body" or "invalid".
func (a AuthStyle) String() string {
	switch a {
	case AuthStyleHeader:
		return "header"
	case AuthStyleBody:
		return "body"
	}
	return "invalid"
}

// Config describes an OAuth2 client and its provider's token endpoint.
type Config struct {
	// TokenURL is the provider's token endpoint. Required.
	TokenURL string
	// ClientID is the client identifier. Required.
	ClientID string
	// ClientSecret is the client secret; empty for a public client.
	ClientSecret string
	// AuthStyle is how the client authenticates. Required.
	AuthStyle AuthStyle
	// Scopes are requested with every grant (space-separated "scope").
	Scopes []string
	// Params are extra parameters sent with every grant, such as audience
	// or resource.
	Params url.Values
	// HTTPClient sends the requests; nil means a client with a 30 s
	// timeout. WithHTTPClient overrides it.
	HTTPClient *http.Client
	// InsecureHTTP allows a plain-http TokenURL to a host that is not
	// loopback, which sends the client secret and tokens unencrypted. Off,
	// such a TokenURL is refused, as the broker refuses it; loopback
	// (localhost, 127.0.0.0/8, ::1) is always allowed.
	InsecureHTTP bool
}

// checkPlainHTTP refuses an http TokenURL off loopback unless insecure.
func checkPlainHTTP(tokenURL string, insecure bool) error {
	u, err := url.Parse(tokenURL)
	if err != nil || !strings.EqualFold(u.Scheme, "http") || insecure || isLoopbackHost(u.Hostname()) {
		return nil // other problems are reported by the validation that follows
	}
	return errors.New("TokenURL uses plain http to a host that is not loopback: use https, or set Config.InsecureHTTP for a test setup")
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// oauthConfig validates c and converts it for internal/oauth.
func (c Config) oauthConfig(set *settings) (*oauth.Config, error) {
	var style oauth.AuthStyle
	switch c.AuthStyle {
	case AuthStyleHeader:
		style = oauth.AuthStyleHeader
	case AuthStyleBody:
		style = oauth.AuthStyleBody
	default:
		return nil, fmt.Errorf("invalid AuthStyle %d: set AuthStyleHeader or AuthStyleBody", int(c.AuthStyle))
	}
	if err := checkPlainHTTP(c.TokenURL, c.InsecureHTTP); err != nil {
		return nil, err
	}
	hc := c.HTTPClient
	if set.httpClientSet {
		hc = set.httpClient
	}
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	oc := &oauth.Config{
		TokenURL:        c.TokenURL,
		ClientID:        c.ClientID,
		ClientSecret:    c.ClientSecret,
		AuthStyle:       style,
		Scopes:          append([]string(nil), c.Scopes...),
		Params:          cloneValues(c.Params),
		HTTPClient:      hc,
		DefaultLifetime: set.lifetime,
		Now:             set.clock.Now,
	}
	if err := oc.Validate(); err != nil {
		return nil, err
	}
	return oc, nil
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// ClientCredentials returns a TokenSource for the client_credentials grant
// (RFC 6749 §4.4). It sends no request until a token is first needed; a
// valid token found in the store is used first.
func ClientCredentials(cfg Config, opts ...Option) (*TokenSource, error) {
	set := defaultSettings()
	if err := set.apply(opts); err != nil {
		return nil, err
	}
	oc, err := cfg.oauthConfig(&set)
	if err != nil {
		return nil, fmt.Errorf("client: client credentials: %w", err)
	}
	fetch := func(ctx context.Context, _ fetchRequest) (*oauth2.Token, error) {
		t, err := oc.ClientCredentials(ctx)
		if err != nil {
			return nil, err
		}
		return fromOAuth(t), nil
	}
	return newSource("client_credentials", fetch, nil, set), nil
}

// RefreshToken returns a TokenSource for the refresh_token grant (RFC 6749
// §6), starting from refreshToken. A token already in the store wins over
// refreshToken, since it may hold a newer, rotated refresh token: pass the
// refresh token you were issued, and the store keeps track of its
// successors. refreshToken may be empty only if a store is given.
//
// Each refresh is exactly one request presenting the current refresh token;
// a rotated refresh token is saved to the store before the new access token
// is handed to anyone, and a response without refresh_token keeps the
// current one.
func RefreshToken(cfg Config, refreshToken string, opts ...Option) (*TokenSource, error) {
	set := defaultSettings()
	if err := set.apply(opts); err != nil {
		return nil, err
	}
	if refreshToken == "" && !set.storeSet {
		return nil, errors.New("client: refresh token: empty refresh token and no store to load one from")
	}
	oc, err := cfg.oauthConfig(&set)
	if err != nil {
		return nil, fmt.Errorf("client: refresh token: %w", err)
	}
	fetch := func(ctx context.Context, req fetchRequest) (*oauth2.Token, error) {
		if req.prev == nil || req.prev.RefreshToken == "" {
			return nil, errNoRefreshToken
		}
		t, err := oc.Refresh(ctx, req.prev.RefreshToken)
		if err != nil {
			return nil, err
		}
		return fromOAuth(t), nil
	}
	var seed *oauth2.Token
	if refreshToken != "" {
		seed = &oauth2.Token{RefreshToken: refreshToken}
	}
	return newSource("refresh_token", fetch, seed, set), nil
}

// errNoRefreshToken is a permanent failure: nothing to refresh with.
var errNoRefreshToken = &oauth.Error{Code: "invalid_grant", Description: "no refresh token: none given and none in the store"}

// Wrap returns a TokenSource that gets its tokens from src, adding what
// src lacks: refresh ahead in the background, one call of src for any number
// of waiting callers, persistence, the save hooks, Invalidate and Close. A
// token with a zero Expiry gets the default lifetime.
//
// src.Token takes no context, so a call in progress cannot be canceled:
// Close waits for it to return. An *oauth2.RetrieveError from src becomes
// an *Error with its code, so invalid_grant stops the source as well. If src caches tokens itself (as the sources
// of golang.org/x/oauth2 do, until 10 s before expiry), refresh ahead and
// Invalidate get the cached token back until src decides to renew it;
// prefer a source that fetches on every call.
func Wrap(src oauth2.TokenSource, opts ...Option) (*TokenSource, error) {
	if src == nil {
		return nil, errors.New("client: wrap: nil token source")
	}
	set := defaultSettings()
	if err := set.apply(opts); err != nil {
		return nil, err
	}
	fetch := func(context.Context, fetchRequest) (*oauth2.Token, error) {
		t, err := src.Token()
		if err != nil {
			return nil, wrapSourceError(err)
		}
		return t, nil
	}
	return newSource("wrap", fetch, nil, set), nil
}

// wrapSourceError converts an *oauth2.RetrieveError into an *Error, so that
// a wrapped source's invalid_grant is permanent as well.
func wrapSourceError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("wrapped token source: %w", err)
	}
	// x/oauth2 copies the provider's words unfiltered: sanitize them like
	// the descriptions internal/oauth parses, so no secret reaches an error.
	e := &oauth.Error{Code: oauth.SanitizeDescription(re.ErrorCode), Description: oauth.SanitizeDescription(re.ErrorDescription)}
	if re.Response != nil {
		e.StatusCode = re.Response.StatusCode
	}
	return fmt.Errorf("wrapped token source: %w", e)
}

// fromOAuth converts a token from internal/oauth.
func fromOAuth(t *oauth.Token) *oauth2.Token {
	ot := &oauth2.Token{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		Expiry:       t.Expiry,
		ExpiresIn:    int64(t.ExpiresIn / time.Second),
	}
	if t.Raw != nil {
		ot = ot.WithExtra(t.Raw)
	}
	return ot
}
