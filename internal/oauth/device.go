package oauth

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"
)

// DeviceGrantType is the grant_type of the device access token request
// (RFC 8628 §3.4).
const DeviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// DefaultDeviceInterval is the polling interval when the device
// authorization response names none (RFC 8628 §3.2).
const DefaultDeviceInterval = 5 * time.Second

// DeviceAuth is a device authorization response (RFC 8628 §3.2).
// DeviceCode is a secret: String, GoString and LogValue leave it out.
type DeviceAuth struct {
	DeviceCode              string
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string // "" when the provider sent none
	// Expiry is when the device code expires: the request's start plus
	// expires_in.
	Expiry time.Time
	// Interval is the minimum wait between token requests.
	Interval time.Duration
}

// String describes d without its device code.
func (d DeviceAuth) String() string {
	return fmt.Sprintf("oauth.DeviceAuth{UserCode: %q, VerificationURI: %q, Expiry: %s, Interval: %s}",
		d.UserCode, d.VerificationURI, d.Expiry.Format(time.RFC3339), d.Interval)
}

// GoString is String.
func (d DeviceAuth) GoString() string { return d.String() }

// LogValue describes d for log/slog without its device code.
func (d DeviceAuth) LogValue() slog.Value {
	return slog.GroupValue(slog.String("verification_uri", d.VerificationURI),
		slog.Time("expiry", d.Expiry), slog.Duration("interval", d.Interval))
}

// DeviceAuthorization sends the device authorization request (RFC 8628
// §3.1) to endpoint: the client identification of c.AuthStyle and the
// scope of c.Scopes (not c.Params, which belong to token requests). It
// sends one POST; every failure is an *Error.
func (c *Config) DeviceAuthorization(ctx context.Context, endpoint string) (*DeviceAuth, error) {
	if err := c.Validate(); err != nil {
		return nil, &Error{Err: err}
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, invalidArg("device authorization endpoint must be an absolute http or https URL")
	}
	if ctx == nil {
		return nil, invalidArg("context is nil")
	}
	cc := *c
	cc.Params = nil
	v := url.Values{}
	cc.addScope(v)
	res, err := cc.send(ctx, endpoint, v, "device authorization")
	if err != nil {
		return nil, err
	}
	if !is2xx(res.status) {
		// A non-2xx answer is always an error; parse it as a token error.
		_, err := parseTokenResponse(res.status, res.header, res.body, res.start, time.Minute, res.secrets, parseOptions{})
		return nil, err
	}
	m, _, derr := decodeBody(res.body)
	if derr != nil || m == nil {
		return nil, &Error{StatusCode: res.status, Err: fmt.Errorf("device authorization response: not a JSON or form object")}
	}
	if isErrorValue(m["error"]) {
		return nil, oauthError(m, m["error"], append(res.secrets, memberSecrets(m)...))
	}
	d := &DeviceAuth{
		DeviceCode:              stringOf(m["device_code"]),
		UserCode:                stringOf(m["user_code"]),
		VerificationURI:         stringOf(m["verification_uri"]),
		VerificationURIComplete: stringOf(m["verification_uri_complete"]),
		Interval:                DefaultDeviceInterval,
	}
	if d.VerificationURI == "" {
		d.VerificationURI = stringOf(m["verification_url"]) // an older draft's spelling, still sent by some
	}
	if d.DeviceCode == "" || d.UserCode == "" || d.VerificationURI == "" {
		return nil, &Error{StatusCode: res.status, Err: fmt.Errorf("device authorization response lacks device_code, user_code or verification_uri")}
	}
	exp, ok := parseExpiresIn(m["expires_in"])
	if !ok {
		return nil, &Error{StatusCode: res.status, Err: fmt.Errorf("device authorization response lacks a usable expires_in")}
	}
	d.Expiry = res.start.Add(exp)
	if iv, ok := parseExpiresIn(m["interval"]); ok {
		d.Interval = iv
	}
	return d, nil
}

// DeviceToken sends one device access token request (RFC 8628 §3.4) for
// deviceCode. While the user has not answered, the *Error's Code is
// authorization_pending or slow_down (RFC 8628 §3.5); expired_token and
// access_denied end the flow.
func (c *Config) DeviceToken(ctx context.Context, deviceCode string) (*Token, error) {
	if deviceCode == "" {
		return nil, invalidArg("device code is empty")
	}
	return c.Grant(ctx, url.Values{"grant_type": {DeviceGrantType}, "device_code": {deviceCode}})
}
