package oauthtest

import (
	"fmt"
	"net/mail"
	"time"
)

// flowConfig configures the end-user flows: the consent page, the device
// authorization grant, OpenID Connect and offline access. Its zero value is
// the default (auto-approval, no OIDC, refresh tokens always issued).
type flowConfig struct {
	consent        bool
	oidc           bool
	offlineOnly    bool          // refresh tokens only with the offline_access scope
	deviceLifetime time.Duration // 0: defaultDeviceLifetime
	deviceInterval time.Duration // used when intervalSet
	intervalSet    bool
	user           EndUser // zero: defaultEndUser
}

// Defaults of the flow options.
const (
	defaultDeviceLifetime = 10 * time.Minute
	defaultDeviceInterval = 5 * time.Second
	// consentLifetime is how long a consent page stays answerable.
	consentLifetime = 10 * time.Minute
)

// defaultEndUser is the end user who approves requests unless WithEndUser
// says otherwise.
var defaultEndUser = EndUser{Subject: "user-1", Email: "user@example.com"}

// EndUser is the person who approves an authorization request: Subject
// becomes the ID token's sub claim and Email its email claim.
type EndUser struct {
	Subject string
	Email   string
}

func (f *flowConfig) validate() error {
	switch {
	case f.deviceLifetime < 0:
		return fmt.Errorf("WithDeviceCodeLifetime: lifetime must not be negative, got %v", f.deviceLifetime)
	case f.deviceInterval < 0:
		return fmt.Errorf("WithDeviceInterval: interval must not be negative, got %v", f.deviceInterval)
	case f.user != (EndUser{}) && f.user.Subject == "":
		return fmt.Errorf("WithEndUser: subject must not be empty")
	case f.user != (EndUser{}) && !validEmail(f.user.Email):
		return fmt.Errorf("WithEndUser: %q is not an email address", printable(f.user.Email, 80))
	}
	return nil
}

// lifetime returns the device code lifetime.
func (f *flowConfig) lifetime() time.Duration {
	if f.deviceLifetime == 0 {
		return defaultDeviceLifetime
	}
	return f.deviceLifetime
}

// interval returns the minimum polling interval of the device grant.
func (f *flowConfig) interval() time.Duration {
	if !f.intervalSet {
		return defaultDeviceInterval
	}
	return f.deviceInterval
}

// endUser returns the default end user.
func (f *flowConfig) endUser() EndUser {
	if f.user == (EndUser{}) {
		return defaultEndUser
	}
	return f.user
}

// validEmail reports whether s is a bare email address (no display name).
func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 254
}

// WithConsent makes GET /authorize show a consent page, an HTML form naming
// the client and the requested scopes with Approve and Deny buttons,
// instead of approving at once (the default). The form is answered by
// POST /authorize, once: it carries a token bound to the pending request
// and to a cookie of the browser that asked, so it can neither be forged
// from another site nor replayed. Approve redirects with a code, Deny with
// error=access_denied; both with state and iss. The device verification
// page (GET /device) shows the same consent page after the user code is
// entered; without WithConsent, entering the code approves at once.
func WithConsent(on bool) Option { return func(c *config) { c.flows.consent = on } }

// WithDeviceCodeLifetime sets how long a device code (and its user code)
// of the device authorization grant (RFC 8628) stays valid; the default is
// 10 minutes. It must not be negative; 0 restores the default. expires_in
// reports it in whole seconds, rounded up.
func WithDeviceCodeLifetime(d time.Duration) Option {
	return func(c *config) { c.flows.deviceLifetime = d }
}

// WithDeviceInterval sets the minimum time between two token requests for
// the same device code; the default is 5 seconds, and 0 disables the check.
// A request that comes sooner gets slow_down, and the interval of that
// device code grows by 5 seconds (RFC 8628 §3.5). The device authorization
// response reports the interval in whole seconds, rounded up, while the
// server enforces it precisely by the clock of WithNow.
func WithDeviceInterval(d time.Duration) Option {
	return func(c *config) { c.flows.deviceInterval, c.flows.intervalSet = d, true }
}

// WithOIDC enables OpenID Connect: a token response to an
// authorization_code or device_code grant whose scope contains openid
// carries an id_token, a JWT signed with RS256 by a key generated for this
// server, with the claims iss, sub, aud (the client id), exp, iat,
// auth_time, at_hash, email, email_verified and, when the authorization
// request had one, nonce. GET /.well-known/openid-configuration and
// GET /jwks serve discovery and the public key. Without it (the default)
// those two paths answer 404 and no id_token is issued.
func WithOIDC(on bool) Option { return func(c *config) { c.flows.oidc = on } }

// WithOfflineAccessRequired makes the authorization_code and device_code
// grants issue a refresh token only when the granted scope contains
// offline_access, as many OpenID Connect providers do; the default issues
// one always. IssueRefreshToken is not affected.
func WithOfflineAccessRequired(on bool) Option {
	return func(c *config) { c.flows.offlineOnly = on }
}

// WithEndUser sets the end user who approves authorization requests: the
// one used by auto-approval, and the one the consent page proposes. The
// default is sub "user-1", email "user@example.com". On the consent page
// the user may type another email address; the subject is then
// SubjectFor(email). It panics at construction if sub is empty or email is
// not a bare email address.
func WithEndUser(sub, email string) Option {
	return func(c *config) { c.flows.user = EndUser{Subject: sub, Email: email} }
}
