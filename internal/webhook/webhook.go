// Package webhook delivers the broker's webhook events: it claims pending
// deliveries from the store's outbox (tokenkeeper.WebhookStore), signs
// them as the Standard Webhooks specification says (webhook-id,
// webhook-timestamp and webhook-signature "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>" keyed with the base64-decoded part of a "whsec_"
// secret), POSTs them, and records each attempt: delivered on a 2xx
// answer, otherwise retried with exponential backoff and jitter until the
// retry window (24 hours by default) is over, then failed.
//
// A delivery is claimed with a lease and a fencing version, like a
// refresh: several replicas sharing a database send each delivery once,
// and the store hands out a credential's deliveries to an endpoint one at
// a time, in order.
//
// Targets are kept off internal networks: CheckURL refuses literal
// loopback, private, link-local and metadata addresses (and "localhost")
// when an endpoint is registered, and the HTTP client refuses them again
// when it dials, on the address actually resolved (internal/netguard).
// Redirects are not followed; each attempt has a timeout and reads at most
// MaxResponseBytes of the answer.
//
// A *Dispatcher is safe for concurrent use.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/netguard"
)

// Defaults of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAge      = 24 * time.Hour
	DefaultLease       = time.Minute
	DefaultPoll        = time.Second
	DefaultBaseBackoff = 10 * time.Second
	DefaultMaxBackoff  = time.Hour
	// MaxResponseBytes is how much of an endpoint's answer is read.
	MaxResponseBytes = 64 << 10
)

// Delivery outcomes, as counted by Config.OnAttempt.
const (
	OutcomeDelivered = "delivered" // 2xx
	OutcomeRetry     = "retry"     // failed; tried again later
	OutcomeFailed    = "failed"    // failed for good: the retry window is over
	OutcomeFenced    = "fenced"    // another worker took the delivery over
)

// ErrPrivateTarget is returned (wrapped) for an endpoint URL on an internal
// network.
var ErrPrivateTarget = errors.New("webhook URL points to a loopback, private, link-local or metadata address (start the broker with --webhook-allow-private to allow it)")

// CheckURL validates an endpoint URL at registration, before any
// connection: an absolute http or https URL and, unless allowPrivate, not
// a literal internal address nor "localhost". Host names are checked
// again when dialled. The error never quotes the URL (it may carry a
// token in its query).
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "webhook url must be an absolute http or https URL")
	}
	if !allowPrivate && netguard.CheckURL(raw) != nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "%s", ErrPrivateTarget.Error())
	}
	return nil
}

// NewHTTPClient returns the client deliveries use: timeout per attempt,
// no redirects followed, and unless allowPrivate no connection to an
// internal address.
func NewHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	return newHTTPClient(timeout, allowPrivate, nil)
}

// newHTTPClient is NewHTTPClient with resolve, if not nil, replacing the
// DNS lookup of host names (tests: a name resolving to loopback without
// asking any DNS server). The resolved address is dialled through the
// same guarded dialer.
func newHTTPClient(timeout time.Duration, allowPrivate bool, resolve func(ctx context.Context, host string) (string, error)) *http.Client {
	c := netguard.NewHTTPClient(timeout, allowPrivate)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if resolve != nil {
		tr := c.Transport.(*http.Transport)
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if ip, err := resolve(ctx, host); err == nil {
				addr = net.JoinHostPort(ip, port)
			} else {
				return nil, err
			}
			return dial(ctx, network, addr)
		}
	}
	return c
}

// Sign returns the webhook-signature header value of a message: "v1," and
// the base64 HMAC-SHA256 of "id.timestamp.body" keyed with the decoded
// secret ("whsec_" and base64).
func Sign(secret, msgID string, timestamp int64, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return "", errors.New("sign webhook: the secret is not whsec_ and base64")
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msgID + "." + strconv.FormatInt(timestamp, 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// Config configures a Dispatcher. Store and Owner are required.
type Config struct {
	Store tokenkeeper.WebhookStore
	// Owner names this process in leases; unique per process.
	Owner  string
	Logger *slog.Logger
	// HTTPClient sends deliveries; default NewHTTPClient(Timeout, AllowPrivate).
	HTTPClient   *http.Client
	AllowPrivate bool
	// Resolve, if set and HTTPClient is not, replaces the DNS lookup of
	// endpoint host names: it returns the address to dial. Tests use it
	// to resolve a name to loopback without asking a DNS server.
	Resolve func(ctx context.Context, host string) (string, error)
	Timeout time.Duration // per attempt; default DefaultTimeout
	// MaxAge is how long after its event a delivery is retried; then it
	// fails. Default DefaultMaxAge.
	MaxAge time.Duration
	// Lease is how long a claimed delivery is held; default DefaultLease.
	// It must exceed Timeout.
	Lease time.Duration
	// Poll is how often the outbox is looked at; default DefaultPoll.
	Poll time.Duration
	// BaseBackoff and MaxBackoff bound the wait before a retry: BaseBackoff
	// doubled for each failed attempt, at most MaxBackoff, with jitter.
	BaseBackoff, MaxBackoff time.Duration
	// Concurrency is how many deliveries are sent at once; default 8.
	Concurrency int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnAttempt, if set, is told the outcome of every attempt: for
	// metrics. It must be safe for concurrent use and fast.
	OnAttempt func(eventType, outcome string, latency time.Duration)
	// Trace, if set, wraps each attempt (for tracing): it calls send with a
	// context to use and returns what send returned.
	Trace func(ctx context.Context, d *tokenkeeper.WebhookDelivery, send func(ctx context.Context) (int, error)) (int, error)
}

// Dispatcher sends pending deliveries.
type Dispatcher struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{}
}

// New returns a dispatcher; start it with Run.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Owner == "" {
		return nil, errors.New("webhook: Store and Owner are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = newHTTPClient(cfg.Timeout, cfg.AllowPrivate, cfg.Resolve)
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Lease <= cfg.Timeout {
		cfg.Lease = cfg.Timeout + 30*time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Dispatcher{cfg: cfg, log: cfg.Logger.With("component", "webhook"), wake: make(chan struct{}, 1)}, nil
}

// Wake makes Run look at the outbox now instead of at its next poll.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run sends deliveries until ctx ends; attempts in flight then finish and
// are recorded. It returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.wake:
		}
		for d.pass(ctx) {
			if ctx.Err() != nil {
				return nil
			}
		}
		t.Reset(d.cfg.Poll)
	}
}

// pass claims and sends one batch; it reports whether the batch was full
// (more may be waiting).
func (d *Dispatcher) pass(ctx context.Context) bool {
	batch, err := d.cfg.Store.ClaimWebhookDeliveries(ctx, d.cfg.Owner, d.cfg.Now(), d.cfg.Lease, d.cfg.Concurrency)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("cannot claim webhook deliveries", "err", err)
		}
		return false
	}
	// Attempts finish and are recorded even when ctx ends meanwhile.
	sendCtx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for _, del := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.attempt(sendCtx, del)
		}()
	}
	wg.Wait()
	return len(batch) == d.cfg.Concurrency
}

// attempt sends one delivery and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, del *tokenkeeper.WebhookDelivery) {
	log := d.log.With("delivery", del.ID, "endpoint", del.EndpointID, "event", del.EventType)
	ep, err := d.cfg.Store.WebhookEndpoint(ctx, del.EndpointID)
	if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
		return // deleted meanwhile, with its deliveries
	}
	if err != nil {
		log.Warn("cannot read webhook endpoint; the delivery is tried again when its lease expires", "err", err)
		return
	}
	start := d.cfg.Now()
	send := func(ctx context.Context) (int, error) { return d.send(ctx, ep, del) }
	var code int
	if d.cfg.Trace != nil {
		code, err = d.cfg.Trace(ctx, del, send)
	} else {
		code, err = send(ctx)
	}
	latency := d.cfg.Now().Sub(start)
	a := tokenkeeper.WebhookAttempt{StatusCode: code, AttemptedAt: start}
	outcome := OutcomeDelivered
	switch {
	case err == nil && code >= 200 && code < 300:
		a.Status = tokenkeeper.DeliveryDelivered
	default:
		if err != nil {
			a.Error = err.Error()
		} else {
			a.Error = "HTTP " + strconv.Itoa(code)
		}
		next := start.Add(d.backoff(del.Attempts + 1))
		if next.After(del.CreatedAt.Add(d.cfg.MaxAge)) {
			a.Status, outcome = tokenkeeper.DeliveryFailed, OutcomeFailed
		} else {
			a.Status, outcome, a.NextAttemptAt = tokenkeeper.DeliveryPending, OutcomeRetry, next
		}
	}
	if err := d.cfg.Store.CompleteWebhookDelivery(ctx, del.ID, d.cfg.Owner, del.Version, a); err != nil {
		if tokenkeeper.ErrorCode(err) == tokenkeeper.ECONFLICT {
			outcome = OutcomeFenced
		} else {
			log.Warn("cannot record webhook attempt; it is tried again when its lease expires", "err", err)
		}
	}
	switch outcome {
	case OutcomeDelivered:
		log.Info("webhook delivered", "status", code, "attempts", del.Attempts+1)
	case OutcomeRetry:
		log.Warn("webhook delivery failed; will retry", "status", code, "err", a.Error, "attempts", del.Attempts+1, "next_attempt_at", a.NextAttemptAt)
	case OutcomeFailed:
		log.Error("webhook delivery failed for good", "status", code, "err", a.Error, "attempts", del.Attempts+1)
	}
	if d.cfg.OnAttempt != nil {
		d.cfg.OnAttempt(del.EventType, outcome, latency)
	}
}

// send POSTs the signed delivery and returns the answer's status code.
// Errors never quote the URL.
func (d *Dispatcher) send(ctx context.Context, ep *tokenkeeper.WebhookEndpoint, del *tokenkeeper.WebhookDelivery) (int, error) {
	ts := d.cfg.Now().Unix()
	sig, err := Sign(ep.Secret, del.MessageID, ts, del.Payload)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, strings.NewReader(string(del.Payload)))
	if err != nil {
		return 0, errors.New("invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tokenkeeper-webhooks")
	req.Header.Set("webhook-id", del.MessageID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		if errors.Is(err, netguard.ErrPrivateAddress) {
			return 0, ErrPrivateTarget
		}
		return 0, fmt.Errorf("send: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes))
	return resp.StatusCode, nil
}

// backoff returns the wait before attempt n+1 after n failures: the base
// doubled n-1 times, capped, and jittered to between half and all of it.
func (d *Dispatcher) backoff(n int) time.Duration {
	w := d.cfg.BaseBackoff
	for i := 1; i < n && w < d.cfg.MaxBackoff; i++ {
		w *= 2
	}
	w = min(w, d.cfg.MaxBackoff)
	return w/2 + rand.N(w/2+1)
}
