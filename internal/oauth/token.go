package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Token is a successful token response (RFC 6749 §5.1).
//
// AccessToken and RefreshToken are secrets: String, GoString and LogValue
// leave them out.
type Token struct {
	// AccessToken is the access token; never empty.
	AccessToken string
	// TokenType is the token_type, "Bearer" if missing ("bearer" in any case
	// is normalized to "Bearer").
	TokenType string
	// RefreshToken is the refresh token, or "" when the response had none
	// (the caller keeps the one it has).
	RefreshToken string
	// Scope is the granted scope, space-separated; "" if the response had
	// none (the requested scope was granted).
	Scope string
	// Expiry is when the token expires: Now()+ExpiresIn, or
	// Now()+DefaultLifetime when expires_in was missing or unusable. Never
	// zero.
	Expiry time.Time
	// ExpiresIn is the expires_in of the response, capped at MaxExpiresIn; 0
	// if it was missing, not a number, or not positive.
	ExpiresIn time.Duration
	// Raw holds the decoded response members, for extras such as id_token.
	// JSON numbers are float64 (json.Number when out of float64 range);
	// members of a form-encoded body are strings.
	Raw map[string]any
}

// Keep returns the members of the response at the given dotted paths
// whose values are strings, numbers or booleans, as strings: the fields a
// provider profile keeps with a grant (instance_url, team.id). Paths that
// lead nowhere, to an object or a list, or to a value longer than 512
// bytes or holding control characters, are left out; nil when none is
// found.
func (t *Token) Keep(paths []string) map[string]string {
	var out map[string]string
	for _, p := range paths {
		v, ok := lookupPath(t.Raw, p)
		if !ok {
			continue
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case float64:
			s = strconv.FormatFloat(v, 'f', -1, 64)
		case json.Number:
			s = v.String()
		case bool:
			s = strconv.FormatBool(v)
		default:
			continue
		}
		if s == "" || len(s) > 512 || hasControl(s) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[p] = s
	}
	return out
}

// String describes t without its access and refresh tokens.
func (t Token) String() string {
	return fmt.Sprintf("oauth.Token{TokenType: %q, Expiry: %s, Scope: %q, AccessToken: %s, RefreshToken: %s}",
		t.TokenType, t.Expiry.Format(time.RFC3339), t.Scope, redacted(t.AccessToken), redacted(t.RefreshToken))
}

// GoString describes t for %#v without its access and refresh tokens.
func (t Token) GoString() string { return t.String() }

// LogValue describes t for log/slog without its access and refresh tokens.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token_type", t.TokenType),
		slog.Time("expiry", t.Expiry),
		slog.String("scope", t.Scope),
		slog.Bool("has_refresh_token", t.RefreshToken != ""),
	)
}

// ParseTokenResponse parses a token endpoint response: its HTTP status,
// headers and body. It uses at most MaxResponseSize bytes of body: a longer
// body is a malformed response.
//
// The body may be JSON or form-encoded whatever the Content-Type says. A
// success needs a 2xx status, no error member and a non-empty access_token;
// Expiry is now plus expires_in (a number or a numeric string), or plus
// defaultLifetime (DefaultTokenLifetime if not positive) when expires_in is
// missing, not positive or not a number. Any other response is an *Error
// carrying the OAuth error code, the status, Retry-After, and for a body that
// is not a token response a short sanitized excerpt.
func ParseTokenResponse(status int, header http.Header, body []byte, now time.Time, defaultLifetime time.Duration) (*Token, error) {
	return parseTokenResponse(status, header, body, now, defaultLifetime, nil, parseOptions{})
}

// parseOptions are the departures from RFC 6749 a Config describes.
type parseOptions struct {
	paths                ResponsePaths
	invalidGrantStatuses []int
	scopeSeparator       string // "" or " ": RFC 6749; "," or "+" also split the granted scope
}

// member returns the member at path p, or the top-level member std when p
// is "" or leads nowhere (a provider may nest a member in one response, such
// as the code exchange, and not in another, such as a refresh).
func member(m map[string]any, p, std string) any {
	if p != "" {
		if v, ok := lookupPath(m, p); ok {
			return v
		}
	}
	return m[std]
}

// bodyFormat is what a response body turned out to be.
type bodyFormat int

const (
	formatEmpty   bodyFormat = iota // nothing but whitespace
	formatJSON                      // a JSON object
	formatForm                      // application/x-www-form-urlencoded with OAuth members
	formatBadJSON                   // looks like JSON but is not a usable object
	formatText                      // anything else: HTML, plain text
)

// formKeys are members of which at least one must be present for a body to
// be taken as a form-encoded token or error response.
var formKeys = []string{"access_token", "error", "token_type", "expires_in", "refresh_token"}

// parseTokenResponse is ParseTokenResponse that also scrubs secrets (the
// request's) from any error.
func parseTokenResponse(status int, header http.Header, body []byte, now time.Time, defaultLifetime time.Duration, secrets []string, opts parseOptions) (*Token, error) {
	fail := func(e *Error) error {
		e.StatusCode = status
		e.RetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
		if e.Code == "" && !is2xx(status) && slices.Contains(opts.invalidGrantStatuses, status) {
			e.Code = "invalid_grant"
		}
		return e
	}
	if len(body) > MaxResponseSize {
		return nil, fail(&Error{Err: fmt.Errorf("%w: body exceeds %d bytes", ErrMalformedResponse, MaxResponseSize)})
	}
	members, format, derr := decodeBody(body)
	switch format {
	case formatEmpty:
		return nil, fail(&Error{Err: fmt.Errorf("%w: empty body", ErrMalformedResponse)})
	case formatBadJSON:
		// A broken JSON body is likely a truncated token response: no
		// excerpt, so that no part of a token can leak.
		return nil, fail(&Error{Err: fmt.Errorf("%w: %w", ErrMalformedResponse, derr)})
	case formatText:
		e := &Error{Excerpt: sanitizeText(string(body), excerptLimit, true, secrets)}
		if is2xx(status) {
			e.Err = fmt.Errorf("%w: body is neither JSON nor form-encoded", ErrMalformedResponse)
		}
		return nil, fail(e)
	}

	// The response's own secrets are scrubbed from anything it says too.
	secrets = append(slices.Clip(secrets), memberSecrets(members)...)
	if ev, ok := members["error"]; ok && isErrorValue(ev) {
		return nil, fail(oauthError(members, ev, secrets))
	}
	if !is2xx(status) {
		return nil, fail(&Error{Description: sanitizeText(messageOf(members), descriptionLimit, false, secrets)})
	}

	at, ok := member(members, opts.paths.AccessToken, "access_token").(string)
	if !ok || at == "" {
		e := &Error{Err: fmt.Errorf("%w: no access_token", ErrMalformedResponse)}
		e.Description = sanitizeText(messageOf(members), descriptionLimit, false, secrets)
		return nil, fail(e)
	}
	if hasControl(at) {
		return nil, fail(&Error{Err: fmt.Errorf("%w: access_token contains control characters", ErrMalformedResponse)})
	}

	tok := &Token{
		AccessToken:  at,
		TokenType:    tokenType(members["token_type"]),
		RefreshToken: stringOf(member(members, opts.paths.RefreshToken, "refresh_token")),
		Scope:        scopeOf(member(members, opts.paths.Scope, "scope"), opts.scopeSeparator),
		Raw:          normalize(members).(map[string]any),
	}
	if d, ok := parseExpiresIn(member(members, opts.paths.ExpiresIn, "expires_in")); ok {
		tok.ExpiresIn = d
		tok.Expiry = now.Add(d)
	} else {
		if defaultLifetime <= 0 {
			defaultLifetime = DefaultTokenLifetime
		}
		tok.Expiry = now.Add(defaultLifetime)
	}
	return tok, nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// decodeBody sniffs and decodes a body: a JSON object, a form with OAuth
// members, or neither. The Content-Type is not trusted: providers send JSON
// as text/plain and forms as application/json.
func decodeBody(body []byte) (map[string]any, bodyFormat, error) {
	t := bytes.TrimSpace(bytes.TrimPrefix(body, utf8BOM))
	if len(t) == 0 {
		return nil, formatEmpty, nil
	}
	switch t[0] {
	case '{':
		m, err := decodeJSONObject(t)
		if err != nil {
			return nil, formatBadJSON, err
		}
		return m, formatJSON, nil
	case '[', '"':
		return nil, formatBadJSON, errors.New("JSON value is not an object")
	case '<':
		return nil, formatText, nil
	}
	if bytes.IndexByte(t, '=') < 0 {
		return nil, formatText, nil
	}
	// ParseQuery reports the first bad pair but still returns the others.
	q, _ := url.ParseQuery(string(t))
	for _, k := range formKeys {
		if q.Has(k) {
			m := make(map[string]any, len(q))
			for k, vs := range q {
				m[k] = vs[0]
			}
			return m, formatForm, nil
		}
	}
	return nil, formatText, nil
}

// decodeJSONObject decodes exactly one JSON object, keeping numbers exact.
func decodeJSONObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if m == nil {
		return nil, errors.New("JSON value is not an object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON object")
	}
	return m, nil
}

// isErrorValue reports whether an error member signals an error: anything
// but null, false and an empty string.
func isErrorValue(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return strings.TrimSpace(v) != ""
	case bool:
		return v
	}
	return true
}

// oauthError builds the *Error of an error response (RFC 6749 §5.2). A
// non-standard error object ({"error": {"message": ...}}) is accepted too.
func oauthError(members map[string]any, ev any, secrets []string) *Error {
	e := &Error{}
	var code, desc, uri string
	switch v := ev.(type) {
	case string:
		code = v
		desc = stringOf(members["error_description"])
		uri = stringOf(members["error_uri"])
	case map[string]any:
		code = stringOf(v["error"])
		if code == "" {
			code = stringOf(v["status"])
		}
		desc = messageOf(v)
	}
	if code != "" {
		e.Code = sanitizeCode(code, secrets)
		if e.Code == "" {
			e.Err = fmt.Errorf("%w: the error code is not a valid OAuth error code", ErrMalformedResponse)
		}
	}
	e.Description = sanitizeText(desc, descriptionLimit, false, secrets)
	e.URI = sanitizeText(uri, descriptionLimit, false, secrets)
	return e
}

// messageOf returns the first human-readable message member of m.
func messageOf(m map[string]any) string {
	for _, k := range []string{"error_description", "message", "error_message", "detail", "title", "description"} {
		if s := stringOf(m[k]); s != "" {
			return s
		}
	}
	return ""
}

// memberSecrets returns the string values of m's secret-like members, such
// as access_token, refresh_token, id_token and client_secret.
func memberSecrets(m map[string]any) []string {
	var out []string
	for k, v := range m {
		if s, ok := v.(string); ok && s != "" && secretKeyRE.MatchString(k) {
			out = append(out, s)
		}
	}
	return out
}

// stringOf returns v as a string if it is a string or a JSON number.
func stringOf(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// tokenType returns the token_type, "Bearer" when missing and normalized
// when it is "bearer" in another case.
func tokenType(v any) string {
	s := strings.TrimSpace(stringOf(v))
	if s == "" || strings.EqualFold(s, "bearer") {
		return "Bearer"
	}
	return s
}

// scopeOf returns the scope as a space-separated string; a JSON array of
// strings, which some providers send, is joined, and a string is split at
// sep too (a provider that takes scopes joined with commas answers so).
func scopeOf(v any, sep string) string {
	switch v := v.(type) {
	case string:
		if sep != "" && sep != " " {
			v = strings.ReplaceAll(v, sep, " ")
		}
		return strings.Join(strings.Fields(v), " ")
	case []any:
		var parts []string
		for _, p := range v {
			if s, ok := p.(string); ok && strings.TrimSpace(s) != "" {
				parts = append(parts, strings.TrimSpace(s))
			}
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// numberRE matches a decimal number as providers put it in a string.
var numberRE = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)

// parseExpiresIn returns expires_in as a duration. It reports false when the
// member is missing, not a number or numeric string, NaN, or not positive;
// a value above MaxExpiresIn is capped.
func parseExpiresIn(v any) (time.Duration, bool) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
		if !numberRE.MatchString(s) {
			return 0, false
		}
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	if math.IsNaN(f) || f <= 0 {
		return 0, false
	}
	if f >= MaxExpiresIn.Seconds() {
		return MaxExpiresIn, true
	}
	d := time.Duration(f * float64(time.Second))
	if d <= 0 {
		return 0, false
	}
	return d, true
}

// normalize converts json.Number values to float64 where they fit, so Raw
// holds what encoding/json would decode.
func normalize(v any) any {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) {
			return v
		}
		return f
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

// hasControl reports whether s contains an ASCII control character, which
// cannot travel in an Authorization header.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// parseRetryAfter returns the delay of a Retry-After header value: delay
// seconds or an HTTP date relative to now (RFC 9110 §10.2.3). It returns 0
// for an absent, malformed or past value and caps the delay at MaxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if isDigits(v) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter // only overflow fails on digits: a huge delay
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, MaxRetryAfter)
}

// isDigits reports whether s is a non-empty run of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
