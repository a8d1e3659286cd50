// Package tracing sends OpenTelemetry traces of the broker's work through
// the OTLP/HTTP exporter: token reads (server spans), refresh attempts
// (internal spans) with their provider calls (client spans), and webhook
// deliveries (client spans). Spans carry credential names, outcomes and
// error classes, never a secret, a token URL's query or a webhook URL.
//
// A nil *Tracer is valid and does nothing, at the cost of a nil check:
// tracing is off unless New is called. Everything here is safe for
// concurrent use.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenkeeper/tokenkeeper"
)

// Tracer makes the broker's spans.
type Tracer struct {
	tp *sdktrace.TracerProvider
	t  trace.Tracer
}

// New returns a tracer exporting to endpoint: a URL (http:// or https://,
// path defaulting to /v1/traces) or host:port (HTTPS).
func New(ctx context.Context, endpoint, version string) (*Tracer, error) {
	var opt otlptracehttp.Option
	if strings.HasPrefix(endpoint, "http://") || strings.HasPrefix(endpoint, "https://") {
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("invalid --otlp-endpoint: expected host:port or an http(s) URL")
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		opt = otlptracehttp.WithEndpointURL(u.String())
	} else {
		opt = otlptracehttp.WithEndpoint(endpoint)
	}
	exp, err := otlptracehttp.New(ctx, opt)
	if err != nil {
		return nil, fmt.Errorf("start the OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName("tokenkeeper"), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracer{tp: tp, t: tp.Tracer("github.com/tokenkeeper/tokenkeeper")}, nil
}

// Shutdown flushes the spans not yet exported and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

func noop(error) {}

// TokenRead starts the span of a token read; end it with the read's error.
func (t *Tracer) TokenRead(ctx context.Context, credential string) (context.Context, func(err error)) {
	if t == nil {
		return ctx, noop
	}
	ctx, span := t.t.Start(ctx, "token read", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("tokenkeeper.credential", credential)))
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(attribute.String("tokenkeeper.error_code", tokenkeeper.ErrorCode(err)))
			span.SetStatus(codes.Error, tokenkeeper.ErrorCode(err))
		}
		span.End()
	}
}

// RefreshAttempt starts the span of a refresh attempt (the refresher's
// StartAttempt); the returned function ends it with the attempt's event.
func (t *Tracer) RefreshAttempt(ctx context.Context, c *tokenkeeper.Credential) (context.Context, func(ev *tokenkeeper.Event)) {
	if t == nil {
		return ctx, nil
	}
	ctx, span := t.t.Start(ctx, "refresh attempt", trace.WithAttributes(
		attribute.String("tokenkeeper.credential", c.Name), attribute.String("tokenkeeper.grant_type", string(c.GrantType))))
	return ctx, func(ev *tokenkeeper.Event) {
		span.SetAttributes(attribute.String("tokenkeeper.outcome", ev.Outcome))
		if ev.ErrorCode != "" {
			span.SetAttributes(attribute.String("tokenkeeper.error_code", ev.ErrorCode))
			span.SetStatus(codes.Error, ev.ErrorCode)
		}
		span.End()
	}
}

// WebhookDelivery wraps one delivery attempt in a client span
// (internal/webhook's Config.Trace).
func (t *Tracer) WebhookDelivery(ctx context.Context, d *tokenkeeper.WebhookDelivery, send func(context.Context) (int, error)) (int, error) {
	if t == nil {
		return send(ctx)
	}
	ctx, span := t.t.Start(ctx, "webhook delivery", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("tokenkeeper.webhook.event", d.EventType), attribute.String("tokenkeeper.webhook.endpoint", d.EndpointID),
		attribute.Int("tokenkeeper.webhook.attempt", d.Attempts+1)))
	defer span.End()
	code, err := send(ctx)
	span.SetAttributes(semconv.HTTPResponseStatusCode(code))
	if err != nil || code < 200 || code > 299 {
		span.SetStatus(codes.Error, "delivery failed")
	}
	return code, err
}

// WrapClient returns a copy of c whose requests are client spans (the
// provider calls of refresh attempts), named by method and host only.
func (t *Tracer) WrapClient(c *http.Client) *http.Client {
	if t == nil {
		return c
	}
	n := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	n.Transport = &roundTripper{t: t, base: base}
	return &n
}

type roundTripper struct {
	t    *Tracer
	base http.RoundTripper
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := rt.t.t.Start(req.Context(), "HTTP "+req.Method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(req.Method), semconv.ServerAddress(req.URL.Hostname())))
	defer span.End()
	resp, err := rt.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		span.SetStatus(codes.Error, "transport error")
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, resp.Status)
	}
	return resp, nil
}
