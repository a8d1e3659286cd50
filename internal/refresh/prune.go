package refresh

import (
	"context"
	"time"
)

// EventPruner is a store that deletes events past its retention's age
// limits (sqlstore.Store.PruneEvents): at most limit per call, oldest
// first, returning how many it deleted. It must be safe for concurrent use.
type EventPruner interface {
	PruneEvents(ctx context.Context, now time.Time, limit int) (int, error)
}

const (
	// DefaultEventPruneInterval is how often Run looks for events past
	// their retention by default.
	DefaultEventPruneInterval = time.Minute
	// eventPruneBatch is how many events one transaction deletes: small
	// enough that a commit waiting for it (SQLite has one writer) waits
	// milliseconds.
	eventPruneBatch = 1000
	// eventPrunePause is the pause between two batches, which lets the
	// refreshes' commits in.
	eventPrunePause = 20 * time.Millisecond
)

// pruneEventsLoop prunes old events at once and then every
// EventPruneInterval until ctx ends. It runs beside the refreshes and never
// holds them up for long: each batch is its own short transaction, with a
// pause between batches. A failure is logged and retried at the next
// interval.
func (r *Refresher) pruneEventsLoop(ctx context.Context, p EventPruner) {
	t := time.NewTicker(r.cfg.EventPruneInterval)
	defer t.Stop()
	for {
		r.pruneEvents(ctx, p)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneEvents deletes every event past its retention, a batch at a time,
// and returns how many it deleted.
func (r *Refresher) pruneEvents(ctx context.Context, p EventPruner) int {
	total := 0
	for ctx.Err() == nil {
		n, err := p.PruneEvents(ctx, r.now(), eventPruneBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				r.logger.Warn("cannot prune old events; trying again later", "err", err)
			}
			break
		}
		if n < eventPruneBatch {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(eventPrunePause):
		}
	}
	if total > 0 {
		r.logger.Info("pruned old events", "deleted", total)
	}
	return total
}
