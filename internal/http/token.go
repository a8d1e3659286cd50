package http

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// tokenJSON is the one response that carries a secret: the access token.
// expires_at is the advertised expiry (refresh.AdvertisedExpiry): the
// earlier of the provider's expiry and the broker's planned replacement of
// the token less refresh.ExpiryMargin; expires_in is the same in whole
// seconds, rounded down, and never 0.
type tokenJSON struct {
	AccessToken string     `json:"access_token"`
	TokenType   string     `json:"token_type"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	ExpiresIn   *int64     `json:"expires_in,omitempty"`
}

// writeToken writes t with its advertised expiry at (zero: unknown), which
// the caller made sure is at least refresh.MinServedLife away at now, the
// time expires_in counts from. It is the
// hot path of every token read: the body is appended to a pooled buffer,
// byte for byte what json.Marshal of tokenJSON makes (appendTokenJSON).
func (s *server) writeToken(w http.ResponseWriter, t *tokenkeeper.Token, at, now time.Time) {
	tokenType := t.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	var in int64
	if !at.IsZero() {
		at = at.UTC()
		in = expiresIn(at, now)
	}
	bp := tokenBufs.Get().(*[]byte)
	answerToken(w, bp, appendTokenJSON((*bp)[:0], t.AccessToken, tokenType, at, in), false, now)
}

// answerToken writes body, a JSON answer that carries a token, built in
// the pooled buffer bp, and puts bp back: 200, never to be cached (with
// pragma, also Pragma: no-cache, as RFC 6749 asks of the token endpoint).
// Its Date is now's second, from httpDate.
func answerToken(w http.ResponseWriter, bp *[]byte, body []byte, pragma bool, now time.Time) {
	body = append(body, '\n')
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	if pragma {
		h["Pragma"] = noCache
	}
	h["Date"] = httpDate(now)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	*bp = body
	tokenBufs.Put(bp)
}

// The token answer's header values, shared by every answer: never
// modified (net/http copies them when it writes the header; a capacity of
// 1 makes an append copy them too).
var (
	jsonContentType = []string{"application/json"}[:1:1]
	noStore         = []string{"no-store"}[:1:1]
	noCache         = []string{"no-cache"}[:1:1]
)

// dateHeader is the Date header of the second it was formatted for.
type dateHeader struct {
	sec   int64
	value []string // capacity 1, never modified
}

var lastDate atomic.Pointer[dateHeader]

// httpDate is the Date header's value for now (RFC 9110, the format and
// resolution net/http gives it), formatted once a second: net/http formats
// it for every answer that has none, which was a tenth of a token read's
// work beyond a bare handler's.
func httpDate(now time.Time) []string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.value
	}
	d := &dateHeader{sec: sec, value: []string{now.UTC().Format(http.TimeFormat)}[:1:1]}
	lastDate.Store(d)
	return d.value
}

// tokenBufs holds the buffers token answers are encoded in.
var tokenBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendTokenJSON appends the JSON of tokenJSON{accessToken, tokenType,
// at, in} to b (at zero: neither expires_at nor expires_in), as
// json.Marshal writes it.
func appendTokenJSON(b []byte, accessToken, tokenType string, at time.Time, in int64) []byte {
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, accessToken)
	b = append(b, `,"token_type":`...)
	b = appendJSONString(b, tokenType)
	if !at.IsZero() {
		b = append(b, `,"expires_at":"`...)
		b = at.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","expires_in":`...)
		b = strconv.AppendInt(b, in, 10)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, as json.Marshal writes it:
// directly when it holds only printable ASCII that needs no escape, and
// through encoding/json otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// expiresIn is the life left until at in whole seconds, rounded down so that
// a consumer never holds a token past at, and at least 1: 0 reads as "never
// expires" to many clients (the refresher serves nothing with less than
// refresh.MinServedLife left, so the floor only absorbs the time since).
func expiresIn(at, now time.Time) int64 {
	return max(int64(at.Sub(now)/time.Second), 1)
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
		s.serveToken(w, r, callerFrom(r.Context()), r.PathValue("name"))
	})
}

// tokenReadRoles may ask for a token; requireGrant (granted) then lets only
// admins and the consumers granted the credential through.
var tokenReadRoles = []tokenkeeper.Role{tokenkeeper.RoleAdmin, tokenkeeper.RoleConsumer, tokenkeeper.RoleViewer}

// tokenReadPattern is the token read's route.
const tokenReadPattern = "GET /v1/credentials/{name}/token"

// serveToken answers a token read of the credential name by c, who has
// been granted it.
func (s *server) serveToken(w http.ResponseWriter, r *http.Request, c *caller, name string) {
	var minTTL time.Duration
	if r.URL.RawQuery != "" {
		if v := r.URL.Query().Get("min_ttl"); v != "" {
			d, err := parseDuration("min_ttl", v)
			if err != nil {
				s.Error(w, r, err)
				return
			}
			minTTL = d
		}
	}
	ctx, end := s.tracer.TokenRead(r.Context(), name)
	sv, err := s.refresher.Token(ctx, name, minTTL)
	end(err)
	s.metrics.TokenRead(err)
	if err != nil {
		s.writeServedError(w, r, name, sv, err)
		return
	}
	now := s.now()
	s.auditw.tokenRead(c.actor(), name, remoteHost(r), now)
	s.writeToken(w, sv.Token, sv.ExpiresAt, now)
}

// tokenReads answers the token reads, the hot path, before the mux (and
// the service clients' POST /oauth2/token, which has no path values): the
// same authentication, role and grant checks and the same answers as the
// route tokenReadPattern, without routing the request through the mux or
// copying it to carry the caller in its context. Any other request, and a
// token read whose path the mux would clean or redirect, goes to next.
func (s *server) tokenReads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := tokenReadName(r)
		if !ok {
			if s.oauth2TokenPost(r) {
				notePatternOf(r, oauth2TokenPattern)
				s.oauth2Token.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		notePatternOf(r, tokenReadPattern)
		c, ok := s.callerOf(w, r)
		if ok && s.hasRole(w, r, c, tokenReadRoles) && s.granted(w, r, c, name) {
			s.serveToken(w, r, c, name)
		}
	})
}

// tokenReadName returns the credential name of a GET
// /v1/credentials/{name}/token whose path the mux would route as it is:
// no escapes, no empty, dot or dot-dot name.
func tokenReadName(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet || r.URL.RawPath != "" {
		return "", false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/credentials/")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, "/token")
	if !ok || name == "" || name == "." || name == ".." || strings.IndexByte(name, '/') >= 0 {
		return "", false
	}
	return name, true
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
		s.metrics.ForcedRefresh(req.RejectedToken != "")
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
			if at := refresh.AdvertisedExpiry(c); at.IsZero() || at.Sub(s.now()) >= refresh.MinServedLife {
				s.writeToken(w, t, at, s.now())
				return
			}
			// Too little advertised life left (a refresh elsewhere came
			// first and is about to be replaced): read as a consumer does.
			if sv, err := s.refresher.Token(r.Context(), name, 0); err == nil && sv.Token.AccessToken != req.RejectedToken {
				s.writeToken(w, sv.Token, sv.ExpiresAt, s.now())
				return
			}
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
