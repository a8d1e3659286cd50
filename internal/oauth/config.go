package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// AuthStyle is how the client authenticates to the token endpoint
// (RFC 6749 §2.3.1). It is always chosen explicitly: the zero value is
// invalid, and this package never probes for a style by sending a request
// again.
type AuthStyle int

const (
	// AuthStyleHeader is client_secret_basic: the client ID and secret, each
	// form-urlencoded as RFC 6749 §2.3.1 requires, are sent in an HTTP Basic
	// Authorization header.
	AuthStyleHeader AuthStyle = iota + 1
	// AuthStyleBody is client_secret_post: client_id and client_secret are
	// sent as form parameters in the request body.
	AuthStyleBody
)

// String returns the RFC 7591 name of the style ("client_secret_basic" or
// "client_secret_post"), or "AuthStyle(N)" for an invalid value.
func (s AuthStyle) String() string {
	switch s {
	case AuthStyleHeader:
		return "client_secret_basic"
	case AuthStyleBody:
		return "client_secret_post"
	}
	return fmt.Sprintf("AuthStyle(%d)", int(s))
}

// ParseAuthStyle returns the style named s: "header" or "client_secret_basic"
// for AuthStyleHeader, "body" or "client_secret_post" for AuthStyleBody.
// Any other value, including "", is an error wrapping ErrInvalidConfig.
func ParseAuthStyle(s string) (AuthStyle, error) {
	switch s {
	case "header", "client_secret_basic":
		return AuthStyleHeader, nil
	case "body", "client_secret_post":
		return AuthStyleBody, nil
	}
	return 0, fmt.Errorf("%w: unknown auth style %q (want header or body)", ErrInvalidConfig, clip(s, 40))
}

// Defaults and limits.
const (
	// DefaultHTTPTimeout bounds a whole token request when Config.HTTPClient
	// is nil.
	DefaultHTTPTimeout = 30 * time.Second
	// DefaultTokenLifetime is the lifetime of a token whose response has no
	// usable expires_in, when Config.DefaultLifetime is zero.
	DefaultTokenLifetime = time.Hour
	// MaxResponseSize is the most bytes of a response body that are read; a
	// larger body is a malformed response.
	MaxResponseSize = 1 << 20
	// MaxExpiresIn caps a huge expires_in so that Expiry stays meaningful.
	MaxExpiresIn = 10 * 365 * 24 * time.Hour
	// MaxRetryAfter caps the delay taken from a Retry-After header.
	MaxRetryAfter = 24 * time.Hour
)

// defaultHTTPClient is used when Config.HTTPClient is nil. http.Client is
// safe for concurrent use.
var defaultHTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}

// ErrInvalidConfig is wrapped by every error about an invalid Config or an
// invalid argument to a grant method. Such a request is never sent.
var ErrInvalidConfig = errors.New("oauth: invalid config")

// reservedParams are set by the grant methods or by client authentication;
// Config.Params may not carry them.
var reservedParams = []string{
	"client_id", "client_secret", "code", "code_verifier", "grant_type",
	"redirect_uri", "refresh_token", "scope",
}

// secretParams are request parameters whose values are secrets; they are
// scrubbed from any error built from the response.
var secretParams = []string{
	"actor_token", "assertion", "client_assertion", "client_secret", "code",
	"code_verifier", "device_code", "password", "refresh_token", "subject_token",
}

// isSecretParam reports whether a request parameter holds a secret: one of
// secretParams, or a name containing "secret" or "token" in any case (the
// rule of tokenkeeper.IsSecretParam, by which the broker seals params).
func isSecretParam(k string) bool {
	if slices.Contains(secretParams, k) {
		return true
	}
	l := strings.ToLower(k)
	return slices.Contains(secretParams, l) || strings.Contains(l, "secret") || strings.Contains(l, "token")
}

// Config describes a token endpoint and a client registered with it.
//
// A Config is safe for concurrent use by multiple goroutines as long as it
// is not modified.
type Config struct {
	// TokenURL is the absolute http or https URL of the token endpoint.
	TokenURL string
	// ClientID is the client identifier; it is required.
	ClientID string
	// ClientSecret is the client secret. Empty means a public client: it
	// sends client_id in the body and no Authorization header, whatever the
	// AuthStyle.
	ClientSecret string
	// AuthStyle is how the client authenticates; it must be set.
	AuthStyle AuthStyle
	// Scopes are space-joined into the scope parameter of ClientCredentials
	// and Refresh requests.
	Scopes []string
	// Params are extra parameters sent with every grant (audience,
	// resource, ...). They may not set the parameters a grant or the client
	// authentication sets (grant_type, client_id, client_secret, scope,
	// refresh_token, code, code_verifier, redirect_uri).
	Params url.Values
	// HTTPClient sends the requests; nil means a client with a
	// DefaultHTTPTimeout timeout. Its redirect policy is overridden: a token
	// endpoint's redirect is returned as an error, never followed.
	HTTPClient *http.Client
	// DefaultLifetime is the lifetime of a token whose response has no usable
	// expires_in; 0 means DefaultTokenLifetime.
	DefaultLifetime time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	// The fields below describe a token endpoint that departs from RFC
	// 6749. Their zero values are the standard behaviour; a provider
	// profile (internal/catalog) sets them from data.

	// BodyFormat is how the request parameters are encoded: BodyForm
	// (the default, application/x-www-form-urlencoded) or BodyJSON (one
	// JSON object of strings, application/json).
	BodyFormat BodyFormat
	// Accept is the Accept header of token requests; "" means
	// application/json.
	Accept string
	// ScopeSeparator joins Scopes into the scope parameter; "" means a
	// space (RFC 6749 §3.3). Some providers want a comma.
	ScopeSeparator string
	// RefreshURL, when set, receives refresh_token grants instead of
	// TokenURL. The same rules as for TokenURL apply.
	RefreshURL string
	// Response names where a successful response keeps its members when
	// they are not at the top level.
	Response ResponsePaths
	// RefreshParams are sent with refresh_token grants only, after Params;
	// the same parameters are reserved.
	RefreshParams url.Values
	// InvalidGrantStatuses are HTTP statuses that, when the body carries
	// no OAuth error code, mean the grant is dead: such a failure is
	// classified invalid_grant (permanent). Some providers answer a
	// revoked refresh token with a bare 401 or 403.
	InvalidGrantStatuses []int
}

// BodyFormat is the encoding of a token request body.
type BodyFormat int

const (
	// BodyForm is application/x-www-form-urlencoded (RFC 6749 §4.1.3).
	BodyForm BodyFormat = iota
	// BodyJSON is a JSON object whose members are the parameters.
	BodyJSON
)

// String returns "form" or "json".
func (f BodyFormat) String() string {
	switch f {
	case BodyForm:
		return "form"
	case BodyJSON:
		return "json"
	}
	return fmt.Sprintf("BodyFormat(%d)", int(f))
}

// ParseBodyFormat returns the format named s: "" or "form", or "json".
func ParseBodyFormat(s string) (BodyFormat, error) {
	switch s {
	case "", "form":
		return BodyForm, nil
	case "json":
		return BodyJSON, nil
	}
	return 0, fmt.Errorf("%w: unknown body format %q (want form or json)", ErrInvalidConfig, clip(s, 40))
}

// ResponsePaths locate members of a token response. Each is a dotted path
// into the JSON object ("authed_user.access_token"); "" means the standard
// top-level member, which is also used when the path leads nowhere.
type ResponsePaths struct {
	AccessToken  string
	RefreshToken string
	ExpiresIn    string
	Scope        string
}

// ValidPath reports whether p is a usable response path: dot-separated
// non-empty segments of letters, digits, '_' and '-'.
func ValidPath(p string) bool {
	if p == "" || len(p) > 200 {
		return false
	}
	for _, seg := range strings.Split(p, ".") {
		if seg == "" {
			return false
		}
		for i := 0; i < len(seg); i++ {
			b := seg[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-') {
				return false
			}
		}
	}
	return true
}

// lookupPath returns the member of m at the dotted path p.
func lookupPath(m map[string]any, p string) (any, bool) {
	segs := strings.Split(p, ".")
	var cur any = m
	for _, s := range segs {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Validate reports whether c can be used: TokenURL must be an absolute http
// or https URL without user information or fragment, ClientID must be set,
// AuthStyle must be AuthStyleHeader or AuthStyleBody, DefaultLifetime must not
// be negative, Scopes must be valid scope tokens and Params must not set a
// reserved parameter. The error wraps ErrInvalidConfig, lists every problem
// and never quotes a secret.
func (c *Config) Validate() error {
	if c == nil {
		return fmt.Errorf("%w: config is nil", ErrInvalidConfig)
	}
	var problems []string
	problems = append(problems, checkTokenURL(c.TokenURL)...)
	if c.ClientID == "" {
		problems = append(problems, "ClientID is empty")
	}
	switch c.AuthStyle {
	case AuthStyleHeader, AuthStyleBody:
	case 0:
		problems = append(problems, "AuthStyle is not set: choose AuthStyleHeader (client_secret_basic) or AuthStyleBody (client_secret_post)")
	default:
		problems = append(problems, fmt.Sprintf("AuthStyle %d is unknown: choose AuthStyleHeader (client_secret_basic) or AuthStyleBody (client_secret_post)", int(c.AuthStyle)))
	}
	if c.DefaultLifetime < 0 {
		problems = append(problems, fmt.Sprintf("DefaultLifetime %s is negative", c.DefaultLifetime))
	}
	for i, s := range c.Scopes {
		if !validScopeToken(s) {
			problems = append(problems, fmt.Sprintf("Scopes[%d] is not a valid scope token (empty, or contains a space, quote, backslash or control character)", i))
		}
	}
	if c.RefreshURL != "" {
		for _, p := range checkTokenURL(c.RefreshURL) {
			problems = append(problems, strings.Replace(p, "TokenURL", "RefreshURL", 1))
		}
	}
	switch c.BodyFormat {
	case BodyForm, BodyJSON:
	default:
		problems = append(problems, fmt.Sprintf("BodyFormat %d is unknown: choose BodyForm or BodyJSON", int(c.BodyFormat)))
	}
	if hasControl(c.Accept) {
		problems = append(problems, "Accept contains control characters")
	}
	if hasControl(c.ScopeSeparator) {
		problems = append(problems, "ScopeSeparator contains control characters")
	}
	for _, f := range []struct{ name, p string }{
		{"AccessToken", c.Response.AccessToken}, {"RefreshToken", c.Response.RefreshToken},
		{"ExpiresIn", c.Response.ExpiresIn}, {"Scope", c.Response.Scope},
	} {
		if f.p != "" && !ValidPath(f.p) {
			problems = append(problems, fmt.Sprintf("Response.%s is not a dotted path of letters, digits, '_' and '-'", f.name))
		}
	}
	for _, st := range c.InvalidGrantStatuses {
		if st < 400 || st > 599 {
			problems = append(problems, fmt.Sprintf("InvalidGrantStatuses: %d is not a 4xx or 5xx status", st))
		}
	}
	var reserved []string
	for k := range c.Params {
		if slices.Contains(reservedParams, k) {
			reserved = append(reserved, k)
		}
	}
	for k := range c.RefreshParams {
		if slices.Contains(reservedParams, k) && !slices.Contains(reserved, k) {
			reserved = append(reserved, k)
		}
	}
	if len(reserved) > 0 {
		sort.Strings(reserved)
		problems = append(problems, fmt.Sprintf("Params may not set %s (set by the grant or the client authentication)", strings.Join(reserved, ", ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(problems, "; "))
	}
	return nil
}

// checkTokenURL returns the problems with a token endpoint URL. It never
// quotes the URL, which could carry a secret in its query.
func checkTokenURL(raw string) []string {
	if raw == "" {
		return []string{"TokenURL is empty"}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return []string{"TokenURL is not a valid URL"}
	}
	if u.Scheme == "" {
		return []string{"TokenURL is relative: it must be an absolute http or https URL"}
	}
	var problems []string
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			problems = append(problems, "TokenURL has no host")
		}
	default:
		problems = append(problems, fmt.Sprintf("TokenURL scheme %q is not http or https", clip(u.Scheme, 20)))
	}
	if u.User != nil {
		problems = append(problems, "TokenURL must not carry user information: use ClientID and ClientSecret")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		problems = append(problems, "TokenURL must not have a fragment")
	}
	return problems
}

// validScopeToken reports whether s is a scope-token of RFC 6749 §3.3:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// invalidArg returns the *Error for a bad argument to a grant method.
func invalidArg(format string, args ...any) *Error {
	return &Error{Err: fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))}
}

// ClientCredentials obtains a token with the client_credentials grant
// (RFC 6749 §4.4), sending Scopes and Params. It sends one POST; every
// failure is an *Error.
func (c *Config) ClientCredentials(ctx context.Context) (*Token, error) {
	v := url.Values{"grant_type": {"client_credentials"}}
	c.addScope(v)
	return c.Grant(ctx, v)
}

// Refresh obtains a token with the refresh_token grant (RFC 6749 §6),
// sending Scopes and Params. It sends exactly one POST and never retries or
// probes, so refreshToken is presented at most once. When the response has
// no refresh_token, Token.RefreshToken is "" and the caller keeps
// refreshToken. Every failure is an *Error; an empty refreshToken is not
// sent.
func (c *Config) Refresh(ctx context.Context, refreshToken string) (*Token, error) {
	if refreshToken == "" {
		return nil, invalidArg("refresh token is empty")
	}
	v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	c.addScope(v)
	return c.Grant(ctx, v)
}

// Exchange redeems an authorization code (RFC 6749 §4.1.3). redirectURI is
// sent when non-empty and must equal the one of the authorization request;
// codeVerifier is the PKCE code_verifier (RFC 7636 §4.5), sent when
// non-empty and checked to be 43 to 128 unreserved characters. Scopes are not
// sent: they belong to the authorization request. It sends one POST; every
// failure is an *Error.
func (c *Config) Exchange(ctx context.Context, code, redirectURI, codeVerifier string) (*Token, error) {
	if code == "" {
		return nil, invalidArg("authorization code is empty")
	}
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}}
	if redirectURI != "" {
		v.Set("redirect_uri", redirectURI)
	}
	if codeVerifier != "" {
		if !validCodeVerifier(codeVerifier) {
			return nil, invalidArg("PKCE code verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' or '~'")
		}
		v.Set("code_verifier", codeVerifier)
	}
	return c.Grant(ctx, v)
}

// validCodeVerifier reports whether s is a code_verifier of RFC 7636 §4.1.
func validCodeVerifier(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', '0' <= b && b <= '9':
		case b == '-', b == '.', b == '_', b == '~':
		default:
			return false
		}
	}
	return true
}

// addScope sets the scope parameter from c.Scopes.
func (c *Config) addScope(v url.Values) {
	if c != nil && len(c.Scopes) > 0 {
		sep := c.ScopeSeparator
		if sep == "" {
			sep = " "
		}
		v.Set("scope", strings.Join(c.Scopes, sep))
	}
}

// Grant sends one token request: params (which must include grant_type)
// merged over c.Params, plus the client authentication of c.AuthStyle.
// params may not carry client_id or client_secret, which come from c. It
// sends exactly one POST; every failure is an *Error, and an invalid Config
// or params is reported without sending anything.
func (c *Config) Grant(ctx context.Context, params url.Values) (*Token, error) {
	if err := c.Validate(); err != nil {
		return nil, &Error{Err: err}
	}
	if params.Get("grant_type") == "" {
		return nil, invalidArg("grant_type parameter is missing")
	}
	if params.Has("client_id") || params.Has("client_secret") {
		return nil, invalidArg("params may not set client_id or client_secret: they come from Config and AuthStyle")
	}
	if ctx == nil {
		return nil, invalidArg("context is nil")
	}
	return c.post(ctx, params)
}

// post sends the token request and parses its response.
func (c *Config) post(ctx context.Context, params url.Values) (*Token, error) {
	res, err := c.send(ctx, c.TokenURL, params, "token")
	if err != nil {
		return nil, err
	}
	// Expiry counts from the moment the request was sent: the provider
	// issued the token later, so the computed expiry is never late.
	return parseTokenResponse(res.status, res.header, res.body, res.start, c.DefaultLifetime, res.secrets,
		parseOptions{paths: c.Response, invalidGrantStatuses: c.InvalidGrantStatuses, scopeSeparator: c.ScopeSeparator})
}

// response is an endpoint's answer as read by send.
type response struct {
	status  int
	header  http.Header
	body    []byte
	start   time.Time
	secrets []string // the secret values the request carried
}

// send posts params merged over c.Params to endpoint with the client
// authentication of c.AuthStyle, once, and reads at most MaxResponseSize+1
// bytes of the answer. what names the request in errors.
func (c *Config) send(ctx context.Context, endpoint string, params url.Values, what string) (*response, error) {
	form := make(url.Values, len(c.Params)+len(params)+2)
	for k, vs := range c.Params {
		form[k] = slices.Clone(vs)
	}
	if params.Get("grant_type") == "refresh_token" {
		for k, vs := range c.RefreshParams {
			form[k] = slices.Clone(vs)
		}
	}
	for k, vs := range params {
		form[k] = slices.Clone(vs)
	}
	// A public client (no secret) identifies itself with client_id in the
	// body whatever the style (RFC 6749 §3.2.1, §4.1.3): an empty Basic
	// password is not client authentication.
	public := c.ClientSecret == ""
	if c.AuthStyle == AuthStyleBody || public {
		form.Set("client_id", c.ClientID)
	}
	if c.AuthStyle == AuthStyleBody && !public {
		form.Set("client_secret", c.ClientSecret)
	}
	secrets := requestSecrets(form, c.ClientSecret)

	if endpoint == c.TokenURL && c.RefreshURL != "" && form.Get("grant_type") == "refresh_token" {
		endpoint = c.RefreshURL
	}
	body, contentType := encodeBody(form, c.BodyFormat)

	start := c.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		// Validate parsed the URL, so this is not expected; the underlying
		// error would quote the URL, so it is not kept.
		return nil, invalidArg("cannot build the %s request", what)
	}
	req.Header.Set("Content-Type", contentType)
	accept := c.Accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if c.AuthStyle == AuthStyleHeader && !public {
		req.Header.Set("Authorization", "Basic "+basicCredentials(c.ClientID, c.ClientSecret))
	}

	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("post %s request: %w", what, cleanTransportError(err))}
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, &Error{
			StatusCode: resp.StatusCode,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), start),
			Err:        fmt.Errorf("read %s response: %w", what, cleanTransportError(err)),
		}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: respBody, start: start, secrets: secrets}, nil
}

// encodeBody encodes form as f says and returns the body and its
// Content-Type. A JSON body carries each parameter as a string (the first
// value of a repeated one is not enough, so a repeated one is an array).
func encodeBody(form url.Values, f BodyFormat) (string, string) {
	if f != BodyJSON {
		return form.Encode(), "application/x-www-form-urlencoded"
	}
	obj := make(map[string]any, len(form))
	for k, vs := range form {
		if len(vs) == 1 {
			obj[k] = vs[0]
		} else {
			obj[k] = vs
		}
	}
	b, _ := json.Marshal(obj) // strings and string slices always marshal
	return string(b), "application/json"
}

// basicCredentials encodes id and secret for client_secret_basic: each is
// form-urlencoded (RFC 6749 §2.3.1) before "id:secret" is base64-encoded.
func basicCredentials(id, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
}

// requestSecrets returns the secret values a request carries, with their
// form-urlencoded spellings, so that an echo of them can be scrubbed.
func requestSecrets(form url.Values, clientSecret string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if q := url.QueryEscape(s); q != s {
			out = append(out, q)
		}
	}
	add(clientSecret)
	for k, vs := range form {
		if !isSecretParam(k) {
			continue
		}
		for _, v := range vs {
			add(v)
		}
	}
	return out
}

// httpClient returns a copy of the configured client that does not follow
// redirects: a token request is sent to the configured endpoint only.
func (c *Config) httpClient() *http.Client {
	hc := c.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient
	}
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// now returns the current time from c.Now or time.Now.
func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// cleanTransportError drops the query, fragment and user information from
// the URL a *url.Error quotes, keeping the error chain intact.
func cleanTransportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	return err
}

// redactURL returns scheme://host/path of raw, or "token endpoint" when raw
// does not parse.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "token endpoint"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}

// String describes c without its client secret.
func (c Config) String() string {
	return fmt.Sprintf("oauth.Config{TokenURL: %s, ClientID: %q, ClientSecret: %s, AuthStyle: %s, Scopes: %q}",
		redactURL(c.TokenURL), c.ClientID, redacted(c.ClientSecret), c.AuthStyle, c.Scopes)
}

// GoString describes c for %#v without its client secret.
func (c Config) GoString() string { return c.String() }

// LogValue describes c for log/slog without its client secret.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token_url", redactURL(c.TokenURL)),
		slog.String("client_id", c.ClientID),
		slog.String("auth_style", c.AuthStyle.String()),
		slog.String("scopes", strings.Join(c.Scopes, " ")),
	)
}

// redacted returns "[redacted]" for a non-empty secret and `""` otherwise.
func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return redactedMark
}
