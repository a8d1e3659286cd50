package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const testAPIKey = "tk_0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeBroker implements the broker's token API for one credential, the way
// the tokenkeeper broker does: GET .../token[?min_ttl=], POST .../refresh
// with rejected_token, problem+json errors.
type fakeBroker struct {
	name     string
	now      func() time.Time
	lifetime time.Duration

	mu        sync.Mutex
	n         int       // guarded by mu; tokens issued
	current   string    // guarded by mu
	expiresAt time.Time // guarded by mu
	gets      int       // guarded by mu
	refreshes int       // guarded by mu; POST .../refresh requests
	rotations int       // guarded by mu
	minTTLs   []string  // guarded by mu
	rejected  []string  // guarded by mu
	faults    []brokerFault
}

// brokerFault is a scripted error answer.
type brokerFault struct {
	status     int
	body       string // problem+json; "" for a default
	retryAfter string
	ctype      string // Content-Type; "" for application/problem+json
}

func newFakeBroker(now func() time.Time, lifetime time.Duration) *fakeBroker {
	b := &fakeBroker{name: "github", now: now, lifetime: lifetime}
	b.rotateLocked()
	return b
}

func (b *fakeBroker) rotateLocked() {
	b.n++
	b.current = fmt.Sprintf("broker-token-%d", b.n)
	b.expiresAt = b.now().Add(b.lifetime).UTC()
	if b.n > 1 {
		b.rotations++
	}
}

func (b *fakeBroker) script(f ...brokerFault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = append(b.faults, f...)
}

func (b *fakeBroker) token() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current
}

func problemJSON(w http.ResponseWriter, status int, title string, extra map[string]any) {
	body := map[string]any{"type": "about:blank", "title": title, "status": status, "detail": title + " (detail)"}
	for k, v := range extra {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func (b *fakeBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testAPIKey {
		problemJSON(w, 401, "Unauthorized", nil)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.faults) > 0 {
		f := b.faults[0]
		b.faults = b.faults[1:]
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		if f.ctype == "" {
			f.ctype = "application/problem+json"
		}
		w.Header().Set("Content-Type", f.ctype)
		w.WriteHeader(f.status)
		io.WriteString(w, f.body)
		return
	}
	prefix := "/v1/credentials/" + b.name + "/"
	switch {
	case r.Method == "GET" && r.URL.Path == prefix+"token":
		b.gets++
		if v := r.URL.Query().Get("min_ttl"); v != "" {
			b.minTTLs = append(b.minTTLs, v)
			d, err := time.ParseDuration(v)
			if err != nil {
				problemJSON(w, 400, "Bad min_ttl", nil)
				return
			}
			if b.expiresAt.Sub(b.now()) < d {
				b.rotateLocked()
			}
		}
		if b.expiresAt.Sub(b.now()) < time.Second {
			// Like the broker, never an expires_in of 0: replace first.
			b.rotateLocked()
		}
	case r.Method == "POST" && r.URL.Path == prefix+"refresh":
		b.refreshes++
		var in struct {
			RejectedToken string `json:"rejected_token"`
		}
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&in) != nil {
			problemJSON(w, 400, "Bad Request", nil)
			return
		}
		b.rejected = append(b.rejected, in.RejectedToken)
		if in.RejectedToken == b.current {
			b.rotateLocked()
		}
	case strings.HasPrefix(r.URL.Path, "/v1/credentials/"):
		problemJSON(w, 404, "Not Found", nil)
		return
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": b.current,
		"token_type":   "Bearer",
		"expires_at":   b.expiresAt.Format(time.RFC3339),
		"expires_in":   int(b.expiresAt.Sub(b.now()).Seconds()),
	})
}

func (b *fakeBroker) counts() (gets, refreshes, rotations int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gets, b.refreshes, b.rotations
}

func TestBrokerReadsAndRefreshesAhead(t *testing.T) {
	clk := newFakeClock()
	b := newFakeBroker(clk.Now, time.Hour)
	srv := serve(t, b)
	lb, logger := newLogBuffer()
	s, err := Broker(srv.URL+"/", testAPIKey, "github", WithClock(clk), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	tok := mustToken(t, s)
	if tok.AccessToken != "broker-token-1" || !tok.Expiry.Equal(epoch.Add(time.Hour)) || tok.TokenType != "Bearer" {
		t.Fatalf("token %q expiry %v", tok.AccessToken, tok.Expiry)
	}
	// Refresh ahead by the advertised expiry (the lead is 5 min), without
	// min_ttl: the broker replaces its token when it plans to and says so
	// in the expiry; asking for more life would make it replace the token
	// early, cutting it short for every other consumer.
	clk.waitTimer(t, tok.Expiry.Add(-5*time.Minute))
	clk.AdvanceTo(tok.Expiry.Add(-5 * time.Minute))
	eventually(t, func() bool { gets, _, _ := b.counts(); return gets == 2 }, "the refresh ahead")
	// The source has installed the answer once it has set its next timer:
	// advancing the clock while the answer is still on its way would make
	// the source measure the token's lifetime at the later time.
	eventually(t, func() bool { return clk.pending() > 0 }, "the next timer")
	if got := mustToken(t, s).AccessToken; got != "broker-token-1" {
		t.Fatalf("token before the broker replaced it: %q", got)
	}
	// The broker replaces its token in the last second; the source's next
	// refresh ahead gets the new one.
	clk.AdvanceTo(tok.Expiry.Add(-500 * time.Millisecond))
	eventually(t, func() bool { return mustToken(t, s).AccessToken == "broker-token-2" }, "the new token")
	b.mu.Lock()
	minTTLs := append([]string(nil), b.minTTLs...)
	b.mu.Unlock()
	if len(minTTLs) != 0 {
		t.Fatalf("min_ttl sent: %q", minTTLs)
	}
	if gets, refreshes, _ := b.counts(); gets != 3 || refreshes != 0 {
		t.Fatalf("gets %d refreshes %d", gets, refreshes)
	}
	if !strings.Contains(lb.String(), `"credential":"github"`) || !strings.Contains(lb.String(), `"token_source":"broker"`) {
		t.Fatalf("log lacks the credential name:\n%s", lb)
	}
	if strings.Contains(lb.String(), testAPIKey) || strings.Contains(lb.String(), "broker-token") {
		t.Fatalf("secret in log:\n%s", lb)
	}
}

func TestBrokerInvalidatePostsRejectedToken(t *testing.T) {
	b := newFakeBroker(time.Now, time.Hour)
	srv := serve(t, b)
	s, err := Broker(srv.URL, testAPIKey, "github")
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)

	// A resource server that rejects revoked tokens.
	var mu sync.Mutex
	revoked := map[string]bool{}
	rs := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		bad := revoked[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		mu.Unlock()
		if bad {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(401)
			return
		}
		io.WriteString(w, "ok")
	})
	api := serve(t, rs)
	hc := &http.Client{Transport: &Transport{Source: s}}
	get := func() int {
		resp, err := hc.Get(api.URL)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get() != 200 {
		t.Fatal("first request failed")
	}
	// The token is revoked upstream; the broker still holds it as current.
	mu.Lock()
	revoked[b.token()] = true
	mu.Unlock()

	var wg sync.WaitGroup
	codes := make([]int, 32)
	for i := range codes {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i] = get() }()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	gets, refreshes, rotations := b.counts()
	b.mu.Lock()
	rejected := append([]string(nil), b.rejected...)
	b.mu.Unlock()
	if gets != 1 || refreshes != 1 || rotations != 1 || rejected[0] != "broker-token-1" {
		t.Fatalf("gets %d refreshes %d rotations %d rejected %q; want 1, 1, 1, broker-token-1", gets, refreshes, rotations, rejected)
	}
}

func TestBrokerErrors(t *testing.T) {
	conflict := `{"type":"https://tokenkeeper.dev/problems/not-ready","title":"Credential not ready","status":409,` +
		`"detail":"the credential needs re-authorization","credential_status":"needs_reauth","last_error_code":"invalid_grant"}`
	for _, tc := range []struct {
		name       string
		fault      brokerFault
		permanent  bool
		retryAfter time.Duration
		check      func(*BrokerError) bool
	}{
		{"401", brokerFault{status: 401, body: `{"title":"Unauthorized","status":401}`}, true, 0, nil},
		{"403", brokerFault{status: 403, body: `{"title":"Forbidden","status":403}`}, true, 0, nil},
		{"404", brokerFault{status: 404, body: `{"title":"Not Found","status":404,"detail":"no credential named github"}`}, true, 0,
			func(e *BrokerError) bool { return e.Detail == "no credential named github" }},
		{"400", brokerFault{status: 400, body: `{"title":"Bad Request"}`}, true, 0, nil},
		{"409", brokerFault{status: 409, body: conflict}, false, 0, func(e *BrokerError) bool {
			return e.CredentialStatus == "needs_reauth" && e.LastErrorCode == "invalid_grant" && e.Title == "Credential not ready" &&
				e.Type == "https://tokenkeeper.dev/problems/not-ready" && e.class() == "broker_needs_reauth"
		}},
		{"429", brokerFault{status: 429, retryAfter: "4"}, false, 4 * time.Second, nil},
		{"503 retry-after", brokerFault{status: 503, retryAfter: "2", body: `{"title":"Unavailable"}`}, false, 2 * time.Second,
			func(e *BrokerError) bool { return e.Title == "Unavailable" && e.class() == "broker_http_503" }},
		{"502 html", brokerFault{status: 502, ctype: "text/html", body: "<html>" + testAPIKey + "</html>"}, false, 0,
			func(e *BrokerError) bool { return e.Title == "Bad Gateway" && e.Detail == "" }},
		{"200 malformed", brokerFault{status: 200, ctype: "application/json", body: `{"token_type":"Bearer"}`}, false, 0,
			func(e *BrokerError) bool { return e.class() == "broker_malformed_response" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			b := newFakeBroker(clk.Now, time.Hour)
			b.script(tc.fault)
			srv := serve(t, b)
			s, err := Broker(srv.URL, testAPIKey, "github", WithClock(clk), withRandom(0))
			if err != nil {
				t.Fatal(err)
			}
			closeSource(t, s)
			_, err = s.Token()
			var be *BrokerError
			if !errors.As(err, &be) || be.StatusCode != tc.fault.status {
				t.Fatalf("err = %v, want a BrokerError with status %d", err, tc.fault.status)
			}
			if IsPermanent(err) != tc.permanent || RetryAfter(err) != tc.retryAfter {
				t.Fatalf("permanent %v retry-after %v, want %v %v", IsPermanent(err), RetryAfter(err), tc.permanent, tc.retryAfter)
			}
			if tc.check != nil && !tc.check(be) {
				t.Fatalf("error fields: %+v", be)
			}
			if strings.Contains(err.Error(), testAPIKey) {
				t.Fatalf("API key in error: %v", err)
			}
			if tc.permanent {
				return
			}
			// A temporary failure is retried in the background.
			wait := max(tc.retryAfter, 500*time.Millisecond)
			clk.waitTimer(t, clk.Now().Add(wait))
			clk.Advance(wait)
			eventually(t, func() bool { _, err := s.Token(); return err == nil }, "a token after the retry")
		})
	}
}

func TestBrokerWrongKeyOrCredential(t *testing.T) {
	b := newFakeBroker(time.Now, time.Hour)
	srv := serve(t, b)
	for _, tc := range []struct{ key, name string }{{"tk_wrong", "github"}, {testAPIKey, "gitlab"}} {
		s, err := Broker(srv.URL, tc.key, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		closeSource(t, s)
		if _, err := s.Token(); !IsPermanent(err) || strings.Contains(err.Error(), tc.key) {
			t.Fatalf("err = %v", err)
		}
	}
	if gets, _, _ := b.counts(); gets != 0 {
		t.Fatalf("gets = %d", gets)
	}
}

func TestBrokerCredentialNameEscaped(t *testing.T) {
	var path string
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.EscapedPath()
		problemJSON(w, 404, "Not Found", nil)
	}))
	s, err := Broker(srv.URL+"/base", testAPIKey, "a/b c")
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	s.Token()
	if path != "/base/v1/credentials/a%2Fb%20c/token" {
		t.Fatalf("path = %q", path)
	}
}

func TestParseBrokerToken(t *testing.T) {
	now := epoch
	for _, tc := range []struct {
		body   string
		expiry time.Time
		err    string
	}{
		{`{"access_token":"a","token_type":"Bearer","expires_at":"2030-01-02T04:04:05Z","expires_in":3600}`, now.Add(time.Hour), ""},
		{`{"access_token":"a","expires_in":60}`, now.Add(time.Minute), ""},
		// A clock ahead of the broker's: expires_in, the earlier, wins.
		{`{"access_token":"a","expires_at":"2030-01-02T04:04:05Z","expires_in":1800}`, now.Add(30 * time.Minute), ""},
		// A clock behind the broker's: expires_at, the earlier, wins.
		{`{"access_token":"a","expires_at":"2030-01-02T03:34:05Z","expires_in":3600}`, now.Add(30 * time.Minute), ""},
		{`{"access_token":"a","expires_in":"60"}`, now.Add(time.Minute), ""},
		{`{"access_token":"a"}`, time.Time{}, ""},
		{`{"access_token":"a","expires_at":"2030-01-02T03:04:05.5+01:00"}`, time.Date(2030, 1, 2, 2, 4, 5, 5e8, time.UTC), ""},
		{`{"access_token":"a","expires_at":"tomorrow"}`, time.Time{}, "RFC 3339"},
		{`{"access_token":"a","expires_in":-1}`, time.Time{}, "expires_in"},
		{`{"access_token":"a","expires_in":"soon"}`, time.Time{}, "expires_in"},
		{`{"token_type":"Bearer"}`, time.Time{}, "no access_token"},
		{`[]`, time.Time{}, "malformed"},
		{`{"access_token":"secret-value",`, time.Time{}, "malformed"},
	} {
		tok, err := parseBrokerToken([]byte(tc.body), now)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || !tok.Expiry.Equal(tc.expiry) || tok.TokenType != "Bearer" {
			t.Errorf("%s: %+v, %v; want expiry %v", tc.body, tok, err, tc.expiry)
		}
	}
}

func FuzzParseBrokerToken(f *testing.F) {
	f.Add([]byte(`{"access_token":"a","token_type":"Bearer","expires_at":"2030-01-02T04:04:05Z","expires_in":3600}`))
	f.Add([]byte(`{"access_token":"a","expires_in":"60"}`))
	f.Add([]byte(`{"access_token":"zzz-secret","expires_at":"x"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseBrokerToken(body, epoch)
		if err != nil {
			if tok != nil {
				t.Fatal("token and error")
			}
			// An error never quotes the body (which may hold a token).
			if len(body) > 8 && strings.Contains(err.Error(), string(body)) {
				t.Fatalf("error quotes the body: %v", err)
			}
			return
		}
		if tok.AccessToken == "" || tok.TokenType == "" || tok.ExpiresIn < 0 {
			t.Fatalf("invalid token accepted: %+v", tok)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"2", 2 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"99999999999", time.Hour},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{"soon", 0},
	} {
		if got := parseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestBrokerErrorMessage(t *testing.T) {
	e := &BrokerError{StatusCode: 409, Title: "Credential not ready", Detail: "needs re-authorization",
		CredentialStatus: "needs_reauth", LastErrorCode: "invalid_grant"}
	want := "broker: HTTP 409: Credential not ready: needs re-authorization (credential status needs_reauth, last error invalid_grant)"
	if e.Error() != want {
		t.Fatalf("Error() = %q", e.Error())
	}
	long := parseBrokerError(500, http.Header{"Content-Type": {"application/problem+json"}},
		[]byte(`{"title":"x\u0000y","detail":"`+strings.Repeat("d", 1000)+`"}`), epoch)
	if long.Title != "xy" || len(long.Detail) > maxDetail+len("…") {
		t.Fatalf("not sanitized: %q, %d bytes", long.Title, len(long.Detail))
	}
}
