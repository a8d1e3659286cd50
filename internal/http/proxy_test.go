package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/netguard"
	"github.com/tokenkeeper/tokenkeeper/internal/proxy"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// testAPI is an API that accepts oauthtest's access tokens as Bearer
// tokens and echoes what it got.
type testAPI struct {
	srv      *httptest.Server
	mu       sync.Mutex
	auths    []string // every Authorization header seen
	rejected int      // 401s answered
	// hold, when set, holds each 401 until hold requests were refused,
	// so that all of them see the refusal before any renewal.
	hold    int
	release chan struct{}
}

func newTestAPI(t *testing.T, idp *oauthtest.Server, decoy string) *testAPI {
	a := &testAPI{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		auth := r.Header.Get("Authorization")
		a.mu.Lock()
		a.auths = append(a.auths, auth)
		a.mu.Unlock()
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || !idp.ValidAccessToken(tok) || r.URL.Path == "/base/deny" {
			a.mu.Lock()
			a.rejected++
			if a.hold > 0 && a.rejected == a.hold {
				close(a.release)
			}
			wait := a.hold > 0 && a.rejected <= a.hold
			a.mu.Unlock()
			if wait {
				select {
				case <-a.release:
				case <-time.After(10 * time.Second):
				}
			}
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/base/redirect" {
			http.Redirect(w, r, decoy+"/stolen", http.StatusFound)
			return
		}
		if r.URL.Path == "/base/moved" {
			http.Redirect(w, r, "/base/new/place?x=1", http.StatusMovedPermanently)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.EscapedPath(), "query": r.URL.RawQuery, "method": r.Method,
			"body": string(body), "cookie": r.Header.Get("Cookie"), "upgrade": r.Header.Get("Upgrade")})
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// proxyHarness: a provider "api" whose API is a testAPI, a client
// credentials credential "svc" of it, and a decoy server that must see
// nothing.
func proxyHarness(t *testing.T, configure func(*tkhttp.Config)) (*harness, *testAPI, *atomic.Int64) {
	var decoyHits atomic.Int64
	decoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { decoyHits.Add(1) }))
	t.Cleanup(decoy.Close)
	h := newHarnessWith(t, func(c *tkhttp.Config) {
		c.Proxy.AllowPrivate = true // the test servers are on loopback
		if configure != nil {
			configure(c)
		}
	}, oauthtest.WithLifetime(time.Hour))
	api := newTestAPI(t, h.idp, decoy.URL)
	p := h.provider("api")
	p["api_base_url"] = api.srv.URL + "/base"
	if r := h.do("POST", "/v1/providers", h.admin, p); r.status != http.StatusCreated {
		t.Fatalf("provider: %d %s", r.status, r.body)
	}
	h.create(map[string]any{"name": "svc", "provider": "api", "grant_type": "client_credentials"})
	t.Cleanup(func() {
		if n := decoyHits.Load(); n != 0 {
			t.Errorf("the decoy server saw %d requests", n)
		}
	})
	return h, api, &decoyHits
}

func (h *harness) proxied(method, path, key, body string, header ...string) *response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return h.send(req)
}

func TestProxyForwards(t *testing.T) {
	h, api, _ := proxyHarness(t, nil)
	key := h.consumerKey("svc")
	r := h.proxied("POST", "/v1/proxy/svc/items/a%2Fb/./x/../y?q=1&r=%20", key, `{"n":1}`, "Cookie", "session=broker", "Connection", "Upgrade", "Upgrade", "websocket")
	if r.status != http.StatusOK {
		t.Fatalf("proxied: %d %s", r.status, r.body)
	}
	got := r.json(t)
	if got["path"] != "/base/items/a%2Fb/y" || got["query"] != "q=1&r=%20" || got["method"] != "POST" || got["body"] != `{"n":1}` || got["cookie"] != "" || got["upgrade"] != "" {
		t.Fatalf("the API got %s", r.body)
	}
	// The API saw the upstream token, never the caller's key.
	api.mu.Lock()
	for _, a := range api.auths {
		if strings.Contains(a, key) || !strings.HasPrefix(a, "Bearer ") {
			t.Errorf("the API saw Authorization %q", a)
		}
	}
	api.mu.Unlock()
	// A redirect is passed back, not followed (the decoy sees nothing).
	req, _ := http.NewRequest("GET", h.url+"/v1/proxy/svc/redirect", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "http://127.0.0.1") {
		t.Fatalf("redirect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A redirect within the API points back at the proxy.
	req, _ = http.NewRequest("GET", h.url+"/v1/proxy/svc/moved", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/v1/proxy/svc/new/place?x=1" {
		t.Fatalf("redirect within the API: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An admin may use the proxy; the base path itself is reachable.
	if r := h.proxied("GET", "/v1/proxy/svc", h.admin, ""); r.status != 200 || r.json(t)["path"] != "/base" {
		t.Fatalf("base: %d %s", r.status, r.body)
	}
}

func TestProxyBadInput(t *testing.T) {
	h, api, _ := proxyHarness(t, func(c *tkhttp.Config) { c.Proxy.MaxBody = 4096; c.Proxy.MaxReplayBody = 1024 })
	key := h.consumerKey("svc")
	other := h.consumerKey("elsewhere")
	// A credential whose provider has no API base URL.
	if r := h.do("POST", "/v1/providers", h.admin, h.provider("plain")); r.status != http.StatusCreated {
		t.Fatalf("provider: %d %s", r.status, r.body)
	}
	h.create(map[string]any{"name": "nobase", "provider": "plain", "grant_type": "client_credentials"})
	nobase := h.consumerKey("nobase")
	// A provider whose API is down.
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	p := h.provider("down")
	p["api_base_url"] = downURL
	if r := h.do("POST", "/v1/providers", h.admin, p); r.status != http.StatusCreated {
		t.Fatalf("provider: %d %s", r.status, r.body)
	}
	h.create(map[string]any{"name": "gone", "provider": "down", "grant_type": "client_credentials"})

	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		detail                        string
	}{
		{"unknown", "GET", "/v1/proxy/nope/x", key, "", 404, `not found`},
		{"not granted", "GET", "/v1/proxy/svc/x", other, "", 404, `not found`},
		{"no key", "GET", "/v1/proxy/svc/x", "", "", 401, "authentication required"},
		{"no base url", "GET", "/v1/proxy/nobase/x", nobase, "", 409, "has no API base URL"},
		{"escape", "GET", "/v1/proxy/svc/../../v1/credentials", key, "", 400, "leaves the API's base path"},
		{"escape encoded", "GET", "/v1/proxy/svc/a/%2e%2e/%2E%2E/x", key, "", 400, "leaves the API's base path"},
		{"escape behind a slash", "GET", "/v1/proxy/svc/..%2f..%2fadmin", key, "", 400, "dot segment"},
		{"too large", "POST", "/v1/proxy/svc/x", key, strings.Repeat("a", 5000), 413, "larger than the proxy's limit"},
		{"upstream down", "GET", "/v1/proxy/gone/x", h.admin, "", 502, "could not be reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.proxied(tc.method, tc.path, tc.key, tc.body)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.detail) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("%s %s: %d %s %s", tc.method, tc.path, r.status, r.header.Get("Content-Type"), r.body)
			}
		})
	}
	// Nothing reached the API with a path outside its base.
	api.mu.Lock()
	n := len(api.auths)
	api.mu.Unlock()
	if n != 0 {
		t.Fatalf("the API saw %d requests", n)
	}
	// A streamed body (no Content-Length) over the hard limit: 413.
	req, _ := http.NewRequest("POST", h.url+"/v1/proxy/svc/x", io.MultiReader(strings.NewReader(strings.Repeat("b", 5000))))
	req.Header.Set("Authorization", "Bearer "+key)
	if r := h.send(req); r.status != 413 {
		t.Fatalf("streamed over the limit: %d %s", r.status, r.body)
	}
	logs := h.logs.String()
	if strings.Contains(logs, key) {
		t.Fatal("a key in the logs")
	}
}

// TestProxyStreamedBodyNotReplayed: a body of unknown length is sent once;
// on a 401 the answer goes back as it is, saying so.
func TestProxyStreamedBodyNotReplayed(t *testing.T) {
	h, api, _ := proxyHarness(t, nil)
	key := h.consumerKey("svc")
	if r := h.proxied("GET", "/v1/proxy/svc/x", key, ""); r.status != 200 {
		t.Fatalf("warm up: %d", r.status)
	}
	tok := h.token("svc", h.admin).json(t)["access_token"].(string)
	h.idp.RevokeToken(tok)
	req, _ := http.NewRequest("PUT", h.url+"/v1/proxy/svc/x", io.MultiReader(strings.NewReader("streamed")))
	req.Header.Set("Authorization", "Bearer "+key)
	r := h.send(req)
	if r.status != 401 || r.header.Get(proxy.ReplayHeader) != proxy.BodyStreamed {
		t.Fatalf("streamed: %d %q", r.status, r.header.Get(proxy.ReplayHeader))
	}
	// A buffered body is replayed once with a renewed token.
	r = h.proxied("PUT", "/v1/proxy/svc/x", key, "buffered")
	if r.status != 200 || r.header.Get(proxy.ReplayHeader) != proxy.Replayed || r.json(t)["body"] != "buffered" {
		t.Fatalf("buffered: %d %q %s", r.status, r.header.Get(proxy.ReplayHeader), r.body)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.auths) != 4 {
		t.Fatalf("the API saw %d requests, want 4", len(api.auths))
	}
}

// TestProxyServiceClient: a service client authenticates with HTTP Basic
// and reaches only the credentials it was granted.
func TestProxyServiceClient(t *testing.T) {
	h, _, _ := proxyHarness(t, nil)
	secret, _, err := h.auth.CreateServiceClient(context.Background(), "worker", []string{"svc"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", h.url+"/v1/proxy/svc/x", nil)
	req.SetBasicAuth("worker", secret)
	if r := h.send(req); r.status != 200 {
		t.Fatalf("granted: %d %s", r.status, r.body)
	}
	req, _ = http.NewRequest("GET", h.url+"/v1/proxy/other/x", nil)
	req.SetBasicAuth("worker", secret)
	if r := h.send(req); r.status != 404 {
		t.Fatalf("not granted: %d %s", r.status, r.body)
	}
	req, _ = http.NewRequest("GET", h.url+"/v1/proxy/svc/x", nil)
	req.SetBasicAuth("worker", secret+"x")
	if r := h.send(req); r.status != 401 {
		t.Fatalf("bad secret: %d %s", r.status, r.body)
	}
}

// TestProxyStorm: 256 concurrent requests arrive while the upstream token
// is revoked: one provider refresh, no failed request, each replayed once,
// and no token anywhere but at the API's host.
func TestProxyStorm(t *testing.T) {
	h, api, _ := proxyHarness(t, nil)
	key := h.consumerKey("svc")
	if r := h.proxied("GET", "/v1/proxy/svc/warm", key, ""); r.status != 200 {
		t.Fatalf("warm up: %d %s", r.status, r.body)
	}
	tok := h.token("svc", h.admin).json(t)["access_token"].(string)
	before := total(h.idp.Stats().TokenRequests)
	if !h.idp.RevokeToken(tok) {
		t.Fatal("revoke")
	}
	const n = 256
	api.mu.Lock()
	api.hold, api.release = n, make(chan struct{})
	api.mu.Unlock()
	var wg sync.WaitGroup
	var failed, replayed atomic.Int64
	start := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", h.url+"/v1/proxy/svc/storm", strings.NewReader(`{"i":`+string(rune('0'+i%10))+`}`))
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
			if resp.Header.Get(proxy.ReplayHeader) == proxy.Replayed {
				replayed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	refreshes := total(h.idp.Stats().TokenRequests) - before
	t.Logf("%d requests: %d failed, %d replayed, %d provider refreshes", n, failed.Load(), replayed.Load(), refreshes)
	// Every request the API refused was replayed once, and only those (a
	// request that arrived after the renewal carried the new token).
	api.mu.Lock()
	seen, rejected := len(api.auths), api.rejected
	api.mu.Unlock()
	if failed.Load() != 0 || refreshes != 1 || replayed.Load() != int64(rejected) || seen != 1+n+rejected || rejected != n {
		t.Fatalf("%d failed, %d replayed, %d refused by the API, %d seen, %d refreshes; want 0, all refused replayed, 1 refresh",
			failed.Load(), replayed.Load(), rejected, seen, refreshes)
	}
	// Audited as token reads are: one record per caller, credential,
	// address and window (1 s here), counting the requests and the
	// replays ("257 requests in 1s, 256 replayed after a 401").
	var requests, replays int
	deadline := time.Now().Add(5 * time.Second)
	for requests < n+1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		recs := h.do("GET", "/v1/audit?action=credential.proxy", h.admin, nil).json(t)["records"].([]any)
		if len(recs) > 6 {
			t.Fatalf("%d audit records for %d requests in a few seconds", len(recs), n+1)
		}
		requests, replays = 0, 0
		for _, r := range recs {
			var a, b int
			d := r.(map[string]any)["detail"].(string)
			fmt.Sscanf(d, "%d request", &a)
			if m := replayedRE.FindStringSubmatch(d); m != nil {
				b, _ = strconv.Atoi(m[1])
			}
			if r.(map[string]any)["target"] != "svc" || !strings.HasPrefix(r.(map[string]any)["actor"].(string), "apikey:") {
				t.Fatalf("audit record %v", r)
			}
			requests, replays = requests+a, replays+b
		}
	}
	if requests != n+1 || replays != n {
		t.Fatalf("the audit counts %d requests and %d replays, want %d and %d", requests, replays, n+1, n)
	}
}

// replayedRE finds the replays in a credential.proxy record's detail.
var replayedRE = regexp.MustCompile(`, (\d+) replayed after a 401`)

// TestProxyRefusingAPI: an API that refuses every token gets one renewal,
// not one per request: the token a renewal produced is not reported again
// within the forced refresh floor.
func TestProxyRefusingAPI(t *testing.T) {
	h, _, _ := proxyHarness(t, func(c *tkhttp.Config) { c.ForcedRefreshFloor = tkhttp.DefaultForcedRefreshFloor })
	key := h.consumerKey("svc")
	if r := h.proxied("GET", "/v1/proxy/svc/warm", key, ""); r.status != 200 {
		t.Fatalf("warm up: %d %s", r.status, r.body)
	}
	before := total(h.idp.Stats().TokenRequests)
	r := h.proxied("GET", "/v1/proxy/svc/deny", key, "")
	if r.status != 401 || r.header.Get(proxy.ReplayHeader) != proxy.Replayed {
		t.Fatalf("first: %d %q", r.status, r.header.Get(proxy.ReplayHeader))
	}
	for range 5 {
		r := h.proxied("GET", "/v1/proxy/svc/deny", key, "")
		if r.status != 401 || r.header.Get(proxy.ReplayHeader) != proxy.NotRenewed {
			t.Fatalf("again: %d %q", r.status, r.header.Get(proxy.ReplayHeader))
		}
	}
	if n := total(h.idp.Stats().TokenRequests) - before; n != 1 {
		t.Fatalf("%d provider refreshes, want 1", n)
	}
	if r := h.proxied("GET", "/v1/proxy/svc/ok", key, ""); r.status != 200 {
		t.Fatalf("the renewed token works elsewhere: %d", r.status)
	}
}

// Where and how the proxy sends the token changes only for a fresh
// caller, as the token URL does; a change applies to the next request.
func TestProxyTargetNeedsFreshCaller(t *testing.T) {
	h, _, _ := proxyHarness(t, nil)
	stale := h.staleAdmin()
	for _, body := range []map[string]any{
		{"api_base_url": "https://elsewhere.example/"},
		{"api_token": map[string]any{"query": "access_token"}},
	} {
		if r := h.do("PATCH", "/v1/providers/api", stale, body); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "fresh_token_required") {
			t.Fatalf("stale %v: %d %s", body, r.status, r.body)
		}
	}
	if r := h.do("PATCH", "/v1/providers/api", h.admin, map[string]any{"api_base_url": ""}); r.status != http.StatusOK {
		t.Fatalf("clear: %d %s", r.status, r.body)
	}
	if r := h.proxied("GET", "/v1/proxy/svc/x", h.admin, ""); r.status != http.StatusConflict {
		t.Fatalf("after clearing the base URL: %d %s", r.status, r.body)
	}
	if r := h.do("PATCH", "/v1/providers/api", h.admin, map[string]any{"api_base_url": "ftp://x.example/"}); r.status != http.StatusBadRequest {
		t.Fatalf("ftp: %d %s", r.status, r.body)
	}
}

// L1 and L7 for the proxy: an API base URL on an internal address is
// refused when the provider is written (with the CLI's check), and the
// proxy's connections refuse internal addresses when they are made, so a
// name that resolves to one gets 502 and nothing is sent.
func TestProxyRefusesInternalAddresses(t *testing.T) {
	var hits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer internal.Close()
	h := newHarness(t, oauthtest.WithLifetime(time.Hour)) // Proxy.AllowPrivate off
	p := h.provider("api")
	p["api_base_url"] = internal.URL
	if r := h.do("POST", "/v1/providers", h.admin, p); r.status != http.StatusCreated {
		t.Fatalf("provider: %d %s", r.status, r.body)
	}
	h.create(map[string]any{"name": "svc", "provider": "api", "grant_type": "client_credentials"})
	r := h.proxied("GET", "/v1/proxy/svc/x", h.admin, "")
	if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "internal") {
		t.Fatalf("internal address: %d %s", r.status, r.body)
	}
	if hits.Load() != 0 {
		t.Fatal("the internal server was reached")
	}

	g := newHarnessWith(t, func(c *tkhttp.Config) { c.TokenURLCheck = netguard.CheckURL })
	for _, u := range []string{"https://10.0.0.1/", "https://169.254.169.254/latest", "http://127.0.0.1:9/"} {
		p := g.provider("internal")
		p["token_url"] = "https://idp.example.com/token"
		p["authorization_url"], p["revocation_url"] = "", ""
		p["api_base_url"] = u
		if r := g.do("POST", "/v1/providers", g.admin, p); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "api_base_url refused") {
			t.Fatalf("create with %s: %d %s", u, r.status, r.body)
		}
	}
}
