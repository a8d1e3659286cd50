package http_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/internal/connect"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	t        *testing.T
	auth     *auth.Service
	url      string
	admin    string
	store    tokenkeeper.Store
	ref      *refresh.Refresher
	idp      *oauthtest.Server
	logs     *syncBuffer
	secret   string
	attempts chan *tokenkeeper.Event
	connect  *connect.Service
	// skew moves the connect service's clock (nanoseconds).
	skew atomic.Int64
}

// connectReturnTo is on the harness broker's return_to allow-list.
const connectReturnTo = "https://app.example/oauth/done"

func randomSecret() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return "sec-" + base64.RawURLEncoding.EncodeToString(b)
}

// newHarness starts oauthtest, a SQLite store, a refresher and the server.
func newHarness(t *testing.T, idpOpts ...oauthtest.Option) *harness {
	t.Helper()
	return newHarnessWith(t, nil, idpOpts...)
}

// newHarnessWith is newHarness with a change to the server's Config.
func newHarnessWith(t *testing.T, configure func(*tkhttp.Config), idpOpts ...oauthtest.Option) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}, secret: randomSecret(), attempts: make(chan *tokenkeeper.Event, 1000)}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.idp = oauthtest.NewServer(append([]oauthtest.Option{oauthtest.WithClient("app", h.secret), oauthtest.WithLogger(logger)}, idpOpts...)...)
	t.Cleanup(h.idp.Close)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tk.db"), key, sqlite.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	h.store = store
	h.ref, err = refresh.New(refresh.Config{
		Store: store, Logger: logger, ProviderTimeout: 5 * time.Second, BackoffMin: 200 * time.Millisecond, BackoffMax: 2 * time.Second,
		OnAttempt: func(c *tokenkeeper.Credential, ev *tokenkeeper.Event) {
			select {
			case h.attempts <- ev:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	fast := auth.Argon2Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	many := auth.Rate{Limit: 1000, Per: time.Minute, Burst: 1000}
	h.auth, err = auth.New(context.Background(), auth.Config{Store: store, Logger: logger, PasswordParams: fast,
		LoginRatePair: many, LoginRateUser: many, LoginRateAddress: many})
	if err != nil {
		t.Fatal(err)
	}
	// The connect flow's links and redirect URI are under the server's URL,
	// so the listener comes first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.connect, err = connect.New(connect.Config{Store: store, PublicURL: "http://" + ln.Addr().String(),
		ReturnTo: []string{connectReturnTo}, Logger: logger,
		Now:       func() time.Time { return time.Now().Add(time.Duration(h.skew.Load())) },
		Connected: func(c *tokenkeeper.Credential) { h.ref.Forget(c.Name); h.ref.Wake() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 4)
	// Forced refreshes go straight to the refresher here, and failed
	// authentications are not limited: the tests of the floor and of the
	// rate limits set them back to the defaults.
	cfg := tkhttp.Config{Store: store, Refresher: h.ref, Logger: logger, Auth: h.auth, AuthStore: store,
		ForcedRefreshFloor: -1, ForcedRefreshPerMinute: 1 << 30, ForcedRefreshBurst: 1 << 30,
		AuthFailuresPerSecond: 1 << 30, AuthFailuresBurst: 1 << 30, Connect: h.connect,
		// Token reads and proxied requests are audited within about two
		// seconds, not at the end of the default minute.
		AuditReadWindow: time.Second}
	if configure != nil {
		configure(&cfg)
	}
	handler := tkhttp.NewServer(cfg)
	go func() { _ = h.ref.Run(ctx); done <- struct{}{} }()
	go func() { _ = h.auth.Run(ctx); done <- struct{}{} }()
	go func() { handler.Run(ctx); done <- struct{}{} }()
	go func() { h.connect.Run(ctx); done <- struct{}{} }()
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	h.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		<-done
		<-done
		<-done
		store.Close()
		// No secret may ever reach a log.
		logs := h.logs.String()
		for _, s := range []string{h.secret, h.admin} {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("a secret appears in the logs")
			}
		}
	})
	k, rec := tkhttp.NewAPIKey("admin", tokenkeeper.RoleAdmin, nil)
	if err := store.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	h.admin = k
	return h
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%d): %s", r.status, r.body)
	}
	return m
}

func (h *harness) do(method, path, key string, body any) *response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return h.send(req)
}

func (h *harness) send(req *http.Request) *response {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: data}
}

func jsonString(body any) string {
	switch b := body.(type) {
	case nil:
		return ""
	case string:
		return b
	default:
		data, _ := json.Marshal(b)
		return string(data)
	}
}

func (h *harness) ccCredential(name string) map[string]any {
	return map[string]any{"name": name, "token_url": h.idp.TokenURL(), "grant_type": "client_credentials",
		"client_id": "app", "client_secret": h.secret}
}

func (h *harness) create(body map[string]any) {
	h.t.Helper()
	if r := h.do("POST", "/v1/credentials", h.admin, body); r.status != http.StatusCreated {
		h.t.Fatalf("create: %d %s", r.status, r.body)
	}
}

func (h *harness) token(name, key string) *response {
	return h.do("GET", "/v1/credentials/"+name+"/token", key, nil)
}

func (h *harness) consumerKey(creds ...string) string {
	r := h.do("POST", "/v1/apikeys", h.admin, map[string]any{"name": "c" + randomSecret()[4:12], "role": "consumer", "credentials": creds})
	if r.status != http.StatusCreated {
		h.t.Fatalf("create consumer key: %d %s", r.status, r.body)
	}
	return r.json(h.t)["key"].(string)
}

func TestCredentialLifecycle(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("payments"))

	r := h.token("payments", h.admin)
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	tok := r.json(t)
	at, _ := tok["access_token"].(string)
	// One-hour tokens are replaced 5 minutes (less up to 30 s of jitter)
	// before they expire, and advertised to expire ExpiryMargin before that.
	if !h.idp.ValidAccessToken(at) || tok["token_type"] != "Bearer" || tok["expires_in"].(float64) < 3200 || tok["expires_in"].(float64) > 3300 {
		t.Fatalf("bad token answer: %s", r.body)
	}
	if _, err := time.Parse(time.RFC3339, tok["expires_at"].(string)); err != nil {
		t.Fatalf("expires_at not RFC 3339: %v", err)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatal("token response is cacheable")
	}
	// Its Date, formatted once a second by the server (httpDate), is
	// the server's second, in net/http's format.
	if d, err := http.ParseTime(r.header.Get("Date")); err != nil || len(r.header["Date"]) != 1 ||
		d.After(time.Now()) || time.Since(d) > 5*time.Second || r.header.Get("Date") != d.Format(http.TimeFormat) {
		t.Fatalf("Date %q: %v", r.header["Date"], err)
	}

	for _, path := range []string{"/v1/credentials", "/v1/credentials/payments", "/v1/credentials/payments/events"} {
		r := h.do("GET", path, h.admin, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		if bytes.Contains(r.body, []byte(h.secret)) || bytes.Contains(r.body, []byte(at)) {
			t.Fatalf("GET %s leaks a secret: %s", path, r.body)
		}
	}
	got := h.do("GET", "/v1/credentials/payments", h.admin, nil).json(t)
	if got["status"] != "active" || got["has_token"] != true || got["grant_type"] != "client_credentials" {
		t.Fatalf("unexpected credential: %v", got)
	}

	r = h.do("PATCH", "/v1/credentials/payments", h.admin, map[string]any{"scopes": []string{"a", "b"}, "refresh_lead": "2m"})
	if r.status != http.StatusOK || r.json(t)["refresh_lead"] != "2m0s" {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	evs := h.do("GET", "/v1/credentials/payments/events", h.admin, nil).json(t)["events"].([]any)
	kinds := map[string]bool{}
	for _, e := range evs {
		kinds[e.(map[string]any)["kind"].(string)] = true
	}
	if !kinds["created"] || !kinds["refresh"] || !kinds["updated"] {
		t.Fatalf("events missing kinds: %v", kinds)
	}
	if r := h.do("DELETE", "/v1/credentials/payments", h.admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := h.token("payments", h.admin); r.status != http.StatusNotFound {
		t.Fatalf("token after delete: %d %s", r.status, r.body)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.create(h.ccCredential("keep"))
	before := h.do("GET", "/v1/credentials/keep", h.admin, nil).json(t)

	long := strings.Repeat("x", 70<<10)
	cases := []struct {
		name, method, path string
		body               any
		want               string
	}{
		{"malformed json", "POST", "/v1/credentials", `{"name":`, "truncated"},
		{"not json", "POST", "/v1/credentials", `hello`, "malformed JSON"},
		{"empty body", "POST", "/v1/credentials", ``, "empty"},
		{"two objects", "POST", "/v1/credentials", `{"name":"a"} {"name":"b"}`, "single JSON object"},
		{"unknown field", "POST", "/v1/credentials", `{"name":"x","colour":"red"}`, "unknown field"},
		{"wrong type", "POST", "/v1/credentials", `{"name":42}`, "must be of JSON type string"},
		{"too large", "POST", "/v1/credentials", `{"name":"` + long + `"}`, "larger than"}, // 413
		{"bad name", "POST", "/v1/credentials", map[string]any{"name": "a b", "token_url": h.idp.TokenURL(), "grant_type": "client_credentials", "client_id": "app", "client_secret": "s"}, "invalid name"},
		{"http token url", "POST", "/v1/credentials", map[string]any{"name": "n", "token_url": "http://example.com/token", "grant_type": "client_credentials", "client_id": "app", "client_secret": "s"}, "https"},
		{"bad duration", "POST", "/v1/credentials", map[string]any{"name": "n", "token_url": h.idp.TokenURL(), "grant_type": "client_credentials", "client_id": "app", "client_secret": "s", "refresh_lead": "soon"}, "Go duration"},
		{"duplicate", "POST", "/v1/credentials", h.ccCredential("keep"), ""},
		{"patch bad url", "PATCH", "/v1/credentials/keep", map[string]any{"token_url": "ftp://x/y"}, "https"},
		{"patch bad status", "PATCH", "/v1/credentials/keep", map[string]any{"status": "needs_reauth"}, "active or disabled"},
		{"patch unknown field", "PATCH", "/v1/credentials/keep", `{"nope":1}`, "unknown field"},
		{"bad min_ttl", "GET", "/v1/credentials/keep/token?min_ttl=-3s", nil, "min_ttl"},
		{"bad events limit", "GET", "/v1/credentials/keep/events?limit=0", nil, "limit"},
		{"bad key role", "POST", "/v1/apikeys", map[string]any{"name": "k", "role": "root"}, "role"},
		{"consumer without grants", "POST", "/v1/apikeys", map[string]any{"name": "k", "role": "consumer"}, "at least one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.method, tc.path, h.admin, tc.body)
			wantStatus := http.StatusBadRequest
			switch tc.name {
			case "duplicate":
				wantStatus = http.StatusConflict
			case "too large":
				wantStatus = http.StatusRequestEntityTooLarge
			}
			if r.status != wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			p := r.json(t)
			if p["status"].(float64) != float64(wantStatus) || p["type"] == "" || p["title"] == "" {
				t.Fatalf("not a problem document: %s", r.body)
			}
			if !strings.Contains(p["detail"].(string), tc.want) {
				t.Fatalf("detail %q does not say %q", p["detail"], tc.want)
			}
		})
	}
	list := h.do("GET", "/v1/credentials", h.admin, nil).json(t)["credentials"].([]any)
	if len(list) != 1 {
		t.Fatalf("bad input created credentials: %v", list)
	}
	after := h.do("GET", "/v1/credentials/keep", h.admin, nil).json(t)
	if fmt.Sprint(before["token_url"], before["scopes"], before["status"]) != fmt.Sprint(after["token_url"], after["scopes"], after["status"]) {
		t.Fatalf("bad input changed the credential: %v -> %v", before, after)
	}
	keys := h.do("GET", "/v1/apikeys", h.admin, nil).json(t)["api_keys"].([]any)
	if len(keys) != 1 {
		t.Fatalf("bad input created API keys: %v", keys)
	}
}

func TestAPIKeyAuthorization(t *testing.T) {
	h := newHarness(t)
	h.create(h.ccCredential("granted"))
	h.create(h.ccCredential("other"))
	consumer := h.consumerKey("granted")

	if r := h.token("granted", ""); r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no key: %d", r.status)
	}
	if r := h.token("granted", "tk_not-a-real-key"); r.status != http.StatusUnauthorized {
		t.Fatalf("bad key: %d", r.status)
	}
	if r := h.do("GET", "/v1/credentials/granted/token", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("missing: %d", r.status)
	}
	if r := h.token("granted", consumer); r.status != http.StatusOK {
		t.Fatalf("consumer reading its credential: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/v1/credentials/granted/refresh", consumer, nil); r.status != http.StatusOK {
		t.Fatalf("consumer refreshing its credential: %d %s", r.status, r.body)
	}
	notGranted := h.token("other", consumer)
	missing := h.token("does-not-exist", consumer)
	if notGranted.status != http.StatusNotFound || missing.status != http.StatusNotFound {
		t.Fatalf("not granted %d, missing %d; both must be 404", notGranted.status, missing.status)
	}
	ng, ms := notGranted.json(t), missing.json(t)
	if strings.ReplaceAll(ng["detail"].(string), "other", "X") != strings.ReplaceAll(ms["detail"].(string), "does-not-exist", "X") {
		t.Fatalf("a consumer can tell a hidden credential from a missing one: %q vs %q", ng["detail"], ms["detail"])
	}
	for _, ep := range [][2]string{{"GET", "/v1/credentials"}, {"GET", "/v1/credentials/granted"}, {"POST", "/v1/apikeys"}, {"POST", "/v1/keys/rotate"}, {"DELETE", "/v1/credentials/granted"}} {
		if r := h.do(ep[0], ep[1], consumer, map[string]any{}); r.status != http.StatusForbidden {
			t.Fatalf("consumer on %s %s: %d", ep[0], ep[1], r.status)
		}
	}
	// Revocation applies at once on this replica.
	list := h.do("GET", "/v1/apikeys", h.admin, nil).json(t)["api_keys"].([]any)
	var id string
	for _, k := range list {
		if k.(map[string]any)["role"] == "consumer" {
			id = k.(map[string]any)["id"].(string)
		}
	}
	if r := h.do("DELETE", "/v1/apikeys/"+id, h.admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := h.token("granted", consumer); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked key still works: %d", r.status)
	}
}

// A credential whose grant was revoked: one provider call, needs_reauth, no
// more calls; its last token is served while valid, then 409.
func TestInvalidGrantParksCredential(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithRotation(true))
	rt := h.idp.IssueRefreshToken("app", "read")
	h.create(map[string]any{"name": "cal", "token_url": h.idp.TokenURL(), "grant_type": "refresh_token",
		"client_id": "app", "client_secret": h.secret, "refresh_token": rt})
	first := h.token("cal", h.admin)
	if first.status != http.StatusOK {
		t.Fatalf("first token: %d %s", first.status, first.body)
	}
	h.idp.RevokeClientTokens("app")
	before := h.idp.Stats().TokenRequests["refresh_token"]
	r := h.do("POST", "/v1/credentials/cal/refresh", h.admin, nil)
	if r.status != http.StatusConflict {
		t.Fatalf("refresh after revocation: %d %s", r.status, r.body)
	}
	p := r.json(t)
	if p["credential_status"] != "needs_reauth" || p["last_error_code"] != "invalid_grant" {
		t.Fatalf("problem does not name the status: %s", r.body)
	}
	if n := h.idp.Stats().TokenRequests["refresh_token"] - before; n != 1 {
		t.Fatalf("%d provider calls for one forced refresh, want 1", n)
	}
	// The background refresher must not try again.
	h.ref.Wake()
	time.Sleep(500 * time.Millisecond)
	if n := h.idp.Stats().TokenRequests["refresh_token"] - before; n != 1 {
		t.Fatalf("needs_reauth credential was retried: %d calls", n)
	}
	c := h.do("GET", "/v1/credentials/cal", h.admin, nil).json(t)
	if c["status"] != "needs_reauth" || c["last_error_code"] != "invalid_grant" {
		t.Fatalf("status not parked: %v", c)
	}
	// Re-authorization: a new refresh token makes it active again.
	rt2 := h.idp.IssueRefreshToken("app", "read")
	if r := h.do("PATCH", "/v1/credentials/cal", h.admin, map[string]any{"refresh_token": rt2}); r.status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := h.do("GET", "/v1/credentials/cal", h.admin, nil).json(t)
		if c["status"] == "active" && h.token("cal", h.admin).status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("credential did not recover: %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An expired token of a parked credential is never served: 409 instead.
func TestExpiredTokenOfParkedCredentialIs409(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(2*time.Second), oauthtest.WithRotation(true))
	rt := h.idp.IssueRefreshToken("app", "read")
	h.create(map[string]any{"name": "cal", "token_url": h.idp.TokenURL(), "grant_type": "refresh_token",
		"client_id": "app", "client_secret": h.secret, "refresh_token": rt, "refresh_lead": "500ms"})
	if r := h.token("cal", h.admin); r.status != http.StatusOK {
		t.Fatalf("first token: %d %s", r.status, r.body)
	}
	h.idp.RevokeClientTokens("app")
	deadline := time.Now().Add(6 * time.Second)
	for {
		r := h.token("cal", h.admin)
		if r.status == http.StatusOK {
			var tok struct {
				ExpiresAt time.Time `json:"expires_at"`
			}
			_ = json.Unmarshal(r.body, &tok)
			if !tok.ExpiresAt.After(time.Now()) {
				t.Fatalf("served an expired token: %s", r.body)
			}
		} else if r.status == http.StatusConflict {
			p := r.json(t)
			if p["credential_status"] != "needs_reauth" || p["last_error_code"] != "invalid_grant" {
				t.Fatalf("409 without status: %s", r.body)
			}
			return
		} else {
			t.Fatalf("unexpected %d %s", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatal("never got the 409")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A 503 with Retry-After: 2 gets its next attempt no sooner than 2 s later.
func TestRetryAfterIsHonoured(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.idp.Script(oauthtest.Fault{Kind: oauthtest.FaultServerError, Status: 503, RetryAfter: "2"})
	h.create(h.ccCredential("flaky"))
	var evs []*tokenkeeper.Event
	timeout := time.After(10 * time.Second)
	for len(evs) < 2 {
		select {
		case ev := <-h.attempts:
			evs = append(evs, ev)
		case <-timeout:
			t.Fatalf("only %d attempts", len(evs))
		}
	}
	if evs[0].Outcome != tokenkeeper.OutcomeError || evs[0].ErrorCode != "http_503" {
		t.Fatalf("first attempt: %+v", evs[0])
	}
	if evs[1].Outcome != tokenkeeper.OutcomeOK {
		t.Fatalf("second attempt: %+v", evs[1])
	}
	if gap := evs[1].Time.Sub(evs[0].Time); gap < 2*time.Second {
		t.Fatalf("retried after %s, before Retry-After: 2", gap)
	}
	c := h.do("GET", "/v1/credentials/flaky", h.admin, nil).json(t)
	if c["status"] != "active" || c["failure_count"].(float64) != 0 {
		t.Fatalf("not recovered: %v", c)
	}
}

// Many consumers reporting the same rejected token cause one refresh.
func TestRejectedTokenCausesOneRefresh(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithRotation(true), oauthtest.WithReuseDetection(0),
		oauthtest.WithLatency(50*time.Millisecond))
	rt := h.idp.IssueRefreshToken("app", "read")
	h.create(map[string]any{"name": "cal", "token_url": h.idp.TokenURL(), "grant_type": "refresh_token",
		"client_id": "app", "client_secret": h.secret, "refresh_token": rt})
	r := h.token("cal", h.admin)
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	old := r.json(t)["access_token"].(string)
	before := h.idp.Stats().TokenRequests["refresh_token"]
	var wg sync.WaitGroup
	got := make(chan string, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.do("POST", "/v1/credentials/cal/refresh", h.admin, map[string]string{"rejected_token": old})
			if r.status != http.StatusOK {
				t.Errorf("refresh: %d %s", r.status, r.body)
				return
			}
			got <- r.json(t)["access_token"].(string)
		}()
	}
	wg.Wait()
	close(got)
	for tok := range got {
		if tok == old {
			t.Fatal("a consumer got the rejected token back")
		}
	}
	if n := h.idp.Stats().TokenRequests["refresh_token"] - before; n != 1 {
		t.Fatalf("%d refreshes for one rejected token, want 1", n)
	}
	if d := h.idp.Stats().ReuseDetections; d != 0 {
		t.Fatalf("%d reuse detections", d)
	}
}

func TestMinTTL(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(10*time.Second))
	h.create(h.ccCredential("svc"))
	r := h.token("svc", h.admin)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	first := r.json(t)["access_token"]
	// 10 s tokens are replaced after about 6.5 s and advertised for about
	// 5.5 s (the replacement less a margin of a tenth of their lifetime):
	// min_ttl counts against that.
	if r := h.do("GET", "/v1/credentials/svc/token?min_ttl=3s", h.admin, nil); r.json(t)["access_token"] != first {
		t.Fatal("min_ttl below the remaining life refreshed anyway")
	}
	for _, ttl := range []string{"1h", "8s"} {
		if r := h.do("GET", "/v1/credentials/svc/token?min_ttl="+ttl, h.admin, nil); r.status != http.StatusBadRequest {
			t.Fatalf("min_ttl=%s beyond the advertised life: %d %s", ttl, r.status, r.body)
		}
	}
	time.Sleep(2100 * time.Millisecond)
	before := h.idp.Stats().TokenRequests["client_credentials"]
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.do("GET", "/v1/credentials/svc/token?min_ttl=4s", h.admin, nil)
			if r.status != http.StatusOK {
				t.Errorf("%d %s", r.status, r.body)
				return
			}
			if in := r.json(t)["expires_in"].(float64); in < 4 {
				t.Errorf("min_ttl=4s answered with expires_in %v", in)
			}
		}()
	}
	wg.Wait()
	if n := h.idp.Stats().TokenRequests["client_credentials"] - before; n != 1 {
		t.Fatalf("%d refreshes for 20 concurrent min_ttl reads, want 1", n)
	}
}
