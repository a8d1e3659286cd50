// Package catalog holds provider profiles: how a real authorization server
// departs from the textbook, written down as data, one JSON file per
// provider under profiles/, embedded in the binary.
//
// Every profile is read, validated and applied by the same code: nothing
// in tokenkeeper branches on a provider's name. A profile names the page of
// the provider's own documentation that each of its settings comes from.
//
// A profile's endpoints may hold template variables ({tenant}, {subdomain},
// {region}, {shop}, {domain}, {realm}) that Apply fills from the values an
// operator gives when adding the provider.
package catalog

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

//go:embed profiles/*.json
var embedded embed.FS

// TemplateVars are the template variables a profile may use, with what an
// operator is asked for.
var TemplateVars = map[string]string{
	"tenant":    "the tenant (directory) identifier",
	"subdomain": "the account's subdomain",
	"region":    "the data-centre region",
	"shop":      "the shop's name (the part before the provider's domain)",
	"domain":    "the host name of the server",
	"realm":     "the realm",
}

// Profile is one provider's profile as stored in profiles/NAME.json. The
// zero value of every optional field is RFC 6749 behaviour.
type Profile struct {
	// Name is the preset name; it equals the file name without .json.
	Name string `json:"name"`
	// DisplayName is how people write the provider's name.
	DisplayName string `json:"display_name"`
	// Docs are the pages of the provider's own documentation the profile
	// is written from; at least one.
	Docs []string `json:"docs"`
	// Vars describe the template variables the endpoints use, by name
	// (each a key of TemplateVars), in words for the operator.
	Vars map[string]string `json:"vars,omitempty"`

	AuthorizationURL       string `json:"authorization_url,omitempty"`
	TokenURL               string `json:"token_url"`
	RefreshURL             string `json:"refresh_url,omitempty"`
	DeviceAuthorizationURL string `json:"device_authorization_url,omitempty"`
	RevocationURL          string `json:"revocation_url,omitempty"`

	// AuthStyle is "header" (client_secret_basic) or "body"
	// (client_secret_post).
	AuthStyle string `json:"auth_style"`
	// BodyFormat is "form" (default) or "json".
	BodyFormat string `json:"body_format,omitempty"`
	// Accept is the Accept header of token requests ("" application/json).
	Accept string `json:"accept,omitempty"`
	// PKCE is true when the authorization code flow uses S256, false when
	// the provider refuses a code challenge.
	PKCE *bool `json:"pkce"`

	// ScopeSeparator joins scopes ("" a space).
	ScopeSeparator string   `json:"scope_separator,omitempty"`
	DefaultScopes  []string `json:"default_scopes,omitempty"`

	AuthorizeParams map[string]string `json:"authorize_params,omitempty"`
	TokenParams     map[string]string `json:"token_params,omitempty"`
	// RefreshParams are sent with refresh requests only.
	RefreshParams map[string]string `json:"refresh_params,omitempty"`

	Response Response `json:"response,omitempty"`
	// DefaultLifetime is the lifetime assumed when a response has no
	// expires_in, as a Go duration ("2h"); "" means the broker's default.
	DefaultLifetime string `json:"default_lifetime,omitempty"`
	// TokensExpire is false for a provider whose access tokens do not
	// expire (no expires_in, no refresh token).
	TokensExpire *bool `json:"tokens_expire"`

	Errors        Errors        `json:"errors,omitempty"`
	RefreshTokens RefreshTokens `json:"refresh_tokens,omitempty"`
	API           API           `json:"api,omitempty"`
	// Check, for a provider whose access tokens never expire and whose
	// refresh tokens have no idle limit, is a call of its API that tells
	// whether a token is still good: a keep-alive asks it instead of
	// refreshing, and refreshes only when it fails.
	Check *Check `json:"check,omitempty"`
}

// Check is a request to the provider's API, with the token presented as
// API says, whose answer tells whether the token is still good: a 2xx
// status and, with OKMember, that member of the JSON body true (Slack
// answers 200 {"ok":false} for a revoked token).
type Check struct {
	// Path is appended to api.base_url: /auth.test.
	Path string `json:"path"`
	// Method is GET (the default) or POST.
	Method string `json:"method,omitempty"`
	// Headers are sent with the check (Notion-Version).
	Headers  map[string]string `json:"headers,omitempty"`
	OKMember string            `json:"ok_member,omitempty"`
}

// Response locates the members of a token response.
type Response struct {
	AccessToken  string `json:"access_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    string `json:"expires_in,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// Keep are paths of other members of the token response to keep with
	// the grant (instance_url, team.id).
	Keep []string `json:"keep,omitempty"`
	// KeepFromRedirect are query parameters of the authorization redirect
	// to keep with the grant (realmId).
	KeepFromRedirect []string `json:"keep_from_redirect,omitempty"`
}

// Errors says how failures are classified beyond RFC 6749 §5.2.
type Errors struct {
	// InvalidGrantStatuses are HTTP statuses that mean the grant is dead
	// even without an OAuth error code.
	InvalidGrantStatuses []int `json:"invalid_grant_statuses,omitempty"`
	// ErrorIn200 notes that the provider reports errors in a 200 response
	// body; the parser always looks for an error member, this is recorded
	// for the people reading the table.
	ErrorIn200 bool `json:"error_in_200,omitempty"`
}

// RefreshTokens says how a provider's refresh tokens live.
type RefreshTokens struct {
	Issued *bool `json:"issued"`
	// Rotates is true when each refresh returns a new refresh token and
	// invalidates the old one.
	Rotates bool `json:"rotates,omitempty"`
	// IdleLifetime is how long an unused refresh token stays valid, as a
	// Go duration ("2160h"); "" unknown or unlimited.
	IdleLifetime string `json:"idle_lifetime,omitempty"`
	// AbsoluteLifetime is how long a refresh token lives at most.
	AbsoluteLifetime string `json:"absolute_lifetime,omitempty"`
}

// API is how the provider's API is reached with a token; data for the
// proxy.
type API struct {
	BaseURL string `json:"base_url,omitempty"`
	// Header carries the token, after Scheme and a space, or bare when
	// Scheme is empty; with both empty, Authorization: Bearer (RFC 6750).
	Header string `json:"header,omitempty"`
	Scheme string `json:"scheme,omitempty"`
}

// Token is how the API expects the token, as the proxy presents it.
func (a API) Token() tokenkeeper.APIToken {
	return tokenkeeper.APIToken{Header: a.Header, Scheme: a.Scheme}.Normalized()
}

var (
	loadOnce sync.Once
	loaded   []*Profile
	loadErr  error
)

// All returns every embedded profile ordered by name. It panics if one
// does not validate: the package's tests fail first, naming the file and
// the field.
func All() []*Profile {
	loadOnce.Do(func() { loaded, loadErr = Load(embedded, "profiles") })
	if loadErr != nil {
		panic(loadErr)
	}
	return loaded
}

// Names returns the preset names ordered.
func Names() []string {
	var out []string
	for _, p := range All() {
		out = append(out, p.Name)
	}
	return out
}

// Lookup returns the named profile, or an EINVALID error listing the
// presets there are.
func Lookup(name string) (*Profile, error) {
	for _, p := range All() {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "unknown preset %q: the presets are %s",
		clip(name, 40), strings.Join(Names(), ", "))
}

// Load reads and validates every *.json file of dir in fsys. The error
// names the file and the field of the first problem of each bad file.
func Load(fsys fs.FS, dir string) ([]*Profile, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []*Profile
	var problems []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		file := path.Join(dir, e.Name())
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, err
		}
		p, err := Parse(strings.TrimSuffix(e.Name(), ".json"), b)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		out = append(out, p)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid provider profiles:\n%s", strings.Join(problems, "\n"))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Parse decodes one profile strictly (unknown fields are errors) and
// validates it; name is the file name without .json.
func Parse(name string, b []byte) (*Profile, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode: data after the profile object")
	}
	if p.Name != name {
		return nil, fmt.Errorf("field name: %q must equal the file name %q", p.Name, name)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	varRE       = regexp.MustCompile(`\{([a-zA-Z_]*)\}`)
	varValueRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	checkPathRE = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)
)

// fieldError names the JSON field of a problem.
func fieldError(field, format string, args ...any) error {
	return fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...))
}

// Validate checks p and returns an error naming the first bad field.
func (p *Profile) Validate() error {
	if !nameRE.MatchString(p.Name) {
		return fieldError("name", "must be lower-case letters, digits and '-'")
	}
	if strings.TrimSpace(p.DisplayName) == "" {
		return fieldError("display_name", "is required")
	}
	if len(p.Docs) == 0 {
		return fieldError("docs", "cite at least one page of the provider's documentation")
	}
	for i, d := range p.Docs {
		if u, err := url.Parse(d); err != nil || u.Scheme != "https" || u.Host == "" {
			return fieldError(fmt.Sprintf("docs[%d]", i), "must be an https URL")
		}
	}
	used := map[string]bool{}
	endpoint := func(field, raw string, required bool) error {
		if raw == "" {
			if required {
				return fieldError(field, "is required")
			}
			return nil
		}
		for _, m := range varRE.FindAllStringSubmatch(raw, -1) {
			if _, ok := TemplateVars[m[1]]; !ok {
				return fieldError(field, "unknown template variable {%s} (known: %s)", m[1], strings.Join(sortedKeys(TemplateVars), ", "))
			}
			if _, ok := p.Vars[m[1]]; !ok {
				return fieldError(field, "uses {%s}, which vars does not describe", m[1])
			}
			used[m[1]] = true
		}
		filled := varRE.ReplaceAllString(raw, "x")
		u, err := url.Parse(filled)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
			return fieldError(field, "must be an absolute https URL without user information or fragment")
		}
		return nil
	}
	for _, ep := range []struct {
		field, u string
		req      bool
	}{
		{"token_url", p.TokenURL, true}, {"authorization_url", p.AuthorizationURL, false},
		{"refresh_url", p.RefreshURL, false}, {"device_authorization_url", p.DeviceAuthorizationURL, false},
		{"revocation_url", p.RevocationURL, false}, {"api.base_url", p.API.BaseURL, false},
	} {
		if err := endpoint(ep.field, ep.u, ep.req); err != nil {
			return err
		}
	}
	for v := range p.Vars {
		if _, ok := TemplateVars[v]; !ok {
			return fieldError("vars", "unknown template variable %q (known: %s)", v, strings.Join(sortedKeys(TemplateVars), ", "))
		}
		if !used[v] {
			return fieldError("vars", "%q is not used by any endpoint", v)
		}
		if strings.TrimSpace(p.Vars[v]) == "" {
			return fieldError("vars."+v, "describe it for the operator")
		}
	}
	switch p.AuthStyle {
	case "header", "body":
	default:
		return fieldError("auth_style", "must be header or body")
	}
	if _, err := oauth.ParseBodyFormat(p.BodyFormat); err != nil {
		return fieldError("body_format", "must be form or json")
	}
	if p.PKCE == nil {
		return fieldError("pkce", "is required: true or false")
	}
	if p.TokensExpire == nil {
		return fieldError("tokens_expire", "is required: true or false")
	}
	if p.RefreshTokens.Issued == nil {
		return fieldError("refresh_tokens.issued", "is required: true or false")
	}
	if strings.ContainsAny(p.Accept, "\r\n") {
		return fieldError("accept", "contains a line break")
	}
	if p.ScopeSeparator != "" && p.ScopeSeparator != " " && p.ScopeSeparator != "," && p.ScopeSeparator != "+" {
		return fieldError("scope_separator", "must be a space, a comma or '+'")
	}
	for i, s := range p.DefaultScopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return fieldError(fmt.Sprintf("default_scopes[%d]", i), "is not a valid scope token")
		}
	}
	for _, ps := range []struct {
		field    string
		m        map[string]string
		reserved []string
	}{
		{"authorize_params", p.AuthorizeParams, []string{"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"}},
		{"token_params", p.TokenParams, []string{"client_id", "client_secret", "code", "code_verifier", "grant_type", "redirect_uri", "refresh_token", "scope"}},
		{"refresh_params", p.RefreshParams, []string{"client_id", "client_secret", "code", "code_verifier", "grant_type", "redirect_uri", "refresh_token", "scope"}},
	} {
		for k := range ps.m {
			if k == "" || slices.Contains(ps.reserved, k) {
				return fieldError(ps.field, "may not set %q", k)
			}
			if l := strings.ToLower(k); strings.Contains(l, "secret") || strings.Contains(l, "password") {
				return fieldError(ps.field+"."+k, "a profile holds no secrets")
			}
		}
	}
	for _, f := range []struct{ field, p string }{
		{"response.access_token", p.Response.AccessToken}, {"response.refresh_token", p.Response.RefreshToken},
		{"response.expires_in", p.Response.ExpiresIn}, {"response.scope", p.Response.Scope},
	} {
		if f.p != "" && !oauth.ValidPath(f.p) {
			return fieldError(f.field, "must be a dotted path of letters, digits, '_' and '-'")
		}
	}
	for i, k := range p.Response.Keep {
		if !oauth.ValidPath(k) {
			return fieldError(fmt.Sprintf("response.keep[%d]", i), "must be a dotted path of letters, digits, '_' and '-'")
		}
		if tokenkeeper.IsSecretParam(k) && !strings.HasSuffix(k, "token_type") {
			return fieldError(fmt.Sprintf("response.keep[%d]", i), "must not name a token or secret: they are kept sealed already")
		}
	}
	for i, k := range p.Response.KeepFromRedirect {
		if !oauth.ValidPath(k) || strings.Contains(k, ".") {
			return fieldError(fmt.Sprintf("response.keep_from_redirect[%d]", i), "must be a query parameter name")
		}
	}
	for _, d := range []struct{ field, v string }{
		{"default_lifetime", p.DefaultLifetime},
		{"refresh_tokens.idle_lifetime", p.RefreshTokens.IdleLifetime},
		{"refresh_tokens.absolute_lifetime", p.RefreshTokens.AbsoluteLifetime},
	} {
		if d.v == "" {
			continue
		}
		if dur, err := time.ParseDuration(d.v); err != nil || dur <= 0 {
			return fieldError(d.field, "must be a positive Go duration such as 2h or 2160h")
		}
	}
	if !*p.TokensExpire && p.DefaultLifetime != "" {
		return fieldError("default_lifetime", "makes no sense when tokens_expire is false")
	}
	if !*p.RefreshTokens.Issued && (p.RefreshTokens.Rotates || p.RefreshTokens.IdleLifetime != "" || p.RefreshURL != "" || len(p.RefreshParams) > 0) {
		return fieldError("refresh_tokens", "describes refresh tokens that refresh_tokens.issued says are not issued")
	}
	for _, st := range p.Errors.InvalidGrantStatuses {
		if st < 400 || st > 599 {
			return fieldError("errors.invalid_grant_statuses", "%d is not a 4xx or 5xx status", st)
		}
	}
	if ck := p.Check; ck != nil {
		switch {
		case *p.TokensExpire:
			return fieldError("check", "is for access tokens that never expire (tokens_expire false); others are kept alive by their expiry")
		case p.API.BaseURL == "":
			return fieldError("check", "needs api.base_url")
		case p.RefreshTokens.IdleLifetime != "":
			return fieldError("check", "cannot stand in for the keep-alive of refresh tokens that die when idle: that keep-alive must use them")
		case !checkPathRE.MatchString(ck.Path) || strings.Contains(ck.Path, ".."):
			return fieldError("check.path", "must be a path under api.base_url such as /auth.test")
		case ck.Method != "" && ck.Method != "GET" && ck.Method != "POST":
			return fieldError("check.method", "must be GET or POST")
		case ck.OKMember != "" && !oauth.ValidPath(ck.OKMember):
			return fieldError("check.ok_member", "must be a dotted path of letters, digits, '_' and '-'")
		}
		for k, v := range ck.Headers {
			if (tokenkeeper.APIToken{Header: k}).Validate() != nil || strings.EqualFold(k, "Authorization") || strings.ContainsAny(v, "\r\n") ||
				tokenkeeper.IsSecretParam(k) {
				return fieldError("check.headers."+k, "is not a header a profile may set")
			}
		}
	}
	if p.API.Scheme != "" && p.API.Header == "" {
		return fieldError("api.scheme", "needs api.header")
	}
	if err := (tokenkeeper.APIToken{Header: p.API.Header, Scheme: p.API.Scheme}).Validate(); err != nil {
		return fieldError("api.header", "%s", tokenkeeper.ErrorMessage(err))
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Needs returns the template variables p's endpoints use, ordered.
func (p *Profile) Needs() []string { return sortedKeys(p.Vars) }

// Applied is a profile with its template variables filled: the settings of
// a provider created from it, and the token endpoint's departures from RFC
// 6749 as oauth.Config fields.
type Applied struct {
	Preset                 string
	AuthorizationURL       string
	TokenURL               string
	RefreshURL             string
	DeviceAuthorizationURL string
	RevocationURL          string
	AuthStyle              tokenkeeper.AuthStyle
	PKCE                   string
	Scopes                 []string
	AuthorizeParams        map[string]string
	TokenParams            map[string]string
	RefreshParams          map[string]string

	BodyFormat           oauth.BodyFormat
	Accept               string
	ScopeSeparator       string
	Response             oauth.ResponsePaths
	InvalidGrantStatuses []int
	DefaultLifetime      time.Duration
	APIBaseURL           string
	APIToken             tokenkeeper.APIToken
	// Keep and KeepFromRedirect are what a grant keeps besides its tokens:
	// paths of token response members and query parameters of the
	// authorization redirect.
	Keep             []string
	KeepFromRedirect []string
}

// Apply fills p's template variables from vars. A variable p needs but
// vars lacks, one p does not use, or a value that is not a plain host label
// is refused with EINVALID naming what is needed.
func (p *Profile) Apply(vars map[string]string) (*Applied, error) {
	var missing []string
	for _, v := range p.Needs() {
		if vars[v] == "" {
			missing = append(missing, fmt.Sprintf("%s (%s)", v, p.Vars[v]))
		}
	}
	if len(missing) > 0 {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "preset %s needs template variables: %s", p.Name, strings.Join(missing, "; "))
	}
	for k, v := range vars {
		if _, ok := p.Vars[k]; !ok {
			need := "none"
			if n := p.Needs(); len(n) > 0 {
				need = strings.Join(n, ", ")
			}
			return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "preset %s does not use template variable %q (it uses: %s)", p.Name, clip(k, 40), need)
		}
		if !varValueRE.MatchString(v) || strings.Contains(v, "..") {
			return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "template variable %s must be letters, digits, '.', '_' and '-'", k)
		}
	}
	fill := func(s string) string {
		return varRE.ReplaceAllStringFunc(s, func(m string) string { return vars[m[1:len(m)-1]] })
	}
	a := &Applied{
		Preset:                 p.Name,
		AuthorizationURL:       fill(p.AuthorizationURL),
		TokenURL:               fill(p.TokenURL),
		RefreshURL:             fill(p.RefreshURL),
		DeviceAuthorizationURL: fill(p.DeviceAuthorizationURL),
		RevocationURL:          fill(p.RevocationURL),
		AuthStyle:              tokenkeeper.AuthStyle(p.AuthStyle),
		PKCE:                   tokenkeeper.PKCENone,
		Scopes:                 slices.Clone(p.DefaultScopes),
		AuthorizeParams:        cloneMap(p.AuthorizeParams),
		TokenParams:            cloneMap(p.TokenParams),
		RefreshParams:          cloneMap(p.RefreshParams),
		Accept:                 p.Accept,
		ScopeSeparator:         p.ScopeSeparator,
		Response: oauth.ResponsePaths{AccessToken: p.Response.AccessToken, RefreshToken: p.Response.RefreshToken,
			ExpiresIn: p.Response.ExpiresIn, Scope: p.Response.Scope},
		InvalidGrantStatuses: slices.Clone(p.Errors.InvalidGrantStatuses),
		APIBaseURL:           fill(p.API.BaseURL),
		APIToken:             p.API.Token(),
		Keep:                 slices.Clone(p.Response.Keep),
		KeepFromRedirect:     slices.Clone(p.Response.KeepFromRedirect),
	}
	if *p.PKCE {
		a.PKCE = tokenkeeper.PKCES256
	}
	a.BodyFormat, _ = oauth.ParseBodyFormat(p.BodyFormat) // validated
	if p.DefaultLifetime != "" {
		a.DefaultLifetime, _ = time.ParseDuration(p.DefaultLifetime)
	}
	if !*p.TokensExpire {
		a.DefaultLifetime = oauth.MaxExpiresIn
	}
	for _, u := range []string{a.TokenURL, a.AuthorizationURL, a.RefreshURL, a.DeviceAuthorizationURL, a.RevocationURL} {
		if u == "" {
			continue
		}
		if err := tokenkeeper.ValidateEndpoint("endpoint", u); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Provider returns a provider named name with a's settings and the given
// client registration: its endpoints, client authentication, scopes,
// parameters, PKCE, and the API base URL and token presentation the proxy
// uses.
func (a *Applied) Provider(name, clientID, clientSecret string) *tokenkeeper.Provider {
	p := &tokenkeeper.Provider{
		Name: name, AuthorizationURL: a.AuthorizationURL, TokenURL: a.TokenURL,
		DeviceAuthorizationURL: a.DeviceAuthorizationURL, RevocationURL: a.RevocationURL,
		ClientID: clientID, ClientSecret: clientSecret, AuthStyle: a.AuthStyle,
		Scopes: slices.Clone(a.Scopes), AuthorizeParams: cloneMap(a.AuthorizeParams),
		TokenParams: cloneMap(a.TokenParams), PKCE: a.PKCE, APIBaseURL: a.APIBaseURL,
	}
	if a.APIToken != tokenkeeper.DefaultAPIToken {
		p.APIToken = a.APIToken
	}
	return p
}

// ForProvider returns the applied profile of a provider made from preset
// with vars, or nil when preset is "" or no longer applies (a preset
// removed from the catalog, or changed to need other variables): such a
// provider is then used as plain RFC 6749.
func ForProvider(preset string, vars map[string]string) *Applied {
	if preset == "" {
		return nil
	}
	p, err := Lookup(preset)
	if err != nil {
		return nil
	}
	a, err := p.Apply(vars)
	if err != nil {
		return nil
	}
	return a
}

// Configure sets the departures from RFC 6749 of a on c, the config of a
// token endpoint for a provider made from a's profile. c.TokenURL must be
// set first: the profile's separate refresh URL is used only when
// c.TokenURL is the profile's token URL (an operator who points a provider
// at another server means that server for refreshes too).
func (a *Applied) Configure(c *oauth.Config) {
	c.RefreshURL = ""
	if c.TokenURL == a.TokenURL {
		c.RefreshURL = a.RefreshURL
	}
	c.BodyFormat = a.BodyFormat
	c.Accept = a.Accept
	c.ScopeSeparator = a.ScopeSeparator
	c.Response = a.Response
	c.InvalidGrantStatuses = slices.Clone(a.InvalidGrantStatuses)
	if len(a.RefreshParams) > 0 {
		c.RefreshParams = url.Values{}
		for k, v := range a.RefreshParams {
			c.RefreshParams.Set(k, v)
		}
	}
	if a.DefaultLifetime > 0 {
		c.DefaultLifetime = a.DefaultLifetime
	}
}

// Quirks lists, in words, how p departs from a textbook RFC 6749 provider;
// the preset table of the README and `provider presets` show it.
func (p *Profile) Quirks() []string {
	q := []string{} // never nil: presets --json shows [] for a textbook provider
	if len(p.Vars) > 0 {
		q = append(q, "templated endpoints ("+strings.Join(p.Needs(), ", ")+")")
	}
	if p.AuthStyle == "body" {
		q = append(q, "client secret in the body")
	}
	if p.BodyFormat == "json" {
		q = append(q, "JSON request body")
	}
	if p.Accept != "" {
		q = append(q, "Accept: "+p.Accept)
	}
	if !*p.PKCE {
		q = append(q, "no PKCE")
	}
	if p.ScopeSeparator != "" && p.ScopeSeparator != " " {
		q = append(q, fmt.Sprintf("scopes joined with %q", p.ScopeSeparator))
	}
	if len(p.DefaultScopes) > 0 {
		q = append(q, "default scopes "+strings.Join(p.DefaultScopes, " "))
	}
	for _, m := range []struct {
		what string
		m    map[string]string
	}{{"authorize", p.AuthorizeParams}, {"token", p.TokenParams}, {"refresh", p.RefreshParams}} {
		if len(m.m) == 0 {
			continue
		}
		var kv []string
		for _, k := range sortedKeys(m.m) {
			kv = append(kv, k+"="+m.m[k])
		}
		q = append(q, m.what+" params "+strings.Join(kv, "&"))
	}
	if p.RefreshURL != "" {
		q = append(q, "separate refresh URL")
	}
	if r := p.Response; r.AccessToken != "" || r.RefreshToken != "" || r.ExpiresIn != "" || r.Scope != "" {
		q = append(q, "nested response ("+strings.TrimSuffix(strings.Join([]string{r.AccessToken}, ""), ".access_token")+")")
	}
	if len(p.Response.Keep) > 0 {
		q = append(q, "keeps "+strings.Join(p.Response.Keep, ", "))
	}
	if len(p.Response.KeepFromRedirect) > 0 {
		q = append(q, "keeps "+strings.Join(p.Response.KeepFromRedirect, ", ")+" from the redirect")
	}
	if !*p.TokensExpire {
		q = append(q, "tokens without expires_in never expire")
	} else if p.DefaultLifetime != "" {
		q = append(q, "no expires_in: assumed "+human(p.DefaultLifetime))
	}
	if len(p.Errors.InvalidGrantStatuses) > 0 {
		q = append(q, fmt.Sprintf("HTTP %v means invalid_grant", p.Errors.InvalidGrantStatuses))
	}
	if p.Errors.ErrorIn200 {
		q = append(q, "errors in a 200 body")
	}
	rt := p.RefreshTokens
	if !*rt.Issued {
		q = append(q, "no refresh tokens")
	}
	if rt.Rotates {
		q = append(q, "refresh tokens rotate")
	}
	if rt.IdleLifetime != "" {
		q = append(q, "refresh tokens die after "+human(rt.IdleLifetime)+" idle")
	}
	if rt.AbsoluteLifetime != "" {
		q = append(q, "refresh tokens live at most "+human(rt.AbsoluteLifetime))
	}
	if p.API.Header != "" {
		q = append(q, "API token in "+p.API.Header)
	}
	if p.Check != nil {
		q = append(q, "token checked by "+or(p.Check.Method, "GET")+" "+p.Check.Path)
	}
	return q
}

// MarkdownTable returns the preset table of the README: each preset, what
// it needs, its quirks and the documentation it comes from.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| preset | provider | needs | quirks | documentation |\n|---|---|---|---|---|\n")
	for _, p := range All() {
		var docs []string
		for i, d := range p.Docs {
			docs = append(docs, fmt.Sprintf("[%d](%s)", i+1, d))
		}
		needs := "—"
		if n := p.Needs(); len(n) > 0 {
			needs = "`" + strings.Join(n, "`, `") + "`"
		}
		quirks := strings.Join(p.Quirks(), "; ")
		if quirks == "" {
			quirks = "—"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", p.Name, p.DisplayName, needs,
			strings.ReplaceAll(quirks, "|", "\\|"), strings.Join(docs, " "))
	}
	return b.String()
}

// human writes a validated duration for people: "90 days", "30m".
func human(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return fmt.Sprintf("%d days", d/day)
	}
	out := d.String() // "30m0s", "2h0m0s"
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

// DefaultKeepAlive is the keep-alive interval of a grant whose access
// tokens do not expire and whose refresh tokens' idle limit is unknown,
// unless the broker is configured otherwise (serve --keep-alive-interval).
const DefaultKeepAlive = 24 * time.Hour

// KeepAlive returns how often a grant of p that holds a refresh token must
// be refreshed even when its access token is still good: half the refresh
// tokens' idle limit (leaving the other half for retries), or noLimit
// (DefaultKeepAlive when 0) when the access tokens do not expire and no
// idle limit is known; 0 when p issues no refresh tokens, or its access
// tokens expire and no idle limit is known (the normal schedule keeps it
// alive).
func (p *Profile) KeepAlive(noLimit time.Duration) time.Duration {
	if p.RefreshTokens.Issued == nil || !*p.RefreshTokens.Issued {
		return 0
	}
	if p.RefreshTokens.IdleLifetime != "" {
		d, _ := time.ParseDuration(p.RefreshTokens.IdleLifetime) // validated
		return d / 2
	}
	if p.TokensExpire != nil && !*p.TokensExpire {
		if noLimit <= 0 {
			return DefaultKeepAlive
		}
		return noLimit
	}
	return 0
}

func or(v, d string) string {
	if v != "" {
		return v
	}
	return d
}
