package http_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
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
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/netguard"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// staleAdmin logs a new admin user in and returns an access token obtained
// by refresh: authenticated, but not fresh.
func (h *harness) staleAdmin() string {
	h.t.Helper()
	h.addUser("stale-admin", "correct horse battery", tokenkeeper.RoleAdmin)
	la := h.login("stale-admin", "correct horse battery")
	r, next := h.refreshLogin(la.RefreshToken)
	if r.status != http.StatusOK {
		h.t.Fatalf("refresh login: %d %s", r.status, r.body)
	}
	return next.AccessToken
}

// H1: a non-fresh admin session may not change where or how a credential's
// secrets are sent, and a move of the token endpoint to another host
// forgets the stored secrets.
func TestNonFreshAdminCannotRedirectSecrets(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("payments"))
	stale := h.staleAdmin()
	// A listener that would receive the secrets.
	thief := newRecorder(t)

	for _, body := range []map[string]any{
		{"token_url": thief.TokenURL()},
		{"client_id": "other"},
		{"auth_style": "body"},
		{"params": map[string]string{"audience": "x"}},
		{"scopes": []string{"admin"}},
	} {
		r := h.do("PATCH", "/v1/credentials/payments", stale, body)
		if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "fresh_token_required") {
			t.Fatalf("stale PATCH %v: %d %s, want 401 fresh_token_required", body, r.status, r.body)
		}
	}
	got := h.do("GET", "/v1/credentials/payments", h.admin, nil).json(t)
	if got["token_url"] != h.idp.TokenURL() || got["client_id"] != "app" || got["auth_style"] != "header" {
		t.Fatalf("a stale PATCH changed the credential: %v", got)
	}
	// A non-sensitive change still works for a stale session.
	if r := h.do("PATCH", "/v1/credentials/payments", stale, map[string]any{"refresh_lead": "1m"}); r.status != http.StatusOK {
		t.Fatalf("stale PATCH refresh_lead: %d %s", r.status, r.body)
	}

	// A fresh admin moving the endpoint to another host must give the
	// secret again; the stored one is never sent there.
	r := h.do("PATCH", "/v1/credentials/payments", h.admin, map[string]any{"token_url": thief.TokenURL()})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "client_secret") {
		t.Fatalf("host change without secret: %d %s", r.status, r.body)
	}
	r = h.do("PATCH", "/v1/credentials/payments", h.admin, map[string]any{"token_url": thief.TokenURL(), "client_secret": "other"})
	if r.status != http.StatusOK {
		t.Fatalf("host change with secret: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/v1/credentials/payments/refresh", h.admin, nil); r.status != http.StatusOK {
		t.Fatalf("refresh at the new host: %d %s", r.status, r.body)
	}
	if got := thief.seen(); !strings.Contains(got, "other") || strings.Contains(got, h.secret) {
		t.Fatalf("the new host saw the old secret (%v) or not the new one", strings.Contains(got, h.secret))
	}
}

// recorder is a token endpoint that records what it is sent.
type recorder struct {
	URL string
	mu  sync.Mutex
	got strings.Builder
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.got.WriteString(r.Header.Get("Authorization") + "\n" + string(body) + "\n")
		if u, p, ok := r.BasicAuth(); ok {
			rec.got.WriteString(u + ":" + p + "\n")
		}
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"at-from-recorder","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL + "/token"
	return rec
}

func (r *recorder) TokenURL() string { return r.URL }

func (r *recorder) seen() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got.String()
}

// H1: moving a refresh-token credential to another host clears its
// optional client secret unless a new one is given.
func TestHostChangeClearsStoredSecrets(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	rt := h.idp.IssueRefreshToken("app", "read")
	h.create(map[string]any{"name": "crm", "token_url": h.idp.TokenURL(), "grant_type": "refresh_token",
		"client_id": "app", "client_secret": h.secret, "refresh_token": rt})
	other := oauthtest.NewServer(oauthtest.WithClient("app", ""))
	defer other.Close()
	r := h.do("PATCH", "/v1/credentials/crm", h.admin, map[string]any{"token_url": other.TokenURL()})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "refresh_token") {
		t.Fatalf("host change without refresh token: %d %s", r.status, r.body)
	}
	r = h.do("PATCH", "/v1/credentials/crm", h.admin, map[string]any{"token_url": other.TokenURL(), "refresh_token": "new-rt"})
	if r.status != http.StatusOK {
		t.Fatalf("host change: %d %s", r.status, r.body)
	}
	c, err := h.store.Credential(t.Context(), "crm")
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientSecret != "" || c.RefreshToken != "new-rt" {
		t.Fatalf("after a host change: client secret kept=%v, refresh token replaced=%v", c.ClientSecret != "", c.RefreshToken == "new-rt")
	}
	// Same host, other path: nothing is cleared.
	r = h.do("PATCH", "/v1/credentials/crm", h.admin, map[string]any{"client_secret": "s2"})
	if r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	r = h.do("PATCH", "/v1/credentials/crm", h.admin, map[string]any{"token_url": other.TokenURL() + "?x=1"})
	if r.status != http.StatusOK {
		t.Fatalf("same-host change: %d %s", r.status, r.body)
	}
	if c, _ := h.store.Credential(t.Context(), "crm"); c.ClientSecret != "s2" {
		t.Fatal("a same-host change cleared the client secret")
	}
}

// flakyKeys is a real store whose API key lookups fail while fail is set,
// as when the database does not answer.
type flakyKeys struct {
	tokenkeeper.Store
	fail atomic.Bool
}

func (f *flakyKeys) APIKeyByHash(ctx context.Context, h []byte) (*tokenkeeper.APIKey, error) {
	if f.fail.Load() {
		return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "the database is unreachable")
	}
	return f.Store.APIKeyByHash(ctx, h)
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openTestStore(t *testing.T) tokenkeeper.Store {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tk.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// L3: a cached API key works without a successful check against the store
// for at most KeyCacheMaxStale; then it fails closed until the store
// confirms it again.
func TestCachedAPIKeyFailsClosedAfterMaxStale(t *testing.T) {
	store := &flakyKeys{Store: openTestStore(t)}
	ref, err := refresh.New(refresh.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: time.Now()}
	srv := httptest.NewServer(tkhttp.NewServer(tkhttp.Config{Store: store, Refresher: ref, Now: clock.Now,
		KeyCacheTTL: 5 * time.Second, KeyCacheMaxStale: time.Minute}))
	defer srv.Close()
	key, rec := tkhttp.NewAPIKey("ops", tokenkeeper.RoleAdmin, nil)
	if err := store.CreateAPIKey(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	list := func() int {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/credentials", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := list(); st != 200 {
		t.Fatalf("first use: %d", st)
	}
	store.fail.Store(true)
	clock.Add(30 * time.Second)
	if st := list(); st != 200 {
		t.Fatalf("30s without a check, store down: %d, want 200 (cached)", st)
	}
	clock.Add(31 * time.Second)
	if st := list(); st != http.StatusServiceUnavailable {
		t.Fatalf("61s without a check, store down: %d, want 503 (fail closed)", st)
	}
	store.fail.Store(false)
	if st := list(); st != 200 {
		t.Fatalf("store back: %d", st)
	}
}

// loginFrom tries a login with a wrong password, sending X-Forwarded-For.
func (h *harness) loginFrom(user, xff string) *response {
	req, _ := http.NewRequest("POST", h.url+"/v1/auth/login", strings.NewReader(`{"username":"`+user+`","password":"wrong password!"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", xff)
	return h.send(req)
}

// auditAddrs waits for n audit records of action and returns their
// remote addresses.
func (h *harness) auditAddrs(action string, n int) []string {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := h.do("GET", "/v1/audit?action="+action, h.admin, nil).json(h.t)["records"].([]any)
		if len(recs) >= n || time.Now().After(deadline) {
			var out []string
			for _, r := range recs {
				a, _ := r.(map[string]any)["remote_addr"].(string)
				out = append(out, a)
			}
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// L4: X-Forwarded-For names the client's address only when the request
// comes from a trusted proxy; otherwise it is ignored, so that a client
// cannot pick the address its login attempts are counted under.
func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	h := newHarness(t)
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	h.loginFrom("alice", "203.0.113.9")
	if got := h.auditAddrs("auth.login", 1); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Fatalf("without trusted proxies the audit names %v, want the peer 127.0.0.1", got)
	}

	h = newHarnessWith(t, func(c *tkhttp.Config) {
		c.TrustedProxies, _ = tkhttp.ParseTrustedProxies("127.0.0.0/8, 10.0.0.0/8")
	})
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	// The right-most address that is not a trusted proxy is the client.
	h.loginFrom("alice", "198.51.100.1, 203.0.113.9, 10.1.2.3")
	if got := h.auditAddrs("auth.login", 1); len(got) != 1 || got[0] != "203.0.113.9" {
		t.Fatalf("behind a trusted proxy the audit names %v, want 203.0.113.9", got)
	}
}

// M3: a consumer forcing refreshes in a loop for 10 s causes at most 2
// provider calls: forced refreshes within the floor answer the current
// token, and the caller's refresh requests are rate limited.
func TestForcedRefreshLoopIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 10 s loop of forced refreshes")
	}
	h := newHarnessWith(t, func(c *tkhttp.Config) {
		c.ForcedRefreshFloor, c.ForcedRefreshPerMinute, c.ForcedRefreshBurst = 0, 0, 0 // the defaults
	}, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("payments"))
	consumer := h.consumerKey("payments")
	if r := h.token("payments", consumer); r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	before := h.idp.Stats().TokenRequests["client_credentials"]
	statuses := map[int]int{}
	skipped := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		r := h.do("POST", "/v1/credentials/payments/refresh", consumer, nil)
		statuses[r.status]++
		if r.header.Get(tkhttp.RefreshSkippedHeader) != "" {
			skipped++
			if !h.idp.ValidAccessToken(r.json(t)["access_token"].(string)) {
				t.Fatal("a skipped refresh answered an invalid token")
			}
		}
	}
	calls := h.idp.Stats().TokenRequests["client_credentials"] - before
	t.Logf("10 s of forced refreshes: answers %v, %d skipped (floor), %d provider calls", statuses, skipped, calls)
	if calls > 2 {
		t.Fatalf("%d provider calls, want at most 2", calls)
	}
	if skipped == 0 {
		t.Fatalf("no forced refresh was answered as skipped: %v", statuses)
	}
}

// M3: forced refreshes that reach the provider are rate limited per
// caller (here without the floor, to reach the limit at once).
func TestForcedRefreshRateLimitedPerCaller(t *testing.T) {
	h := newHarnessWith(t, func(c *tkhttp.Config) {
		c.ForcedRefreshFloor, c.ForcedRefreshPerMinute, c.ForcedRefreshBurst = -1, 0, 0
	}, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("payments"))
	consumer := h.consumerKey("payments")
	if r := h.token("payments", consumer); r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	before := h.idp.Stats().TokenRequests["client_credentials"]
	statuses := map[int]int{}
	var last *response
	for range 20 {
		last = h.do("POST", "/v1/credentials/payments/refresh", consumer, nil)
		statuses[last.status]++
	}
	calls := h.idp.Stats().TokenRequests["client_credentials"] - before
	if statuses[http.StatusOK] != tkhttp.DefaultForcedRefreshBurst || calls != tkhttp.DefaultForcedRefreshBurst ||
		statuses[http.StatusTooManyRequests] != 20-tkhttp.DefaultForcedRefreshBurst || last.header.Get("Retry-After") == "" {
		t.Fatalf("20 forced refreshes: answers %v, %d provider calls; want %d of each then 429 with Retry-After",
			statuses, calls, tkhttp.DefaultForcedRefreshBurst)
	}
	// Another caller has its own budget.
	if r := h.do("POST", "/v1/credentials/payments/refresh", h.admin, nil); r.status != http.StatusOK {
		t.Fatalf("another caller: %d %s", r.status, r.body)
	}
	// The same rejected token reported many times counts once.
	other := h.consumerKey("payments")
	cur := h.token("payments", other).json(t)["access_token"].(string)
	for i := range 20 {
		if r := h.do("POST", "/v1/credentials/payments/refresh", other, map[string]string{"rejected_token": cur}); r.status != http.StatusOK {
			t.Fatalf("report %d of one rejected token: %d %s", i+1, r.status, r.body)
		}
	}
}

// auditCount counts every record in the audit log.
func auditCount(t *testing.T, st tokenkeeper.AuthStore) (n int, actions map[string]int) {
	t.Helper()
	actions = map[string]int{}
	var before int64
	for {
		recs, err := st.Audit(context.Background(), tokenkeeper.AuditFilter{Limit: 1000, BeforeID: before})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			actions[r.Action+" "+r.Outcome+" "+r.Actor]++
			before = r.ID
		}
		n += len(recs)
		if len(recs) < 1000 {
			return n, actions
		}
	}
}

// M1: a flood of unauthenticated bad requests neither pushes real records
// out of the audit log nor grows it by more than a few rows a second.
func TestAuditFloodKeepsAdminRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("sends bad requests for 5 s")
	}
	h := newHarnessWith(t, func(c *tkhttp.Config) {
		c.AuthFailuresPerSecond, c.AuthFailuresBurst = 0, 0 // the defaults
	}, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("payments"))
	st := h.store.(tokenkeeper.AuthStore)
	time.Sleep(1100 * time.Millisecond) // the set-up's records are written
	rowsBefore, _ := auditCount(t, st)

	// The attacker: 10,000 requests a second for 5 s, from 127.0.0.1.
	const rate, workers = 10_000, 32
	flood := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var sent, answered atomic.Int64
	statuses := sync.Map{}
	headers := []string{"Bearer tk_not-a-key", "Basic Zm9vOmJhcg==", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bad"}
	start := time.Now()
	end := start.Add(5 * time.Second)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			interval := time.Second * workers / rate
			next := time.Now()
			for i := w; time.Now().Before(end); i++ {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				req, _ := http.NewRequest("GET", h.url+"/v1/credentials", nil)
				req.Header.Set("Authorization", headers[i%len(headers)])
				sent.Add(1)
				resp, err := flood.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered.Add(1)
				v, _ := statuses.LoadOrStore(resp.StatusCode, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	// Meanwhile an admin, from another address, creates a key and reads a
	// token.
	admin := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	time.Sleep(2 * time.Second)
	do := func(method, path string, body string) int {
		req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+h.admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := admin.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := do("POST", "/v1/apikeys", `{"name":"during-flood","role":"consumer","credentials":["payments"]}`); st != http.StatusCreated {
		t.Errorf("create a key during the flood: %d", st)
	}
	if st := do("GET", "/v1/credentials/payments/token", ""); st != http.StatusOK {
		t.Errorf("read a token during the flood: %d", st)
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(1500 * time.Millisecond) // the last aggregated records are written
	rowsAfter, actions := auditCount(t, st)
	var summary []string
	statuses.Range(func(k, v any) bool {
		summary = append(summary, fmt.Sprintf("%v: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("flood: %d requests sent in %s (%.0f/s), %d answered (%s); audit rows +%d",
		sent.Load(), elapsed.Round(time.Millisecond), float64(sent.Load())/elapsed.Seconds(), answered.Load(),
		strings.Join(summary, ", "), rowsAfter-rowsBefore)
	if actions["apikey.create ok apikey:admin"] != 1 || actions["token.read ok apikey:admin"] < 1 {
		t.Fatalf("the admin's records are missing: %v", actions)
	}
	if grown := rowsAfter - rowsBefore; grown > 300 {
		t.Fatalf("the audit log grew by %d rows, want at most a few hundred: %v", grown, actions)
	}
	if answered.Load() < 1000 {
		t.Fatalf("only %d bad requests answered: the flood did not happen", answered.Load())
	}
}

// L1: viewers see the error code of a failed refresh, never the excerpt
// of the response, which may come from an internal service.
func TestViewerSeesErrorCodesNotExcerpts(t *testing.T) {
	h := newHarness(t)
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html>INTERNAL-ADMIN-PAGE db_password_hint</html>")
	}))
	defer internal.Close()
	h.create(map[string]any{"name": "probe", "token_url": internal.URL + "/token", "grant_type": "client_credentials",
		"client_id": "app", "client_secret": "s"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := h.do("GET", "/v1/credentials/probe", h.admin, nil).json(t)
		if le, _ := c["last_error"].(string); strings.Contains(le, "INTERNAL-ADMIN-PAGE") {
			break // the admin sees the excerpt: it exists
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed refresh with an excerpt: %v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.addUser("vera", "correct horse battery", tokenkeeper.RoleViewer)
	viewer := h.login("vera", "correct horse battery").AccessToken
	for _, path := range []string{"/v1/credentials", "/v1/credentials/probe", "/v1/credentials/probe/events"} {
		r := h.do("GET", path, viewer, nil)
		if r.status != http.StatusOK {
			t.Fatalf("viewer GET %s: %d %s", path, r.status, r.body)
		}
		if strings.Contains(string(r.body), "INTERNAL-ADMIN-PAGE") {
			t.Fatalf("viewer GET %s shows the response excerpt: %s", path, r.body)
		}
		if !strings.Contains(string(r.body), "http_500") {
			t.Fatalf("viewer GET %s lacks the error code: %s", path, r.body)
		}
	}
}

// L1: with the check the CLI installs, a token URL on an internal address
// is refused when a credential is created or changed.
func TestPrivateTokenURLRefusedAtValidation(t *testing.T) {
	h := newHarnessWith(t, func(c *tkhttp.Config) { c.TokenURLCheck = netguard.CheckURL })
	for _, u := range []string{"https://10.0.0.1/token", "https://169.254.169.254/latest", "http://127.0.0.1:9/token", "http://localhost:9/token"} {
		body := h.ccCredential("internal")
		body["token_url"] = u
		if r := h.do("POST", "/v1/credentials", h.admin, body); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "internal network") {
			t.Fatalf("create with %s: %d %s", u, r.status, r.body)
		}
	}
	body := h.ccCredential("public")
	body["token_url"] = "https://idp.example.com/token"
	if r := h.do("POST", "/v1/credentials", h.admin, body); r.status != http.StatusCreated {
		t.Fatalf("create with a public name: %d %s", r.status, r.body)
	}
	r := h.do("PATCH", "/v1/credentials/public", h.admin, map[string]any{"token_url": "https://[fd00:ec2::254]/token", "client_secret": "x"})
	if r.status != http.StatusBadRequest {
		t.Fatalf("PATCH to a metadata address: %d %s", r.status, r.body)
	}
}

// M1: an address that keeps failing to authenticate gets 429, while
// another address is not affected.
func TestAuthFailuresRateLimitedPerAddress(t *testing.T) {
	h := newHarnessWith(t, func(c *tkhttp.Config) { c.AuthFailuresPerSecond, c.AuthFailuresBurst = 1, 5 })
	statuses := map[int]int{}
	for range 10 {
		statuses[h.do("GET", "/v1/credentials", "tk_wrong", nil).status]++
	}
	if statuses[http.StatusUnauthorized] < 5 || statuses[http.StatusUnauthorized] > 6 || statuses[http.StatusTooManyRequests] < 4 {
		t.Fatalf("10 bad keys from one address: %v, want 5 (or 6) 401 then 429", statuses)
	}
	admin := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	req, _ := http.NewRequest("GET", h.url+"/v1/credentials", nil)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another address: %d", resp.StatusCode)
	}
}
