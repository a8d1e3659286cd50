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
//   - Token reads, the hot path, are aggregated: one record per reader,
//     credential and address each second, with the count in its detail.
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

	mu       sync.Mutex
	reads    map[readKey]int          // guarded by mu: token reads since the last flush
	failures map[failKey]*failedCount // guarded by mu: refusals since the last flush
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

// tokenRead counts one token read for the next aggregated record.
func (a *auditWriter) tokenRead(actor, target, remote string) {
	if a == nil {
		return
	}
	k := readKey{actor, target, remote}
	a.mu.Lock()
	a.reads[k]++
	a.mu.Unlock()
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

// flush writes the aggregated records of the last second.
func (a *auditWriter) flush(until time.Time) {
	a.mu.Lock()
	reads, failures := a.reads, a.failures
	a.reads = make(map[readKey]int, len(reads))
	a.failures = make(map[failKey]*failedCount, len(failures))
	a.mu.Unlock()
	now := a.now()
	for k, n := range reads {
		a.write(&tokenkeeper.AuditRecord{Time: now, Actor: k.actor, Action: "token.read", Target: k.target,
			Outcome: "ok", RemoteAddr: k.remote, Detail: fmt.Sprintf("%d %s", n, plural(n, "read", "reads"))}, until)
	}
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
}

func newAuditWriter(store tokenkeeper.AuthStore, logger *slog.Logger, now func() time.Time, buffer int) *auditWriter {
	return &auditWriter{store: store, logger: logger, now: now, ch: make(chan *tokenkeeper.AuditRecord, buffer),
		reads: map[readKey]int{}, failures: map[failKey]*failedCount{}}
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

// run writes queued records until ctx ends, then drains what is queued,
// trying for at most shutdownGrace more.
func (a *auditWriter) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case r := <-a.ch:
			a.write(r, time.Time{})
		case <-tick.C:
			a.flush(time.Time{})
		case <-ctx.Done():
			until := time.Now().Add(shutdownGrace)
			a.flush(until)
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
