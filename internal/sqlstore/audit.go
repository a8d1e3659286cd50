package sqlstore

import (
	"context"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// MaxPruneBatch caps the limit of one PruneAudit call.
const MaxPruneBatch = 10_000

// PruneAudit deletes at most limit audit records whose time is before
// before, oldest first, in one transaction, and returns how many it
// deleted. The audit_time index makes finding them cheap; a small limit
// keeps the transaction, and so the time other writers wait (SQLite has one
// writer), short. Returns EINVALID (limit not from 1 to MaxPruneBatch,
// before out of range).
func (s *Store) PruneAudit(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit < 1 || limit > MaxPruneBatch {
		return 0, tokenkeeper.Errorf(tokenkeeper.EINVALID, "prune limit must be from 1 to %d", MaxPruneBatch)
	}
	if err := CheckRequiredTime("before", before); err != nil {
		return 0, err
	}
	var n int64
	err := s.write(ctx, "prune audit log", func(tx Querier) error {
		var err error
		n, err = tx.Exec(ctx, `DELETE FROM audit WHERE id IN (
				SELECT id FROM audit WHERE time < $1 ORDER BY time, id LIMIT $2)`, utc(before), limit)
		return err
	})
	return int(n), err
}
