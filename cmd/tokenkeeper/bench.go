package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// benchDatabase opens the store a benchmark runs on: a SQLite file in a
// temporary directory, or a fresh schema in the given PostgreSQL database
// (dropped at the end). The returned cleanup closes and removes it.
func (e *env) benchDatabase(database string) (tokenkeeper.Store, string, func(), error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	benv := *e
	benv.stderr = io.Discard
	benv.getenv = func(k string) string {
		if k == "TOKENKEEPER_MASTER_KEY" {
			return seal.EncodeMasterKey(key)
		}
		return ""
	}
	if database == "" || !isPostgres(database) {
		dir, err := os.MkdirTemp("", "tokenkeeper-bench-")
		if err != nil {
			return nil, "", nil, err
		}
		so := storeOptions{database: filepath.Join(dir, "bench.db")}
		store, err := benv.openStore(&so, discardLogger(), true)
		if err != nil {
			os.RemoveAll(dir)
			return nil, "", nil, err
		}
		return store, "SQLite (" + so.database + ")", func() { store.Close(); os.RemoveAll(dir) }, nil
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	schema := "tokenkeeper_bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(e.ctx, database)
	if err != nil {
		return nil, "", nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if _, err := conn.Exec(e.ctx, "CREATE SCHEMA "+schema); err != nil {
		conn.Close(e.ctx)
		return nil, "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	}
	u, err := url.Parse(database)
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	so := storeOptions{database: u.String()}
	store, err := benv.openStore(&so, discardLogger(), true)
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	return store, "PostgreSQL (schema " + schema + ")", func() { store.Close(); drop() }, nil
}

// peakRSS reads the process's peak resident set size (Linux), in bytes.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// refreshTracker follows every credential's token to tell whether each
// refresh came before the token it replaced expired.
type refreshTracker struct {
	mu        sync.Mutex
	expiry    map[string]time.Time // guarded by mu: current token expiry per credential
	ok, late  int                  // guarded by mu: refreshes in the window, and those after expiry
	failed    int                  // guarded by mu
	fenced    int                  // guarded by mu
	latencies []time.Duration      // guarded by mu
	measuring bool                 // guarded by mu
}

func (t *refreshTracker) onAttempt(c *tokenkeeper.Credential, ev *tokenkeeper.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev, had := t.expiry[c.Name]
	switch ev.Outcome {
	case tokenkeeper.OutcomeOK:
		if c.Token != nil {
			t.expiry[c.Name] = c.Token.ExpiresAt
		}
	case tokenkeeper.OutcomeFenced:
		if t.measuring {
			t.fenced++
		}
		return
	default:
		if t.measuring {
			t.failed++
		}
		return
	}
	if !t.measuring {
		return
	}
	t.ok++
	t.latencies = append(t.latencies, ev.Latency)
	if had && ev.Time.After(prev) {
		t.late++
	}
}

func (e *env) cmdBenchRefresh(args []string) error {
	c := newCommand(e.stderr, "tokenkeeper bench refresh [--credentials 10000] [--lifetime 120s] [--database PATH_OR_URL]",
		`Measures the refresher: runs the test provider (with latency) and the
broker in one process, creates N credentials, waits until each has its first
token, then measures for --window (default two lifetimes): the share of
refreshes that came before the token they replaced expired, refreshes per
second, provider calls per token replaced (1.00 means no wasted call), refresh
latency p50 and p99, and peak RSS. --database postgres://... runs on a fresh
schema of that database, dropped afterwards; the default is a temporary SQLite file.`)
	n := c.fs.Int("credentials", 10000, "number of credentials")
	lifetime := c.fs.Duration("lifetime", 120*time.Second, "access token lifetime at the test provider")
	window := c.fs.Duration("window", 0, "measuring time after the first tokens (default 2 × lifetime)")
	latency := c.fs.Duration("latency", 20*time.Millisecond, "test provider latency per token request")
	database := c.fs.String("database", "", "postgres:// URL (default: a temporary SQLite file)")
	concurrency := c.fs.Int("concurrency", 64, "refreshes in flight at most")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.noEnv = map[string]bool{"database": true}
	if err := c.parse(args, e.getenv); err != nil {
		return err
	}
	if *n < 1 || *lifetime < 2*time.Second || *latency < 0 || *concurrency < 1 {
		return usagef("--credentials must be positive, --lifetime at least 2s, --concurrency positive")
	}
	if *window == 0 {
		*window = 2 * *lifetime
	}
	store, dbName, cleanup, err := e.benchDatabase(*database)
	if err != nil {
		return err
	}
	secret := randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(*lifetime), oauthtest.WithLatency(*latency), oauthtest.WithClient("bench", secret))
	defer idp.Close()

	tr := &refreshTracker{expiry: make(map[string]time.Time, *n)}
	bo := brokerOptions{addr: "127.0.0.1:0", concurrency: *concurrency, providerTimeout: 10 * time.Second, defaultLifetime: time.Hour, shutdownTimeout: 10 * time.Second}
	fmt.Fprintf(e.stderr, "bench refresh: %d credentials, lifetime %s, provider latency %s, %s\n", *n, *lifetime, *latency, dbName)
	start := time.Now()
	now := time.Now()
	for i := range *n {
		cr := &tokenkeeper.Credential{
			Name: fmt.Sprintf("bench-%06d", i), TokenURL: idp.TokenURL(), GrantType: tokenkeeper.GrantClientCredentials,
			ClientID: "bench", ClientSecret: secret, AuthStyle: tokenkeeper.AuthStyleHeader,
			Status: tokenkeeper.StatusActive, NextRefreshAt: now,
		}
		if err := store.CreateCredential(e.ctx, cr); err != nil {
			cleanup()
			return fmt.Errorf("create credential %d: %w", i, err)
		}
	}
	fmt.Fprintf(e.stderr, "  created %d credentials in %s\n", *n, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	b, err := startBroker(ctx, store, bo, discardLogger(), tr.onAttempt)
	if err != nil {
		cleanup()
		return err
	}
	defer func() { b.Stop(); _ = b.Wait(); cleanup() }()

	// Wait for every first token.
	fillStart := time.Now()
	for {
		tr.mu.Lock()
		have := len(tr.expiry)
		tr.mu.Unlock()
		if have == *n {
			break
		}
		if e.ctx.Err() != nil {
			return e.ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	fill := time.Since(fillStart)
	fmt.Fprintf(e.stderr, "  first tokens for all in %s; measuring for %s\n", fill.Round(time.Millisecond), *window)
	callsBefore := sumMap(idp.Stats().TokenRequests)
	tr.mu.Lock()
	tr.measuring = true
	tr.mu.Unlock()
	select {
	case <-time.After(*window):
	case <-e.ctx.Done():
		return e.ctx.Err()
	}
	calls := sumMap(idp.Stats().TokenRequests) - callsBefore
	tr.mu.Lock()
	tr.measuring = false
	// Tokens that expired without being replaced count as late too.
	end := time.Now()
	expiredUnrefreshed := 0
	for _, exp := range tr.expiry {
		if exp.Before(end) {
			expiredUnrefreshed++
		}
	}
	ok, late, failed, fenced := tr.ok, tr.late, tr.failed, tr.fenced
	lat := slices.Clone(tr.latencies)
	tr.mu.Unlock()
	slices.Sort(lat)
	onTime := 100.0
	if ok+expiredUnrefreshed > 0 {
		onTime = 100 * float64(ok-late) / float64(ok+expiredUnrefreshed)
	}
	perToken := 0.0
	if ok > 0 {
		perToken = float64(calls) / float64(ok)
	}
	res := map[string]any{
		"database": dbName, "credentials": *n, "lifetime": lifetime.String(), "window": window.String(),
		"provider_latency": latency.String(), "first_fill_seconds": fill.Seconds(),
		"refreshes": ok, "refreshed_before_expiry_pct": onTime, "late_refreshes": late,
		"expired_unrefreshed": expiredUnrefreshed, "failed_attempts": failed, "fenced": fenced,
		"refreshes_per_second": float64(ok) / window.Seconds(), "provider_calls": calls,
		"provider_calls_per_token": perToken,
		"refresh_latency_p50_ms":   float64(percentile(lat, 0.5).Microseconds()) / 1000,
		"refresh_latency_p99_ms":   float64(percentile(lat, 0.99).Microseconds()) / 1000,
		"peak_rss_mib":             float64(peakRSS()) / (1 << 20),
	}
	if *asJSON {
		return printJSON(e.stdout, res)
	}
	w := e.stdout
	fmt.Fprintf(w, "bench refresh on %s\n", dbName)
	fmt.Fprintf(w, "  credentials                     %d, token lifetime %s, provider latency %s\n", *n, *lifetime, *latency)
	fmt.Fprintf(w, "  first token for all             %s\n", fill.Round(time.Millisecond))
	fmt.Fprintf(w, "  measured                        %s\n", *window)
	fmt.Fprintf(w, "  refreshes                       %d (%.1f/s), %d failed attempts, %d fenced\n", ok, float64(ok)/window.Seconds(), failed, fenced)
	fmt.Fprintf(w, "  refreshed before expiry         %.2f%% (%d late, %d expired unrefreshed)\n", onTime, late, expiredUnrefreshed)
	fmt.Fprintf(w, "  provider calls per token        %.3f (%d calls for %d tokens replaced)\n", perToken, calls, ok)
	fmt.Fprintf(w, "  calls per credential per %-7s %.2f of wall time (each token is replaced a third of its lifetime early)\n", lifetime.String(), float64(calls)/float64(*n)/(window.Seconds()/lifetime.Seconds()))
	fmt.Fprintf(w, "  refresh latency                 p50 %s, p99 %s\n", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)))
	fmt.Fprintf(w, "  peak RSS                        %.0f MiB\n", float64(peakRSS())/(1<<20))
	return nil
}

// loadResult is what one load run measured.
type loadResult struct {
	requests, errors int64
	rate             float64
	p50, p99         time.Duration
}

// drive sends requests (GET, or POST of form when form is not empty) to
// target from conns keep-alive connections for d.
func drive(ctx context.Context, target, auth, form string, conns int, d time.Duration) loadResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var total, errs atomic.Int64
	lats := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			req, _ := http.NewRequest("GET", target, nil)
			if form != "" {
				req.Method = "POST"
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			local := make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil {
				t0 := time.Now()
				if form != "" {
					req.Body = io.NopCloser(strings.NewReader(form))
					req.ContentLength = int64(len(form))
				}
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs.Add(1)
				}
				total.Add(1)
				local = append(local, time.Since(t0))
			}
			lats[i] = local
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	return loadResult{requests: total.Load(), errors: errs.Load(), rate: float64(total.Load()) / el.Seconds(),
		p50: percentile(all, 0.5), p99: percentile(all, 0.99)}
}

func (e *env) cmdBenchRead(args []string) error {
	c := newCommand(e.stderr, "tokenkeeper bench read [--connections 64] [--duration 10s]",
		`Measures the token read path: drives GET /v1/credentials/NAME/token over
loopback keep-alive connections against a broker in this process (SQLite in
a temporary directory, or a fresh schema of --database postgres://...), as an
API key, as a user's access token (JWT), and as a service client at
/oauth2/token; and in the same run a bare net/http handler answering a body
of the same size. Reports each request rate, its ratio to the bare handler's
and the p99 latencies. Tokens are served from memory, so the database only
matters for authentication misses and the audit writer.`)
	conns := c.fs.Int("connections", 64, "concurrent keep-alive connections")
	d := c.fs.Duration("duration", 10*time.Second, "duration of each of the two runs")
	database := c.fs.String("database", "", "postgres:// URL (default: a temporary SQLite file)")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.noEnv = map[string]bool{"database": true}
	if err := c.parse(args, e.getenv); err != nil {
		return err
	}
	if *conns < 1 || *conns > 4096 || *d <= 0 {
		return usagef("--connections must be from 1 to 4096 and --duration positive")
	}
	store, dbName, cleanup, err := e.benchDatabase(*database)
	if err != nil {
		return err
	}
	secret := randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("bench", secret))
	defer idp.Close()
	key, err := ensureAdminKey(e.ctx, store, "bench")
	if err != nil {
		cleanup()
		return err
	}
	bo := brokerOptions{addr: "127.0.0.1:0", concurrency: 4, providerTimeout: 10 * time.Second, defaultLifetime: time.Hour, shutdownTimeout: 5 * time.Second}
	b, err := startBroker(e.ctx, store, bo, discardLogger(), nil)
	if err != nil {
		cleanup()
		return err
	}
	defer func() { b.Stop(); _ = b.Wait(); cleanup() }()
	api := &apiClient{base: b.URL, key: key, client: http.DefaultClient}
	if err := api.do(e.ctx, "POST", "/v1/credentials", map[string]any{"name": "bench", "token_url": idp.TokenURL(),
		"grant_type": "client_credentials", "client_id": "bench", "client_secret": secret}, nil); err != nil {
		return err
	}
	var body []byte
	{
		req, _ := http.NewRequest("GET", b.URL+"/v1/credentials/bench/token", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("token read failed: %s %s", resp.Status, body)
		}
	}
	// The bare handler: same body size, no work.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})}
	go func() { _ = bare.Serve(ln) }()
	defer bare.Close()

	// The other callers: a user's access token (JWT) and a service client
	// at the OAuth2 token endpoint.
	password := randomString()
	if err := api.do(e.ctx, "POST", "/v1/users", map[string]string{"username": "bench", "password": password, "role": "admin"}, nil); err != nil {
		return err
	}
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := api.do(e.ctx, "POST", "/v1/auth/login", map[string]string{"username": "bench", "password": password}, &login); err != nil {
		return err
	}
	var cl struct {
		ClientSecret string `json:"client_secret"`
	}
	if err := api.do(e.ctx, "POST", "/v1/clients", map[string]any{"client_id": "bench", "credentials": []string{"bench"}}, &cl); err != nil {
		return err
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:"+cl.ClientSecret))
	form := "grant_type=client_credentials&scope=credential%3Abench"

	fmt.Fprintf(e.stderr, "bench read: %d connections, %s per run, %s\n", *conns, *d, dbName)
	type run struct {
		name, target, auth, form string
		res                      loadResult
	}
	runs := []*run{
		{name: "bare net/http handler", target: "http://" + ln.Addr().String() + "/"},
		{name: "GET .../token, API key", target: b.URL + "/v1/credentials/bench/token", auth: "Bearer " + key},
		{name: "GET .../token, user JWT", target: b.URL + "/v1/credentials/bench/token", auth: "Bearer " + login.AccessToken},
		{name: "POST /oauth2/token, client", target: b.URL + "/oauth2/token", auth: basic, form: form},
	}
	for _, r := range runs {
		r.res = drive(e.ctx, r.target, r.auth, r.form, *conns, *d)
	}
	bareRate := runs[0].res.rate
	if *asJSON {
		out := map[string]any{"connections": *conns, "duration": d.String(), "body_bytes": len(body)}
		for i, r := range runs {
			k := []string{"bare", "apikey", "jwt", "client"}[i]
			out[k+"_rps"], out[k+"_p99_ms"], out[k+"_errors"] = r.res.rate, float64(r.res.p99.Microseconds())/1000, r.res.errors
			if i > 0 {
				out[k+"_ratio"] = r.res.rate / bareRate
			}
		}
		return printJSON(e.stdout, out)
	}
	w := e.stdout
	fmt.Fprintf(w, "bench read: %d connections, %s each, body %d bytes\n", *conns, *d, len(body))
	for i, r := range runs {
		ratio := ""
		if i > 0 {
			ratio = fmt.Sprintf("  ratio %.2f", r.res.rate/bareRate)
		}
		fmt.Fprintf(w, "  %-28s %9.0f req/s  p50 %s  p99 %s  errors %d%s\n", r.name, r.res.rate, ms(r.res.p50), ms(r.res.p99), r.res.errors, ratio)
	}
	return nil
}
