package oauthtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Personality makes the server behave as a particular real provider does
// where that provider departs from RFC 6749: how it wants token requests
// encoded and authenticated, the shape of its token responses, how it
// reports errors, how it separates scopes, what it adds to the
// authorization redirect and how its API expects the token. The zero value
// is the textbook behaviour of the server without WithPersonality.
//
// The server is strict: a request that does not follow the personality
// (a form body where JSON is wanted, a missing Accept header or required
// parameter, a code challenge sent to a provider without PKCE, a scope
// list joined with the wrong separator) is refused with invalid_request
// (or invalid_scope) in the personality's error style, so that a client
// that gets a quirk wrong fails its test.
type Personality struct {
	// BodyFormat is how token requests must be encoded: "" or "form"
	// (application/x-www-form-urlencoded), or "json" (a JSON object of
	// strings, Content-Type application/json).
	BodyFormat string
	// AuthStyle is the only client authentication the token endpoint
	// accepts: "header" (client_secret_basic), "body"
	// (client_secret_post), or "" for both. It replaces WithAuthStyles.
	AuthStyle string
	// Accept, when set, is the Accept header every token request must
	// carry (GitHub answers form-encoded bodies without it).
	Accept string
	// ScopeSeparator joins scopes in authorization requests, token
	// requests and token responses: "" (a space), "," or "+". With ",",
	// a scope list holding a space is refused with invalid_scope.
	ScopeSeparator string
	// NoPKCE makes the authorization endpoint refuse a code_challenge, as
	// providers without PKCE support would fail to verify one.
	NoPKCE bool
	// AuthorizeParams must each be in every authorization request, with
	// the value given ("" for any value).
	AuthorizeParams map[string]string
	// TokenParams must be in every token request; RefreshParams in every
	// refresh_token request ("" for any value).
	TokenParams   map[string]string
	RefreshParams map[string]string
	// RedirectParams are added to the query of every successful
	// authorization redirect (QuickBooks' realmId).
	RedirectParams map[string]string

	// AccessTokenPath, RefreshTokenPath, ExpiresInPath and ScopePath are
	// dotted paths where token responses carry those members ("" the top
	// level member of the RFC 6749 name), such as Slack's
	// authed_user.access_token.
	AccessTokenPath  string
	RefreshTokenPath string
	ExpiresInPath    string
	ScopePath        string
	// OmitExpiresIn leaves expires_in out of token responses; the server
	// still enforces its own lifetime (WithLifetime).
	OmitExpiresIn bool
	// Extra members of every token response, by dotted path: Salesforce's
	// instance_url, Slack's team.id.
	Extra map[string]string
	// Rotates makes every refresh issue a new refresh token and retire the
	// old one; it sets WithRotation (a later WithRotation overrides it).
	Rotates bool

	// InvalidGrantStatus, when set, is the HTTP status of an invalid_grant
	// answer, whose body then carries no RFC 6749 error code (only a
	// message), so that only the status tells the grant is dead.
	InvalidGrantStatus int
	// ErrorIn200 answers every token endpoint error with 200 and a body
	// {"ok":false,"error":CODE}, as Slack does.
	ErrorIn200 bool

	// TokenHeader is the header the protected resource reads the access
	// token from ("" Authorization), with TokenScheme and a space before
	// the token; an empty TokenScheme with a TokenHeader set means the bare
	// token (Shopify's X-Shopify-Access-Token). With both empty the
	// resource wants Authorization: Bearer.
	TokenHeader string
	TokenScheme string
	// ResourcePaths are more paths that serve the protected resource, for
	// any method: a provider's token check such as Slack's /auth.test.
	// With ErrorIn200, the resource answers a bad token with 200 and
	// {"ok":false,"error":"invalid_auth"}, as Slack's API does.
	ResourcePaths []string
}

var (
	personalityPathRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	resourcePathRE    = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)
	// builtinPaths are the server's own endpoints.
	builtinPaths = map[string]bool{"/token": true, "/authorize": true, "/revoke": true, "/resource": true,
		deviceAuthorizationPath: true, devicePath: true, cssPath: true, oidcPath: true, metadataPath: true, jwksPath: true}
)

// WithPersonality makes the server behave as p says; see Personality. It
// panics at construction if p is invalid.
func WithPersonality(p Personality) Option {
	return func(c *config) {
		cp := p
		c.personality = &cp
		c.rotation = p.Rotates
		switch p.AuthStyle {
		case "header":
			c.basic, c.post = true, false
		case "body":
			c.basic, c.post = false, true
		}
	}
}

// validate reports the first invalid field of p.
func (p *Personality) validate() error {
	switch {
	case p.BodyFormat != "" && p.BodyFormat != "form" && p.BodyFormat != "json":
		return fmt.Errorf("WithPersonality: BodyFormat must be form or json, got %q", printable(p.BodyFormat, 20))
	case p.AuthStyle != "" && p.AuthStyle != "header" && p.AuthStyle != "body":
		return fmt.Errorf("WithPersonality: AuthStyle must be header or body, got %q", printable(p.AuthStyle, 20))
	case p.ScopeSeparator != "" && p.ScopeSeparator != " " && p.ScopeSeparator != "," && p.ScopeSeparator != "+":
		return fmt.Errorf("WithPersonality: ScopeSeparator must be a space, ',' or '+'")
	case p.InvalidGrantStatus != 0 && (p.InvalidGrantStatus < 400 || p.InvalidGrantStatus > 599):
		return fmt.Errorf("WithPersonality: InvalidGrantStatus %d is not a 4xx or 5xx status", p.InvalidGrantStatus)
	case strings.ContainsAny(p.Accept+p.TokenHeader+p.TokenScheme, "\r\n"):
		return fmt.Errorf("WithPersonality: a header holds a line break")
	}
	for _, rp := range p.ResourcePaths {
		if !resourcePathRE.MatchString(rp) || strings.Contains(rp, "..") || builtinPaths[rp] {
			return fmt.Errorf("WithPersonality: ResourcePaths: %q is not a free path such as /auth.test", printable(rp, 60))
		}
	}
	paths := map[string]string{"AccessTokenPath": p.AccessTokenPath, "RefreshTokenPath": p.RefreshTokenPath,
		"ExpiresInPath": p.ExpiresInPath, "ScopePath": p.ScopePath}
	for k := range p.Extra {
		paths["Extra"] = k
		if !personalityPathRE.MatchString(k) {
			break
		}
	}
	for field, v := range paths {
		if v != "" && !personalityPathRE.MatchString(v) {
			return fmt.Errorf("WithPersonality: %s %q is not a dotted path", field, printable(v, 40))
		}
	}
	return nil
}

// scopeSep returns the personality's scope separator; " " without one.
func (c *config) scopeSep() string {
	if c.personality == nil || c.personality.ScopeSeparator == "" {
		return " "
	}
	return c.personality.ScopeSeparator
}

// splitScope turns a scope list joined with the personality's separator
// into the server's space-separated form; ok is false for a list the
// provider would not understand (a space in a comma-separated list).
func (c *config) splitScope(s string) (string, bool) {
	sep := c.scopeSep()
	if sep == " " {
		return s, true
	}
	if strings.ContainsAny(s, " \t") {
		return "", false
	}
	return strings.Join(strings.Split(s, sep), " "), true
}

// readTokenRequest reads a token request's parameters as the personality
// wants them sent: a form (readForm) or a JSON object of strings; and
// checks its Accept header.
func (s *Server) readTokenRequest(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	p := s.cfg.personality
	if p == nil {
		return readForm(w, r)
	}
	var form url.Values
	if p.BodyFormat == "json" {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return url.Values{}, errInvalidRequest("the body must be application/json")
		}
		var m map[string]any
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
		if err := dec.Decode(&m); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return url.Values{}, errInvalidRequest("the body is too large")
			}
			return url.Values{}, errInvalidRequest("the body is not a JSON object")
		}
		form = url.Values{}
		for k, v := range m {
			str, ok := v.(string)
			if !ok {
				return form, errInvalidRequest("parameter " + printable(k, 40) + " must be a string")
			}
			form.Set(k, str)
		}
	} else {
		var oerr *oauthError
		if form, oerr = readForm(w, r); oerr != nil {
			return form, oerr
		}
	}
	if p.Accept != "" && r.Header.Get("Accept") != p.Accept {
		return form, errInvalidRequest("the Accept header must be " + printable(p.Accept, 60))
	}
	need := func(m map[string]string) *oauthError {
		for k, v := range m {
			if got, ok := form[k]; !ok || (v != "" && got[0] != v) {
				return errInvalidRequest("parameter " + printable(k, 40) + " is missing or wrong")
			}
		}
		return nil
	}
	if oerr := need(p.TokenParams); oerr != nil {
		return form, oerr
	}
	if form.Get("grant_type") == "refresh_token" {
		if oerr := need(p.RefreshParams); oerr != nil {
			return form, oerr
		}
	}
	if sc, ok := form["scope"]; ok {
		v, ok := s.cfg.splitScope(sc[0])
		if !ok {
			return form, errInvalidScope("scopes must be joined with " + strconv.Quote(s.cfg.scopeSep()))
		}
		form.Set("scope", v)
	}
	return form, nil
}

// checkAuthorize applies the personality to an authorization request: the
// parameters it requires, PKCE refused where it has none, and its scope
// separator. It returns the scope in the server's space-separated form, or
// an error code and description to redirect with.
func (s *Server) checkAuthorize(q url.Values) (scope, code, desc string) {
	p := s.cfg.personality
	scope = q.Get("scope")
	if p == nil {
		return scope, "", ""
	}
	for k, v := range p.AuthorizeParams {
		if got, ok := q[k]; !ok || (v != "" && got[0] != v) {
			return "", "invalid_request", "parameter " + printable(k, 40) + " is missing or wrong"
		}
	}
	if p.NoPKCE && (q.Has("code_challenge") || q.Has("code_challenge_method")) {
		return "", "invalid_request", "this provider does not support PKCE"
	}
	scope, ok := s.cfg.splitScope(scope)
	if !ok {
		return "", "invalid_scope", "scopes must be joined with " + strconv.Quote(s.cfg.scopeSep())
	}
	return scope, "", ""
}

// redirectExtras adds the personality's redirect parameters to params.
func (s *Server) redirectExtras(params url.Values) {
	if p := s.cfg.personality; p != nil {
		for k, v := range p.RedirectParams {
			params.Set(k, v)
		}
	}
}

// setPath sets the member at the dotted path of m, creating objects on the
// way.
func setPath(m map[string]any, path string, v any) {
	segs := strings.Split(path, ".")
	for _, seg := range segs[:len(segs)-1] {
		sub, ok := m[seg].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[seg] = sub
		}
		m = sub
	}
	m[segs[len(segs)-1]] = v
}

func orDefault(v, d string) string {
	if v != "" {
		return v
	}
	return d
}

// shapeResponse returns resp in the personality's response shape.
func (s *Server) shapeResponse(resp *tokenResponse) map[string]any {
	p := s.cfg.personality
	m := map[string]any{"token_type": resp.TokenType}
	for path, v := range p.Extra {
		setPath(m, path, v)
	}
	setPath(m, orDefault(p.AccessTokenPath, "access_token"), resp.AccessToken)
	if resp.ExpiresIn != nil && !p.OmitExpiresIn {
		setPath(m, orDefault(p.ExpiresInPath, "expires_in"), resp.ExpiresIn)
	}
	if resp.RefreshToken != "" {
		setPath(m, orDefault(p.RefreshTokenPath, "refresh_token"), resp.RefreshToken)
	}
	if resp.Scope != "" {
		setPath(m, orDefault(p.ScopePath, "scope"), strings.Join(strings.Fields(resp.Scope), s.cfg.scopeSep()))
	}
	if resp.IDToken != "" {
		m["id_token"] = resp.IDToken
	}
	return m
}

// writeError writes e in the personality's error style, or per RFC 6749
// §5.2 without one.
func (s *Server) writeError(w http.ResponseWriter, e *oauthError) {
	p := s.cfg.personality
	switch {
	case p == nil:
		writeOAuthError(w, e)
	case p.ErrorIn200:
		setNoStore(w.Header())
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": e.code})
	case e.code == "invalid_grant" && p.InvalidGrantStatus != 0:
		setNoStore(w.Header())
		writeJSON(w, p.InvalidGrantStatus, map[string]string{"message": e.desc})
	default:
		writeOAuthError(w, e)
	}
}

// resourceToken returns the access token of a resource request, read as
// the personality's API expects it.
func (s *Server) resourceToken(r *http.Request) (string, bool) {
	p := s.cfg.personality
	if p == nil || (p.TokenHeader == "" && p.TokenScheme == "") {
		return bearerToken(r)
	}
	v := r.Header.Get(orDefault(p.TokenHeader, "Authorization"))
	if p.TokenScheme != "" {
		scheme, tok, found := strings.Cut(v, " ")
		if !found || !strings.EqualFold(scheme, p.TokenScheme) {
			return "", false
		}
		v = tok
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}
