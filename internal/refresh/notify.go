package refresh

import (
	"context"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Follow keeps this refresher in step with the other processes sharing its
// store, through n (a store implementing tokenkeeper.ChangeNotifier), until
// ctx ends; it returns what n.Subscribe returns. Call it in its own
// goroutine alongside Run, and end it before closing the store.
//
// On a change to a credential the cached token is marked stale, so the next
// read reloads it from the store (while the store is unreachable the cached
// token is still served as long as it is valid), and the loop is woken if
// the change may make a refresh due sooner than it planned. A deleted
// credential leaves the cache at once. A change this
// refresher already holds (its own commit) costs nothing. On a resync every
// cached entry is marked stale and the loop is woken.
//
// Without Follow, changes made elsewhere still show: cached entries are
// reloaded after at most PollInterval, and the loop looks for due
// credentials at least every PollInterval.
func (r *Refresher) Follow(ctx context.Context, n tokenkeeper.ChangeNotifier) error {
	return n.Subscribe(ctx, r.applyChange)
}

// applyChange applies one change notification.
func (r *Refresher) applyChange(ch tokenkeeper.Change) {
	switch ch.Kind {
	case tokenkeeper.ChangeResync:
		r.cache.staleAll()
		r.Wake()
		return
	case tokenkeeper.ChangeDeleted:
		r.cache.invalidate(ch.CredentialName)
		return
	case tokenkeeper.ChangeRefresh:
		// A refresh moves the fencing version forward: an entry at this
		// version or later is already current.
		r.cache.stale(ch.CredentialName, ch.CredentialID, ch.Version)
	default:
		// Edits may leave the version alone (a status change): always reload.
		r.cache.stale(ch.CredentialName, "", 0)
	}
	if ch.NextRefreshAt.IsZero() {
		r.Wake()
		return
	}
	if planned := r.nextPass.Load(); planned == 0 || !ch.NextRefreshAt.After(time.Unix(0, planned)) {
		r.Wake()
	}
}

// stale marks the entry of name for a reload at its next read, unless it is
// the credential with id and already at version or later (when id is "").
func (c *cache) stale(name, id string, version int64) {
	c.entries.Update(name, func(e *entry, ok bool) (*entry, bool) {
		if !ok || (id != "" && e.id == id && e.version >= version) {
			return nil, false
		}
		cp := *e
		cp.checkAfter = time.Time{}
		return &cp, true
	}, nil)
}

// staleAll marks every entry for a reload at its next read.
func (c *cache) staleAll() {
	c.entries.UpdateAll(func(e *entry) *entry {
		cp := *e
		cp.checkAfter = time.Time{}
		return &cp
	})
}
