// Package http serves the broker's HTTP API: credentials and their tokens,
// refreshes, events and API keys, under /v1, as JSON with RFC 9457 problem
// responses. NewServer takes every dependency and returns an http.Handler;
// every route is in routes.go; encoding and decoding live in encode.go.
package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/internal/connect"
	"github.com/tokenkeeper/tokenkeeper/internal/lowprio"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/proxy"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/tracing"
)

// Config holds the server's dependencies. Store and Refresher are required.
type Config struct {
	Store     tokenkeeper.Store
	Refresher *refresh.Refresher
	Logger    *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Version is reported by /healthz.
	Version string
	// MaxBodyBytes limits request bodies; default 64 KiB.
	MaxBodyBytes int64
	// Auth serves the broker's own accounts (login, access tokens, service
	// clients); AuthStore keeps them and the audit log. Both nil: only API
	// keys authenticate and nothing is audited.
	Auth      *auth.Service
	AuthStore tokenkeeper.AuthStore
	// Issuer is the broker's public base URL for RFC 8414 metadata; empty:
	// derived from each request's Host.
	Issuer string
	// Connect runs the connect flow (connect sessions, their links and
	// callback, device sessions); nil: those routes answer 404.
	Connect *connect.Service
	// KeyCacheTTL is how long an authenticated API key is trusted without
	// asking the store again; default 5s. A revocation made on another
	// replica takes at most this long to apply here.
	KeyCacheTTL time.Duration
	// KeyCacheMaxStale is how long a cached API key keeps working without
	// a successful check against the store (while the store does not
	// answer); past it the key fails closed until the store confirms it.
	// Default 60s.
	KeyCacheMaxStale time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client's address; empty: the header is ignored and the peer's
	// address counts.
	TrustedProxies []netip.Prefix
	// TokenURLCheck, if set, is asked about every token URL a credential is
	// created or updated with; an error refuses it (EINVALID, with the
	// error's text). The CLI refuses internal addresses with it.
	TokenURLCheck func(rawURL string) error
	// AuthFailuresPerSecond and AuthFailuresBurst limit the failed
	// authentications of each client address; past them the address gets
	// 429 (and no database lookups) until its budget refills. Default 10
	// a second, 100 at once.
	AuthFailuresPerSecond, AuthFailuresBurst int
	// ForcedRefreshFloor: a forced refresh without a rejected token does
	// nothing when the last successful refresh is younger than this;
	// default DefaultForcedRefreshFloor, negative for none.
	ForcedRefreshFloor time.Duration
	// ForcedRefreshPerMinute and ForcedRefreshBurst limit the refresh
	// requests of each caller; default DefaultForcedRefreshLimit and
	// DefaultForcedRefreshBurst.
	ForcedRefreshPerMinute, ForcedRefreshBurst int
	// AuditRetention is how long audit records are kept: Run deletes older
	// ones in the background. Default DefaultAuditRetention; negative
	// keeps them forever.
	AuditRetention time.Duration
	// AuditReadWindow is how long token reads and proxied requests are
	// aggregated into one audit record per reader, credential and address
	// (measured on Now); default DefaultAuditReadWindow. Refusals are
	// aggregated per second whatever it is.
	AuditReadWindow time.Duration
	// AuditPruneInterval is how often Run looks for records past
	// AuditRetention; default DefaultAuditPruneInterval.
	AuditPruneInterval time.Duration
	// Webhooks keeps webhook endpoints; nil: Store, if it is a
	// tokenkeeper.WebhookStore. Without one the webhook routes answer 404.
	Webhooks tokenkeeper.WebhookStore
	// WebhookURLCheck, if set, is asked about every webhook URL before it
	// is registered (internal/webhook.CheckURL).
	WebhookURLCheck func(rawURL string) error
	// WakeWebhooks, if set, is called when a delivery was queued (a test
	// delivery), so that it is sent without waiting for the next poll.
	WakeWebhooks func()
	// AccessLog, if set, receives one line per request (accesslog.go).
	AccessLog *slog.Logger
	// Metrics counts token reads and forced refreshes; nil: none.
	Metrics *metrics.Metrics
	// Tracer makes a span of each token read; nil: none.
	Tracer *tracing.Tracer
	// Proxy configures the proxy (/v1/proxy/{credential}/...); its
	// WriteError and Logger are the server's.
	Proxy proxy.Config
	// Console, if set, is given the API's handler (without the access log,
	// which already logs the console's own request) and returns the web
	// console, served under /ui/ (internal/console).
	Console func(api http.Handler) http.Handler
}

// server carries the dependencies of the handlers.
type server struct {
	store     tokenkeeper.Store
	refresher *refresh.Refresher
	logger    *slog.Logger
	now       func() time.Time
	version   string
	maxBody   int64
	keys      *keyCache
	users     userCallers // the callers of users' access tokens
	auth      *auth.Service
	authStore tokenkeeper.AuthStore
	auditw    *auditWriter // nil without an AuthStore
	issuer    string
	connect   *connect.Service // nil: no connect flow
	// trustedProxies may name the client's address in X-Forwarded-For.
	trustedProxies []netip.Prefix
	forceFloor     time.Duration
	forceRate      *buckets           // refresh requests per caller
	reported       reportedTokens     // rejected tokens reported, per caller
	failRate       *buckets           // failed authentications per client address
	tokenURLCheck  func(string) error // nil: no check beyond validation
	unready        atomic.Bool        // the last readiness check failed (logged once per outage)
	auditRetention time.Duration      // <= 0: keep audit records forever
	pruneInterval  time.Duration

	metrics         *metrics.Metrics         // nil-safe
	tracer          *tracing.Tracer          // nil-safe
	webhooks        tokenkeeper.WebhookStore // nil: no webhook routes
	webhookURLCheck func(string) error
	wakeWebhooks    func()

	proxy        *proxy.Proxy
	proxyRoute   http.Handler // authentication, role, handleProxy
	oauth2Token  http.Handler // POST /oauth2/token, when accounts are on
	proxyTargets *proxyTargets
}

// Server is the broker's HTTP handler. Run its background work (the audit
// log writer) with Run.
type Server struct {
	http.Handler
	s *server
}

// Run does the server's background work until ctx ends: it writes audit
// records (then flushes what is queued), deletes audit records past their
// retention, and evicts API keys that have not been checked against the
// store for too long from its cache.
func (h *Server) Run(ctx context.Context) {
	// The audit writes run on threads of lower CPU priority than the
	// requests' (package lowprio).
	done := lowprio.Go(func() {
		if h.s.auditw != nil {
			h.s.auditw.run(ctx)
		}
	})
	pruned := lowprio.Go(func() {
		if h.s.authStore != nil && h.s.auditRetention > 0 {
			h.s.pruneAuditLoop(ctx)
		}
	})
	defer func() { <-pruned }()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-tick.C:
			h.s.keys.evictStale(h.s.now())
			h.s.forceRate.sweep(h.s.now())
			h.s.failRate.sweep(h.s.now())
		}
	}
}

// NewServer returns the broker's HTTP handler.
func NewServer(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = 5 * time.Second
	}
	if cfg.AuthFailuresPerSecond <= 0 {
		cfg.AuthFailuresPerSecond = 10
	}
	if cfg.AuthFailuresBurst <= 0 {
		cfg.AuthFailuresBurst = 100
	}
	if cfg.ForcedRefreshFloor == 0 {
		cfg.ForcedRefreshFloor = DefaultForcedRefreshFloor
	}
	if cfg.ForcedRefreshPerMinute <= 0 {
		cfg.ForcedRefreshPerMinute = DefaultForcedRefreshLimit
	}
	if cfg.ForcedRefreshBurst <= 0 {
		cfg.ForcedRefreshBurst = DefaultForcedRefreshBurst
	}
	if cfg.KeyCacheMaxStale <= 0 {
		cfg.KeyCacheMaxStale = time.Minute
	}
	if cfg.AuditRetention == 0 {
		cfg.AuditRetention = DefaultAuditRetention
	}
	if cfg.AuditPruneInterval <= 0 {
		cfg.AuditPruneInterval = DefaultAuditPruneInterval
	}
	s := &server{
		store: cfg.Store, refresher: cfg.Refresher, logger: cfg.Logger.With("component", "http"),
		now: cfg.Now, version: cfg.Version, maxBody: cfg.MaxBodyBytes,
		keys: newKeyCache(cfg.KeyCacheTTL, cfg.KeyCacheMaxStale),
		auth: cfg.Auth, authStore: cfg.AuthStore, issuer: cfg.Issuer, connect: cfg.Connect,
		trustedProxies: cfg.TrustedProxies,
		tokenURLCheck:  cfg.TokenURLCheck,
		auditRetention: cfg.AuditRetention,
		pruneInterval:  cfg.AuditPruneInterval,
		forceFloor:     cfg.ForcedRefreshFloor,
		failRate:       newBuckets(cfg.AuthFailuresPerSecond, time.Second, cfg.AuthFailuresBurst),
		forceRate:      newBuckets(cfg.ForcedRefreshPerMinute, time.Minute, cfg.ForcedRefreshBurst),
	}
	s.users.m.Max = maxCachedKeys
	if cfg.AuthStore != nil {
		s.auditw = newAuditWriter(cfg.AuthStore, s.logger, cfg.Now, 4096, cfg.AuditReadWindow)
	}
	s.metrics, s.tracer = cfg.Metrics, cfg.Tracer
	s.webhooks, s.webhookURLCheck, s.wakeWebhooks = cfg.Webhooks, cfg.WebhookURLCheck, cfg.WakeWebhooks
	if s.webhooks == nil {
		s.webhooks, _ = cfg.Store.(tokenkeeper.WebhookStore)
	}
	pc := cfg.Proxy
	pc.Logger = s.logger
	pc.WriteError = s.Error
	s.proxy = proxy.New(pc)
	s.proxyTargets = &proxyTargets{ttl: cfg.KeyCacheTTL, m: map[string]cachedTarget{}}
	mux := http.NewServeMux()
	s.routes(mux)
	var h http.Handler = s.notFoundOrMethod(mux)
	if cfg.Console != nil {
		ui := cfg.Console(s.recoverPanics(s.clientAddress(h)))
		mux.Handle("/ui/", ui)
		mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusSeeOther))
	}
	if cfg.AccessLog != nil {
		h = notePattern(h)
	}
	h = s.recoverPanics(s.clientAddress(s.tokenReads(h)))
	if cfg.AccessLog != nil {
		h = accessLog(cfg.AccessLog, h)
	}
	return &Server{Handler: h, s: s}
}
