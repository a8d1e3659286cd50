package oauthtest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// tokenResponse is a successful token response (RFC 6749 §5.1). ExpiresIn is
// an int64, a string (FaultExpiresInString) or nil (FaultMissingExpiresIn).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    any    `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"` // OpenID Connect: grants.go
}

// grantResult is the outcome of one token request, for the response and the
// log line. It never holds a secret except the tokens in resp.
type grantResult struct {
	resp     *tokenResponse
	err      *oauthError
	clientID string // a registered client id, or ""
	family   string
	event    string // "family_started", "rotated", "grace_reuse", "reuse_detected", "code_reuse"
}

// handleToken serves POST /token.
func (s *Server) handleToken() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		form, perr := s.readTokenRequest(w, r)
		grant := form.Get("grant_type")
		s.countTokenRequest(grant)
		fault, faulted := s.nextFault()

		if !s.wait(r.Context()) {
			if s.isClosed() {
				http.Error(w, "oauthtest: server closed", http.StatusServiceUnavailable)
			}
			s.logGrant(r.Context(), grant, grantResult{}, "dropped", fault, faulted, start)
			return
		}
		if faulted && !fault.Kind.processes() {
			writeErrorFault(w, fault)
			s.logGrant(r.Context(), grant, grantResult{}, "fault", fault, faulted, start)
			return
		}

		var res grantResult
		if perr != nil {
			res.err = perr
		} else {
			res = s.grant(r, grant, form)
		}
		if res.err != nil {
			s.writeError(w, res.err)
			s.logGrant(r.Context(), grant, res, "rejected", fault, faulted, start)
			return
		}
		s.writeTokenResponse(w, res.resp, fault.Kind)
		s.logGrant(r.Context(), grant, res, "issued", fault, faulted, start)
	}
}

// countTokenRequest counts a token request under its grant_type, cut to 64
// bytes.
func (s *Server) countTokenRequest(grant string) {
	if len(grant) > 64 {
		grant = grant[:64]
	}
	s.mu.Lock()
	s.stats.TokenRequests[grant]++
	s.mu.Unlock()
}

// wait sleeps for the configured latency. It reports false if the request's
// context ended or the server was closed first.
func (s *Server) wait(ctx context.Context) bool {
	if s.cfg.latency <= 0 {
		return true
	}
	t := time.NewTimer(s.cfg.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	}
}

func (s *Server) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// logGrant writes the one log line of a token request. It logs the grant
// type, the client id (only once it names a registered client), the
// outcome and error code, never a token, code or secret.
func (s *Server) logGrant(ctx context.Context, grant string, res grantResult, outcome string, f Fault, faulted bool, start time.Time) {
	level := slog.LevelInfo
	if res.event == "reuse_detected" || res.event == "code_reuse" {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("grant_type", printable(grant, 64)),
		slog.String("client_id", res.clientID),
		slog.String("outcome", outcome),
	}
	if res.err != nil {
		attrs = append(attrs, slog.String("error", res.err.code), slog.Int("status", res.err.status))
	}
	if faulted {
		attrs = append(attrs, slog.String("fault", f.Kind.String()))
	}
	if res.family != "" {
		attrs = append(attrs, slog.String("family", res.family))
	}
	if res.event != "" {
		attrs = append(attrs, slog.String("event", res.event))
	}
	attrs = append(attrs, slog.Duration("duration", time.Since(start)))
	s.cfg.logger.LogAttrs(ctx, level, "oauthtest: token request", attrs...)
}

// writeTokenResponse writes a successful token response, shaped by a
// success-kind fault (or kind 0 for none) and the personality.
func (s *Server) writeTokenResponse(w http.ResponseWriter, resp *tokenResponse, kind FaultKind) {
	setNoStore(w.Header())
	switch kind {
	case FaultMissingExpiresIn:
		resp.ExpiresIn = nil
	case FaultExpiresInString:
		resp.ExpiresIn = strconv.FormatInt(resp.ExpiresIn.(int64), 10)
	case FaultFormEncoded:
		v := url.Values{}
		v.Set("access_token", resp.AccessToken)
		v.Set("token_type", resp.TokenType)
		v.Set("expires_in", strconv.FormatInt(resp.ExpiresIn.(int64), 10))
		if resp.RefreshToken != "" {
			v.Set("refresh_token", resp.RefreshToken)
		}
		if resp.Scope != "" {
			v.Set("scope", resp.Scope)
		}
		if resp.IDToken != "" {
			v.Set("id_token", resp.IDToken)
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(v.Encode()))
		return
	}
	if s.cfg.personality != nil {
		writeJSON(w, http.StatusOK, s.shapeResponse(resp))
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// grant authenticates the client and runs the grant.
func (s *Server) grant(r *http.Request, grant string, form url.Values) grantResult {
	c, oerr := s.authenticate(r, form)
	if oerr != nil {
		return grantResult{err: oerr, clientID: s.registeredID(form, r)}
	}
	var res grantResult
	switch grant {
	case "client_credentials":
		res = s.clientCredentialsGrant(c, form)
	case "refresh_token":
		res = s.refreshTokenGrant(c, form)
	case "authorization_code":
		res = s.authorizationCodeGrant(c, form)
	case deviceCodeGrantType:
		res = s.deviceCodeGrant(c, form)
	case "":
		res.err = errInvalidRequest("grant_type is missing")
	default:
		res.err = errUnsupportedGrantType("grant_type " + printable(grant, 40) + " is not supported")
	}
	res.clientID = c.id
	return res
}

// registeredID returns the client id a failed request claimed, if it names
// a registered client, for the log line; "" otherwise, so that arbitrary
// input (perhaps a mistyped secret) never reaches the log.
func (s *Server) registeredID(form url.Values, r *http.Request) string {
	id := form.Get("client_id")
	if u, _, ok := r.BasicAuth(); ok {
		if uid, err := url.QueryUnescape(u); err == nil {
			id = uid
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients[id] != nil {
		return id
	}
	return ""
}

// authenticate identifies and authenticates the client of a token or
// revocation request: client_secret_basic (RFC 6749 §2.3.1, with the id and
// secret form-urlencoded before Basic encoding), client_secret_post, or,
// for a public client, client_id alone.
func (s *Server) authenticate(r *http.Request, form url.Values) (*client, *oauthError) {
	formSecret, hasFormSecret := form["client_secret"]
	formID := form.Get("client_id")
	var id, secret string
	public := false
	switch {
	case r.Header.Get("Authorization") != "":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return nil, errInvalidClient("the Authorization header must use HTTP Basic")
		}
		if hasFormSecret {
			return nil, errInvalidRequest("more than one client authentication method was used")
		}
		if !s.cfg.basic {
			return nil, errInvalidClient("client_secret_basic is not accepted; send the credentials in the body")
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(user)
		secret, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, errInvalidClient("the Basic credentials are not form-urlencoded correctly")
		}
		if formID != "" && formID != id {
			return nil, errInvalidRequest("client_id does not match the Authorization header")
		}
	case hasFormSecret:
		if !s.cfg.post {
			return nil, errInvalidClient("client_secret_post is not accepted; use HTTP Basic")
		}
		if formID == "" {
			return nil, errInvalidClient("client_id is missing")
		}
		id, secret = formID, formSecret[0]
	default:
		if formID == "" {
			return nil, errInvalidClient("client authentication is required")
		}
		id, public = formID, true
	}

	s.mu.Lock()
	c := s.clients[id]
	var want digest
	isPublic := false
	if c != nil {
		want, isPublic = c.secretHash, c.public
	}
	s.mu.Unlock()

	if public {
		if c == nil || !isPublic {
			return nil, errInvalidClient("client authentication failed")
		}
		return c, nil
	}
	got := hashOf(secret)
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	if c == nil || isPublic || !match {
		return nil, errInvalidClient("client authentication failed")
	}
	return c, nil
}

// clientCredentialsGrant runs the client_credentials grant (RFC 6749 §4.4).
func (s *Server) clientCredentialsGrant(c *client, form url.Values) grantResult {
	scope := normalizeScope(form.Get("scope"))
	at := newToken(accessPrefix)
	h := hashOf(at)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.public {
		return grantResult{err: errUnauthorizedClient("a public client may not use client_credentials")}
	}
	s.addAccessLocked(c, nil, scope, h, s.cfg.now())
	return grantResult{resp: s.response(at, "", scope)}
}

// response builds a token response for a new access token.
func (s *Server) response(accessToken, refreshToken, scope string) *tokenResponse {
	return &tokenResponse{
		AccessToken:  accessToken,
		TokenType:    "Bearer",
		ExpiresIn:    expiresIn(s.cfg.lifetime),
		RefreshToken: refreshToken,
		Scope:        scope,
	}
}

// refreshTokenGrant runs the refresh_token grant (RFC 6749 §6) with
// rotation and reuse detection as configured.
func (s *Server) refreshTokenGrant(c *client, form url.Values) grantResult {
	presented := form.Get("refresh_token")
	if presented == "" {
		return grantResult{err: errInvalidRequest("refresh_token is missing")}
	}
	h := hashOf(presented)
	at := newToken(accessPrefix)
	ah := hashOf(at)
	var rt string
	var rh digest
	if s.cfg.rotation {
		rt = newToken(refreshPrefix)
		rh = hashOf(rt)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.now()
	r := s.refresh[h]
	if r == nil {
		return grantResult{err: errInvalidGrant("the refresh token is unknown")}
	}
	r.presentations++
	s.maxPresent = max(s.maxPresent, r.presentations)
	f := r.family
	res := grantResult{family: f.id}
	switch {
	case f.client != c:
		res.err = errInvalidGrant("the refresh token was issued to another client")
		return res
	case r.retired && s.cfg.reuseDetection && now.Sub(r.retiredAt) > s.cfg.grace:
		// Checked before revocation, so that a rotated token presented to
		// an already revoked family still counts as a reuse.
		s.stats.ReuseDetections++
		if !f.revoked && f.current.presentations == 0 {
			s.stats.LostRefreshTokens++
		}
		s.revokeFamilyLocked(f)
		res.event = "reuse_detected"
		res.err = errInvalidGrant("the refresh token was already used; its family is revoked")
		return res
	case f.revoked:
		res.err = errInvalidGrant("the refresh token was revoked")
		return res
	case !r.expiresAt.IsZero() && !now.Before(r.expiresAt):
		res.err = errInvalidGrant("the refresh token has expired")
		return res
	case r.retired && !s.cfg.reuseDetection:
		res.err = errInvalidGrant("the refresh token was rotated and is no longer valid")
		return res
	}
	scope := f.scope
	if req := form.Get("scope"); req != "" {
		if !scopeSubset(req, f.scope) {
			res.err = errInvalidScope("the requested scope exceeds the scope originally granted")
			return res
		}
		scope = normalizeScope(req)
	}
	if r.retired {
		s.stats.GraceReuses++
		res.event = "grace_reuse"
	} else if s.cfg.rotation {
		res.event = "rotated"
	}
	s.addAccessLocked(c, f, scope, ah, now)
	if s.cfg.rotation {
		s.addRefreshLocked(f, rh, now)
	}
	res.resp = s.response(at, rt, scope)
	return res
}

// authorizationCodeGrant runs the authorization_code grant (RFC 6749 §4.1.3)
// with PKCE (RFC 7636) and starts a refresh token family.
func (s *Server) authorizationCodeGrant(c *client, form url.Values) grantResult {
	code := form.Get("code")
	if code == "" {
		return grantResult{err: errInvalidRequest("code is missing")}
	}
	redirectURI := form.Get("redirect_uri")
	if redirectURI == "" {
		return grantResult{err: errInvalidRequest("redirect_uri is missing")}
	}
	verifier := form.Get("code_verifier")
	if verifier != "" && !validPKCEString(verifier) {
		return grantResult{err: errInvalidRequest("code_verifier must be 43 to 128 unreserved characters")}
	}
	sum := sha256.Sum256([]byte(verifier))
	computed := base64.RawURLEncoding.EncodeToString(sum[:])
	h := hashOf(code)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.now()
	rec := s.codes[h]
	var res grantResult
	switch {
	case rec == nil:
		res.err = errInvalidGrant("the authorization code is unknown")
	case rec.client != c:
		res.err = errInvalidGrant("the authorization code was issued to another client")
	case rec.used:
		// RFC 6749 §4.1.2: revoke what the code granted.
		s.stats.CodeReuses++
		if rec.family != nil {
			s.revokeFamilyLocked(rec.family)
			res.family = rec.family.id
		}
		res.event = "code_reuse"
		res.err = errInvalidGrant("the authorization code was already used; its tokens are revoked")
	case !now.Before(rec.expiresAt):
		res.err = errInvalidGrant("the authorization code has expired")
	case rec.epoch != c.epoch:
		res.err = errInvalidGrant("the authorization code was revoked")
	case redirectURI != rec.redirectURI:
		res.err = errInvalidGrant("redirect_uri does not match the authorization request")
	case rec.challenge != "" && verifier == "":
		res.err = errInvalidGrant("code_verifier is required")
	case rec.challenge != "" && subtle.ConstantTimeCompare([]byte(computed), []byte(rec.challenge)) != 1:
		res.err = errInvalidGrant("code_verifier does not match the code_challenge")
	case rec.challenge == "" && verifier != "":
		res.err = errInvalidGrant("code_verifier sent but the authorization request had no code_challenge")
	}
	if res.err != nil {
		return res
	}
	rec.used = true
	f, resp := s.startGrantLocked(c, approval{scope: rec.scope, iss: rec.iss, nonce: rec.nonce, user: rec.user, authTime: rec.authTime}, now)
	rec.family = f
	res.family, res.event = f.id, "family_started"
	res.resp = resp
	return res
}

// validPKCEString reports whether s is a valid code_verifier or S256
// code_challenge: 43 to 128 characters from [A-Za-z0-9-._~] (RFC 7636 §4.1).
func validPKCEString(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}
