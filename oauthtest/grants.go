package oauthtest

import (
	"strings"
	"time"
)

// approval is what an end user approved, carried from the authorization
// request (or device verification) to the token response.
type approval struct {
	scope    string
	iss      string // the issuer named to the client; the ID token's iss
	nonce    string // OpenID Connect nonce; "" when none
	user     EndUser
	authTime time.Time
}

// hasScope reports whether the space-separated scope contains tok.
func hasScope(scope, tok string) bool {
	for _, f := range strings.Fields(scope) {
		if f == tok {
			return true
		}
	}
	return false
}

// startGrantLocked issues the tokens of a newly redeemed grant (an
// authorization code or an approved device code): it starts a refresh token
// family, issues an access token, a refresh token unless
// WithOfflineAccessRequired withholds it, and, with WithOIDC and the openid
// scope, an ID token. It is the one place where those grants shape their
// response. s.mu must be held.
func (s *Server) startGrantLocked(c *client, a approval, now time.Time) (*family, *tokenResponse) {
	f := s.newFamilyLocked(c, a.scope)
	at := newToken(accessPrefix)
	rt := ""
	if !s.cfg.flows.offlineOnly || hasScope(a.scope, "offline_access") {
		rt = newToken(refreshPrefix)
		s.addRefreshLocked(f, hashOf(rt), now)
	}
	s.addAccessLocked(c, f, a.scope, hashOf(at), now)
	resp := s.response(at, rt, a.scope)
	if s.cfg.flows.oidc && hasScope(a.scope, "openid") {
		resp.IDToken = s.flows.signer.idToken(c.id, a, at, now, s.cfg.lifetime)
		s.stats.IDTokensIssued++
	}
	return f, resp
}
