package tokenkeeper

import (
	"context"
	"time"
)

// Kinds of Change.
const (
	ChangeCreated = "created" // a credential was created
	ChangeUpdated = "updated" // an operator changed a credential (fields, secrets, status, schedule)
	ChangeDeleted = "deleted" // a credential was deleted
	ChangeRefresh = "refresh" // a refresh attempt was committed (success or failure)
	// ChangeResync means that changes may have been missed: the listening
	// connection was (re)established. Its other fields are empty. A
	// subscriber reloads whatever it keeps about every credential.
	ChangeResync = "resync"
)

// Change tells a subscriber that a credential changed in the store, possibly
// through another process sharing the database. It carries no secret: a
// subscriber that needs the new state reads it from the store.
type Change struct {
	Kind           string // one of the Change* kinds
	CredentialID   string
	CredentialName string
	// Version is the credential's fencing version after the change (zero
	// for ChangeDeleted and ChangeResync). An operator's edit that leaves
	// the fencing version alone (a status or scope change) reports the
	// version unchanged, so Version orders refreshes but not edits.
	Version int64
	// NextRefreshAt is the credential's refresh time after the change (zero
	// for ChangeDeleted and ChangeResync).
	NextRefreshAt time.Time
}

// ChangeNotifier is implemented by stores that can tell the processes
// sharing a database about each other's changes (internal/postgres does,
// through LISTEN/NOTIFY). It is optional: a store without it relies on its
// users polling.
//
// Delivery is a hint, never a source of truth:
//   - A change is delivered at most once to each subscriber, after the
//     transaction that made it committed, to every process subscribed at
//     that moment, the one that made it included. Changes of one
//     transaction arrive in order; changes of concurrent transactions in
//     commit order.
//   - A change may be lost, when the listening connection breaks. The
//     subscriber then receives a Change of kind ChangeResync once it listens
//     again, and must treat everything it keeps as possibly stale. The
//     first ChangeResync arrives when the subscription is first in place:
//     it tells the subscriber from when on changes are delivered.
//
// Subscribe calls f for every change, one call at a time from a single
// goroutine, until ctx ends; it then returns nil. It reconnects by itself
// with backoff for as long as ctx lasts, and returns an error only when it
// cannot start at all (a broken configuration). f must not block for long:
// notifications are read while f is not running. Subscribe is safe for
// concurrent use; each call is an independent subscription.
type ChangeNotifier interface {
	Subscribe(ctx context.Context, f func(Change)) error
}
