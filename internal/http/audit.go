package http

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// auditWriter appends audit records to the store in the background, so that
// auditing costs a request no database write. Token reads, the hot path,
// are aggregated: one record per reader, credential and address each second,
// with the count in its detail. When the store falls behind by more than the
// buffer, records are dropped and counted (and the drop is logged), rather
// than slowing requests down.
type auditWriter struct {
	store   tokenkeeper.AuthStore
	logger  *slog.Logger
	now     func() time.Time
	ch      chan *tokenkeeper.AuditRecord
	dropped atomic.Int64

	mu    sync.Mutex
	reads map[readKey]int // guarded by mu: token reads since the last flush
}

type readKey struct{ actor, target, remote string }

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

func (a *auditWriter) flushReads() {
	a.mu.Lock()
	reads := a.reads
	a.reads = make(map[readKey]int, len(reads))
	a.mu.Unlock()
	now := a.now()
	for k, n := range reads {
		a.record(&tokenkeeper.AuditRecord{Time: now, Actor: k.actor, Action: "token.read", Target: k.target,
			Outcome: "ok", RemoteAddr: k.remote, Detail: fmt.Sprintf("%d reads", n)})
	}
}

func newAuditWriter(store tokenkeeper.AuthStore, logger *slog.Logger, now func() time.Time, buffer int) *auditWriter {
	return &auditWriter{store: store, logger: logger, now: now, ch: make(chan *tokenkeeper.AuditRecord, buffer), reads: map[readKey]int{}}
}

// record queues r; it never blocks.
func (a *auditWriter) record(r *tokenkeeper.AuditRecord) {
	if a == nil {
		return
	}
	select {
	case a.ch <- r:
	default:
		if a.dropped.Add(1)%1000 == 1 {
			a.logger.Warn("audit log falling behind: records dropped", "dropped_total", a.dropped.Load())
		}
	}
}

// run writes queued records until ctx ends, then drains what is queued.
func (a *auditWriter) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case r := <-a.ch:
			a.write(r)
		case <-tick.C:
			a.flushReads()
		case <-ctx.Done():
			a.flushReads()
			for {
				select {
				case r := <-a.ch:
					a.write(r)
				default:
					return
				}
			}
		}
	}
}

func (a *auditWriter) write(r *tokenkeeper.AuditRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.store.AddAudit(ctx, r); err != nil {
		a.logger.Warn("write audit record", "action", r.Action, "err", err)
	}
}
