package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/tracing"
	"github.com/tokenkeeper/tokenkeeper/internal/webhook"
)

// observabilityOptions are the flags of metrics, webhooks, the access log
// and tracing.
type observabilityOptions struct {
	metricsAddr          string
	metricsPerCredential bool
	metricsPoll          time.Duration
	webhookAllowPrivate  bool
	webhookErrorAfter    int
	webhookTimeout       time.Duration
	webhookRetryMin      time.Duration
	webhookMaxAge        time.Duration
	accessLog            bool
	otlpEndpoint         string
}

func (o *observabilityOptions) register(c *command) {
	c.fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (for example 127.0.0.1:9464), a listener of its own meant for the internal network; default off")
	c.fs.BoolVar(&o.metricsPerCredential, "metrics-per-credential", false,
		"add per-credential series (token time remaining and status of each credential, labelled by name): two series per credential, so for small fleets only; it also puts every credential's name on /metrics")
	c.fs.DurationVar(&o.metricsPoll, "metrics-poll", 15*time.Second, "how often the credentials' statuses, the lowest token time remaining and the database's availability are read for /metrics")
	c.fs.BoolVar(&o.webhookAllowPrivate, "webhook-allow-private", false, "allow webhook URLs on loopback, private, link-local and metadata addresses (for tests); refused by default, at registration and when connecting")
	c.fs.IntVar(&o.webhookErrorAfter, "webhook-error-after", 3, "consecutive temporary refresh failures that send a credential.error webhook")
	c.fs.DurationVar(&o.webhookTimeout, "webhook-timeout", webhook.DefaultTimeout, "timeout of one webhook delivery attempt")
	c.fs.DurationVar(&o.webhookRetryMin, "webhook-retry-min", webhook.DefaultBaseBackoff, "wait before the first retry of a failed webhook delivery; doubled for each further attempt, at most an hour, with jitter")
	c.fs.DurationVar(&o.webhookMaxAge, "webhook-max-age", webhook.DefaultMaxAge, "how long a webhook delivery is retried before it is marked failed")
	c.fs.BoolVar(&o.accessLog, "access-log", false, "log one line per HTTP request: method, route pattern, status, duration, caller kind and name, request id (never a token, key or query)")
	c.fs.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "send OpenTelemetry traces (token reads, refresh attempts with their provider calls, webhook deliveries) to this OTLP/HTTP endpoint (host:port or URL); default off")
}

func (o *observabilityOptions) validate() error {
	if o.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(o.metricsAddr); err != nil {
			return usagef("invalid --metrics-addr %q: expected host:port such as 127.0.0.1:9464", o.metricsAddr)
		}
	}
	if o.webhookErrorAfter < 1 {
		return usagef("--webhook-error-after must be at least 1")
	}
	if o.webhookTimeout <= 0 || o.webhookRetryMin <= 0 || o.webhookMaxAge <= 0 || o.metricsPoll <= 0 {
		return usagef("--webhook-timeout, --webhook-retry-min, --webhook-max-age and --metrics-poll must be positive durations")
	}
	return nil
}

// observability is the running part of the options: metrics (nil when
// off), the webhook dispatcher, the access logger and the tracer.
type observability struct {
	opts    observabilityOptions
	store   tokenkeeper.Store
	logger  *slog.Logger
	metrics *metrics.Metrics // nil: off
	tracer  *tracing.Tracer  // nil: off

	accessLog       *slog.Logger
	webhookURLCheck func(string) error
	dispatcher      *webhook.Dispatcher // nil: the store keeps no webhooks

	metricsLn  net.Listener
	metricsSrv *http.Server
	closeOnce  sync.Once
}

func newObservability(ctx context.Context, store tokenkeeper.Store, opts observabilityOptions, logger *slog.Logger) (*observability, error) {
	o := &observability{opts: opts, store: store, logger: logger}
	if opts.metricsAddr != "" {
		o.metrics = metrics.New(metrics.Config{Store: store, PerCredential: opts.metricsPerCredential, PollInterval: opts.metricsPoll})
	}
	if opts.accessLog {
		o.accessLog = logger.With("log", "access")
	}
	allow := opts.webhookAllowPrivate
	o.webhookURLCheck = func(u string) error { return webhook.CheckURL(u, allow) }
	if s, ok := store.(interface{ SetWebhookErrorAfter(int) }); ok {
		s.SetWebhookErrorAfter(opts.webhookErrorAfter)
	}
	if opts.otlpEndpoint != "" {
		t, err := tracing.New(ctx, opts.otlpEndpoint, versionString())
		if err != nil {
			return nil, err
		}
		o.tracer = t
	}
	return o, nil
}

// listen opens the metrics listener, if any.
func (o *observability) listen() error {
	if o.metrics == nil {
		return nil
	}
	ln, err := net.Listen("tcp", o.opts.metricsAddr)
	if err != nil {
		o.close()
		return fmt.Errorf("listen on --metrics-addr %s: %w", o.opts.metricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.metrics.Handler())
	o.metricsLn = ln
	o.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(o.logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := o.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.logger.Error("metrics listener failed", "err", err)
		}
	}()
	o.logger.Info("metrics listening", "url", o.metricsURL())
	return nil
}

func (o *observability) metricsURL() string {
	if o.metricsLn == nil {
		return ""
	}
	return "http://" + o.metricsLn.Addr().String() + "/metrics"
}

// startWebhooks creates the dispatcher, if the store keeps webhooks.
func (o *observability) startWebhooks(owner string) error {
	ws, ok := o.store.(tokenkeeper.WebhookStore)
	if !ok {
		return nil
	}
	cfg := webhook.Config{Store: ws, Owner: owner + "-webhooks", Logger: o.logger, AllowPrivate: o.opts.webhookAllowPrivate,
		Timeout: o.opts.webhookTimeout, BaseBackoff: o.opts.webhookRetryMin, MaxAge: o.opts.webhookMaxAge}
	if o.metrics != nil {
		cfg.OnAttempt = o.metrics.WebhookAttempt
	}
	if o.tracer != nil {
		cfg.Trace = o.tracer.WebhookDelivery
	}
	d, err := webhook.New(cfg)
	if err != nil {
		return err
	}
	o.dispatcher = d
	return nil
}

func (o *observability) wakeWebhooks() {
	if o.dispatcher != nil {
		o.dispatcher.Wake()
	}
}

// run delivers webhooks and polls the store for metrics until ctx ends,
// then closes the metrics listener and flushes traces.
func (o *observability) run(ctx context.Context) {
	var wg sync.WaitGroup
	if o.dispatcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = o.dispatcher.Run(ctx)
		}()
	}
	if o.metrics != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.metrics.Run(ctx)
		}()
	}
	wg.Wait()
	o.close()
}

func (o *observability) close() {
	o.closeOnce.Do(func() {
		if o.metricsSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = o.metricsSrv.Shutdown(sctx)
			cancel()
		}
		if o.tracer != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = o.tracer.Shutdown(sctx)
			cancel()
		}
	})
}

// onAttempt adds the metrics to the refresher's OnAttempt.
func (o *observability) onAttempt(next func(*tokenkeeper.Credential, *tokenkeeper.Event)) func(*tokenkeeper.Credential, *tokenkeeper.Event) {
	if o.metrics == nil {
		return next
	}
	return func(c *tokenkeeper.Credential, ev *tokenkeeper.Event) {
		o.metrics.RefreshAttempted(c, ev)
		if next != nil {
			next(c, ev)
		}
	}
}

// startAttempt is the refresher's StartAttempt: the token time remaining
// for the metrics, and a span per attempt for tracing; nil when both are off.
func (o *observability) startAttempt() func(context.Context, *tokenkeeper.Credential) (context.Context, func(*tokenkeeper.Event)) {
	if o.metrics == nil && o.tracer == nil {
		return nil
	}
	return func(ctx context.Context, c *tokenkeeper.Credential) (context.Context, func(*tokenkeeper.Event)) {
		o.metrics.RefreshStarted(c, time.Now())
		if o.tracer == nil {
			return ctx, nil
		}
		return o.tracer.RefreshAttempt(ctx, c)
	}
}

// providerClient makes provider calls client spans when tracing is on.
func (o *observability) providerClient(c *http.Client, timeout time.Duration) *http.Client {
	if o.tracer == nil {
		return c
	}
	if c == nil {
		c = &http.Client{Timeout: timeout}
	}
	return o.tracer.WrapClient(c)
}
