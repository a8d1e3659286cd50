package tokenkeeper

import (
	"net/textproto"
	"net/url"
	"strings"
)

// APIToken says how the broker's proxy presents an access token to a
// provider's API: in a header (Header, with Scheme and a space before the
// token, or the bare token when Scheme is empty), or in the query
// parameter Query. The zero value means the default, Authorization:
// Bearer; stores keep it normalized (see Normalized).
type APIToken struct {
	Header string `json:"header,omitempty"`
	Scheme string `json:"scheme,omitempty"`
	Query  string `json:"query,omitempty"`
}

// DefaultAPIToken is how a token is presented unless a provider says
// otherwise: Authorization: Bearer TOKEN (RFC 6750).
var DefaultAPIToken = APIToken{Header: "Authorization", Scheme: "Bearer"}

// Normalized returns t, or DefaultAPIToken for the zero value.
func (t APIToken) Normalized() APIToken {
	if t == (APIToken{}) {
		return DefaultAPIToken
	}
	return t
}

// String is the form ParseAPIToken reads: "Authorization: Bearer",
// "X-Api-Key:" (a bare token in a header) or "?access_token".
func (t APIToken) String() string {
	t = t.Normalized()
	if t.Query != "" {
		return "?" + t.Query
	}
	if t.Scheme == "" {
		return t.Header + ":"
	}
	return t.Header + ": " + t.Scheme
}

// ParseAPIToken reads the String form of an APIToken: "HEADER: SCHEME",
// "HEADER:" or "?PARAM". Returns EINVALID.
func ParseAPIToken(s string) (APIToken, error) {
	s = strings.TrimSpace(s)
	var t APIToken
	switch {
	case strings.HasPrefix(s, "?"):
		t.Query = s[1:]
	case strings.Contains(s, ":"):
		h, scheme, _ := strings.Cut(s, ":")
		t.Header, t.Scheme = strings.TrimSpace(h), strings.TrimSpace(scheme)
	default:
		return APIToken{}, Errorf(EINVALID, "api token %q: give \"HEADER: SCHEME\" (Authorization: Bearer), \"HEADER:\" for a bare token, or \"?PARAM\" for a query parameter", truncate(s, 80))
	}
	if t == (APIToken{}) {
		return APIToken{}, Errorf(EINVALID, "api token: a header name or a query parameter is required")
	}
	return t, t.Validate()
}

// forbiddenAPIHeaders may not carry a token: the transport or the proxy
// sets them, or they are hop-by-hop.
var forbiddenAPIHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Authorization": true, "Proxy-Connection": true, "Te": true, "Trailer": true, "Upgrade": true,
	"Content-Type": true, "Content-Encoding": true, "Cookie": true,
}

// Validate checks t: one of a header (a valid field name that is not
// hop-by-hop or framing, with an optional token68-like scheme) and a query
// parameter. The zero value is valid. Returns EINVALID.
func (t APIToken) Validate() error {
	if t == (APIToken{}) {
		return nil
	}
	switch {
	case t.Query != "" && (t.Header != "" || t.Scheme != ""):
		return Errorf(EINVALID, "api token: give a header or a query parameter, not both")
	case t.Query != "":
		if len(t.Query) > 64 || url.QueryEscape(t.Query) != t.Query {
			return Errorf(EINVALID, "api token query parameter %q must be at most 64 letters, digits or -._~", truncate(t.Query, 80))
		}
		return nil
	case t.Header == "":
		return Errorf(EINVALID, "api token: a scheme needs a header name")
	}
	if len(t.Header) > 64 || !isToken(t.Header) {
		return Errorf(EINVALID, "api token header %q is not a valid header name", truncate(t.Header, 80))
	}
	if forbiddenAPIHeaders[textproto.CanonicalMIMEHeaderKey(t.Header)] {
		return Errorf(EINVALID, "api token header %q cannot carry a token", t.Header)
	}
	if t.Scheme != "" && (len(t.Scheme) > 32 || !isToken(t.Scheme)) {
		return Errorf(EINVALID, "api token scheme %q is not a valid authentication scheme", truncate(t.Scheme, 80))
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// ValidateAPIBaseURL reports whether u may be a provider's API base URL:
// an absolute https URL (or http to a loopback address) without user
// information, query or fragment. Returns EINVALID.
func ValidateAPIBaseURL(u string) error {
	if err := ValidateEndpoint("api_base_url", u); err != nil {
		return err
	}
	p, _ := url.Parse(u)
	if p.RawQuery != "" || p.Fragment != "" || strings.HasSuffix(u, "?") || strings.Contains(u, "#") {
		return Errorf(EINVALID, "api_base_url must not have a query or a fragment")
	}
	return nil
}
