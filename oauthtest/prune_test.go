package oauthtest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// serveForm posts a form straight to the handler, without a network.
func serveForm(s *Server, path string, form url.Values, id, secret string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		setBasic(req, id, secret)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

// TestMemoryStaysBounded runs the shape of the chaos benchmark (many
// credentials refreshed at 80% of a 20 s lifetime, with rotation, for ten
// minutes) on a fake clock and checks that expired access tokens are pruned.
func TestMemoryStaysBounded(t *testing.T) {
	const (
		families = 200
		lifetime = 20 * time.Second
		interval = 16 * time.Second
		duration = 10 * time.Minute
	)
	clock := newFakeClock()
	s := NewHandler(WithClient("c", "s"), WithRotation(true), WithReuseDetection(0),
		WithLifetime(lifetime), WithNow(clock.Now))
	rts := make([]string, families)
	for i := range rts {
		rts[i] = s.IssueRefreshToken("c", "")
	}
	peak := 0
	for elapsed := time.Duration(0); elapsed < duration; elapsed += interval {
		for i, rt := range rts {
			rec := serveForm(s, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "c", "s")
			if rec.Code != http.StatusOK {
				t.Fatalf("refresh: %d %s", rec.Code, rec.Body)
			}
			r := parseJSON(t, rec.Body.String())
			rts[i] = r["refresh_token"].(string)
		}
		peak = max(peak, s.Stats().StoredAccessTokens)
		clock.Advance(interval)
	}
	st := s.Stats()
	// Records live for lifetime + accessRetention (80 s), so at most six
	// generations of 200 tokens are held at once.
	bound := families * int((lifetime+accessRetention)/interval+1)
	if peak > bound || st.AccessTokensIssued < 5*bound {
		t.Errorf("peak %d stored access tokens (bound %d) after %d issued", peak, bound, st.AccessTokensIssued)
	}
	if st.ReuseDetections != 0 || st.LostRefreshTokens != 0 || s.MaxPresentations() != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestPruningKeepsRecentlyExpiredTokens(t *testing.T) {
	clock := newFakeClock()
	s := NewHandler(WithClient("c", "s"), WithLifetime(time.Second), WithNow(clock.Now))
	cc := url.Values{"grant_type": {"client_credentials"}}
	at := parseJSON(t, serveForm(s, "/token", cc, "c", "s").Body.String())["access_token"].(string)

	clock.Advance(time.Second + accessRetention - time.Nanosecond)
	serveForm(s, "/token", cc, "c", "s")
	info, ok := s.AccessTokenInfo(at)
	if !ok || !info.Expired || info.Revoked {
		t.Fatalf("recently expired token: %+v, %v", info, ok)
	}
	clock.Advance(time.Nanosecond)
	serveForm(s, "/token", cc, "c", "s")
	if _, ok := s.AccessTokenInfo(at); ok {
		t.Errorf("token not pruned after its retention")
	}
	if s.RevokeToken(at) {
		t.Errorf("RevokeToken knows a pruned token")
	}
	if got := s.Stats().StoredAccessTokens; got != 2 {
		t.Errorf("StoredAccessTokens = %d, want 2", got)
	}
}

func TestCodesArePruned(t *testing.T) {
	clock := newFakeClock()
	s := NewHandler(WithClient("c", "s"), WithNow(clock.Now))
	s.SetIssuer("http://idp.test")
	get := func() {
		req := httptest.NewRequest(http.MethodGet, "/authorize?response_type=code&client_id=c&redirect_uri=https%3A%2F%2Fa.test%2Fcb", nil)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusFound {
			t.Fatalf("authorize: %d", rec.Code)
		}
		if loc := rec.Header().Get("Location"); !strings.Contains(loc, "iss=http%3A%2F%2Fidp.test") {
			t.Errorf("Location %q lacks iss", loc)
		}
	}
	for range 10 {
		get()
	}
	clock.Advance(2 * time.Minute)
	get()
	s.mu.Lock()
	n := len(s.codes)
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("%d codes stored, want 1", n)
	}
}

func TestExpiryQueueCompacts(t *testing.T) {
	var q expiryQueue
	t0 := time.Unix(0, 0)
	for i := range 5000 {
		q.push(digest{byte(i), byte(i >> 8)}, t0.Add(time.Duration(i)))
	}
	popped := 0
	q.popDue(t0.Add(2999), func(digest) { popped++ })
	if popped != 3000 || q.len() != 2000 || q.head != 0 || len(q.items) != 2000 {
		t.Errorf("popped %d, len %d, head %d, items %d", popped, q.len(), q.head, len(q.items))
	}
	q.popDue(t0.Add(time.Hour), func(digest) { popped++ })
	if popped != 5000 || q.len() != 0 {
		t.Errorf("popped %d, len %d", popped, q.len())
	}
}
