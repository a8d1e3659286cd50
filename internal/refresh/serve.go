package refresh

import (
	"context"
	"crypto/subtle"
	"fmt"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Served is what a token read returns: the token, and the credential's state
// for callers that must explain why there is none.
type Served struct {
	Name          string
	Token         *tokenkeeper.Token
	Status        tokenkeeper.Status
	LastErrorCode string
}

// entry is a cached view of one credential: what a read needs, opened once.
type entry struct {
	id            string
	name          string
	token         *tokenkeeper.Token
	status        tokenkeeper.Status
	lastErrorCode string
	lifetime      time.Duration // of the current token, as obtained
	version       int64
	// checkAfter is when the cached state may be stale (the credential's
	// refresh time has passed and another process may have refreshed it): a
	// read after it reloads the credential from the store once.
	checkAfter time.Time
}

// cache holds one entry per credential name.
type cache struct {
	// maxAge bounds how long an entry is trusted without a reload, so that
	// without change notifications another process's edits and deletions
	// still show within it.
	maxAge  time.Duration
	mu      sync.RWMutex
	entries map[string]*entry // guarded by mu; entries are never mutated
}

func newCache(maxAge time.Duration) *cache {
	return &cache{maxAge: maxAge, entries: make(map[string]*entry)}
}

func (c *cache) get(name string) *entry {
	c.mu.RLock()
	e := c.entries[name]
	c.mu.RUnlock()
	return e
}

// put stores the state of cred, unless the cache already holds a newer
// version of it.
func (c *cache) put(cred *tokenkeeper.Credential, now time.Time) *entry {
	e := &entry{
		id: cred.ID, name: cred.Name, token: cred.Token, status: cred.Status,
		lastErrorCode: cred.LastErrorCode, version: cred.Version,
	}
	if cred.Token != nil && !cred.Token.ExpiresAt.IsZero() && !cred.LastRefreshAt.IsZero() {
		e.lifetime = cred.Token.ExpiresAt.Sub(cred.LastRefreshAt)
	}
	// Reload once the refresh time has passed (a little later, so that the
	// local refresher usually commits first), or within a second while the
	// credential is not healthy or has no usable token.
	e.checkAfter = cred.NextRefreshAt.Add(250 * time.Millisecond)
	if cred.Status != tokenkeeper.StatusActive || cred.Token == nil || e.checkAfter.Before(now) {
		e.checkAfter = now.Add(time.Second)
	}
	e.checkAfter = minTime(e.checkAfter, now.Add(c.maxAge))
	if cred.Token != nil && !cred.Token.ExpiresAt.IsZero() && cred.Token.ExpiresAt.Before(e.checkAfter) {
		e.checkAfter = cred.Token.ExpiresAt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[cred.Name]; old != nil && old.id == cred.ID && old.version > cred.Version {
		return old
	}
	c.entries[cred.Name] = e
	return e
}

// retryLater postpones the next reload of e, unless it was replaced.
func (c *cache) retryLater(e *entry, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.name] == e {
		cp := *e
		cp.checkAfter = at
		c.entries[e.name] = &cp
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (c *cache) invalidate(name string) {
	c.mu.Lock()
	delete(c.entries, name)
	c.mu.Unlock()
}

// Forget drops the cached state of a credential; call it after the
// credential was changed or deleted.
func (r *Refresher) Forget(name string) { r.cache.invalidate(name) }

// leeway is how much life a token must have left to be served: a tenth of its
// lifetime, at most 5 seconds, so that a reader never gets a token that
// expires on the way.
func leeway(lifetime time.Duration) time.Duration {
	if lifetime <= 0 {
		return 5 * time.Second
	}
	return min(lifetime/10, 5*time.Second)
}

// Token returns the current token of the named credential, from memory when
// possible. A token with less than minTTL left (or less than a small leeway)
// is refreshed first; concurrent callers share that refresh. When the
// credential cannot produce a valid token the error is ENOTREADY and Served
// still names the status and last error code. Returns ENOTFOUND, EINVALID
// (minTTL longer than the provider's token lifetime) or ENOTREADY.
func (r *Refresher) Token(ctx context.Context, name string, minTTL time.Duration) (*Served, error) {
	now := r.now()
	e := r.cache.get(name)
	if e == nil || now.After(e.checkAfter) {
		// With a valid token in hand, wait only briefly for the store.
		wait := r.cfg.StoreTimeout
		if e != nil && e.token.Valid(now, leeway(e.lifetime)) {
			wait = min(wait, staleWait)
		}
		fresh, err := r.load(ctx, name, wait)
		switch {
		case err == nil:
			e = fresh
		case e != nil && tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND && e.token.Valid(now, leeway(e.lifetime)):
			// The store is unreachable: keep serving the cached token
			// while it is valid, and look again in a second.
			r.cache.retryLater(e, now.Add(time.Second))
		default:
			return nil, err
		}
	}
	need := max(leeway(e.lifetime), minTTL)
	if e.token.Valid(now, need) {
		return e.served(), nil
	}
	if minTTL > 0 && e.lifetime > 0 && minTTL >= e.lifetime-leeway(e.lifetime) {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "min_ttl %s is longer than the lifetime of this credential's tokens (%s)", minTTL, e.lifetime.Round(time.Second))
	}
	if e.status == tokenkeeper.StatusActive || (minTTL > 0 && e.token.Valid(now, leeway(e.lifetime))) {
		// A token is due and the credential is healthy (or the caller asked
		// for more life than is left): refresh now, sharing the attempt,
		// unless the store already holds a newer token (another replica
		// refreshed it).
		var seen string
		if e.token != nil {
			seen = e.token.AccessToken
		}
		c, err := r.Refresh(ctx, name, seen)
		if err != nil {
			return nil, err
		}
		e = r.cache.put(c, r.now())
		if e.token.Valid(r.now(), leeway(e.lifetime)) {
			return e.served(), nil
		}
	}
	if e.token.Valid(r.now(), leeway(e.lifetime)) {
		return e.served(), nil
	}
	return e.served(), notReady(e)
}

// storeTimeout turns the error of a store call whose context ctx (bounded by
// StoreTimeout) ran out into EUNAVAILABLE: a database that does not answer
// is unavailable, not broken.
func (r *Refresher) storeTimeout(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && tokenkeeper.ErrorCode(err) == tokenkeeper.EINTERNAL {
		return &timeoutError{err: err, unavailable: tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "the store did not answer in time")}
	}
	return err
}

// timeoutError is an EUNAVAILABLE error that keeps its cause.
type timeoutError struct {
	err         error
	unavailable *tokenkeeper.Error
}

func (e *timeoutError) Error() string   { return "store unavailable: " + e.err.Error() }
func (e *timeoutError) Unwrap() []error { return []error{e.unavailable, e.err} }

func notReady(e *entry) error {
	msg := fmt.Sprintf("credential %q has no valid token: its status is %s", e.name, e.status)
	if e.lastErrorCode != "" {
		msg += fmt.Sprintf(" (last error: %s)", e.lastErrorCode)
	}
	if e.status == tokenkeeper.StatusNeedsReauth {
		msg += "; update its secrets or force a refresh"
	}
	return tokenkeeper.Errorf(tokenkeeper.ENOTREADY, "%s", msg)
}

func (e *entry) served() *Served {
	return &Served{Name: e.name, Token: e.token, Status: e.status, LastErrorCode: e.lastErrorCode}
}

// staleWait is the longest a read that holds a valid cached token waits for
// the store to confirm it is current; the reload goes on in the background
// and the cached token is served meanwhile.
const staleWait = 200 * time.Millisecond

// load reads a credential from the store into the cache; concurrent loads of
// one name share a query, which takes at most StoreTimeout. The caller waits
// at most wait (and no longer than ctx) and then gets EUNAVAILABLE.
func (r *Refresher) load(ctx context.Context, name string, wait time.Duration) (*entry, error) {
	ch := r.group.DoChan("load\x00"+name, func() (any, error) {
		// Bounded: a read never waits long for a database that is down.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StoreTimeout)
		defer cancel()
		c, err := r.store.Credential(ctx, name)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.EUNAVAILABLE && ctx.Err() == nil {
			// Once more, on a new connection: after a database restart
			// the pooled connections fail once each.
			c, err = r.store.Credential(ctx, name)
		}
		if err != nil {
			return nil, r.storeTimeout(ctx, err)
		}
		return r.cache.put(c, r.now()), nil
	})
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*entry), nil
	case <-t.C:
		return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "the store did not answer within %s", wait)
	case <-ctx.Done():
		return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "reading credential %q: %v", name, ctx.Err())
	}
}

// Refresh forces a refresh of the named credential, whatever its schedule and
// status (a needs_reauth credential is tried again), and returns the
// credential as committed. With a non-empty rejected token it refreshes only
// if that is still the current token in the store, and otherwise returns the
// current state: many consumers reporting one rejected token cause one
// refresh. Concurrent calls in this process share one attempt; a refresh
// already running elsewhere is waited for rather than repeated.
//
// The provider call is not cancelled with ctx: an answer already on its way
// holds a rotated refresh token that must be committed. Store reads before
// the provider call take at most StoreTimeout each. Returns ENOTFOUND,
// ECONFLICT (disabled) or EUNAVAILABLE (the store is unreachable, ctx ended
// first, or Run has shut down).
func (r *Refresher) Refresh(ctx context.Context, name, rejected string) (*tokenkeeper.Credential, error) {
	ch := r.group.DoChan("refresh\x00"+name, func() (any, error) {
		if !r.track() {
			return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "the refresher is shutting down")
		}
		defer r.wg.Done()
		return r.forced(context.WithoutCancel(ctx), name, rejected)
	})
	select {
	case <-ctx.Done():
		return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "refresh of %q still in progress: %v", name, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*tokenkeeper.Credential), nil
	}
}

func (r *Refresher) forced(ctx context.Context, name, rejected string) (*tokenkeeper.Credential, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Lease)
	defer cancel()
	// The provider call ends when Run abandons calls at shutdown, the commit
	// when it abandons commits.
	callCtx, stopCall := context.WithCancel(ctx)
	defer stopCall()
	defer context.AfterFunc(r.calls, stopCall)()
	commitCtx, stopCommit := context.WithCancel(ctx)
	defer stopCommit()
	defer context.AfterFunc(r.commits, stopCommit)()

	rctx, rcancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	c, err := r.store.Credential(rctx, name)
	err = r.storeTimeout(rctx, err)
	rcancel()
	if err != nil {
		return nil, err
	}
	if rejected != "" && !isToken(c.Token, rejected) {
		// Already replaced: the caller only needs the current token.
		r.cache.put(c, r.now())
		return c, nil
	}
	if c.Status == tokenkeeper.StatusDisabled {
		return nil, tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %q is disabled", name)
	}
	for {
		rctx, rcancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
		claimed, err := r.store.ClaimCredential(rctx, c.ID, r.claimOwner(), r.now(), r.cfg.Lease)
		err = r.storeTimeout(rctx, err)
		rcancel()
		if err == nil {
			if rejected != "" && !isToken(claimed.Token, rejected) {
				// Replaced between our read and our claim.
				return r.release(ctx, claimed)
			}
			if updated := r.refresh(callCtx, commitCtx, claimed); updated != nil {
				return updated, nil
			}
			// Fenced out: whoever won has the newer state.
			return r.store.Credential(ctx, name)
		}
		if tokenkeeper.ErrorCode(err) != tokenkeeper.ECONFLICT {
			return nil, err
		}
		// Another worker is refreshing it: wait for its commit and use that.
		if c, err = r.awaitRelease(ctx, name); err != nil {
			return nil, err
		}
		if c.LeaseOwner == "" {
			r.cache.put(c, r.now())
			return c, nil
		}
		// Its lease expired without a commit (the worker died): claim it.
	}
}

// isToken reports whether t is the access token s.
func isToken(t *tokenkeeper.Token, s string) bool {
	return t != nil && subtle.ConstantTimeCompare([]byte(t.AccessToken), []byte(s)) == 1
}

// release gives up a claim without calling the provider, leaving the
// credential's state as claimed, and returns the credential.
func (r *Refresher) release(ctx context.Context, c *tokenkeeper.Credential) (*tokenkeeper.Credential, error) {
	updated, err := r.store.CompleteRefresh(ctx, c.ID, c.LeaseOwner, c.Version, &tokenkeeper.RefreshResult{
		Status: c.Status, FailureCount: c.FailureCount, LastError: c.LastError, LastErrorCode: c.LastErrorCode,
	})
	if err != nil {
		if tokenkeeper.ErrorCode(err) != tokenkeeper.ECONFLICT {
			r.logger.Warn("release an unneeded claim; it will expire", "credential", c.Name, "err", err)
		}
		return r.store.Credential(ctx, c.Name)
	}
	r.cache.put(updated, r.now())
	return updated, nil
}

// awaitRelease polls the store until the credential's lease is released (the
// other worker committed) or has expired, or ctx ends.
func (r *Refresher) awaitRelease(ctx context.Context, name string) (*tokenkeeper.Credential, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "timed out waiting for another worker's refresh of %q", name)
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
		c, err := r.store.Credential(rctx, name)
		err = r.storeTimeout(rctx, err)
		cancel()
		if err != nil {
			return nil, err
		}
		if c.LeaseOwner == "" || !c.LeaseExpiresAt.After(r.now()) {
			return c, nil
		}
	}
}
