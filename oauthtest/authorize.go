package oauthtest

import (
	"log/slog"
	"net/http"
	"net/url"
)

// handleAuthorize serves GET /authorize: it approves every valid request at
// once and redirects to redirect_uri with a code, the state and iss, or,
// with WithConsent, shows the consent page (consent.go).
//
// client_id must name a registered client and redirect_uri must be an
// absolute URL without a fragment; otherwise the answer is 400 and no
// redirect (RFC 6749 §4.1.2.1). Other errors are redirected: response_type
// other than code (unsupported_response_type), a code_challenge_method
// other than S256, a malformed code_challenge, or a public client without
// PKCE (invalid_request).
func (s *Server) handleAuthorize() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for k, v := range q {
			if len(v) > 1 {
				s.authorizeFail(w, r, "", "invalid_request", "parameter "+printable(k, 40)+" is repeated")
				return
			}
		}
		clientID := q.Get("client_id")
		s.mu.Lock()
		c := s.clients[clientID]
		public := c != nil && c.public
		s.mu.Unlock()
		if c == nil {
			s.authorizeFail(w, r, "", "invalid_request", "client_id is missing or unknown")
			return
		}
		redirectURI := q.Get("redirect_uri")
		target, err := url.Parse(redirectURI)
		if redirectURI == "" || err != nil || !target.IsAbs() || target.Fragment != "" || target.Opaque != "" {
			s.authorizeFail(w, r, c.id, "invalid_request", "redirect_uri must be an absolute URL without a fragment")
			return
		}
		state := q.Get("state")
		redirect := func(params url.Values) {
			base := codeRequest{redirect: target, state: state, iss: s.issuerFor(r)}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, base.redirectTo(params), http.StatusFound)
		}
		fail := func(code, desc string) {
			s.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "oauthtest: authorization request",
				slog.String("client_id", c.id), slog.String("outcome", "rejected"), slog.String("error", code))
			redirect(url.Values{"error": {code}, "error_description": {desc}})
		}

		if rt := q.Get("response_type"); rt != "code" {
			fail("unsupported_response_type", "response_type must be code")
			return
		}
		challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
		switch {
		case challenge != "" && method != "S256":
			fail("invalid_request", "code_challenge_method must be S256")
			return
		case challenge != "" && (len(challenge) != 43 || !validPKCEString(challenge)):
			fail("invalid_request", "code_challenge must be a base64url SHA-256 digest of 43 characters")
			return
		case challenge == "" && method != "":
			fail("invalid_request", "code_challenge_method given without code_challenge")
			return
		case challenge == "" && public:
			fail("invalid_request", "a public client must use PKCE")
			return
		}

		scope, pcode, pdesc := s.checkAuthorize(q)
		if pcode != "" {
			fail(pcode, pdesc)
			return
		}
		req := &codeRequest{
			redirect:    target,
			redirectURI: redirectURI,
			state:       state,
			iss:         s.issuerFor(r),
			challenge:   challenge,
			nonce:       q.Get("nonce"),
			extras:      url.Values{},
		}
		s.redirectExtras(req.extras)
		scope = normalizeScope(scope)
		if s.cfg.flows.consent {
			s.showConsent(w, r, &consentRequest{client: c, scope: scope, code: req})
			return
		}
		code := s.issueCode(c, req, scope, s.cfg.flows.endUser())
		s.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "oauthtest: authorization request",
			slog.String("client_id", c.id), slog.String("outcome", "approved"),
			slog.Bool("pkce", challenge != ""))
		params := url.Values{"code": {code}}
		s.redirectExtras(params)
		redirect(params)
	}
}

// codeRequest is a validated authorization code request.
type codeRequest struct {
	redirect    *url.URL // redirect_uri, parsed
	redirectURI string
	state       string     // "" when the client sent none
	iss         string     // the issuer announced in the redirect
	challenge   string     // S256 code challenge; "" without PKCE
	nonce       string     // OpenID Connect nonce; "" when none
	extras      url.Values // added to a redirect with a code (Personality.RedirectParams)
}

// redirectTo returns the redirect URI with params, state and iss added to
// its query.
func (q *codeRequest) redirectTo(params url.Values) string {
	if q.state != "" {
		params.Set("state", q.state)
	}
	if params.Has("code") {
		for k, v := range q.extras {
			params[k] = v
		}
	}
	params.Set("iss", q.iss)
	u := *q.redirect
	tq := u.Query()
	for k, v := range params {
		tq[k] = v
	}
	u.RawQuery = tq.Encode()
	return u.String()
}

// issueCode stores a new authorization code for an approved request and
// returns it.
func (s *Server) issueCode(c *client, req *codeRequest, scope string, user EndUser) string {
	code := newToken(codePrefix)
	h := hashOf(code)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.now()
	s.codeQueue.popDue(now, func(k digest) { delete(s.codes, k) })
	exp := now.Add(s.cfg.codeLifetime)
	s.codes[h] = &codeRecord{
		client:      c,
		epoch:       c.epoch,
		redirectURI: req.redirectURI,
		challenge:   req.challenge,
		scope:       scope,
		expiresAt:   exp,
		iss:         req.iss,
		nonce:       req.nonce,
		user:        user,
		authTime:    now,
	}
	s.codeQueue.push(h, exp.Add(s.cfg.codeLifetime))
	s.stats.CodesIssued++
	return code
}

// authorizeFail answers an authorization request that cannot be redirected.
func (s *Server) authorizeFail(w http.ResponseWriter, r *http.Request, clientID, code, desc string) {
	s.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "oauthtest: authorization request",
		slog.String("client_id", clientID), slog.String("outcome", "rejected"), slog.String("error", code))
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, code+": "+desc, http.StatusBadRequest)
}

// issuerFor returns the issuer, or, before SetIssuer on a NewHandler
// server, one derived from the request's Host.
func (s *Server) issuerFor(r *http.Request) string {
	s.mu.Lock()
	iss := s.issuer
	s.mu.Unlock()
	if iss != "" {
		return iss
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
