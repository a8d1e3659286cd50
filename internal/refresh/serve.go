package refresh

import (
	"context"
	"crypto/subtle"
	"fmt"
	"math"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/memo"
	"golang.org/x/sync/singleflight"
)

// Served is what a token read returns: the token with the expiry to
// advertise for it, and the credential's state for callers that must
// explain why there is none.
type Served struct {
	Name  string
	Token *tokenkeeper.Token
	// ExpiresAt is the expiry to hand out with Token: AdvertisedExpiry, the
	// earlier of the provider's expiry and the broker's planned replacement
	// less a margin (zero if unknown). Token.ExpiresAt stays the provider's.
	ExpiresAt     time.Time
	Status        tokenkeeper.Status
	LastErrorCode string
}

// ExpiryMargin is how long before its planned replacement a token stops
// being advertised as valid (a tenth of the token's lifetime for tokens
// shorter than 20 s). It covers what separates the broker's clock from the
// last use of a token a consumer was told is valid: the time the answer
// takes to arrive (expires_in starts counting on arrival), a request in
// flight at the advertised expiry, and clock differences between replicas
// (one computes the refresh time, another may advertise it) and, for
// consumers that read expires_at, between hosts.
//
// A consumer that refreshes ahead is safe with any margin: x/oauth2 treats
// a token as expired 10 s early, most libraries up to a minute; they ask
// again sooner and get the same token back until the broker replaces it.
// What is unsafe is asking the broker for more life than is advertised
// (min_ttl), which makes it replace the token at once: client.Broker
// therefore refreshes ahead without min_ttl. The margin is also the longest
// a read in a token's last second waits for the replacement, so it is kept
// small.
const ExpiryMargin = 2 * time.Second

// MinServedLife is the least advertised life a served token has: expires_in
// is whole seconds rounded down, and clients such as x/oauth2 read 0 as
// "never expires". A read finding less waits for the replacement instead.
const MinServedLife = time.Second

// margin returns the margin for a token of the given lifetime.
func margin(lifetime time.Duration) time.Duration {
	if lifetime <= 0 {
		return ExpiryMargin
	}
	return min(ExpiryMargin, lifetime/10)
}

// replaceable reports whether the broker replaces the token of a credential
// in status s by itself: it refreshes active and failing credentials on
// schedule, never those that need re-authorization or are disabled.
func replaceable(s tokenkeeper.Status) bool {
	return s == tokenkeeper.StatusActive || s == tokenkeeper.StatusError
}

// AdvertisedExpiry returns the expiry the broker hands out with c's current
// token: the earlier of the provider's expiry and the credential's next
// refresh time less ExpiryMargin (scaled down for short-lived tokens). A
// provider may revoke a token the moment it issues the next one, so a
// consumer that keeps a token until the advertised expiry never uses one the
// broker has replaced. A credential the broker does not refresh by itself
// (needs_reauth, disabled) advertises the provider's expiry. Zero when c has
// no token or neither time is known.
func AdvertisedExpiry(c *tokenkeeper.Credential) time.Time {
	if c.Token == nil {
		return time.Time{}
	}
	var lifetime time.Duration
	if !c.Token.ExpiresAt.IsZero() && !c.LastRefreshAt.IsZero() {
		lifetime = c.Token.ExpiresAt.Sub(c.LastRefreshAt)
	}
	return advertised(c.Token.ExpiresAt, c.NextRefreshAt, c.Status, lifetime)
}

func advertised(provider, next time.Time, status tokenkeeper.Status, lifetime time.Duration) time.Time {
	if !replaceable(status) || next.IsZero() {
		return provider
	}
	e := next.Add(-margin(lifetime))
	if !provider.IsZero() && provider.Before(e) {
		return provider
	}
	return e
}

// entry is a cached view of one credential: what a read needs, opened once.
type entry struct {
	id            string
	name          string
	token         *tokenkeeper.Token
	status        tokenkeeper.Status
	lastErrorCode string
	lifetime      time.Duration // of the current token, as obtained
	// expiresAt is the advertised expiry of token (AdvertisedExpiry),
	// advertisedLife the advertised life it had when obtained, and
	// replaceAt when the broker plans to replace it (zero: never): an
	// active credential at its refresh time or its expiry, whichever comes
	// first, a failing one at its next retry.
	expiresAt      time.Time
	advertisedLife time.Duration
	replaceAt      time.Time
	version        int64
	// checkAfter is when the cached state may be stale (the credential's
	// refresh time has passed and another process may have refreshed it): a
	// read after it reloads the credential from the store once.
	checkAfter time.Time
	// revalidateAt, when not zero, is when a read starts a reload in the
	// background and answers from the entry without waiting: set when
	// checkAfter is the cache's maxAge bound (nothing is known to change
	// before it), a quarter of maxAge before it, so that an entry read
	// steadily is reloaded before it must be and no read waits for the
	// store only because the entry is old.
	revalidateAt time.Time
	sv           Served // what reads are answered with: served
}

// cache holds one entry per credential name.
type cache struct {
	// maxAge bounds how long an entry is trusted without a reload, so that
	// without change notifications another process's edits and deletions
	// still show within it.
	maxAge time.Duration
	// entries maps names to *entry, which are never mutated: a change
	// stores a new one. Readers take no lock.
	entries memo.Map[string, *entry]
}

func newCache(maxAge time.Duration) *cache {
	return &cache{maxAge: maxAge}
}

func (c *cache) get(name string) *entry {
	e, _ := c.entries.Load(name)
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
	if cred.Token != nil {
		e.expiresAt = AdvertisedExpiry(cred)
		if !e.expiresAt.IsZero() && !cred.LastRefreshAt.IsZero() {
			e.advertisedLife = e.expiresAt.Sub(cred.LastRefreshAt)
		}
		switch cred.Status {
		case tokenkeeper.StatusActive:
			// Refreshed at its time, or at once when it has expired.
			e.replaceAt = cred.Token.ExpiresAt
			if !cred.NextRefreshAt.IsZero() && (e.replaceAt.IsZero() || cred.NextRefreshAt.Before(e.replaceAt)) {
				e.replaceAt = cred.NextRefreshAt
			}
		case tokenkeeper.StatusError:
			// Retried on its backoff schedule, and not before.
			e.replaceAt = cred.NextRefreshAt
		}
	}
	// Reload once the refresh time has passed (a little later, so that the
	// local refresher usually commits first) or the advertised expiry is
	// less than MinServedLife away, whichever comes first, or within a
	// second while the credential is not healthy or has no usable token.
	e.checkAfter = cred.NextRefreshAt.Add(250 * time.Millisecond)
	if !e.expiresAt.IsZero() {
		e.checkAfter = minTime(e.checkAfter, e.expiresAt.Add(-MinServedLife))
	}
	if cred.Status != tokenkeeper.StatusActive || cred.Token == nil || e.checkAfter.Before(now) {
		e.checkAfter = now.Add(time.Second)
	}
	aged := now.Add(c.maxAge)
	e.checkAfter = minTime(e.checkAfter, aged)
	if cred.Token != nil && !cred.Token.ExpiresAt.IsZero() && cred.Token.ExpiresAt.Before(e.checkAfter) {
		e.checkAfter = cred.Token.ExpiresAt
	}
	if e.checkAfter.Equal(aged) && cred.Status == tokenkeeper.StatusActive && cred.Token != nil {
		e.revalidateAt = aged.Add(-c.maxAge / 4)
	}
	e.sv = Served{Name: e.name, Token: e.token, ExpiresAt: e.expiresAt, Status: e.status, LastErrorCode: e.lastErrorCode}
	kept := e
	c.entries.Update(cred.Name, func(old *entry, ok bool) (*entry, bool) {
		if ok && old.id == cred.ID && old.version > cred.Version {
			kept = old
			return nil, false
		}
		return e, true
	}, nil)
	return kept
}

// replace stores the state of cred like put, but only if the cache already
// holds an entry for its name.
func (c *cache) replace(cred *tokenkeeper.Credential, now time.Time) {
	if c.get(cred.Name) != nil {
		c.put(cred, now)
	}
}

// len returns how many entries the cache holds.
func (c *cache) len() int {
	return c.entries.Len()
}

// Cached returns how many credentials the token cache holds: those read
// (or refreshed on a caller's behalf) since they last changed elsewhere.
func (r *Refresher) Cached() int { return r.cache.len() }

// retryLater postpones the next reload of e, unless it was replaced.
func (c *cache) retryLater(e *entry, at time.Time) {
	c.entries.Update(e.name, func(old *entry, ok bool) (*entry, bool) {
		if !ok || old != e {
			return nil, false
		}
		cp := *e
		cp.checkAfter = at
		return &cp, true
	}, nil)
}

// claimRevalidation reports whether the caller is the one to reload e in
// the background: the first to ask since e was stored. It stores a copy of
// e without revalidateAt, unless e was replaced.
func (c *cache) claimRevalidation(e *entry) bool {
	claimed := false
	c.entries.Update(e.name, func(old *entry, ok bool) (*entry, bool) {
		if !ok || old != e {
			return nil, false
		}
		cp := *e
		cp.revalidateAt = time.Time{}
		claimed = true
		return &cp, true
	}, nil)
	return claimed
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (c *cache) invalidate(name string) {
	c.entries.Delete(name)
}

// Forget drops the cached state of a credential; call it after the
// credential was changed or deleted.
func (r *Refresher) Forget(name string) { r.cache.invalidate(name) }

// left returns how much advertised life e's token has at now: a long time
// for a token without a known expiry, a negative one without a token.
func (e *entry) left(now time.Time) time.Duration {
	if e.token == nil || e.token.AccessToken == "" {
		return -1
	}
	if e.expiresAt.IsZero() {
		return math.MaxInt64
	}
	return e.expiresAt.Sub(now)
}

// Token returns the current token of the named credential and the expiry to
// advertise with it (Served.ExpiresAt), from memory when possible. The
// served token has at least MinServedLife, and at least minTTL, of
// advertised life left.
//
// A token with less than MinServedLife left is replaced first: the read
// waits for the broker's planned replacement (at most ExpiryMargin and
// MinServedLife after the advertised expiry; concurrent readers share it)
// rather than replace the token while others may still use it. A token with
// less than minTTL left is refreshed at once, concurrent readers sharing the
// refresh: with a provider that revokes a token when it issues the next,
// this cuts short the token others hold, so ask for no more than needed.
// When the credential cannot produce a valid token the error is ENOTREADY
// and Served still names the status and last error code. While the store is
// unreachable (or slow: a read holding a cached token waits for it at most
// 200 ms) a cached token is served until its advertised expiry, never
// beyond: another replica may still reach the store and replace it. Returns ENOTFOUND, EINVALID (minTTL longer than the
// advertised life of this credential's tokens), ENOTREADY or EUNAVAILABLE.
// The Served is shared with other reads: never modify it.
func (r *Refresher) Token(ctx context.Context, name string, minTTL time.Duration) (*Served, error) {
	now := r.now()
	e := r.cache.get(name)
	if e == nil || now.After(e.checkAfter) {
		// With a valid token in hand, wait only briefly for the store.
		wait := r.cfg.StoreTimeout
		if e != nil && e.token.Valid(now, MinServedLife) {
			wait = min(wait, staleWait)
		}
		fresh, err := r.load(ctx, name, wait)
		switch {
		case err == nil:
			e = fresh
		case e != nil && tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND && e.token.Valid(now, MinServedLife):
			// The store is unreachable: keep serving the cached token
			// while it is valid, and look again in a second.
			r.cache.retryLater(e, now.Add(time.Second))
		default:
			return nil, err
		}
	}
	if !e.revalidateAt.IsZero() && now.After(e.revalidateAt) && r.cache.claimRevalidation(e) {
		// Old, not yet stale: answer from it, reload it for later reads.
		r.loadShared(context.WithoutCancel(ctx), name)
	}
	if e.status == tokenkeeper.StatusDisabled {
		// Switched off by an operator: no token is served, valid or not.
		return e.served(), notReady(e)
	}
	need := max(MinServedLife, minTTL)
	if e.left(now) >= need {
		return e.served(), nil
	}
	if minTTL > 0 && e.advertisedLife > 0 && minTTL >= e.advertisedLife {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "min_ttl %s is longer than the life the broker advertises for this credential's tokens (%s)",
			minTTL, e.advertisedLife.Round(time.Second))
	}
	early := e.left(now) >= MinServedLife // only min_ttl asks for more
	switch {
	case early && e.token.Valid(now, MinServedLife):
		// The caller asked for more life than is left: refresh now.
	case e.token == nil && e.status == tokenkeeper.StatusActive:
		// Never refreshed yet: refresh now.
	case replaceable(e.status) && !e.replaceAt.IsZero():
		// The token is due: wait for its planned replacement, so that no
		// one holding it loses it before its advertised expiry, and never
		// longer than the margin allows (a failing credential whose next
		// retry is further away answers at once).
		wait := e.replaceAt.Sub(now)
		if wait > margin(e.lifetime)+MinServedLife+100*time.Millisecond {
			return e.served(), notReady(e)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "waiting for the replacement of the token of %q: %v", name, ctx.Err())
			}
		}
	default:
		return e.served(), notReady(e)
	}
	// Refresh, sharing the attempt, unless the store already holds a newer
	// token (another replica refreshed it).
	var seen string
	if e.token != nil {
		seen = e.token.AccessToken
	}
	c, err := r.shared(ctx, name, seen, false)
	if err != nil {
		return nil, err
	}
	now = r.now()
	e = r.cache.put(c, now)
	if e.left(now) >= MinServedLife {
		return e.served(), nil
	}
	if e.token.Valid(now, MinServedLife) && replaceable(e.status) && !e.replaceAt.IsZero() && e.replaceAt.Sub(now) >= MinServedLife {
		// A token so short-lived (a few seconds) that even a new one has
		// less than a second of advertised life left: advertise one second,
		// which the broker's schedule still leaves it.
		sv := *e.served()
		sv.ExpiresAt = now.Add(MinServedLife)
		return &sv, nil
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
	switch e.status {
	case tokenkeeper.StatusNeedsReauth:
		msg += "; update its secrets or force a refresh"
	case tokenkeeper.StatusDisabled:
		msg = fmt.Sprintf("credential %q is disabled: it serves no token until its status is set to active again", e.name)
	}
	return tokenkeeper.Errorf(tokenkeeper.ENOTREADY, "%s", msg)
}

// served returns what a read of e is answered with: one Served per entry,
// shared by its reads, so that a read allocates nothing.
func (e *entry) served() *Served {
	return &e.sv
}

// staleWait is the longest a read that holds a valid cached token waits for
// the store to confirm it is current; the reload goes on in the background
// and the cached token is served meanwhile.
const staleWait = 200 * time.Millisecond

// load reads a credential from the store into the cache; concurrent loads of
// one name share a query, which takes at most StoreTimeout. The caller waits
// at most wait (and no longer than ctx) and then gets EUNAVAILABLE.
func (r *Refresher) load(ctx context.Context, name string, wait time.Duration) (*entry, error) {
	ch := r.loadShared(ctx, name)
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

// loadShared starts loading the named credential into the cache, or joins
// the load in progress, and returns where its outcome arrives (an *entry);
// the load goes on, bounded by StoreTimeout, if no one waits for it.
func (r *Refresher) loadShared(ctx context.Context, name string) <-chan singleflight.Result {
	return r.group.DoChan("load\x00"+name, func() (any, error) {
		// Bounded: a read never waits long for a database that is down.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StoreTimeout)
		defer cancel()
		c, err := r.store.Credential(ctx, name)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.EUNAVAILABLE && ctx.Err() == nil {
			// Once more, on a new connection: after a database restart
			// the pooled connections fail once each.
			c, err = r.store.Credential(ctx, name)
		}
		if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
			// Deleted elsewhere: the entry goes at once, as on a
			// notification, whether a read waits for this load or a
			// background reload runs it.
			r.cache.invalidate(name)
		}
		if err != nil {
			return nil, r.storeTimeout(ctx, err)
		}
		return r.cache.put(c, r.now()), nil
	})
}

// Refresh forces a refresh of the named credential, whatever its schedule and
// status (a needs_reauth credential is tried again), and returns the
// credential as committed. With a non-empty rejected token — a consumer
// reports that the resource server refused it — it refreshes only if that is
// still the current, unexpired token in the store, and otherwise returns the
// current state: many consumers reporting one rejected token cause one
// refresh. If that refresh fails, the rejected token is committed as expired
// (its expiry cut to the time of the attempt), so that no replica serves it
// again; reads answer ENOTREADY naming the status until a new token arrives.
// Concurrent calls in this process share one attempt; a refresh already
// running elsewhere is waited for rather than repeated.
//
// The provider call is not cancelled with ctx: an answer already on its way
// holds a rotated refresh token that must be committed. Store reads before
// the provider call take at most StoreTimeout each. Returns ENOTFOUND,
// ECONFLICT (disabled) or EUNAVAILABLE (the store is unreachable, ctx ended
// first, or Run has shut down).
func (r *Refresher) Refresh(ctx context.Context, name, rejected string) (*tokenkeeper.Credential, error) {
	return r.shared(ctx, name, rejected, rejected != "")
}

// shared runs a forced refresh of name, shared by concurrent callers: only
// if seen is still the current token when seen is not empty. With reject,
// seen was reported as rejected (see Refresh); without, a read found it due
// and a failed attempt leaves it as it is.
func (r *Refresher) shared(ctx context.Context, name, seen string, reject bool) (*tokenkeeper.Credential, error) {
	key := "refresh\x00" + name
	if reject {
		key = "reject\x00" + name
	}
	ch := r.group.DoChan(key, func() (any, error) {
		if !r.track() {
			return nil, tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "the refresher is shutting down")
		}
		defer r.wg.Done()
		return r.forced(context.WithoutCancel(ctx), name, seen, reject)
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

func (r *Refresher) forced(ctx context.Context, name, rejected string, reject bool) (*tokenkeeper.Credential, error) {
	// The commit is not bounded by the lease: once the provider has answered,
	// the result may hold the only copy of a rotated refresh token, and a
	// late commit is still taken if nobody claimed the credential since (the
	// fencing version refuses it otherwise). It retries until then, or until
	// Run abandons commits at shutdown. (Bounded by the lease, a commit on a
	// database slowed to seconds per write lost such a token.)
	commitBase := ctx
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Lease)
	defer cancel()
	// The provider call ends when Run abandons calls at shutdown, the commit
	// when it abandons commits.
	callCtx, stopCall := context.WithCancel(ctx)
	defer stopCall()
	defer context.AfterFunc(r.calls, stopCall)()
	commitCtx, stopCommit := context.WithCancel(commitBase)
	defer stopCommit()
	defer context.AfterFunc(r.commits, stopCommit)()

	rctx, rcancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	c, err := r.store.Credential(rctx, name)
	err = r.storeTimeout(rctx, err)
	rcancel()
	if err != nil {
		return nil, err
	}
	if rejected != "" && !r.stillCurrent(c, rejected, reject) {
		// Already replaced (or, reported, already withdrawn): the caller
		// only needs the current state.
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
			if r.cfg.OnClaim != nil {
				r.cfg.OnClaim(1)
			}
			if rejected != "" && !r.stillCurrent(claimed, rejected, reject) {
				// Replaced between our read and our claim.
				return r.release(ctx, claimed)
			}
			if updated := r.refresh(callCtx, commitCtx, claimed, reject, false); updated != nil {
				return updated, nil
			}
			// Fenced out: whoever won has the newer state.
			return r.store.Credential(ctx, name)
		}
		if tokenkeeper.ErrorCode(err) != tokenkeeper.ECONFLICT {
			return nil, err
		}
		// Another worker is refreshing it: wait for its commit and use that.
		// When that worker is this process's loop, its result need not
		// wait for others to share the commit.
		if r.batch != nil {
			r.batch.hurry(c.ID)
		}
		if c, err = r.awaitRelease(ctx, name); err != nil {
			return nil, err
		}
		if c.LeaseOwner == "" {
			if reject && r.stillCurrent(c, rejected, true) {
				// That was a read's refresh, which failed and left the
				// rejected token in place: try again, and withdraw it.
				continue
			}
			r.cache.put(c, r.now())
			return c, nil
		}
		// Its lease expired without a commit (the worker died): claim it.
	}
}

// stillCurrent reports whether seen is c's current token; with reject, also
// that it has not expired (a rejected token withdrawn by a failed refresh
// has).
func (r *Refresher) stillCurrent(c *tokenkeeper.Credential, seen string, reject bool) bool {
	return isToken(c.Token, seen) && (!reject || c.Token.Valid(r.now(), 0))
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
		Claimed: c, // an operator's edit meanwhile: released at once, or on top of it
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
