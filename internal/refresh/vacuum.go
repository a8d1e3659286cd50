package refresh

import (
	"context"
	"time"
)

// Vacuumer is a store whose tables keep the space of old row versions
// until they are vacuumed (PostgreSQL): Vacuum reclaims it in the tables
// that refreshes churn once enough of their rows are dead, and returns the
// tables it vacuumed. It must be safe for concurrent use, also by other
// replicas.
type Vacuumer interface {
	Vacuum(ctx context.Context) ([]string, error)
}

// DefaultVacuumInterval is how often Run asks a Vacuumer store to vacuum
// by default. Asking is cheap (the database's statistics); vacuuming
// happens when the store finds enough dead rows.
const DefaultVacuumInterval = 15 * time.Second

// vacuumLoop asks v to vacuum every VacuumInterval until ctx ends. A
// failure is logged and retried at the next interval.
func (r *Refresher) vacuumLoop(ctx context.Context, v Vacuumer) {
	t := time.NewTicker(r.cfg.VacuumInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		tables, err := v.Vacuum(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.logger.Warn("cannot vacuum the store's tables; trying again later", "err", err)
		case len(tables) > 0:
			r.logger.Info("vacuumed the store's tables", "tables", tables, "took", time.Since(start).Round(time.Millisecond).String())
		}
	}
}
