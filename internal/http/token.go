package http

import (
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// tokenJSON is the one response that carries a secret: the access token.
type tokenJSON struct {
	AccessToken string     `json:"access_token"`
	TokenType   string     `json:"token_type"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	ExpiresIn   *int64     `json:"expires_in,omitempty"`
}

func (s *server) writeToken(w http.ResponseWriter, t *tokenkeeper.Token) {
	j := tokenJSON{AccessToken: t.AccessToken, TokenType: t.TokenType}
	if j.TokenType == "" {
		j.TokenType = "Bearer"
	}
	if !t.ExpiresAt.IsZero() {
		at := t.ExpiresAt.UTC()
		in := int64(t.ExpiresAt.Sub(s.now()) / time.Second) // whole seconds, rounded down
		j.ExpiresAt, j.ExpiresIn = &at, &in
	}
	writeJSON(w, http.StatusOK, &j)
}

// writeServedError writes err for a token read or refresh: an unknown name
// gets the same answer whether or not it exists, and a credential without a
// valid token names its status and last error code.
func (s *server) writeServedError(w http.ResponseWriter, r *http.Request, name string, sv *refresh.Served, err error) {
	switch tokenkeeper.ErrorCode(err) {
	case tokenkeeper.ENOTFOUND:
		err = errNotFound(name)
	case tokenkeeper.ENOTREADY:
		p := problemFor(err)
		if sv != nil {
			p.CredentialStatus, p.LastErrorCode = string(sv.Status), sv.LastErrorCode
		}
		writeProblem(w, p)
		return
	}
	s.Error(w, r, err)
}

func (s *server) handleToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var minTTL time.Duration
		if v := r.URL.Query().Get("min_ttl"); v != "" {
			d, err := parseDuration("min_ttl", v)
			if err != nil {
				s.Error(w, r, err)
				return
			}
			minTTL = d
		}
		sv, err := s.refresher.Token(r.Context(), name, minTTL)
		if err != nil {
			s.writeServedError(w, r, name, sv, err)
			return
		}
		s.auditw.tokenRead(actor(r), name, remoteHost(r))
		s.writeToken(w, sv.Token)
	})
}

type refreshRequest struct {
	RejectedToken string `json:"rejected_token"`
}

func (s *server) handleRefresh() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req refreshRequest
		if err := s.decodeOptional(w, r, &req); err != nil {
			s.Error(w, r, err)
			return
		}
		if s.forcedRefreshGate(w, r, name, req.RejectedToken) { // floor and rate limit: forcelimit.go
			return
		}
		c, err := s.refresher.Refresh(r.Context(), name, req.RejectedToken)
		detail := "forced"
		if req.RejectedToken != "" {
			detail = "rejected token reported"
		}
		s.audit(r, actor(r), "credential.refresh", name, outcomeOf(err), detail)
		if err != nil {
			s.writeServedError(w, r, name, nil, err)
			return
		}
		// Answer with the new token only if the refresh succeeded; never hand
		// back the token the caller just reported as rejected, nor one about
		// to expire: say why there is no better one.
		if t := c.Token; c.Status == tokenkeeper.StatusActive && t.Valid(s.now(), time.Second) && (req.RejectedToken == "" || t.AccessToken != req.RejectedToken) {
			s.writeToken(w, t)
			return
		}
		sv := &refresh.Served{Name: c.Name, Status: c.Status, LastErrorCode: c.LastErrorCode}
		msg := "the refresh of credential %q did not produce a new token: its status is %s"
		if c.LastErrorCode != "" {
			msg += " (last error: " + c.LastErrorCode + ")"
		}
		s.writeServedError(w, r, name, sv, tokenkeeper.Errorf(tokenkeeper.ENOTREADY, msg, c.Name, c.Status))
	})
}

func outcomeOf(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
