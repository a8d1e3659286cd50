package oauthtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// reply is a decoded response.
type reply struct {
	status int
	header http.Header
	raw    string
	json   map[string]any // nil if the body is not a JSON object
}

func (r reply) str(key string) string {
	s, _ := r.json[key].(string)
	return s
}

// basicCreds, when set, are sent as client_secret_basic.
type basicCreds struct{ id, secret string }

// setBasic sets HTTP Basic client authentication per RFC 6749 §2.3.1.
func setBasic(req *http.Request, id, secret string) {
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
}

// postForm posts form to u, with Basic credentials if basic is not nil.
func postForm(t testing.TB, u string, form url.Values, basic *basicCreds) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic != nil {
		setBasic(req, basic.id, basic.secret)
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) reply {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		r.json = m
	}
	return r
}

// noRedirect is an HTTP client that returns redirects instead of following
// them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// getResource calls the resource endpoint with a Bearer token ("" for none).
func getResource(t testing.TB, s *Server, token string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.ResourceURL(), nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

// clientCredentials runs a client_credentials grant with Basic
// authentication and returns the access token, failing the test otherwise.
func clientCredentials(t testing.TB, s *Server, id, secret string) string {
	t.Helper()
	r := postForm(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}}, &basicCreds{id, secret})
	if r.status != http.StatusOK || r.str("access_token") == "" {
		t.Fatalf("client_credentials: status %d body %s", r.status, r.raw)
	}
	return r.str("access_token")
}

// refresh runs a refresh_token grant with Basic authentication.
func refresh(t testing.TB, s *Server, id, secret, refreshToken string) reply {
	t.Helper()
	return postForm(t, s.TokenURL(), url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
	}, &basicCreds{id, secret})
}

// mustRefresh refreshes and fails the test unless it succeeds.
func mustRefresh(t testing.TB, s *Server, id, secret, refreshToken string) reply {
	t.Helper()
	r := refresh(t, s, id, secret, refreshToken)
	if r.status != http.StatusOK {
		t.Fatalf("refresh: status %d body %s", r.status, r.raw)
	}
	return r
}

// wantOAuthError checks an RFC 6749 §5.2 error response.
func wantOAuthError(t testing.TB, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got status %d body %s; want %d with error %q", r.status, r.raw, status, code)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func parseJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return m
}

// decodeBody reads and closes a response body and decodes it as a JSON
// object (nil if it is not one).
func decodeBody(resp *http.Response) map[string]any {
	defer resp.Body.Close()
	var m map[string]any
	if json.NewDecoder(resp.Body).Decode(&m) != nil {
		return nil
	}
	return m
}
