package console_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/internal/connect"
	"github.com/tokenkeeper/tokenkeeper/internal/console"
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

// harness is the real broker (SQLite, refresher, accounts, connect flow,
// HTTP API) with the console mounted, and oauthtest as the provider.
type harness struct {
	t        testing.TB
	url      string
	store    tokenkeeper.Store
	auth     *auth.Service
	idp      *oauthtest.Server
	admin    string // an admin API key, for arranging things
	secret   string // the provider's client secret
	logs     *syncBuffer
	handler  http.Handler // the broker's whole handler, API and console
	authSkew atomic.Int64 // moves the accounts' clock (nanoseconds)
}

const (
	adminUser, adminPassword   = "ada", "correct horse battery staple"
	viewerUser, viewerPassword = "vic", "viewer horse battery staple"
)

func randomSecret() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return "sec-" + base64.RawURLEncoding.EncodeToString(b)
}

func newHarness(t testing.TB, idpOpts ...oauthtest.Option) *harness {
	t.Helper()
	return newHarnessWith(t, harnessConfig{}, idpOpts...)
}

// harnessConfig changes what newHarnessWith builds.
type harnessConfig struct {
	noRefresher bool          // the refresher's loop does not run (a benchmark arranges the credentials' state itself)
	heartbeat   time.Duration // the event streams' (2 s if 0)
	// beforeAPI, if set, runs before the API answers each of the console's
	// calls (to hold one back).
	beforeAPI func(*http.Request)
}

// newHarnessWith is newHarness, changed by hc.
func newHarnessWith(t testing.TB, hc harnessConfig, idpOpts ...oauthtest.Option) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}, secret: randomSecret()}
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
	ref, err := refresh.New(refresh.Config{Store: store, Logger: logger, ProviderTimeout: 5 * time.Second,
		BackoffMin: 200 * time.Millisecond, BackoffMax: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	fast := auth.Argon2Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	many := auth.Rate{Limit: 1000, Per: time.Minute, Burst: 1000}
	h.auth, err = auth.New(context.Background(), auth.Config{Store: store, Logger: logger, PasswordParams: fast,
		LoginRatePair: many, LoginRateUser: many, LoginRateAddress: many,
		Now: func() time.Time { return time.Now().Add(time.Duration(h.authSkew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name, pw string
		role     tokenkeeper.Role
	}{{adminUser, adminPassword, tokenkeeper.RoleAdmin}, {viewerUser, viewerPassword, tokenkeeper.RoleViewer}} {
		if _, err := h.auth.CreateUser(context.Background(), u.name, u.pw, u.role); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	conn, err := connect.New(connect.Config{Store: store, PublicURL: base, Logger: logger,
		Connected: func(c *tokenkeeper.Credential) { ref.Forget(c.Name); ref.Wake() }})
	if err != nil {
		t.Fatal(err)
	}
	ui, err := console.New(console.Config{Store: store, Auth: h.auth, Logger: logger,
		RedirectURI: conn.RedirectURI(), PollInterval: 200 * time.Millisecond, Heartbeat: cmp.Or(hc.heartbeat, 2*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	handler := tkhttp.NewServer(tkhttp.Config{Store: store, Refresher: ref, Logger: logger, Auth: h.auth, AuthStore: store,
		ForcedRefreshFloor: -1, ForcedRefreshPerMinute: 1 << 30, ForcedRefreshBurst: 1 << 30,
		AuthFailuresPerSecond: 1 << 30, AuthFailuresBurst: 1 << 30, Connect: conn, Console: func(api http.Handler) http.Handler {
			if hc.beforeAPI != nil {
				next := api
				api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hc.beforeAPI(r); next.ServeHTTP(w, r) })
			}
			return ui.Handler(api)
		}})
	var wg sync.WaitGroup
	for _, f := range []func(){
		func() {
			if !hc.noRefresher {
				_ = ref.Run(ctx)
			}
		}, func() { _ = h.auth.Run(ctx) }, func() { handler.Run(ctx) }, func() { conn.Run(ctx) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	h.handler = handler
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.RegisterOnShutdown(ui.Close)
	srv.Start()
	h.url = srv.URL
	t.Cleanup(func() {
		ui.Close()
		srv.Close()
		cancel()
		wg.Wait()
		store.Close()
		logs := h.logs.String()
		if t.Failed() { // the broker's last words, for a failure
			lines := strings.Split(strings.TrimSpace(logs), "\n")
			t.Logf("the broker's log, last %d lines:\n%s", min(len(lines), 40), strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		for _, s := range []string{h.secret, h.admin, adminPassword, viewerPassword} {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("a secret appears in the logs")
			}
		}
	})
	k, rec := tkhttp.NewAPIKey("test-admin", tokenkeeper.RoleAdmin, nil)
	if err := store.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	h.admin = k
	return h
}

// api calls the broker's API with the admin key and decodes the answer.
func (h *harness) api(method, path string, in any) (int, map[string]any) {
	h.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.url+path, body)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// provider adds the oauthtest provider by hand (the browser journey adds
// one from a preset) and a connected credential named name.
func (h *harness) credential(name string) *tokenkeeper.Credential {
	h.t.Helper()
	if st, out := h.api("POST", "/v1/providers", map[string]any{"name": "idp", "authorization_url": h.idp.AuthorizeURL(),
		"token_url": h.idp.TokenURL(), "client_id": "app", "client_secret": h.secret}); st != http.StatusCreated && st != http.StatusConflict {
		h.t.Fatalf("create provider: %d %v", st, out)
	}
	rt := h.idp.IssueRefreshToken("app", "read")
	if st, out := h.api("POST", "/v1/credentials", map[string]any{"name": name, "provider": "idp", "grant_type": "refresh_token",
		"refresh_token": rt}); st != http.StatusCreated {
		h.t.Fatalf("create credential: %d %v", st, out)
	}
	if st, out := h.api("POST", "/v1/credentials/"+name+"/refresh", nil); st != http.StatusOK {
		h.t.Fatalf("first refresh: %d %v", st, out)
	}
	c, err := h.store.Credential(context.Background(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// browser is a plain HTTP client with cookies that does not follow
// redirects: the page-level tests read what the console answers.
type browser struct {
	t    testing.TB
	h    *harness
	jar  *cookiejar.Jar
	c    *http.Client
	last string // the last page's HTML
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: h.t, h: h, jar: jar, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) *http.Response {
	b.t.Helper()
	resp, err := b.c.Get(b.h.url + path)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.last = string(body)
	return resp
}

func (b *browser) post(path string, form url.Values) *http.Response {
	b.t.Helper()
	resp, err := b.c.PostForm(b.h.url+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.last = string(body)
	return resp
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the last page's forms.
func (b *browser) csrf() string {
	b.t.Helper()
	m := csrfRE.FindStringSubmatch(b.last)
	if m == nil {
		b.t.Fatalf("no CSRF token on the page: %.400s", b.last)
	}
	return m[1]
}

// signIn signs in through the sign-in form.
func (b *browser) signIn(user, password string) {
	b.t.Helper()
	b.get("/ui/login")
	resp := b.post("/ui/login", url.Values{"csrf": {b.csrf()}, "username": {user}, "password": {password}, "next": {"/ui/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		b.t.Fatalf("sign in as %s: %d %s %.300s", user, resp.StatusCode, resp.Header.Get("Location"), b.last)
	}
}

// waitAudit waits until the audit log (written in the background) holds a
// record of action by actor, and fails the test after 10 s.
func (h *harness) waitAudit(actor, action string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, out := h.api("GET", "/v1/audit?actor="+url.QueryEscape(actor)+"&action="+url.QueryEscape(action), nil)
		if recs, _ := out["records"].([]any); len(recs) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("no audit record of %s by %s", action, actor)
}

// ciRun reports whether the tests run in CI.
func ciRun() bool { return os.Getenv("CI") == "true" }
