package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
	"github.com/tokenkeeper/tokenkeeper/internal/connect"
	"github.com/tokenkeeper/tokenkeeper/internal/console"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/netguard"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/proxy"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// logOptions are the flags that configure logging.
type logOptions struct {
	level  string
	format string
}

func (o *logOptions) register(c *command) {
	c.fs.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn or error")
	c.fs.StringVar(&o.format, "log-format", "text", "log format: text or json")
}

// logger builds the one logger of the process, writing to w.
func (o *logOptions) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.level)); err != nil {
		return nil, usagef("invalid --log-level %q: use debug, info, warn or error", o.level)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(o.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, usagef("invalid --log-format %q: use text or json", o.format)
}

// brokerOptions configure a broker process.
type brokerOptions struct {
	addr            string
	concurrency     int
	providerTimeout time.Duration
	defaultLifetime time.Duration
	shutdownTimeout time.Duration
	keyMaxStale     time.Duration // 0: the server's default
	auditRetention  time.Duration // 0: keep the audit log forever
	auditReadWindow time.Duration // token reads and proxied requests: one audit record per window; 0: the server's default
	accessTTL       time.Duration // users' access tokens; 0: the auth default
	trustedProxies  string        // CIDRs whose X-Forwarded-For is believed
	proxies         []netip.Prefix
	allowPrivate    bool   // --allow-private-token-urls
	publicURL       string // --public-url: the issuer in RFC 8414 metadata and the base of connect links and the redirect URI
	connectReturnTo string // --connect-return-to: the return_to allow-list of connect sessions (comma separated)
	// guard refuses token endpoints on internal networks (serve without
	// --allow-private-token-urls). In-process brokers of demo and bench
	// leave it off: their provider is oauthtest on loopback.
	guard bool

	obs observabilityOptions // observe.go

	proxyReplayBody, proxyMaxBody int64 // bytes; the proxy's replay buffer and hard limit
	proxyTimeout                  time.Duration

	keepAlive time.Duration // --keep-alive-interval

	// vacuumInterval is the refresher's VacuumInterval: 0 its default,
	// negative never (validate maps the flag's 0 to that).
	vacuumInterval time.Duration
}

func (o *brokerOptions) register(c *command) {
	c.fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on")
	c.fs.IntVar(&o.concurrency, "concurrency", refresh.DefaultConcurrency, "refreshes in flight at most, in this process")
	c.fs.DurationVar(&o.providerTimeout, "provider-timeout", refresh.DefaultProviderTimeout, "timeout of one request to a provider's token endpoint")
	c.fs.DurationVar(&o.defaultLifetime, "default-lifetime", refresh.DefaultLifetime, "token lifetime assumed when a provider sends no expires_in")
	c.fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "on SIGTERM, how long to wait for requests and refreshes in flight")
	c.fs.StringVar(&o.publicURL, "public-url", "", "the broker's public base URL (https://broker.example.com): the issuer of its RFC 8414 metadata, the base of connect links and of the redirect URI {public-url}/connect/callback to register with providers; default the listen address")
	c.fs.StringVar(&o.connectReturnTo, "connect-return-to", "", "URLs a connect session's return_to may equal or lie under (comma separated), e.g. https://app.example.com/oauth/done; without it no return_to is accepted")
	c.fs.BoolVar(&o.allowPrivate, "allow-private-token-urls", false, "allow token endpoints on loopback, private, link-local and metadata addresses (for tests and local providers); refused by default")
	c.fs.StringVar(&o.trustedProxies, "trusted-proxies", "", "CIDRs of reverse proxies whose X-Forwarded-For names the client address (comma separated); without it the header is ignored")
	c.fs.DurationVar(&o.keyMaxStale, "api-key-max-stale", time.Minute, "how long a cached API key keeps working while the database does not answer; then it fails closed")
	c.fs.DurationVar(&o.auditRetention, "audit-retention", tkhttp.DefaultAuditRetention, "how long audit records are kept (default 90 days); older ones are deleted in the background; 0 keeps them forever")
	c.fs.DurationVar(&o.auditReadWindow, "audit-read-window", tkhttp.DefaultAuditReadWindow, "token reads and proxied requests are audited as one record per reader, credential and address for each such window (default 1m); refusals are aggregated per second")
	o.obs.register(c)
	c.fs.Int64Var(&o.proxyReplayBody, "proxy-replay-body", proxy.DefaultMaxReplayBody, "the proxy buffers request bodies up to this many bytes, so that it can replay them after a 401; larger ones stream once")
	c.fs.Int64Var(&o.proxyMaxBody, "proxy-max-body", proxy.DefaultMaxBody, "the largest request body the proxy forwards, in bytes (413 beyond)")
	c.fs.DurationVar(&o.proxyTimeout, "proxy-timeout", proxy.DefaultTimeout, "how long the proxy waits for an API's response headers (502 beyond)")
	c.fs.DurationVar(&o.keepAlive, "keep-alive-interval", catalog.DefaultKeepAlive, "how often a grant whose access tokens never expire, and whose preset knows no idle limit for its refresh tokens, is refreshed to keep it alive (at least 1h)")
	c.fs.DurationVar(&o.accessTTL, "access-token-lifetime", 15*time.Minute, "lifetime of the access tokens users get by login and refresh (10s to 24h)")
	c.fs.DurationVar(&o.vacuumInterval, "vacuum-interval", refresh.DefaultVacuumInterval, "PostgreSQL: how often to check whether the tables refreshes churn (credentials, events, audit) have 2% of their rows dead, and vacuum those that do (0: leave them to autovacuum); unused on SQLite")
}

func (o *brokerOptions) validate() error {
	if o.concurrency < 1 || o.concurrency > 10000 {
		return usagef("--concurrency must be from 1 to 10000")
	}
	p, err := tkhttp.ParseTrustedProxies(o.trustedProxies)
	if err != nil {
		return usagef("invalid --trusted-proxies %q: expected CIDRs such as 10.0.0.0/8,192.168.1.5", o.trustedProxies)
	}
	o.proxies = p
	o.guard = !o.allowPrivate
	if o.publicURL != "" {
		u, err := url.Parse(o.publicURL)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil ||
			(u.Scheme != "https" && !(u.Scheme == "http" && tokenkeeper.IsLoopbackHost(u.Hostname()))) {
			return usagef("invalid --public-url %q: expected an https URL without query or fragment (http only on loopback)", o.publicURL)
		}
		o.publicURL = strings.TrimSuffix(o.publicURL, "/")
	}
	for _, rt := range splitList(o.connectReturnTo) {
		u, err := url.Parse(rt)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http") {
			return usagef("invalid --connect-return-to entry %q: expected an absolute http(s) URL without user info or fragment", rt)
		}
	}
	if o.keyMaxStale < 0 {
		return usagef("--api-key-max-stale must not be negative")
	}
	if o.auditRetention < 0 || (o.auditRetention > 0 && o.auditRetention < time.Hour) {
		return usagef("--audit-retention must be at least 1h, or 0 to keep the audit log forever")
	}
	if o.auditReadWindow < time.Second || o.auditReadWindow > time.Hour {
		return usagef("--audit-read-window must be from 1s to 1h, got %s", o.auditReadWindow)
	}
	if o.vacuumInterval < 0 || (o.vacuumInterval > 0 && o.vacuumInterval < time.Second) {
		return usagef("--vacuum-interval must be at least 1s, or 0 to leave vacuuming to autovacuum, got %s", o.vacuumInterval)
	}
	if o.vacuumInterval == 0 {
		o.vacuumInterval = -1 // never
	}
	if o.keepAlive < time.Hour {
		return usagef("--keep-alive-interval must be at least 1h, got %s", o.keepAlive)
	}
	if o.providerTimeout <= 0 || o.defaultLifetime <= 0 || o.shutdownTimeout <= 0 {
		return usagef("--provider-timeout, --default-lifetime and --shutdown-timeout must be positive durations")
	}
	return o.obs.validate()
}

// auditRetention maps the flag's 0 (keep forever) to the server's
// negative retention.
func auditRetention(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// broker is a running broker: store, refresher and HTTP server.
type broker struct {
	URL         string
	Store       tokenkeeper.Store
	Refresher   *refresh.Refresher
	Connect     *connect.Service
	srv         *http.Server
	done        chan struct{}
	err         error
	stopOnce    sync.Once
	cancel      context.CancelFunc // stops the refresher and the accounts' reloads
	auditCancel context.CancelFunc // stops the audit writer, after the HTTP server
	opts        brokerOptions
	logger      *slog.Logger
	obs         *observability
	// MetricsURL is the /metrics URL; "" without --metrics-addr.
	MetricsURL string
}

// startBroker starts the refresher and the HTTP server on opts.addr. The
// broker owns store from here on and closes it when stopped.
func startBroker(ctx context.Context, store tokenkeeper.Store, opts brokerOptions, logger *slog.Logger, onAttempt func(*tokenkeeper.Credential, *tokenkeeper.Event)) (*broker, error) {
	// With the guard, provider calls never reach internal networks:
	// checked when dialled (DNS rebinding included) and, for literal
	// addresses, when a credential is created or changed.
	providerClient := netguard.NewHTTPClient(opts.providerTimeout, !opts.guard)
	// As many connections to a provider kept as refreshes in flight.
	tr := providerClient.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, opts.concurrency)
	var tokenURLCheck func(string) error
	if opts.guard {
		tokenURLCheck = netguard.CheckURL
	}
	obs, err := newObservability(ctx, store, opts.obs, logger)
	if err != nil {
		return nil, err
	}
	ref, err := refresh.New(refresh.Config{
		Store: store, Logger: logger, Concurrency: opts.concurrency, ProviderTimeout: opts.providerTimeout,
		DefaultLifetime: opts.defaultLifetime, ShutdownTimeout: opts.shutdownTimeout, KeepAliveInterval: opts.keepAlive, OnAttempt: obs.onAttempt(onAttempt),
		HTTPClient: obs.providerClient(providerClient, opts.providerTimeout), OnClaim: obs.metrics.Claimed, StartAttempt: obs.startAttempt(),
		VacuumInterval: opts.vacuumInterval,
	})
	if err != nil {
		obs.close()
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		obs.close()
		return nil, fmt.Errorf("listen on %s: %w", opts.addr, err)
	}
	if err := obs.listen(); err != nil {
		ln.Close()
		return nil, err
	}
	// The broker's own accounts live in the same database.
	var authSvc *auth.Service
	authStore, _ := store.(tokenkeeper.AuthStore)
	if authStore != nil {
		if authSvc, err = auth.New(ctx, auth.Config{Store: authStore, Logger: logger, AccessTTL: opts.accessTTL}); err != nil {
			ln.Close()
			obs.close()
			return nil, fmt.Errorf("start accounts: %w", err)
		}
	}
	// The metadata's issuer is configured, never taken from a request's
	// Host header, which the client chooses.
	issuer := opts.publicURL
	if issuer == "" {
		issuer = "http://" + ln.Addr().String()
	}
	// The connect flow: links and the redirect URI under the public URL.
	connectSvc, err := connect.New(connect.Config{Store: store, PublicURL: issuer, ReturnTo: splitList(opts.connectReturnTo),
		HTTPClient: providerClient, Logger: logger, Connected: func(c *tokenkeeper.Credential) {
			ref.Forget(c.Name)
			ref.Wake()
		}})
	if err != nil {
		ln.Close()
		obs.close()
		return nil, err
	}
	// The web console (/ui/) signs users in with the broker's accounts.
	var ui *console.Console
	if authSvc != nil {
		changes, _ := store.(tokenkeeper.ChangeNotifier)
		cs, _ := store.(tokenkeeper.ConsoleStore)
		if ui, err = console.New(console.Config{Store: cs, Auth: authSvc, Changes: changes, PublicURL: opts.publicURL,
			RedirectURI: connectSvc.RedirectURI(), Logger: logger}); err != nil {
			ln.Close()
			obs.close()
			return nil, err
		}
	}
	var mountUI func(http.Handler) http.Handler
	if ui != nil {
		mountUI = ui.Handler
	}
	handler := tkhttp.NewServer(tkhttp.Config{Issuer: issuer, Console: mountUI, Connect: connectSvc, Store: store, Refresher: ref, Logger: logger, Version: versionString(),
		Auth: authSvc, AuthStore: authStore, KeyCacheMaxStale: opts.keyMaxStale, AuditRetention: auditRetention(opts.auditRetention), AuditReadWindow: opts.auditReadWindow, TrustedProxies: opts.proxies, TokenURLCheck: tokenURLCheck,
		Metrics: obs.metrics, AccessLog: obs.accessLog, WebhookURLCheck: obs.webhookURLCheck, WakeWebhooks: obs.wakeWebhooks,
		Tracer: obs.tracer,
		// The proxy sends tokens to API base URLs, which are checked like
		// token URLs: internal addresses only with --allow-private-token-urls.
		Proxy: proxy.Config{AllowPrivate: !opts.guard, MaxReplayBody: opts.proxyReplayBody, MaxBody: opts.proxyMaxBody, Timeout: opts.proxyTimeout}})
	if err := obs.startWebhooks(ref.Owner()); err != nil {
		ln.Close()
		obs.close()
		return nil, err
	}
	releaseGC, releaseProcs := tuneGC(), tuneProcs() // until the broker has stopped
	b := &broker{
		URL: "http://" + ln.Addr().String(), Store: store, Refresher: ref, Connect: connectSvc, done: make(chan struct{}),
		opts: opts, logger: logger, obs: obs, MetricsURL: obs.metricsURL(),
		srv: handler.HTTPServer(tkhttp.Timeouts{Header: 10 * time.Second, Body: 30 * time.Second,
			Write: opts.providerTimeout + 30*time.Second, Idle: 2 * time.Minute},
			slog.NewLogLogger(logger.Handler(), slog.LevelWarn)),
	}
	if ui != nil {
		b.srv.RegisterOnShutdown(ui.Close) // event streams end, so that shutdown need not wait for them
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(5)
	go func() {
		defer wg.Done()
		_ = ref.Run(runCtx)
	}()
	go func() {
		defer wg.Done()
		connectSvc.Run(runCtx) // device polling
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		obs.run(runCtx) // webhook deliveries, metrics poll; then closes its listener and exporter
	}()
	if n, ok := store.(tokenkeeper.ChangeNotifier); ok {
		// Follow the other replicas sharing the database (PostgreSQL).
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ref.Follow(runCtx, n); err != nil {
				logger.Error("change notifications unavailable; relying on polling", "err", err)
			}
		}()
	}
	auditCtx, auditCancel := context.WithCancel(context.WithoutCancel(ctx))
	b.auditCancel = auditCancel
	go func() {
		defer wg.Done()
		handler.Run(auditCtx) // the audit log writer: flushes after the last request
	}()
	go func() {
		defer wg.Done()
		if authSvc != nil {
			_ = authSvc.Run(runCtx)
		}
	}()
	var serveErr error
	go func() {
		defer wg.Done()
		if err := b.srv.Serve(tkhttp.CoarseDeadlines(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
			cancel()
			auditCancel()
		}
	}()
	go func() {
		wg.Wait()
		b.err = serveErr
		if err := store.Close(); err != nil && b.err == nil {
			b.err = fmt.Errorf("close store: %w", err)
		}
		releaseGC()
		releaseProcs()
		close(b.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			b.Stop()
		case <-b.done:
		}
	}()
	return b, nil
}

// Stop shuts the broker down gracefully: no new connections or claims,
// requests and refreshes in flight are finished (refresh results the
// provider already sent are committed), within opts.shutdownTimeout.
func (b *broker) Stop() {
	b.stopOnce.Do(func() {
		b.logger.Info("shutting down", "timeout", b.opts.shutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), b.opts.shutdownTimeout)
		defer cancel()
		b.cancel() // stop claiming; workers finish their commits
		_ = b.srv.Shutdown(sctx)
		b.auditCancel()
	})
}

// Wait blocks until the broker has stopped and returns why it failed, if it did.
func (b *broker) Wait() error {
	<-b.done
	return b.err
}

// ensureAdminKey creates the first admin API key if the store has no key at
// all, and returns it ("" if keys exist).
func ensureAdminKey(ctx context.Context, store tokenkeeper.Store, name string) (string, error) {
	keys, err := store.APIKeys(ctx)
	if err != nil {
		return "", fmt.Errorf("list API keys: %w", err)
	}
	if len(keys) > 0 {
		return "", nil
	}
	key, rec := tkhttp.NewAPIKey(name, tokenkeeper.RoleAdmin, nil)
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		return "", fmt.Errorf("create admin API key: %w", err)
	}
	return key, nil
}

func printAdminKey(w io.Writer, key string) {
	fmt.Fprintf(w, "\nCreated the first admin API key. It is shown only this once; keep it safe:\n\n    %s\n\n", key)
	fmt.Fprintf(w, "Use it with: export TOKENKEEPER_API_KEY=%s\n\n", key)
}

func (e *env) cmdServe(c *command) runFunc {
	c.describe("tokenkeeper serve [flags]",
		`Runs the broker: refreshes every credential ahead of expiry and serves the
current tokens over HTTP. On the embedded default (SQLite) the first start
creates the database, its master key file and an admin API key, printed once.
Several replicas may share one PostgreSQL database (--database postgres://...).

Logs, and every other line serve prints, go to standard error through the
structured logger (--log-format json: JSON only). Standard output carries
one thing: the first admin API key, when serve creates it.`)
	var so storeOptions
	var bo brokerOptions
	var lo logOptions
	so.register(c)
	bo.register(c)
	lo.register(c)
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		if err := bo.validate(); err != nil {
			return err
		}
		logger, err := lo.logger(e.stderr)
		if err != nil {
			return err
		}
		if err := so.check(); err != nil {
			return err
		}
		if !isPostgres(so.database) {
			if err := checkPrivate(so.database); err != nil {
				return err
			}
		}
		if !isPostgres(so.database) {
			// One broker process per SQLite file; leases left by a previous
			// process (killed between claim and commit) are released at once.
			unlock, err := sqlite.Lock(so.database)
			if err != nil {
				return err
			}
			defer unlock()
		}
		store, err := e.openStore(&so, logger, true)
		if err != nil {
			return err
		}
		if db, ok := store.(*sqlite.DB); ok {
			n, err := db.ReleaseLeases(e.ctx)
			if err != nil {
				store.Close()
				return fmt.Errorf("release stale leases: %w", err)
			}
			if n > 0 {
				logger.Info("released refresh leases left by a previous process", "count", n)
			}
			if n, err := db.ReleaseWebhookLeases(e.ctx); err != nil {
				store.Close()
				return fmt.Errorf("release stale webhook leases: %w", err)
			} else if n > 0 {
				logger.Info("released webhook delivery leases left by a previous process", "count", n)
			}
		}
		if !isPostgres(so.database) {
			key, err := ensureAdminKey(e.ctx, store, "admin")
			if err != nil {
				store.Close()
				return err
			}
			if key != "" {
				printAdminKey(e.stdout, key)
			}
		} else if keys, err := store.APIKeys(e.ctx); err == nil && len(keys) == 0 {
			logger.Warn("the database has no API key yet: run 'tokenkeeper init --database ...' once to create the first admin key")
		}
		b, err := startBroker(e.ctx, store, bo, logger, nil)
		if err != nil {
			store.Close()
			return err
		}
		logger.Info("tokenkeeper serving", "url", b.URL, "version", versionString(), "database", redactURL(so.database))
		return b.Wait()
	}
}

// kvPassword finds the password of a keyword/value connection string,
// quoted or not.
var kvPassword = regexp.MustCompile(`(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactURL hides a password in a database URL or connection string.
func redactURL(s string) string {
	if !isPostgres(s) {
		return s
	}
	if postgres.IsKeywordValue(s) {
		return kvPassword.ReplaceAllString(s, "${1}****")
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				return s[:i+3] + rest[:colon] + ":****" + rest[at:]
			}
		}
	}
	return s
}
