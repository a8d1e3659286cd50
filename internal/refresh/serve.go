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
	mu      sync.RWMutex
	entries map[string]*entry // guarded by mu; entries are never mutated
}

func newCache() *cache { return &cache{entries: make(map[string]*entry)} }

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
		fresh, err := r.load(ctx, name)
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
		// for more life than is left): refresh now, sharing the attempt.
		c, err := r.Refresh(ctx, name, "")
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

// load reads a credential from the store into the cache; concurrent loads of
// one name share a query.
func (r *Refresher) load(ctx context.Context, name string) (*entry, error) {
	v, err, _ := r.group.Do("load\x00"+name, func() (any, error) {
		// Bounded: a read never waits long for a database that is down.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StoreTimeout)
		defer cancel()
		c, err := r.store.Credential(ctx, name)
		if err != nil {
			return nil, err
		}
		return r.cache.put(c, r.now()), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*entry), nil
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
// holds a rotated refresh token that must be committed.
func (r *Refresher) Refresh(ctx context.Context, name, rejected string) (*tokenkeeper.Credential, error) {
	ch := r.group.DoChan("refresh\x00"+name, func() (any, error) {
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
	c, err := r.store.Credential(ctx, name)
	if err != nil {
		return nil, err
	}
	if rejected != "" && (c.Token == nil || subtle.ConstantTimeCompare([]byte(c.Token.AccessToken), []byte(rejected)) != 1) {
		// Already replaced: the caller only needs the current token.
		r.cache.put(c, r.now())
		return c, nil
	}
	if c.Status == tokenkeeper.StatusDisabled {
		return nil, tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %q is disabled", name)
	}
	for {
		claimed, err := r.store.ClaimCredential(ctx, c.ID, r.claimOwner(), r.now(), r.cfg.Lease)
		if err == nil {
			if updated := r.refresh(ctx, claimed); updated != nil {
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
		c, err := r.store.Credential(ctx, name)
		if err != nil {
			return nil, err
		}
		if c.LeaseOwner == "" || !c.LeaseExpiresAt.After(r.now()) {
			return c, nil
		}
	}
}
