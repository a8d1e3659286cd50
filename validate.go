package tokenkeeper

import (
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateName reports whether name is a valid credential, key or client
// name: 1 to 64 characters of letters, digits, '.', '_' and '-', starting
// with a letter or digit. Returns EINVALID.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return Errorf(EINVALID, "invalid name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", truncate(name, 80))
	}
	return nil
}

// ValidateTokenURL reports whether u may be used as a token endpoint: an
// absolute https URL, or http to a loopback address. Returns EINVALID.
func ValidateTokenURL(u string) error {
	if u == "" {
		return Errorf(EINVALID, "token_url is required")
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.Opaque != "" {
		return Errorf(EINVALID, "token_url %q is not an absolute URL", truncate(u, 200))
	}
	if p.User != nil {
		return Errorf(EINVALID, "token_url must not carry user information")
	}
	switch p.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(p.Hostname()) {
			return nil
		}
		return Errorf(EINVALID, "token_url must use https (http is allowed only to a loopback address)")
	default:
		return Errorf(EINVALID, "token_url must use https (http is allowed only to a loopback address)")
	}
}

// IsLoopbackHost reports whether host is "localhost" or a loopback IP.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// reservedParams are set by the grant itself and may not be overridden.
var reservedParams = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true,
	"refresh_token": true, "scope": true, "code": true, "code_verifier": true,
	"redirect_uri": true,
}

// Validate checks the configuration fields of c (not its token state) and
// returns EINVALID describing the first problem found. Secrets are never
// quoted in the message.
func (c *Credential) Validate() error {
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if err := ValidateTokenURL(c.TokenURL); err != nil {
		return err
	}
	switch c.GrantType {
	case GrantClientCredentials:
		if c.ClientSecret == "" {
			return Errorf(EINVALID, "client_secret is required for grant_type client_credentials")
		}
	case GrantRefreshToken:
		if c.RefreshToken == "" {
			return Errorf(EINVALID, "refresh_token is required for grant_type refresh_token")
		}
	default:
		return Errorf(EINVALID, "grant_type must be client_credentials or refresh_token")
	}
	if c.ClientID == "" {
		return Errorf(EINVALID, "client_id is required")
	}
	if len(c.ClientID) > 512 || len(c.ClientSecret) > 4096 || len(c.RefreshToken) > 16384 {
		return Errorf(EINVALID, "client_id, client_secret or refresh_token is too long")
	}
	switch c.AuthStyle {
	case AuthStyleHeader, AuthStyleBody:
	default:
		return Errorf(EINVALID, "auth_style must be header (client_secret_basic) or body (client_secret_post)")
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return Errorf(EINVALID, "invalid scope %q", truncate(s, 80))
		}
	}
	for k, v := range c.Params {
		if k == "" || reservedParams[k] {
			return Errorf(EINVALID, "params may not set %q", truncate(k, 80))
		}
		if v == SealedParamValue && IsSecretParam(k) {
			return Errorf(EINVALID, "params: %q has no stored value to keep: give the value itself", truncate(k, 80))
		}
	}
	for _, f := range []struct{ name, v string }{{"end_user_id", c.EndUserID}, {"end_user_name", c.EndUserName}, {"end_user_email", c.EndUserEmail}} {
		if len(f.v) > 256 || strings.ContainsFunc(f.v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return Errorf(EINVALID, "%s must be at most 256 characters without control characters", f.name)
		}
	}
	if len(c.Extras) > MaxExtras {
		return Errorf(EINVALID, "at most %d extra fields", MaxExtras)
	}
	for k, v := range c.Extras {
		if err := ValidateExtra(k, v); err != nil {
			return err
		}
	}
	if c.RefreshLead < 0 || c.RefreshLead > 24*time.Hour {
		return Errorf(EINVALID, "refresh_lead must be between 0 and 24h")
	}
	if c.Status != "" && !c.Status.Valid() {
		return Errorf(EINVALID, "invalid status %q", truncate(string(c.Status), 40))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
