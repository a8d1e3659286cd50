package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// The end-to-end tests of issue 17: a provider that revokes the previous
// access token of a grant at every refresh (as Ory Hydra does), brokers
// started through run on real SQLite or PostgreSQL, and consumers that keep
// each token exactly until the expires_in they were given has passed.

// expiryWorld is a provider, one or more brokers sharing a database, the
// admin key and a service client for /oauth2/token.
type expiryWorld struct {
	idp          *oauthtest.Server
	secret       string // the upstream client's secret
	brokers      []*servedBroker
	key          string // admin API key
	clientID     string // service client of /oauth2/token
	clientSecret string
}

// newExpiryWorld starts replicas brokers through run: on SQLite (one
// replica) or on a fresh PostgreSQL schema.
func newExpiryWorld(t *testing.T, replicas int, pg bool, lifetime time.Duration) *expiryWorld {
	t.Helper()
	w := &expiryWorld{secret: "expiry-client-secret-" + randomString()}
	w.idp = oauthtest.NewServer(oauthtest.WithLifetime(lifetime), oauthtest.WithRotation(true),
		oauthtest.WithReuseDetection(0), oauthtest.WithRevokePrevious(true), oauthtest.WithClient("app", w.secret))
	t.Cleanup(w.idp.Close)
	if !pg {
		sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
		if sb.key == "" {
			t.Fatalf("serve printed no admin key:\n%s", sb.stdout.String())
		}
		w.brokers, w.key = []*servedBroker{sb}, sb.key
	} else {
		env := pgEnv(t)
		var out syncBuffer
		if err := run(context.Background(), []string{"tokenkeeper", "init", "--json"}, func(k string) string { return env[k] },
			strings.NewReader(""), &out, io.Discard); err != nil {
			t.Fatalf("init: %v", err)
		}
		var init struct {
			Key string `json:"admin_api_key"`
		}
		if err := json.Unmarshal([]byte(out.String()), &init); err != nil || init.Key == "" {
			t.Fatalf("init printed no admin key: %s", out.String())
		}
		w.key = init.Key
		for range replicas {
			w.brokers = append(w.brokers, startServe(t, env))
		}
	}
	var cl struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	w.clientID = "consumer-" + randomString()[:8]
	if st := apiDo(t, "POST", w.brokers[0].url+"/v1/clients", w.key, map[string]any{"client_id": w.clientID, "credentials": []string{"api"}}, &cl); st != http.StatusCreated || cl.ClientSecret == "" {
		t.Fatalf("create service client: %d", st)
	}
	w.clientSecret = cl.ClientSecret
	if st := apiDo(t, "POST", w.brokers[0].url+"/v1/credentials", w.key, map[string]any{
		"name": "api", "token_url": w.idp.TokenURL(), "grant_type": "refresh_token",
		"client_id": "app", "client_secret": w.secret, "refresh_token": w.idp.IssueRefreshToken("app", "read"),
	}, nil); st != http.StatusCreated {
		t.Fatalf("create credential: %d", st)
	}
	return w
}

// pgEnv returns the environment of a broker on a fresh PostgreSQL schema,
// dropped at the end of the test, with a shared master key.
func pgEnv(t *testing.T) map[string]string {
	t.Helper()
	db := storetest.PostgresURL(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "tk_expiry_" + hex.EncodeToString(b[:])
	if err := execPG(t, db, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := execPG(t, db, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return map[string]string{"TOKENKEEPER_DATABASE": u.String(), "TOKENKEEPER_MASTER_KEY": base64.StdEncoding.EncodeToString(key)}
}

// broker returns a replica chosen at random.
func (w *expiryWorld) broker() *servedBroker { return w.brokers[mrand.IntN(len(w.brokers))] }

// callResource calls the provider's protected resource with token and
// reports whether it was accepted.
func (w *expiryWorld) callResource(hc *http.Client, token string) (bool, error) {
	req, _ := http.NewRequest("GET", w.idp.ResourceURL(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// tokenAnswer is what a read of either endpoint answered.
type tokenAnswer struct {
	status      int
	token       string
	expiresIn   int64 // -1 when absent
	hasExpiryAt bool
	problem     map[string]any
}

// readV1 reads GET /v1/credentials/api/token from b.
func (w *expiryWorld) readV1(t *testing.T, hc *http.Client, b *servedBroker) tokenAnswer {
	req, _ := http.NewRequest("GET", b.url+"/v1/credentials/api/token", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	return decodeAnswer(t, hc, req)
}

// readOAuth2 asks POST /oauth2/token of b.
func (w *expiryWorld) readOAuth2(t *testing.T, hc *http.Client, b *servedBroker) tokenAnswer {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"credential:api"}}
	req, _ := http.NewRequest("POST", b.url+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(w.clientID), url.QueryEscape(w.clientSecret))
	return decodeAnswer(t, hc, req)
}

func decodeAnswer(t *testing.T, hc *http.Client, req *http.Request) tokenAnswer {
	resp, err := hc.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
		return tokenAnswer{}
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	a := tokenAnswer{status: resp.StatusCode, expiresIn: -1, problem: body}
	a.token, _ = body["access_token"].(string)
	if v, ok := body["expires_in"].(float64); ok {
		a.expiresIn = int64(v)
	}
	_, a.hasExpiryAt = body["expires_at"]
	return a
}

// consumerStats counts what one consumer did.
type consumerStats struct {
	fetches, calls, failures, zero int
	tokens                         map[string]bool
	minIn, maxIn                   int64
}

func (s *consumerStats) String() string {
	return fmt.Sprintf("%d fetches of %d distinct tokens (expires_in %d..%d s, %d zero), %d calls to the resource, %d failed",
		s.fetches, len(s.tokens), s.minIn, s.maxIn, s.zero, s.calls, s.failures)
}

// holdingConsumer reads the token with a plain HTTP client from any
// replica, keeps it until the expires_in it was given has passed, calling
// the resource every 50 ms, then reads again, until end.
func (w *expiryWorld) holdingConsumer(t *testing.T, end time.Time) *consumerStats {
	hc := &http.Client{Timeout: 10 * time.Second}
	st := &consumerStats{tokens: map[string]bool{}, minIn: math.MaxInt64}
	for time.Now().Before(end) {
		a := w.readV1(t, hc, w.broker())
		received := time.Now()
		if a.status != http.StatusOK {
			t.Errorf("token read: status %d %v", a.status, a.problem)
			return st
		}
		st.fetches++
		st.tokens[a.token] = true
		st.minIn, st.maxIn = min(st.minIn, a.expiresIn), max(st.maxIn, a.expiresIn)
		if a.expiresIn <= 0 || !a.hasExpiryAt {
			st.zero++
			continue
		}
		for until := received.Add(time.Duration(a.expiresIn) * time.Second); time.Now().Before(until); {
			ok, err := w.callResource(hc, a.token)
			if err != nil {
				t.Error(err)
				return st
			}
			st.calls++
			if !ok {
				st.failures++
			}
			time.Sleep(min(50*time.Millisecond, max(time.Until(until), 0)))
		}
	}
	return st
}

// replicaSource fetches from /oauth2/token of a replica chosen at random,
// through x/oauth2's clientcredentials, recording every token.
type replicaSource struct {
	w    *expiryWorld
	ctx  context.Context
	mu   sync.Mutex
	st   *consumerStats
	errs atomic.Int64
}

func (s *replicaSource) Token() (*oauth2.Token, error) {
	cfg := clientcredentials.Config{ClientID: s.w.clientID, ClientSecret: s.w.clientSecret,
		TokenURL: s.w.broker().url + "/oauth2/token", Scopes: []string{"credential:api"}}
	tok, err := cfg.Token(s.ctx)
	if err != nil {
		s.errs.Add(1)
		return nil, err
	}
	s.mu.Lock()
	s.st.fetches++
	s.st.tokens[tok.AccessToken] = true
	// x/oauth2 turns expires_in into Expiry (now + expires_in) and reads
	// 0 as no expiry at all.
	in := int64(math.Round(time.Until(tok.Expiry).Seconds()))
	s.st.minIn, s.st.maxIn = min(s.st.minIn, in), max(s.st.maxIn, in)
	if tok.Expiry.IsZero() || in <= 0 {
		s.st.zero++
	}
	s.mu.Unlock()
	return tok, nil
}

// oauth2Consumer calls the resource every 50 ms through an x/oauth2 client
// whose clientcredentials source reads /oauth2/token of any replica and
// keeps each token until its expires_in has passed (an expiry delta of 1 ns
// instead of x/oauth2's default 10 s, which would fetch before each call for
// tokens this short).
func (w *expiryWorld) oauth2Consumer(t *testing.T, end time.Time) *consumerStats {
	st := &consumerStats{tokens: map[string]bool{}, minIn: math.MaxInt64}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 10 * time.Second})
	src := &replicaSource{w: w, ctx: ctx, st: st}
	hc := oauth2.NewClient(ctx, oauth2.ReuseTokenSourceWithExpiry(nil, src, time.Nanosecond))
	hc.Timeout = 10 * time.Second
	for time.Now().Before(end) {
		resp, err := hc.Get(w.idp.ResourceURL())
		if err != nil {
			t.Errorf("x/oauth2 client: %v", err)
			return st
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		src.mu.Lock()
		st.calls++
		if resp.StatusCode != http.StatusOK {
			st.failures++
		}
		src.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	if n := src.errs.Load(); n > 0 {
		t.Errorf("%d token requests of the x/oauth2 client failed", n)
	}
	return st
}

// zeroReader reads both endpoints of every replica back to back until end
// and counts answers other than 200 with expires_in of at least 1.
func (w *expiryWorld) zeroReader(t *testing.T, end time.Time) (reads, bad int) {
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := 0; time.Now().Before(end); i++ {
		b := w.brokers[i%len(w.brokers)]
		for _, a := range []tokenAnswer{w.readV1(t, hc, b), w.readOAuth2(t, hc, b)} {
			reads++
			if a.status != http.StatusOK || a.expiresIn < 1 {
				bad++
				t.Errorf("read %d: status %d, expires_in %d", reads, a.status, a.expiresIn)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return reads, bad
}

// runHoldingConsumers runs both consumers and a continuous reader of both
// endpoints for d, and checks every figure.
func runHoldingConsumers(t *testing.T, w *expiryWorld, d time.Duration) {
	end := time.Now().Add(d)
	var plain, xo *consumerStats
	var reads, bad int
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); plain = w.holdingConsumer(t, end) }()
	go func() { defer wg.Done(); xo = w.oauth2Consumer(t, end) }()
	go func() { defer wg.Done(); reads, bad = w.zeroReader(t, end) }()
	wg.Wait()
	st := w.idp.Stats()
	t.Logf("plain HTTP on /v1/credentials/api/token: %s", plain)
	t.Logf("x/oauth2 clientcredentials on /oauth2/token: %s", xo)
	t.Logf("continuous reads of both endpoints: %d, %d with a status other than 200 or expires_in < 1", reads, bad)
	t.Logf("provider: %d refreshes, %d previous access tokens revoked by a refresh, %d reuse detections, max presentations %d",
		st.TokenRequests["refresh_token"], st.AccessTokensRevokedByRefresh, st.ReuseDetections, w.idp.MaxPresentations())
	for name, s := range map[string]*consumerStats{"plain": plain, "x/oauth2": xo} {
		if s.failures != 0 || s.zero != 0 {
			t.Errorf("%s consumer: %d of %d calls failed, %d answers with expires_in 0", name, s.failures, s.calls, s.zero)
		}
		// 3 s tokens advertised for about 1.6 s: a consumer goes through
		// several tokens in the run, or the test proves nothing.
		if s.calls < 100 || len(s.tokens) < int(d/(3*time.Second)) {
			t.Errorf("%s consumer: only %d calls with %d tokens in %s", name, s.calls, len(s.tokens), d)
		}
	}
	if bad != 0 || reads < 200 {
		t.Errorf("%d of %d continuous reads were bad", bad, reads)
	}
	if st.AccessTokensRevokedByRefresh < int(d/(3*time.Second)) {
		t.Errorf("the provider revoked only %d access tokens at refresh: the test proves nothing", st.AccessTokensRevokedByRefresh)
	}
	if st.ReuseDetections != 0 || w.idp.MaxPresentations() != 1 {
		t.Errorf("%d reuse detections, a refresh token presented %d times", st.ReuseDetections, w.idp.MaxPresentations())
	}
}

// TestHeldTokensOutliveNoRefresh: with a provider that revokes the previous
// access token at every refresh and 3 s tokens, consumers that keep each
// token until its expires_in has passed never call the resource with a
// revoked one, on /v1/.../token and on /oauth2/token alike, and no read
// answers expires_in 0.
func TestHeldTokensOutliveNoRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: a 20 s end-to-end run")
	}
	w := newExpiryWorld(t, 1, false, 3*time.Second)
	runHoldingConsumers(t, w, 20*time.Second)
}

// TestHeldTokensOutliveNoRefreshReplicas is the same with three replicas on
// PostgreSQL, each consumer reading from any of them.
func TestHeldTokensOutliveNoRefreshReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: a 20 s end-to-end run of three replicas")
	}
	w := newExpiryWorld(t, 3, true, 3*time.Second)
	runHoldingConsumers(t, w, 20*time.Second)
}

// TestRejectedTokenNotServedAgain: the provider revokes the grant and its
// tokens; once a consumer reports the rejected token, no replica serves it
// again (409 naming the status), and a new refresh token brings back 200.
func TestRejectedTokenNotServedAgain(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRejectedTokenNotServedAgain(t, 1, false) })
	t.Run("postgres-3-replicas", func(t *testing.T) { testRejectedTokenNotServedAgain(t, 3, true) })
}

func testRejectedTokenNotServedAgain(t *testing.T, replicas int, pg bool) {
	// Long-lived tokens: nothing is replaced on schedule during the test.
	w := newExpiryWorld(t, replicas, pg, time.Hour)
	hc := &http.Client{Timeout: 10 * time.Second}
	var rejected string
	for _, b := range w.brokers {
		a := w.readV1(t, hc, b)
		if a.status != http.StatusOK {
			t.Fatalf("first read: %d %v", a.status, a.problem)
		}
		if rejected != "" && a.token != rejected {
			t.Fatal("the replicas serve different tokens")
		}
		rejected = a.token
	}
	w.idp.RevokeClientTokens("app") // the grant and its tokens
	if ok, err := w.callResource(hc, rejected); err != nil || ok {
		t.Fatalf("the resource still accepts the revoked token (%v)", err)
	}
	// Before any report, the broker cannot know: it still serves the token.
	if a := w.readV1(t, hc, w.brokers[len(w.brokers)-1]); a.status != http.StatusOK || a.token != rejected {
		t.Fatalf("read before the report: %d", a.status)
	}

	// The first consumer reports it to the first replica.
	req, _ := http.NewRequest("POST", w.brokers[0].url+"/v1/credentials/api/refresh", strings.NewReader(`{"rejected_token":"`+rejected+`"}`))
	req.Header.Set("Authorization", "Bearer "+w.key)
	req.Header.Set("Content-Type", "application/json")
	a := decodeAnswer(t, hc, req)
	if a.status != http.StatusConflict || a.problem["credential_status"] != "needs_reauth" || a.problem["last_error_code"] != "invalid_grant" {
		t.Fatalf("report of the rejected token: %d %v", a.status, a.problem)
	}
	reported := time.Now()

	// Every replica answers 409 naming the status on both endpoints, as
	// soon as the change has reached it, and never the rejected token.
	var slowest time.Duration
	for i, b := range w.brokers {
		for {
			v1, o2 := w.readV1(t, hc, b), w.readOAuth2(t, hc, b)
			if v1.token == rejected || o2.token == rejected {
				if i == 0 || time.Since(reported) > 2*time.Second {
					t.Fatalf("replica %d still serves the rejected token %s after the report", i, time.Since(reported))
				}
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if v1.status != http.StatusConflict || v1.problem["credential_status"] != "needs_reauth" {
				t.Fatalf("replica %d, /v1 read after the report: %d %v", i, v1.status, v1.problem)
			}
			if o2.status == http.StatusOK {
				t.Fatalf("replica %d, /oauth2/token after the report: 200", i)
			}
			slowest = max(slowest, time.Since(reported))
			break
		}
	}
	// And it stays so: many reads across the replicas, none with the token.
	for i := range 50 {
		b := w.brokers[i%len(w.brokers)]
		if v1 := w.readV1(t, hc, b); v1.token == rejected || v1.status != http.StatusConflict {
			t.Fatalf("read %d after the report: %d", i, v1.status)
		}
	}
	t.Logf("%d replica(s): the rejected token was withdrawn everywhere %s after the report", len(w.brokers), slowest.Round(time.Millisecond))

	// A new grant brings back 200 on every replica, with a working token.
	if st := apiDo(t, "PATCH", w.brokers[0].url+"/v1/credentials/api", w.key, map[string]any{"refresh_token": w.idp.IssueRefreshToken("app", "read")}, nil); st != http.StatusOK {
		t.Fatalf("PATCH refresh_token: %d", st)
	}
	for i, b := range w.brokers {
		got := waitFor(t, fmt.Sprintf("replica %d serving the new token", i), 5*time.Second, func() string {
			if a := w.readV1(t, hc, b); a.status == http.StatusOK && a.token != rejected {
				return a.token
			}
			return ""
		})
		if ok, err := w.callResource(hc, got); err != nil || !ok {
			t.Fatalf("replica %d serves a token the resource refuses (%v)", i, err)
		}
		if a := w.readOAuth2(t, hc, b); a.status != http.StatusOK || a.token != got || a.expiresIn < 1 {
			t.Fatalf("replica %d, /oauth2/token after the new grant: %d", i, a.status)
		}
	}
}

// execPG runs one statement on the test database.
func execPG(t *testing.T, db, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// TestTestIDPRevokePrevious: with --revoke-previous, testidp revokes a
// grant's previous access token when it issues the next.
func TestTestIDPRevokePrevious(t *testing.T) {
	for _, on := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		var stdout syncBuffer
		done := make(chan error, 1)
		args := []string{"tokenkeeper", "testidp", "--addr", "127.0.0.1:0", "--client", "svc:svc-secret"}
		if on {
			args = append(args, "--revoke-previous")
		}
		go func() {
			done <- run(ctx, args, func(string) string { return "" }, strings.NewReader(""), &stdout, io.Discard)
		}()
		tokenURL := waitFor(t, "the token URL", 5*time.Second, func() string {
			for _, line := range strings.Split(stdout.String(), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "token" && f[1] == "URL:" {
					return f[2]
				}
			}
			return ""
		})
		resource := strings.TrimSuffix(tokenURL, "/token") + "/resource"
		cfg := clientcredentials.Config{ClientID: "svc", ClientSecret: "svc-secret", TokenURL: tokenURL}
		first, err := cfg.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.Token(ctx); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", resource, nil)
		req.Header.Set("Authorization", "Bearer "+first.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: http.StatusOK, true: http.StatusUnauthorized}[on]; resp.StatusCode != want {
			t.Errorf("--revoke-previous=%v: the first token gets %d after a second was issued, want %d", on, resp.StatusCode, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("testidp: %v", err)
		}
	}
}
