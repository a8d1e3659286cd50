package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// resource is a test resource server: it accepts the access tokens in
// valid, answering 401 (with challenge) otherwise, and records requests.
type resource struct {
	mu        sync.Mutex
	valid     map[string]bool // guarded by mu
	challenge string          // guarded by mu; WWW-Authenticate of a 401
	status    int             // guarded by mu; if set, answered for valid tokens
	auths     []string        // guarded by mu; Authorization of each request
	bodies    []string        // guarded by mu
}

func newResource(valid ...string) *resource {
	r := &resource{valid: map[string]bool{}, challenge: `Bearer error="invalid_token"`}
	for _, v := range valid {
		r.valid[v] = true
	}
	return r
}

func (rs *resource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	auth := r.Header.Get("Authorization")
	rs.mu.Lock()
	rs.auths = append(rs.auths, auth)
	rs.bodies = append(rs.bodies, string(body))
	ok := rs.valid[strings.TrimPrefix(auth, "Bearer ")]
	challenge, status := rs.challenge, rs.status
	rs.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", challenge)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	io.WriteString(w, "ok:"+string(body))
}

func (rs *resource) allow(tokens ...string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, t := range tokens {
		rs.valid[t] = true
	}
}

func (rs *resource) requests() ([]string, []string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.auths...), append([]string(nil), rs.bodies...)
}

// serve starts h on a loopback server.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// countingSource returns a source whose n-th token is "at-n", valid for an
// hour on the real clock.
func countingSource(t *testing.T) (*TokenSource, *fakeFetch) {
	f := newFakeFetch(tokenFor(systemClock{}, time.Hour))
	return newTestSource(t, "test", f.fetch, nil), f
}

func TestTransportSetsAuthorization(t *testing.T) {
	rs := newResource("at-1")
	srv := serve(t, rs)
	src, _ := countingSource(t)
	hc := &http.Client{Transport: &Transport{Source: src}}

	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("X-Mine", "kept")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	auths, _ := rs.requests()
	if resp.StatusCode != 200 || len(auths) != 1 || auths[0] != "Bearer at-1" {
		t.Fatalf("status %d, Authorization %q", resp.StatusCode, auths)
	}
	if req.Header.Get("Authorization") != "" || req.Header.Get("X-Mine") != "kept" || len(req.Header) != 1 {
		t.Fatalf("the caller's request was modified: %v", req.Header)
	}
}

func TestTransportRetries401WithNewToken(t *testing.T) {
	rs := newResource("at-2") // the first token is rejected
	srv := serve(t, rs)
	src, f := countingSource(t)
	hc := &http.Client{Transport: &Transport{Source: src}}
	mustToken(t, src) // at-1; each subtest accepts only the next token

	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"bytes.Reader", func() io.Reader { return bytes.NewReader([]byte("payload")) }},
		{"strings.Reader", func() io.Reader { return strings.NewReader("payload") }},
		{"bytes.Buffer", func() io.Reader { return bytes.NewBufferString("payload") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs.mu.Lock()
			rs.auths, rs.bodies, rs.valid = nil, nil, map[string]bool{"at-" + itoa(f.count()+1): true}
			rs.mu.Unlock()
			resp, err := hc.Post(srv.URL, "text/plain", tc.body())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			auths, bodies := rs.requests()
			if resp.StatusCode != 200 || string(body) != "ok:payload" {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			if len(auths) != 2 || auths[0] == auths[1] || bodies[0] != "payload" || bodies[1] != "payload" {
				t.Fatalf("requests: %q bodies %q; want two, with different tokens and the body replayed", auths, bodies)
			}
		})
	}
}

func TestTransportDoesNotReplayWithoutGetBody(t *testing.T) {
	rs := newResource()
	srv := serve(t, rs)
	src, f := countingSource(t)
	hc := &http.Client{Transport: &Transport{Source: src}}
	req, _ := http.NewRequest("POST", srv.URL, io.NopCloser(strings.NewReader("once"))) // no GetBody
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	auths, _ := rs.requests()
	if resp.StatusCode != 401 || len(auths) != 1 {
		t.Fatalf("status %d after %d requests, want the 401 after 1", resp.StatusCode, len(auths))
	}
	// The token was invalidated all the same: the next request gets a new one.
	eventually(t, func() bool { return f.count() == 2 }, "a new token")
}

func TestTransportNoRetry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		challenge string
		valid     bool
	}{
		{"403", 403, "", true},
		{"insufficient_scope", 401, `Bearer realm="x", error="insufficient_scope", scope="admin"`, false},
		{"insufficient_user_authentication", 401, `Bearer error="insufficient_user_authentication", error_description="fresh token required"`, false},
		{"500", 500, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := newResource()
			if tc.valid {
				rs.allow("at-1")
				rs.status = tc.status
			}
			rs.challenge = tc.challenge
			srv := serve(t, rs)
			src, f := countingSource(t)
			hc := &http.Client{Transport: &Transport{Source: src}}
			resp, err := hc.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			auths, _ := rs.requests()
			if resp.StatusCode != tc.status || len(auths) != 1 {
				t.Fatalf("status %d after %d requests", resp.StatusCode, len(auths))
			}
			time.Sleep(5 * time.Millisecond)
			if f.count() != 1 {
				t.Fatalf("fetches = %d: the token was invalidated", f.count())
			}
		})
	}
}

func TestTransportMaxRetries(t *testing.T) {
	for _, tc := range []struct {
		max      int
		valid    string
		requests int
		status   int
	}{
		{0, "at-2", 2, 200},  // default: one replay
		{0, "at-3", 2, 401},  // the replay is rejected too
		{2, "at-3", 3, 200},  // two replays
		{-1, "at-2", 1, 401}, // none
	} {
		rs := newResource(tc.valid)
		srv := serve(t, rs)
		src, _ := countingSource(t)
		hc := &http.Client{Transport: &Transport{Source: src, MaxRetries: tc.max}}
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		auths, _ := rs.requests()
		if resp.StatusCode != tc.status || len(auths) != tc.requests {
			t.Errorf("MaxRetries %d, valid %s: status %d after %d requests, want %d after %d",
				tc.max, tc.valid, resp.StatusCode, len(auths), tc.status, tc.requests)
		}
	}
}

// trackingBody records whether it was closed.
type trackingBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackingBody) Close() error { b.closed.Store(true); return nil }

func TestTransportClosesThe401BodyBeforeRetrying(t *testing.T) {
	src, _ := countingSource(t)
	var bodies []*trackingBody
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			r.Body.Close()
		}
		for i, b := range bodies {
			if !b.closed.Load() {
				t.Errorf("request %d sent while response body %d is open", len(bodies), i)
			}
		}
		b := &trackingBody{Reader: strings.NewReader("denied")}
		bodies = append(bodies, b)
		status := 401
		if r.Header.Get("Authorization") == "Bearer at-2" {
			status = 200
		}
		return &http.Response{StatusCode: status, Header: http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}}, Body: b, Request: r}, nil
	})
	tr := &Transport{Source: src, Base: base}
	req, _ := http.NewRequest("GET", "http://example.invalid/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(bodies) != 2 || !bodies[0].closed.Load() || bodies[1].closed.Load() {
		t.Fatalf("status %d, %d responses", resp.StatusCode, len(bodies))
	}
	resp.Body.Close()
}

func TestTransportTokenErrors(t *testing.T) {
	t.Run("nil source", func(t *testing.T) {
		body := &trackingBody{Reader: strings.NewReader("x")}
		req, _ := http.NewRequest("POST", "http://example.invalid/", body)
		if _, err := (&Transport{}).RoundTrip(req); err == nil || !body.closed.Load() {
			t.Fatalf("err = %v, body closed %v", err, body.closed.Load())
		}
	})
	t.Run("no token", func(t *testing.T) {
		f := newFakeFetch(func(int, fetchRequest) (*oauth2.Token, error) {
			return nil, &oauth.Error{Code: "invalid_grant", StatusCode: 400}
		})
		src := newTestSource(t, "test", f.fetch, nil)
		body := &trackingBody{Reader: strings.NewReader("x")}
		req, _ := http.NewRequest("POST", "http://example.invalid/", body)
		hc := &http.Client{Transport: &Transport{Source: src}}
		_, err := hc.Do(req)
		if !errors.Is(err, ErrInvalidGrant) || !body.closed.Load() {
			t.Fatalf("err = %v, body closed %v", err, body.closed.Load())
		}
	})
	t.Run("refresh after 401 fails", func(t *testing.T) {
		rs := newResource()
		srv := serve(t, rs)
		f := newFakeFetch(func(n int, req fetchRequest) (*oauth2.Token, error) {
			if n == 1 {
				return &oauth2.Token{AccessToken: "at-1", Expiry: time.Now().Add(time.Hour)}, nil
			}
			return nil, &oauth.Error{Code: "invalid_grant", StatusCode: 400}
		})
		src := newTestSource(t, "test", f.fetch, nil)
		hc := &http.Client{Transport: &Transport{Source: src}}
		_, err := hc.Get(srv.URL)
		if !errors.Is(err, ErrInvalidGrant) || !IsPermanent(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("canceled while waiting", func(t *testing.T) {
		f := newFakeFetch(tokenFor(systemClock{}, time.Hour))
		f.hold()
		defer f.release()
		src := newTestSource(t, "test", f.fetch, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://example.invalid/", nil)
		if _, err := (&Transport{Source: src}).RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestTransportConcurrent401sCauseOneRefresh(t *testing.T) {
	idp := oauthtest.NewServer(oauthtest.WithClient(testClientID, testClientSecret))
	defer idp.Close()
	src, err := ClientCredentials(Config{TokenURL: idp.TokenURL(), ClientID: testClientID, ClientSecret: testClientSecret, AuthStyle: AuthStyleBody})
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, src)
	hc := &http.Client{Transport: &Transport{Source: src, Base: &http.Transport{MaxIdleConnsPerHost: 64}}}
	get := func() int {
		resp, err := hc.Get(idp.ResourceURL())
		if err != nil {
			t.Error(err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if get() != 200 {
		t.Fatal("first request failed")
	}
	idp.RevokeAll()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if get() != 200 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d requests failed", n)
	}
	if got := idp.Stats().TokenRequests["client_credentials"]; got != 2 {
		t.Fatalf("token requests = %d, want 2 (the first and one after the revocation)", got)
	}
}

func TestRetryable401(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   bool
	}{
		{nil, true},
		{[]string{`Bearer error="invalid_token"`}, true},
		{[]string{`Bearer realm="example", error="invalid_token", error_description="The access token expired"`}, true},
		{[]string{`Bearer error="insufficient_scope"`}, false},
		{[]string{`bearer ERROR=insufficient_scope`}, false},
		{[]string{`Bearer realm="a, error=\"insufficient_scope\""`}, true},
		{[]string{`Basic realm="x"`, `Bearer error="insufficient_scope", scope="a b"`}, false},
		{[]string{`Basic realm="x", Bearer error="insufficient_scope"`}, false},
		{[]string{`DPoP error="insufficient_scope"`}, true},
		{[]string{`Bearer error="insufficient_user_authentication", max_age="300"`}, false},
		{[]string{`Negotiate dG9rZW42OA==, Bearer error="insufficient_scope"`}, false},
		{[]string{`Bearer`}, true},
		{[]string{`,,, "`}, true},
	} {
		h := http.Header{}
		for _, v := range tc.values {
			h.Add("WWW-Authenticate", v)
		}
		if got := retryable401(h); got != tc.want {
			t.Errorf("%q: retryable = %v, want %v", tc.values, got, tc.want)
		}
	}
}

func TestParseChallenges(t *testing.T) {
	got := parseChallenges(`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple", Bearer error=invalid_token`)
	want := []challenge{
		{"Newauth", map[string]string{"realm": "apps", "type": "1", "title": `Login to "apps"`}},
		{"Basic", map[string]string{"realm": "simple"}},
		{"Bearer", map[string]string{"error": "invalid_token"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d challenges: %+v", len(got), got)
	}
	for i := range want {
		if got[i].scheme != want[i].scheme || len(got[i].params) != len(want[i].params) {
			t.Fatalf("challenge %d = %+v, want %+v", i, got[i], want[i])
		}
		for k, v := range want[i].params {
			if got[i].params[k] != v {
				t.Fatalf("challenge %d param %s = %q, want %q", i, k, got[i].params[k], v)
			}
		}
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer error="invalid_token"`,
		`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`,
		`Negotiate dG9rZW42OA==, Bearer error="insufficient_scope"`,
		`Bearer realm="unterminated`,
		`=,="",a=b=c`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs := parseChallenges(s)
		for _, c := range cs {
			if c.scheme == "" {
				t.Fatalf("empty scheme from %q", s)
			}
			for k := range c.params {
				if k == "" || strings.ToLower(k) != k {
					t.Fatalf("bad param name %q from %q", k, s)
				}
			}
		}
		if len(cs) > len(s) {
			t.Fatalf("%d challenges from %d bytes", len(cs), len(s))
		}
	})
}
