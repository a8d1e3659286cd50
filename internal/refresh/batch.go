package refresh

import (
	"context"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// DefaultCommitBatchWait is how long, by default, a background refresh's
// result waits for others to share its commit transaction. A background
// refresh comes after its token's advertised expiry, so a read in between
// waits for its commit (see Refresher.Token): such a read hurries it
// (batcher.hurry), and the wait costs the others nothing. At 300 results
// a second, 50 ms gathers about fifteen in a transaction, which on SQLite
// writes half the bytes and takes a quarter less CPU per refresh than 10 ms
// (bench scale, 200,000 credentials with 15 min tokens: 25.1 KB and 1.63 ms
// a refresh at 10 ms, 12.7 KB and 1.18 ms at 50 ms).
const DefaultCommitBatchWait = 50 * time.Millisecond

// maxCommitBatch caps the results one transaction commits.
const maxCommitBatch = 128

// commitReq is one result waiting in a batch.
type commitReq struct {
	ctx    context.Context
	commit tokenkeeper.RefreshCommit
	urgent bool // a caller waits for it: no lingering
	cred   *tokenkeeper.Credential
	err    error
	done   chan struct{}
}

// batcher gathers refresh results into shared commit transactions on a
// store that is a tokenkeeper.RefreshBatchCommitter. A flushing goroutine
// runs while results are pending: it waits up to wait for more (not when
// an urgent one is pending) and commits what it has in one transaction,
// while the next ones gather. All methods are safe for concurrent use.
type batcher struct {
	store   tokenkeeper.RefreshBatchCommitter
	wait    time.Duration
	timeout time.Duration // of one transaction
	kick    chan struct{} // capacity 1: an urgent result, or enough results, are pending
	// enough results pending are committed without waiting longer: a
	// result holds its refresh slot until committed, so that at
	// saturation the wait would cost throughput; half the slots (the
	// Refresher's Concurrency) is a batch worth its transaction.
	enough int

	mu       sync.Mutex
	pending  []*commitReq // guarded by mu
	flushing bool         // guarded by mu: a goroutine runs flush
	// hurried holds the ids of credentials a caller waits for whose result
	// is not pending yet (its provider call is under way), with when it
	// was asked: the result is committed at once when it comes. Guarded
	// by mu.
	hurried map[string]time.Time
}

// hurryFor is how long a hurry for a result not pending yet is kept: a
// result that has not come by then belongs to another process, or never
// comes (a lease, ProviderTimeout + 5 s by default, outlives the provider
// call). A hurry kept for a later result only commits that one at once.
const hurryFor = 30 * time.Second

// hurry asks for the result of the credential id to be committed at once,
// without waiting for others: a caller waits for it. A pending one is
// committed now; one still on its way is when it comes. Safe for
// concurrent use.
func (b *batcher) hurry(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.pending {
		if r.commit.ID == id {
			r.urgent = true
			select {
			case b.kick <- struct{}{}:
			default:
			}
			return
		}
	}
	now := time.Now()
	for k, at := range b.hurried {
		if now.Sub(at) > hurryFor {
			delete(b.hurried, k)
		}
	}
	if b.hurried == nil {
		b.hurried = map[string]time.Time{}
	}
	b.hurried[id] = now
}

// complete commits one result, in a batch, and returns the committed
// credential or the item's error. It returns ctx's error if ctx ends first
// (the result may still be committed: the caller treats it as not).
func (b *batcher) complete(ctx context.Context, c tokenkeeper.RefreshCommit, urgent bool) (*tokenkeeper.Credential, error) {
	req := &commitReq{ctx: ctx, commit: c, urgent: urgent, done: make(chan struct{})}
	b.mu.Lock()
	if _, ok := b.hurried[c.ID]; ok {
		delete(b.hurried, c.ID)
		req.urgent, urgent = true, true
	}
	b.pending = append(b.pending, req)
	if urgent || len(b.pending) >= b.enough {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	if !b.flushing {
		b.flushing = true
		// At the process's priority, not lowprio's: a niced thread
		// yields to every other process's threads too, and a host busy
		// elsewhere would hold back the commits that keep tokens fresh.
		go b.flush()
	}
	b.mu.Unlock()
	select {
	case <-req.done:
		return req.cred, req.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flush commits batches until none is pending.
func (b *batcher) flush() {
	for {
		b.mu.Lock()
		urgent := len(b.pending) >= b.enough
		for _, r := range b.pending {
			urgent = urgent || r.urgent
		}
		b.mu.Unlock()
		if !urgent && b.wait > 0 {
			t := time.NewTimer(b.wait)
			select {
			case <-t.C:
			case <-b.kick:
			}
			t.Stop()
		}
		b.mu.Lock()
		n := min(len(b.pending), maxCommitBatch)
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		if n == 0 {
			b.flushing = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.commit(batch)
	}
}

// commit writes batch in one transaction and hands each its result. Items
// whose caller has given up are left out.
func (b *batcher) commit(batch []*commitReq) {
	live := batch[:0:0]
	items := make([]tokenkeeper.RefreshCommit, 0, len(batch))
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
			close(r.done)
			continue
		}
		live = append(live, r)
		items = append(items, r.commit)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	creds, errs := b.store.CompleteRefreshes(ctx, items)
	for i, r := range live {
		r.cred, r.err = creds[i], errs[i]
		close(r.done)
	}
}
