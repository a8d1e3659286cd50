package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// RefreshConfig configures a Refresh run.
type RefreshConfig struct {
	Credentials int           // number of credentials, at least 1
	Lifetime    time.Duration // access token lifetime at the test provider, at least 2s
	Window      time.Duration // measuring time after the first tokens; 0: two lifetimes
	Latency     time.Duration // test provider latency per token request
	Concurrency int           // refreshes in flight at most
	Database    string        // postgres:// URL; "": a temporary SQLite file
}

// validate checks c and fills in the defaults.
func (c *RefreshConfig) validate() error {
	if c.Credentials < 1 || c.Lifetime < 2*time.Second || c.Latency < 0 || c.Concurrency < 1 {
		return configErrorf("--credentials must be positive, --lifetime at least 2s, --concurrency positive")
	}
	if c.Window < 0 {
		return configErrorf("--window must not be negative")
	}
	if c.Window == 0 {
		c.Window = 2 * c.Lifetime
	}
	return nil
}

// RefreshReport is what a Refresh run measured. Its JSON keys are in
// alphabetical order, as the command has always printed them.
type RefreshReport struct {
	Credentials              int      `json:"credentials"`
	Database                 string   `json:"database"`
	ExpiredUnrefreshed       int      `json:"expired_unrefreshed"` // tokens that ran out unreplaced
	FailedAttempts           int      `json:"failed_attempts"`
	Fenced                   int      `json:"fenced"`
	FirstFillSeconds         float64  `json:"first_fill_seconds"` // until every credential had a token
	LateRefreshes            int      `json:"late_refreshes"`     // refreshes after the token they replaced expired
	Lifetime                 Duration `json:"lifetime"`
	PeakRSSMiB               float64  `json:"peak_rss_mib"`
	ProviderCalls            int      `json:"provider_calls"`
	ProviderCallsPerToken    float64  `json:"provider_calls_per_token"` // 1 means no wasted call
	ProviderLatency          Duration `json:"provider_latency"`
	RefreshLatencyP50MS      float64  `json:"refresh_latency_p50_ms"`
	RefreshLatencyP99MS      float64  `json:"refresh_latency_p99_ms"`
	RefreshedBeforeExpiryPct float64  `json:"refreshed_before_expiry_pct"`
	Refreshes                int      `json:"refreshes"` // successful, in the window
	RefreshesPerSecond       float64  `json:"refreshes_per_second"`
	Window                   Duration `json:"window"`
	// WrittenBytesPerRefresh is what this process caused to be written to
	// storage in the window (/proc/self/io), per refresh; 0 on PostgreSQL,
	// whose server writes in its own processes.
	WrittenBytesPerRefresh float64 `json:"written_bytes_per_refresh"`
}

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

// onAttempt is the refresher's OnAttempt hook; it is safe for concurrent use.
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

// tokens returns how many credentials have a token.
func (t *refreshTracker) tokens() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.expiry)
}

func (t *refreshTracker) setMeasuring(on bool) {
	t.mu.Lock()
	t.measuring = on
	t.mu.Unlock()
}

// Refresh measures the refresher: it runs the test provider (with latency)
// and a broker in this process, creates cfg.Credentials credentials, waits
// until each has its first token, then measures for cfg.Window. The
// database it creates is removed before it returns.
func Refresh(ctx context.Context, cfg RefreshConfig, w Wiring, logf Logf) (*RefreshReport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := w.need("OpenStore", "StartBroker"); err != nil {
		return nil, err
	}
	db, err := openBenchStore(ctx, w, cfg.Database)
	if err != nil {
		return nil, err
	}
	secret := randomSecret()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(cfg.Lifetime), oauthtest.WithLatency(cfg.Latency), oauthtest.WithClient("bench", secret))
	defer idp.Close()

	tr := &refreshTracker{expiry: make(map[string]time.Time, cfg.Credentials)}
	logf("bench refresh: %d credentials, lifetime %s, provider latency %s, %s", cfg.Credentials, cfg.Lifetime, cfg.Latency, db.desc)
	start := time.Now()
	for i := range cfg.Credentials {
		cr := &tokenkeeper.Credential{
			Name: fmt.Sprintf("bench-%06d", i), TokenURL: idp.TokenURL(), GrantType: tokenkeeper.GrantClientCredentials,
			ClientID: "bench", ClientSecret: secret, AuthStyle: tokenkeeper.AuthStyleHeader,
			Status: tokenkeeper.StatusActive, NextRefreshAt: start,
		}
		if err := db.store.CreateCredential(ctx, cr); err != nil {
			db.cleanup()
			return nil, fmt.Errorf("create credential %d: %w", i, err)
		}
	}
	logf("  created %d credentials in %s", cfg.Credentials, time.Since(start).Round(time.Millisecond))
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, err := w.StartBroker(bctx, db.store, BrokerConfig{Concurrency: cfg.Concurrency, ProviderTimeout: 10 * time.Second,
		DefaultLifetime: time.Hour, ShutdownTimeout: 10 * time.Second, OnAttempt: tr.onAttempt})
	if err != nil {
		db.cleanup()
		return nil, err
	}
	defer func() { _ = b.Stop(); db.cleanup() }()

	// Wait for every first token.
	fillStart := time.Now()
	for tr.tokens() < cfg.Credentials {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	fill := time.Since(fillStart)
	logf("  first tokens for all in %s; measuring for %s", fill.Round(time.Millisecond), cfg.Window)
	callsBefore := sum(idp.Stats().TokenRequests)
	ioBefore := writtenBytes()
	tr.setMeasuring(true)
	select {
	case <-time.After(cfg.Window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	calls := sum(idp.Stats().TokenRequests) - callsBefore
	written := writtenBytes() - ioBefore
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
	rep := &RefreshReport{
		Database: db.desc, Credentials: cfg.Credentials, Lifetime: Duration(cfg.Lifetime), Window: Duration(cfg.Window),
		ProviderLatency: Duration(cfg.Latency), FirstFillSeconds: fill.Seconds(),
		Refreshes: ok, LateRefreshes: late, ExpiredUnrefreshed: expiredUnrefreshed, FailedAttempts: failed, Fenced: fenced,
		RefreshesPerSecond: float64(ok) / cfg.Window.Seconds(), ProviderCalls: calls,
		RefreshLatencyP50MS: millis(percentile(lat, 0.5)), RefreshLatencyP99MS: millis(percentile(lat, 0.99)),
		PeakRSSMiB: float64(peakRSS()) / (1 << 20),
	}
	rep.RefreshedBeforeExpiryPct, rep.ProviderCallsPerToken = refreshRatios(ok, late, expiredUnrefreshed, calls)
	if !isPostgresURL(cfg.Database) && ioBefore >= 0 && ok > 0 {
		rep.WrittenBytesPerRefresh = float64(written) / float64(ok)
	}
	return rep, nil
}

// refreshRatios computes the share of tokens replaced before they expired,
// in percent (100 when nothing was due), and the provider calls per token
// replaced (0 when none was).
func refreshRatios(ok, late, expiredUnrefreshed, calls int) (onTimePct, callsPerToken float64) {
	onTimePct = 100
	if ok+expiredUnrefreshed > 0 {
		onTimePct = 100 * float64(ok-late) / float64(ok+expiredUnrefreshed)
	}
	if ok > 0 {
		callsPerToken = float64(calls) / float64(ok)
	}
	return onTimePct, callsPerToken
}

// WriteText prints the report as the command does without --json.
func (r *RefreshReport) WriteText(w io.Writer) error {
	window, lifetime := time.Duration(r.Window), time.Duration(r.Lifetime)
	fill := time.Duration(r.FirstFillSeconds * float64(time.Second)).Round(time.Millisecond)
	perCredential := 0.0
	if r.Credentials > 0 && window > 0 && lifetime > 0 {
		perCredential = float64(r.ProviderCalls) / float64(r.Credentials) / (window.Seconds() / lifetime.Seconds())
	}
	var tw textWriter
	tw.printf("bench refresh on %s\n", r.Database)
	tw.printf("  credentials                     %d, token lifetime %s, provider latency %s\n", r.Credentials, r.Lifetime, r.ProviderLatency)
	tw.printf("  first token for all             %s\n", fill)
	tw.printf("  measured                        %s\n", r.Window)
	tw.printf("  refreshes                       %d (%.1f/s), %d failed attempts, %d fenced\n", r.Refreshes, r.RefreshesPerSecond, r.FailedAttempts, r.Fenced)
	tw.printf("  refreshed before expiry         %.2f%% (%d late, %d expired unrefreshed)\n", r.RefreshedBeforeExpiryPct, r.LateRefreshes, r.ExpiredUnrefreshed)
	tw.printf("  provider calls per token        %.3f (%d calls for %d tokens replaced)\n", r.ProviderCallsPerToken, r.ProviderCalls, r.Refreshes)
	tw.printf("  calls per credential per %-7s %.2f of wall time (each token is replaced a third of its lifetime early)\n", r.Lifetime.String(), perCredential)
	tw.printf("  refresh latency                 p50 %.1fms, p99 %.1fms\n", r.RefreshLatencyP50MS, r.RefreshLatencyP99MS)
	tw.printf("  peak RSS                        %.0f MiB\n", r.PeakRSSMiB)
	if r.WrittenBytesPerRefresh > 0 {
		tw.printf("  written to disk per refresh     %.1f KB (/proc/self/io)\n", r.WrittenBytesPerRefresh/1000)
	}
	return tw.flush(w)
}
