package http

import (
	"context"
	"time"
)

const (
	// DefaultAuditRetention is how long audit records are kept by default.
	DefaultAuditRetention = 90 * 24 * time.Hour
	// DefaultAuditPruneInterval is how often old audit records are looked
	// for by default.
	DefaultAuditPruneInterval = 10 * time.Minute
	// auditPruneBatch is how many records one transaction deletes: small
	// enough that a write waiting for it (SQLite has one writer) waits
	// milliseconds, not seconds.
	auditPruneBatch = 1000
	// auditPrunePause is the pause between two batches, which lets the
	// audit writer and the handlers' writes in.
	auditPrunePause = 50 * time.Millisecond
)

// pruneAuditLoop deletes audit records older than the retention, at once
// and then every prune interval, until ctx ends. It runs beside the
// handlers and never holds them up: each batch is its own short
// transaction, with a pause between batches. A failure is logged and
// retried at the next interval.
func (s *server) pruneAuditLoop(ctx context.Context) {
	t := time.NewTicker(s.pruneInterval)
	defer t.Stop()
	for {
		s.pruneAudit(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneAudit deletes every record older than the retention, a batch at a
// time, and returns how many it deleted.
func (s *server) pruneAudit(ctx context.Context) int {
	before := s.now().Add(-s.auditRetention)
	total := 0
	for ctx.Err() == nil {
		n, err := s.authStore.PruneAudit(ctx, before, auditPruneBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("cannot prune the audit log; trying again later", "err", err)
			}
			break
		}
		if n < auditPruneBatch {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(auditPrunePause):
		}
	}
	if total > 0 {
		s.logger.Info("pruned the audit log", "deleted", total, "before", before.UTC().Format(time.RFC3339))
	}
	return total
}
