package http

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// auditWriter appends audit records to the store in the background, so that
// auditing costs a request no database write, without ever losing a record
// that matters and without letting anyone flood the log:
//
//   - Records of what callers did (admin changes, logins, token reads) are
//     never dropped. They go through a queue whose sender waits when it is
//     full, and the writer retries a failed write until it succeeds or
//     the server stops.
//   - Token reads and proxied requests, the hot path, are aggregated over
//     a window (Config.AuditReadWindow, default DefaultAuditReadWindow,
//     one minute): one record per reader, credential and address each
//     window, with the count in its detail. A window starts with the first
//     read or proxied request counted after the last flush and ends when
//     it is that old (by the server's clock, checked each second): all the
//     pending reads and proxied requests are written then, each record
//     dated at its key's first read. It ends early when maxReadKeys keys
//     are pending, and at shutdown. At 1,000 reads a second of 256
//     credentials (one reader and address each) this is 256 records a
//     minute, not 256 a second: per second, the audit table was the
//     largest source of database growth.
//   - Refusals (outcomes denied, rate_limited and skipped: bad credentials,
//     missing roles, rate limits), which anyone can cause without
//     authenticating, are aggregated per action, outcome, address and
//     reason each second: a flood of bad requests from one address costs
//     one record a second per kind, not one per request.
type auditWriter struct {
	store  tokenkeeper.AuthStore
	logger *slog.Logger
	now    func() time.Time
	ch     chan *tokenkeeper.AuditRecord // records that must not be lost
	window time.Duration                 // reads and proxied requests are aggregated over it

	mu       sync.Mutex
	reads    map[readKey]*tally       // guarded by mu: token reads in the current window
	proxied  map[readKey]*proxyCount  // guarded by mu: proxied requests in the current window
	started  time.Time                // guarded by mu: when the current window started; zero: nothing pending
	failures map[failKey]*failedCount // guarded by mu: refusals since the last flush
}

// DefaultAuditReadWindow is how long token reads and proxied requests are
// aggregated into one audit record per reader, credential and address.
const DefaultAuditReadWindow = time.Minute

// maxReadKeys bounds the keys of reads and proxied requests pending in a
// window: past it the window ends at the next flush.
const maxReadKeys = 10_000

// tally counts the reads (or proxied requests) of one key in a window,
// with the times of the first and the last.
type tally struct {
	n           int
	first, last time.Time
}

func (t *tally) add(now time.Time) {
	if t.n == 0 {
		t.first = now
	}
	t.n++
	t.last = now
}

// text is the count and, for more than one, the time they spanned rounded
// up to the second: "1 read", "42 reads in 1m0s".
func (t *tally) text(one, many string) string {
	if t.n == 1 {
		return "1 " + one
	}
	span := t.last.Sub(t.first)
	if r := span.Truncate(time.Second); r < span {
		span = r + time.Second
	}
	return fmt.Sprintf("%d %s in %s", t.n, many, max(span, time.Second))
}

type readKey struct{ actor, target, remote string }

// failKey groups refusals: the actor and target (attacker-chosen, such as
// a username or a path) are not part of it.
type failKey struct{ action, outcome, remote, detail string }

type failedCount struct {
	n             int
	actor, target string // of the first refusal in the second
}

// maxFailureKeys bounds the refusals kept between two flushes; past it,
// refusals are counted under one key per action and outcome with the
// address "*".
const maxFailureKeys = 10_000

// aggregated reports whether records with this outcome are aggregated.
func aggregated(outcome string) bool {
	switch outcome {
	case "denied", "rate_limited", "skipped":
		return true
	}
	return false
}

// tokenRead counts one token read, made at now (the server's clock), for
// the record of the current window.
func (a *auditWriter) tokenRead(actor, target, remote string, now time.Time) {
	if a == nil {
		return
	}
	k := readKey{actor, target, remote}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started.IsZero() {
		a.started = now
	}
	t := a.reads[k]
	if t == nil {
		t = &tally{}
		a.reads[k] = t
	}
	t.add(now)
}

// proxyCount counts one caller's requests through the proxy to one
// credential in a window.
type proxyCount struct {
	tally
	replayed, failed int
}

// proxyRequest counts one proxied request for the record of the current
// window (action credential.proxy): replayed after a 401, or failed in the
// proxy (no answer from the API).
func (a *auditWriter) proxyRequest(actor, target, remote string, replayed, failed bool) {
	if a == nil {
		return
	}
	k := readKey{actor, target, remote}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started.IsZero() {
		a.started = now
	}
	c := a.proxied[k]
	if c == nil {
		if len(a.proxied) >= maxFailureKeys {
			k = readKey{"various", target, "*"}
			if c = a.proxied[k]; c == nil {
				c = &proxyCount{}
				a.proxied[k] = c
			}
		} else {
			c = &proxyCount{}
			a.proxied[k] = c
		}
	}
	c.add(now)
	if replayed {
		c.replayed++
	}
	if failed {
		c.failed++
	}
}

// failure counts one refusal for the next aggregated record.
func (a *auditWriter) failure(r *tokenkeeper.AuditRecord) {
	k := failKey{r.Action, r.Outcome, r.RemoteAddr, r.Detail}
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.failures[k]
	if f == nil {
		if len(a.failures) >= maxFailureKeys {
			k = failKey{r.Action, r.Outcome, "*", "many addresses"}
			f = a.failures[k]
		}
		if f == nil {
			f = &failedCount{actor: r.Actor, target: r.Target}
			a.failures[k] = f
		}
	}
	f.n++
}

// flush writes the refusals counted since the last flush and, when the
// window has ended (or all is set: at shutdown), the reads and proxied
// requests of the window.
func (a *auditWriter) flush(all bool, until time.Time) {
	now := a.now()
	var reads map[readKey]*tally
	var proxied map[readKey]*proxyCount
	a.mu.Lock()
	failures := a.failures
	a.failures = make(map[failKey]*failedCount, len(failures))
	if !a.started.IsZero() && (all || !now.Before(a.started.Add(a.window)) || len(a.reads)+len(a.proxied) >= maxReadKeys) {
		reads, proxied = a.reads, a.proxied
		a.reads = make(map[readKey]*tally, len(reads))
		a.proxied = make(map[readKey]*proxyCount, len(proxied))
		a.started = time.Time{}
	}
	a.mu.Unlock()
	// Refusals first: they are the security signal, and a window's reads
	// may be many records.
	for k, f := range failures {
		r := &tokenkeeper.AuditRecord{Time: now, Actor: f.actor, Action: k.action, Target: f.target,
			Outcome: k.outcome, RemoteAddr: k.remote, Detail: k.detail}
		if f.n > 1 {
			// Many refusals: the actor and target of the first stand for
			// all of them, so they are named as an example.
			r.Actor, r.Target = "anonymous", ""
			if f.actor != "anonymous" && f.actor != "" {
				r.Actor = "various"
			}
			r.Detail = fmt.Sprintf("%d times in 1s (first: %s %s)", f.n, truncate(f.actor, 80), truncate(f.target, 80))
			if k.detail != "" {
				r.Detail = k.detail + ": " + r.Detail
			}
			r.Detail = truncate(r.Detail, 400)
		}
		a.write(r, until)
	}
	// A window's records are dated at their first read, so that the
	// audit log never places a read later than it happened.
	for k, t := range reads {
		a.write(&tokenkeeper.AuditRecord{Time: t.first, Actor: k.actor, Action: "token.read", Target: k.target,
			Outcome: "ok", RemoteAddr: k.remote, Detail: t.text("read", "reads")}, until)
	}
	for k, c := range proxied {
		detail := c.text("request", "requests")
		if c.replayed > 0 {
			detail += fmt.Sprintf(", %d replayed after a 401", c.replayed)
		}
		outcome := "ok"
		if c.failed > 0 {
			detail += fmt.Sprintf(", %d failed", c.failed)
			if c.failed == c.n {
				outcome = "error"
			}
		}
		a.write(&tokenkeeper.AuditRecord{Time: c.first, Actor: k.actor, Action: "credential.proxy", Target: k.target,
			Outcome: outcome, RemoteAddr: k.remote, Detail: detail}, until)
	}
}

// newAuditWriter returns a writer aggregating reads and proxied requests
// over window (<= 0: DefaultAuditReadWindow), measured on now.
func newAuditWriter(store tokenkeeper.AuthStore, logger *slog.Logger, now func() time.Time, buffer int, window time.Duration) *auditWriter {
	if window <= 0 {
		window = DefaultAuditReadWindow
	}
	return &auditWriter{store: store, logger: logger, now: now, ch: make(chan *tokenkeeper.AuditRecord, buffer), window: window,
		reads: map[readKey]*tally{}, proxied: map[readKey]*proxyCount{}, failures: map[failKey]*failedCount{}}
}

// record queues r, or counts it for an aggregated record if it is a
// refusal. When the queue is full it waits: a record of what a caller did
// is never dropped, and a caller whose record cannot be queued waits (or
// gives up with ctx) rather than losing it. It reports whether r was
// queued or counted.
func (a *auditWriter) record(ctx context.Context, r *tokenkeeper.AuditRecord) bool {
	if a == nil {
		return true
	}
	if aggregated(r.Outcome) {
		a.failure(r)
		return true
	}
	select {
	case a.ch <- r:
		return true
	default:
	}
	a.logger.Warn("audit log falling behind: requests wait for their records to be queued")
	select {
	case a.ch <- r:
		return true
	case <-ctx.Done():
		a.logger.Error("audit record not queued: the request ended first", "action", r.Action, "actor", r.Actor, "target", r.Target)
		return false
	}
}

// run writes queued records until ctx ends, and each second the refusals
// and the reads and proxied requests of a window that has ended; then it
// writes every pending aggregate (the current window's included) and
// drains what is queued, trying for at most shutdownGrace more.
func (a *auditWriter) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case r := <-a.ch:
			a.write(r, time.Time{})
		case <-tick.C:
			a.flush(false, time.Time{})
		case <-ctx.Done():
			until := time.Now().Add(shutdownGrace)
			a.flush(true, until)
			for {
				select {
				case r := <-a.ch:
					a.write(r, until)
				default:
					return
				}
			}
		}
	}
}

// shutdownGrace bounds the attempts to write the last records at shutdown.
const shutdownGrace = 30 * time.Second

// write stores r, retrying with backoff while the store fails: forever
// while serving (the queue fills and requests wait), and until the given
// time at shutdown; then it logs the record it lost (never a secret).
func (a *auditWriter) write(r *tokenkeeper.AuditRecord, until time.Time) {
	wait := 100 * time.Millisecond
	for {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := a.store.AddAudit(wctx, r)
		cancel()
		if err == nil {
			return
		}
		if !until.IsZero() && time.Now().After(until) {
			a.logger.Error("audit record lost: the store did not take it before shutdown", "action", r.Action, "actor", r.Actor, "target", r.Target, "err", err)
			return
		}
		a.logger.Warn("write audit record; retrying", "action", r.Action, "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}
