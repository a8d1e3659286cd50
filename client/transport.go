package client

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// Transport is an http.RoundTripper that authorizes each request with a
// token from Source and retries once with a new token when the server
// answers 401.
//
// On a 401 whose WWW-Authenticate does not say insufficient_scope (or
// insufficient_user_authentication, which a new token cannot fix either), it
// calls Source.Invalidate with the token it used, which requests a new token
// only if that one is still current, so any number of concurrent 401s cause
// one refresh; it then replays the request with the new token, up to
// MaxRetries times. If no new token can be had, RoundTrip returns the
// source's error (errors.Is(err, ErrInvalidGrant) works through
// http.Client); if the source returns the same token, the 401 is returned. A request
// body is replayed through Request.GetBody (set by http.NewRequest for
// in-memory bodies); a request with a body but without GetBody is not
// replayed and its 401 is returned. A 403 is never retried.
//
// The caller's request is never modified. A Transport is safe for
// concurrent use; do not change its fields while it is in use.
type Transport struct {
	// Source supplies the tokens. Required.
	Source *TokenSource
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// MaxRetries is how many times a request is replayed after a 401: 0
	// means the default, 1; a negative value disables replays.
	MaxRetries int
	// AllowedHosts, when not empty, lists the hosts ("api.example.com" or
	// "api.example.com:8443", compared case-insensitively) that may receive
	// the token; a request to any other host is sent without it. Whatever
	// this list holds, a request that an http.Client makes to follow a
	// redirect gets the token only if it goes to the host of the original
	// request or to a listed host, as net/http does for its own
	// Authorization header: a redirect never carries the token elsewhere.
	AllowedHosts []string
}

var _ http.RoundTripper = (*Transport)(nil)

// maxDrain bounds how much of a 401 body is read before it is closed, so
// that the connection can be reused.
const maxDrain = 64 << 10

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	bodyClosed := false
	if req.Body != nil {
		defer func() {
			if !bodyClosed {
				req.Body.Close()
			}
		}()
	}
	if t.Source == nil {
		return nil, errors.New("client: transport: nil Source")
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if !t.mayAuthorize(req) {
		// Not a host the token is for: send the request as it is, with
		// no Authorization header of ours.
		r := req.Clone(req.Context())
		r.Header.Del("Authorization")
		bodyClosed = true
		return base.RoundTrip(r)
	}
	ctx := req.Context()
	tok, err := t.Source.TokenContext(ctx)
	if err != nil {
		return nil, err
	}
	retries := t.MaxRetries
	if retries == 0 {
		retries = 1
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil

	body := req.Body
	for attempt := 0; ; attempt++ {
		r := req.Clone(ctx)
		r.Body = body
		r.Header.Set("Authorization", tok.Type()+" "+tok.AccessToken)
		bodyClosed = true // the base RoundTripper closes it
		resp, err := base.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || !retryable401(resp.Header) {
			return resp, nil
		}
		// Even when this request is not replayed, the next ones get a
		// new token.
		t.Source.Invalidate(tok)
		if attempt >= retries || !replayable || ctx.Err() != nil {
			return resp, nil
		}
		next, err := t.Source.TokenContext(ctx)
		if err != nil {
			drainClose(resp.Body)
			return nil, fmt.Errorf("client: transport: new token after 401: %w", err)
		}
		if next.AccessToken == tok.AccessToken {
			// No new token to try: the server's answer stands.
			return resp, nil
		}
		var nextBody io.ReadCloser
		if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
			nextBody, err = req.GetBody()
			if err != nil {
				drainClose(resp.Body)
				return nil, fmt.Errorf("client: transport: replay body: %w", err)
			}
		} else if req.Body == http.NoBody {
			nextBody = http.NoBody
		}
		drainClose(resp.Body)
		body, tok = nextBody, next
	}
}

// drainClose reads a little of rc, so the connection can be reused, and
// closes it.
func drainClose(rc io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(rc, maxDrain))
	rc.Close()
}

// retryable401 reports whether a 401 with header h may be cured by a new
// token: false if any Bearer challenge says insufficient_scope or
// insufficient_user_authentication.
func retryable401(h http.Header) bool {
	for _, v := range h.Values("Www-Authenticate") {
		for _, c := range parseChallenges(v) {
			if !strings.EqualFold(c.scheme, "bearer") {
				continue
			}
			switch c.params["error"] {
			case "insufficient_scope", "insufficient_user_authentication":
				return false
			}
		}
	}
	return true
}

// challenge is one WWW-Authenticate challenge (RFC 9110 §11.6.1).
type challenge struct {
	scheme string
	params map[string]string // auth-param names in lower case
}

// parseChallenges parses a WWW-Authenticate field value into challenges. It
// is lenient: it never fails, and skips what it cannot read.
func parseChallenges(v string) []challenge {
	var out []challenge
	p := &headerParser{s: v}
	for {
		p.skipSpaceAndCommas()
		if p.done() {
			return out
		}
		scheme := p.token()
		if scheme == "" {
			p.i++ // not a token character: skip it
			continue
		}
		c := challenge{scheme: scheme, params: map[string]string{}}
		p.skipSpace()
		// token68, or auth-params: name = value, separated by commas. A
		// token followed by something other than '=' starts the next
		// challenge.
		for {
			p.skipSpace()
			if p.done() {
				break
			}
			save := p.i
			name := p.token()
			if name == "" {
				if p.peek() == ',' {
					p.i++
					continue
				}
				// token68 or garbage: skip to the next comma.
				p.skipTo(',')
				continue
			}
			p.skipSpace()
			if p.peek() != '=' {
				p.i = save // the next challenge's scheme
				break
			}
			p.i++
			p.skipSpace()
			if p.peek() == '=' {
				// token68 ending in '=': not a parameter.
				p.skipTo(',')
				continue
			}
			var val string
			if p.peek() == '"' {
				val = p.quoted()
			} else {
				val = p.token()
			}
			c.params[strings.ToLower(name)] = val
			p.skipSpace()
			if p.peek() == ',' {
				p.i++
			}
		}
		out = append(out, c)
	}
}

// headerParser reads an HTTP header value.
type headerParser struct {
	s string
	i int
}

func (p *headerParser) done() bool { return p.i >= len(p.s) }

func (p *headerParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *headerParser) skipSpace() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *headerParser) skipSpaceAndCommas() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

func (p *headerParser) skipTo(b byte) {
	for !p.done() && p.s[p.i] != b {
		p.i++
	}
	if !p.done() {
		p.i++
	}
}

// token reads an RFC 9110 token.
func (p *headerParser) token() string {
	start := p.i
	for !p.done() && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string starting at '"' and returns its value.
func (p *headerParser) quoted() string {
	p.i++ // opening quote
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if !p.done() {
				b.WriteByte(p.s[p.i])
				p.i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// mayAuthorize reports whether req may carry the token: its host is listed
// in AllowedHosts (when set), and a redirected request goes to the host of
// the request that started the chain or to a listed host.
func (t *Transport) mayAuthorize(req *http.Request) bool {
	host := requestHost(req)
	listed := t.listed(host)
	if len(t.AllowedHosts) > 0 && !listed {
		return false
	}
	orig := req
	for orig.Response != nil && orig.Response.Request != nil {
		orig = orig.Response.Request
	}
	return orig == req || listed || strings.EqualFold(requestHost(orig), host)
}

func (t *Transport) listed(host string) bool {
	hostOnly := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostOnly = h
	}
	for _, a := range t.AllowedHosts {
		if strings.EqualFold(a, host) || strings.EqualFold(a, hostOnly) {
			return true
		}
	}
	return false
}

// requestHost is the host (with port, if any) a request is sent to.
func requestHost(req *http.Request) string {
	if req.URL != nil && req.URL.Host != "" {
		return req.URL.Host
	}
	return req.Host
}
