// Package metrics keeps the broker's Prometheus metrics and serves them
// (github.com/prometheus/client_golang) on a listener of their own.
//
// Labels are bounded: provider, outcome, error class, status, event type;
// never a credential or an end user, unless PerCredential is set, which
// adds two series per credential (for small fleets).
//
// Every method is safe for concurrent use, and every method of a nil
// *Metrics does nothing, so that code paths need no check when metrics
// are off. The token read path (TokenRead) costs one atomic add.
package metrics

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenkeeper/tokenkeeper"
)

// Token read outcomes.
const (
	ReadOK          = "ok"
	ReadNotFound    = "not_found"
	ReadNotReady    = "not_ready"
	ReadUnavailable = "unavailable"
	ReadInvalid     = "invalid"
	ReadError       = "error"
)

// Connect session outcomes, for ConnectSession.
const (
	ConnectConnected = "connected"
	ConnectFailed    = "failed"
	ConnectExpired   = "expired"
	ConnectDenied    = "denied"
)

// Config configures New.
type Config struct {
	// Store is polled every PollInterval for credentials by status, the
	// lowest time remaining of any active credential's token, and the
	// store's availability and query latency. Nil: no polling.
	Store tokenkeeper.Store
	// PollInterval defaults to 15s.
	PollInterval time.Duration
	// PerCredential adds per-credential series: the token time remaining
	// and the status of each credential.
	PerCredential bool
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Metrics holds the broker's metrics.
type Metrics struct {
	cfg Config
	reg *prometheus.Registry

	refreshes      *prometheus.CounterVec   // provider, outcome, error_class
	refreshLatency *prometheus.HistogramVec // provider, outcome
	remaining      *prometheus.HistogramVec // provider
	reads          [len(ReadOutcomes)]prometheus.Counter
	forced         prometheus.Counter
	rejected       prometheus.Counter
	claimed        prometheus.Counter
	fenced         prometheus.Counter
	storeUp        prometheus.Gauge
	storeLatency   *prometheus.HistogramVec // op
	credentials    *prometheus.GaugeVec     // status
	lowest         prometheus.Gauge
	deliveries     *prometheus.CounterVec // event, outcome
	connects       *prometheus.CounterVec // provider, outcome
	perCredRemain  *prometheus.GaugeVec   // credential
	perCredStatus  *prometheus.GaugeVec   // credential, status

	mu       sync.Mutex
	lastSeen map[string]bool // guarded by mu: credentials with per-credential series
}

// ReadOutcomes lists the token read outcomes (the outcome label of
// tokenkeeper_token_reads_total).
var ReadOutcomes = [6]string{ReadOK, ReadNotFound, ReadNotReady, ReadUnavailable, ReadInvalid, ReadError}

// New registers the metrics, the Go runtime's and the process's.
func New(cfg Config) *Metrics {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry(), lastSeen: map[string]bool{}}
	f := factory{m.reg}
	m.refreshes = f.counterVec("tokenkeeper_refresh_attempts_total", "Refresh attempts at providers, by provider, outcome (ok, error, needs_reauth, fenced) and error class.", "provider", "outcome", "error_class")
	for _, o := range []string{tokenkeeper.OutcomeOK, tokenkeeper.OutcomeError, tokenkeeper.OutcomeNeedsReauth} {
		m.refreshes.WithLabelValues("", o, "") // shown at zero from the start
	}
	m.refreshLatency = f.histogramVec("tokenkeeper_refresh_duration_seconds", "Round trip of a refresh request to the provider.",
		[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}, "provider", "outcome")
	m.remaining = f.histogramVec("tokenkeeper_token_remaining_at_refresh_seconds", "Time the current access token had left when its refresh started (negative: already expired).",
		[]float64{0, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600}, "provider")
	m.refreshLatency.WithLabelValues("", tokenkeeper.OutcomeOK)
	m.remaining.WithLabelValues("")
	reads := f.counterVec("tokenkeeper_token_reads_total", "Token reads (API and OAuth2 token endpoint), by outcome.", "outcome")
	for i, o := range ReadOutcomes {
		m.reads[i] = reads.WithLabelValues(o) // resolved once: a read costs one atomic add
	}
	forced := f.counterVec("tokenkeeper_forced_refreshes_total", "Refreshes forced through the API, by reason: forced, or rejected_token (a caller reported its token rejected).", "reason")
	m.forced, m.rejected = forced.WithLabelValues("forced"), forced.WithLabelValues("rejected_token")
	m.claimed = f.counter("tokenkeeper_leases_claimed_total", "Credential leases claimed by this process for a refresh.")
	m.fenced = f.counter("tokenkeeper_leases_fenced_total", "Refresh results discarded because a newer version fenced them out.")
	m.storeUp = f.gauge("tokenkeeper_store_up", "1 if the last check of the database succeeded, else 0.")
	m.storeLatency = f.histogramVec("tokenkeeper_store_query_duration_seconds", "Latency of the database queries the metrics poll makes.",
		[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "op")
	m.storeLatency.WithLabelValues("ping")
	m.credentials = f.gaugeVec("tokenkeeper_credentials", "Credentials by status.", "status")
	for _, s := range []tokenkeeper.Status{tokenkeeper.StatusActive, tokenkeeper.StatusError, tokenkeeper.StatusNeedsReauth, tokenkeeper.StatusDisabled} {
		m.credentials.WithLabelValues(string(s))
	}
	m.lowest = f.gauge("tokenkeeper_token_lowest_remaining_seconds", "Lowest time remaining of the token of any active credential (negative: a token expired while its credential was active).")
	m.deliveries = f.counterVec("tokenkeeper_webhook_deliveries_total", "Webhook delivery attempts by event type and outcome (delivered, retry, failed, fenced).", "event", "outcome")
	for _, o := range []string{"delivered", "retry", "failed"} {
		m.deliveries.WithLabelValues(tokenkeeper.WebhookCredentialNeedsReauth, o)
	}
	m.connects = f.counterVec("tokenkeeper_connect_sessions_total", "Connect sessions by provider and outcome (connected, failed, expired, denied).", "provider", "outcome")
	m.connects.WithLabelValues("", ConnectConnected)
	if cfg.PerCredential {
		m.perCredRemain = f.gaugeVec("tokenkeeper_credential_token_remaining_seconds", "Per credential: time remaining of its current token.", "credential")
		m.perCredStatus = f.gaugeVec("tokenkeeper_credential_status", "Per credential: 1 for its current status.", "credential", "status")
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// providerLabel is the provider label of a credential's series: the one
// place that decides it: the name of the credential's provider (bounded:
// providers are few, unlike credentials).
func providerLabel(c *tokenkeeper.Credential) string {
	if c == nil {
		return ""
	}
	return c.Provider
}

// errorClass maps an error code to a bounded label: the OAuth codes of RFC
// 6749 and the broker's own classes pass, HTTP statuses are grouped, and
// anything a provider made up is "other".
func errorClass(code string) string {
	switch code {
	case "", "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
		"invalid_scope", "access_denied", "server_error", "temporarily_unavailable", "slow_down",
		"timeout", "network", "canceled", "malformed_response", "invalid_config", "unknown":
		return code
	case "http_429":
		return code
	}
	if strings.HasPrefix(code, "http_") && len(code) == 8 {
		return "http_" + code[5:6] + "xx"
	}
	return "other"
}

// RefreshStarted records the time the credential's token had left when a
// refresh of it started.
func (m *Metrics) RefreshStarted(c *tokenkeeper.Credential, now time.Time) {
	if m == nil || c == nil || c.Token == nil || c.Token.ExpiresAt.IsZero() {
		return
	}
	m.remaining.WithLabelValues(providerLabel(c)).Observe(c.Token.ExpiresAt.Sub(now).Seconds())
}

// RefreshAttempted records a refresh attempt's event (the refresher's
// OnAttempt): its outcome, error class and provider latency; a fenced
// outcome also counts a fenced lease.
func (m *Metrics) RefreshAttempted(c *tokenkeeper.Credential, ev *tokenkeeper.Event) {
	if m == nil || ev == nil {
		return
	}
	p := providerLabel(c)
	m.refreshes.WithLabelValues(p, ev.Outcome, errorClass(ev.ErrorCode)).Inc()
	if ev.Outcome == tokenkeeper.OutcomeFenced {
		m.fenced.Inc()
		return
	}
	m.refreshLatency.WithLabelValues(p, ev.Outcome).Observe(ev.Latency.Seconds())
}

// Claimed counts leases claimed.
func (m *Metrics) Claimed(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.claimed.Add(float64(n))
}

// TokenRead counts a token read with the error it ended with (nil: ok).
func (m *Metrics) TokenRead(err error) {
	if m == nil {
		return
	}
	i := 0
	if err != nil {
		switch tokenkeeper.ErrorCode(err) {
		case tokenkeeper.ENOTFOUND:
			i = 1
		case tokenkeeper.ENOTREADY:
			i = 2
		case tokenkeeper.EUNAVAILABLE:
			i = 3
		case tokenkeeper.EINVALID:
			i = 4
		default:
			i = 5
		}
	}
	m.reads[i].Inc()
}

// ForcedRefresh counts a refresh forced through the API; rejected when
// the caller reported its token as rejected.
func (m *Metrics) ForcedRefresh(rejected bool) {
	if m == nil {
		return
	}
	if rejected {
		m.rejected.Inc()
	} else {
		m.forced.Inc()
	}
}

// WebhookAttempt counts a webhook delivery attempt (internal/webhook's
// OnAttempt).
func (m *Metrics) WebhookAttempt(eventType, outcome string, _ time.Duration) {
	if m == nil {
		return
	}
	if !tokenkeeper.ValidWebhookEvent(eventType) && eventType != tokenkeeper.WebhookTest {
		eventType = "other"
	}
	m.deliveries.WithLabelValues(eventType, outcome).Inc()
}

// ConnectSession counts a connect session that ended, by the provider's
// name and an outcome (ConnectConnected, ConnectFailed, ...). The connect
// flow calls it.
func (m *Metrics) ConnectSession(provider, outcome string) {
	if m == nil {
		return
	}
	switch outcome {
	case ConnectConnected, ConnectFailed, ConnectExpired, ConnectDenied:
	default:
		outcome = ConnectFailed
	}
	m.connects.WithLabelValues(provider, outcome).Inc()
}

// Run polls the store until ctx ends (see Config.Store).
func (m *Metrics) Run(ctx context.Context) {
	if m == nil || m.cfg.Store == nil {
		return
	}
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	for {
		m.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll looks at the store once: its availability, and the credentials'
// statuses and token expiries.
func (m *Metrics) Poll(ctx context.Context) {
	if m == nil || m.cfg.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	err := m.cfg.Store.Ping(ctx)
	m.storeLatency.WithLabelValues("ping").Observe(time.Since(start).Seconds())
	if err != nil {
		m.storeUp.Set(0)
		return
	}
	start = time.Now()
	creds, err := m.cfg.Store.Credentials(ctx)
	m.storeLatency.WithLabelValues("list_credentials").Observe(time.Since(start).Seconds())
	if err != nil {
		m.storeUp.Set(0)
		return
	}
	m.storeUp.Set(1)
	now := m.cfg.Now()
	counts := map[tokenkeeper.Status]int{tokenkeeper.StatusActive: 0, tokenkeeper.StatusError: 0, tokenkeeper.StatusNeedsReauth: 0, tokenkeeper.StatusDisabled: 0}
	lowest, any := 0.0, false
	seen := map[string]bool{}
	for _, c := range creds {
		counts[c.Status]++
		var left float64
		hasExpiry := c.Token != nil && !c.Token.ExpiresAt.IsZero()
		if hasExpiry {
			left = c.Token.ExpiresAt.Sub(now).Seconds()
		}
		if c.Status == tokenkeeper.StatusActive && hasExpiry && (!any || left < lowest) {
			lowest, any = left, true
		}
		if m.cfg.PerCredential {
			seen[c.Name] = true
			if hasExpiry {
				m.perCredRemain.WithLabelValues(c.Name).Set(left)
			} else {
				m.perCredRemain.DeleteLabelValues(c.Name)
			}
			m.perCredStatus.DeletePartialMatch(prometheus.Labels{"credential": c.Name})
			m.perCredStatus.WithLabelValues(c.Name, string(c.Status)).Set(1)
		}
	}
	for s, n := range counts {
		m.credentials.WithLabelValues(string(s)).Set(float64(n))
	}
	if any {
		m.lowest.Set(lowest)
	} else {
		m.lowest.Set(0)
	}
	if m.cfg.PerCredential {
		m.mu.Lock()
		for name := range m.lastSeen {
			if !seen[name] {
				m.perCredRemain.DeleteLabelValues(name)
				m.perCredStatus.DeletePartialMatch(prometheus.Labels{"credential": name})
			}
		}
		m.lastSeen = seen
		m.mu.Unlock()
	}
}
