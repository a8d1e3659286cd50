package oauthtest

import (
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Option configures a Server. Options are applied in order; a later option
// overrides an earlier one, except WithClient, which adds a client each time.
type Option func(*config)

// config is the Server's configuration, fixed at construction.
type config struct {
	lifetime        time.Duration // access token lifetime
	refreshLifetime time.Duration // refresh token lifetime; 0: never expires
	codeLifetime    time.Duration // authorization code lifetime
	rotation        bool
	revokePrevious  bool // a new access token revokes the grant's previous one
	reuseDetection  bool
	grace           time.Duration // grace period for reuse detection
	clients         []clientSpec  // in registration order
	basic, post     bool          // accepted client authentication styles
	latency         time.Duration
	now             func() time.Time
	logger          *slog.Logger
	flows           flowConfig   // consent, device grant, OIDC: flowoptions.go
	personality     *Personality // nil: RFC 6749 behaviour; personality.go
}

type clientSpec struct{ id, secret string }

func defaultConfig() config {
	return config{
		lifetime:     time.Hour,
		codeLifetime: time.Minute,
		basic:        true,
		post:         true,
		now:          time.Now,
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// validate reports the first invalid setting. The message names the option,
// never a secret.
func (c *config) validate() error {
	if err := c.flows.validate(); err != nil {
		return err
	}
	if c.personality != nil {
		if err := c.personality.validate(); err != nil {
			return err
		}
	}
	switch {
	case c.lifetime <= 0:
		return fmt.Errorf("WithLifetime: lifetime must be positive, got %v", c.lifetime)
	case c.refreshLifetime < 0:
		return fmt.Errorf("WithRefreshLifetime: lifetime must not be negative, got %v", c.refreshLifetime)
	case c.grace < 0:
		return fmt.Errorf("WithReuseDetection: grace must not be negative, got %v", c.grace)
	case c.latency < 0:
		return fmt.Errorf("WithLatency: latency must not be negative, got %v", c.latency)
	case c.now == nil:
		return fmt.Errorf("WithNow: clock must not be nil")
	case c.logger == nil:
		return fmt.Errorf("WithLogger: logger must not be nil")
	}
	for _, cl := range c.clients {
		if cl.id == "" {
			return fmt.Errorf("WithClient: client id must not be empty")
		}
	}
	return nil
}

// WithLifetime sets the access token lifetime; the default is one hour. It
// must be positive; sub-second lifetimes are kept precisely (see the package
// doc on how expires_in is rounded).
func WithLifetime(d time.Duration) Option { return func(c *config) { c.lifetime = d } }

// WithRefreshLifetime sets how long a refresh token stays valid after it is
// issued; the default, 0, means refresh tokens never expire. An expired
// refresh token gets invalid_grant but does not trigger reuse detection.
func WithRefreshLifetime(d time.Duration) Option {
	return func(c *config) { c.refreshLifetime = d }
}

// WithRotation makes every refresh issue a new refresh token and retire the
// one presented; the default is false (a refresh token stays valid and
// refresh responses carry no refresh_token).
func WithRotation(on bool) Option { return func(c *config) { c.rotation = on } }

// WithRevokePrevious makes every new access token revoke the previous
// access token of the same grant at once, as strict providers (Ory Hydra,
// for one) do when they refresh: the grant is the refresh token family for
// the refresh_token grant, and the client and scope for client_credentials.
// A revoked token gets 401 at the resource endpoint and is counted in
// Stats.AccessTokensRevokedByRefresh. The default is false: an access token
// stays valid until it expires.
func WithRevokePrevious(on bool) Option { return func(c *config) { c.revokePrevious = on } }

// WithReuseDetection enables reuse detection: presenting a retired (rotated)
// refresh token revokes its whole family and answers invalid_grant, unless
// the token was retired no more than grace ago, in which case the request
// succeeds and is counted in Stats.GraceReuses. A grace of 0 is strict.
// Reuse detection matters only together with WithRotation.
func WithReuseDetection(grace time.Duration) Option {
	return func(c *config) {
		c.reuseDetection = true
		c.grace = grace
	}
}

// WithClient registers a confidential client with its secret. It may be
// given many times; a repeated id replaces the earlier secret. A client
// registered with an empty secret is a public client: it authenticates with
// client_id alone (token_endpoint_auth_method "none") and must use PKCE.
// There is no client by default; see also Server.AddClient.
func WithClient(id, secret string) Option {
	return func(c *config) { c.clients = append(c.clients, clientSpec{id, secret}) }
}

// WithAuthStyles sets which client authentication styles the token and
// revocation endpoints accept: client_secret_basic (credentials in the
// Authorization header) and client_secret_post (in the form body). The
// default accepts both. A request using a style that is not accepted gets
// invalid_client; a request using both gets invalid_request.
func WithAuthStyles(basic, post bool) Option {
	return func(c *config) { c.basic, c.post = basic, post }
}

// WithLatency delays every token request by d before it is processed. The
// wait ends early, and the request is dropped unprocessed, if the client
// goes away or the server is closed.
func WithLatency(d time.Duration) Option { return func(c *config) { c.latency = d } }

// WithNow sets the clock used for every expiry decision; the default is
// time.Now. Latency still uses real time.
func WithNow(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithLogger sets the logger. The server logs one line per token request
// (grant type, client id, outcome and error code), and lines for
// authorization, revocation and reuse detection; never a token, code or
// secret. The default discards everything.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }
