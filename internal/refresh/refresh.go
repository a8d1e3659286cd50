// Package refresh keeps every credential's access token valid: a background
// loop claims credentials whose refresh time has come, asks the provider for
// a new token through internal/oauth and commits the result under a lease and
// a fencing version; a cache serves the current tokens from memory.
//
// One Refresher runs per broker process. Several processes may share one
// database: the store's claims make sure a refresh token is presented by one
// worker at a time (invariant 1), and a result is committed — a rotated
// refresh token included — before the new access token is served. With a
// store that implements tokenkeeper.ChangeNotifier, Follow keeps each
// process's cache and schedule in step with the others' changes; without
// it, they catch up within PollInterval.
//
// A token is served with an advertised expiry (AdvertisedExpiry): the
// earlier of the provider's expiry and the moment the broker will replace
// it, less ExpiryMargin, since a provider may revoke a token as soon as it
// issues the next one. A read in a token's last second waits for that
// replacement rather than cut the token short for others.
//
// While the store is unreachable, cached tokens are served until their
// advertised expiry (a read waits at most 200 ms for the store when it holds
// one, StoreTimeout otherwise), refreshes pause, and the loop retries with
// backoff, logging the outage once and its end once.
//
// All methods of Refresher are safe for concurrent use.
package refresh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
	"github.com/tokenkeeper/tokenkeeper/internal/lowprio"
	"github.com/tokenkeeper/tokenkeeper/internal/netguard"
	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// Defaults of Config.
const (
	DefaultConcurrency     = 16
	DefaultProviderTimeout = 10 * time.Second
	DefaultMaxLead         = 5 * time.Minute
	DefaultLeadFraction    = 1.0 / 3
	DefaultBackoffMin      = time.Second
	DefaultBackoffMax      = 5 * time.Minute
	DefaultRetryAfterMax   = time.Hour
	DefaultLifetime        = time.Hour
	DefaultPollInterval    = 30 * time.Second
)

// Config configures a Refresher. Only Store is required.
type Config struct {
	Store  tokenkeeper.Store
	Logger *slog.Logger
	// Owner names this process in leases; default DefaultOwner().
	Owner string
	// Concurrency bounds the refreshes in flight in this process.
	Concurrency int
	// ProviderTimeout bounds one provider round trip.
	ProviderTimeout time.Duration
	// Lease is how long a claim is held; it must outlive ProviderTimeout so
	// that a live worker never loses its claim mid-call. Default
	// ProviderTimeout + 5s.
	Lease time.Duration
	// HTTPClient calls the providers; default a client with ProviderTimeout
	// that keeps Concurrency idle connections per host.
	HTTPClient *http.Client
	// DefaultLifetime is assumed for tokens whose response has no expires_in.
	DefaultLifetime time.Duration
	// LeadFraction and MaxLead set the default refresh lead for credentials
	// without their own: min(lifetime × LeadFraction, MaxLead).
	LeadFraction float64
	MaxLead      time.Duration
	// BackoffMin and BackoffMax bound the exponential backoff after temporary
	// failures; a provider's Retry-After is honoured up to RetryAfterMax.
	BackoffMin, BackoffMax, RetryAfterMax time.Duration
	// PollInterval is the longest the loop sleeps without a known due time;
	// it only catches changes made by other processes (one indexed query).
	// It also bounds how long a cached credential is served without asking
	// the store, so that without change notifications (Follow) other
	// processes' edits and deletions show within it.
	PollInterval time.Duration
	// StoreTimeout bounds a store query on the read path (default 2s), so
	// that a read never blocks for long while the database is down.
	StoreTimeout time.Duration
	// ShutdownTimeout bounds how long Run waits, after its context ends, for
	// refreshes in flight to commit (default ProviderTimeout + 5s).
	ShutdownTimeout time.Duration
	// CommitBatchWait is how long a background refresh's result waits for
	// others to share its commit transaction, on a store that is a
	// tokenkeeper.RefreshBatchCommitter (default DefaultCommitBatchWait;
	// negative: every result is committed on its own). Results that a
	// caller waits for (forced refreshes, reads) do not wait, nor do
	// results once half of Concurrency are pending.
	CommitBatchWait time.Duration
	// ClaimBatchWait is the least time between two claims of due
	// credentials while refreshes are in flight, so that at a steady rate
	// one claim (a write transaction: a scan of the due index, a commit)
	// serves the credentials that came due meanwhile rather than each
	// alone (default DefaultClaimBatchWait; negative: claim on every
	// pass). With nothing in flight the loop claims at once, and so it
	// does with a quarter of the slots free after a claim that took every
	// free slot (a backlog). Forced refreshes and reads never wait for it.
	ClaimBatchWait time.Duration
	// EventPruneInterval is how often Run deletes events past the store's
	// retention, when the store is an EventPruner (default
	// DefaultEventPruneInterval; negative: never).
	EventPruneInterval time.Duration
	// VacuumInterval is how often Run asks the store to vacuum, when it is
	// a Vacuumer (default DefaultVacuumInterval; negative: never).
	VacuumInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnAttempt, if set, is called after every committed attempt (and every
	// fenced one) with the event recorded. It must not block.
	OnAttempt func(c *tokenkeeper.Credential, ev *tokenkeeper.Event)
	// OnClaim, if set, is told how many leases each claim obtained
	// (metrics). It must not block.
	OnClaim func(n int)
	// KeepAliveInterval is how often a grant whose access tokens never
	// expire, and whose profile knows no idle limit for its refresh
	// tokens, is refreshed to keep it alive (and to learn early that it
	// was revoked); default catalog.DefaultKeepAlive.
	KeepAliveInterval time.Duration
	// MinKeepAlive is the shortest keep-alive interval, whatever a profile
	// says; default one minute.
	MinKeepAlive time.Duration
	// Profiles looks up the profile of a provider's preset; default
	// catalog.Lookup.
	Profiles func(name string) (*catalog.Profile, error)
	// StartAttempt, if set, is called before each provider call with the
	// claimed credential (metrics, tracing). It returns the context for
	// the call and a function, called with the attempt's event once the
	// provider answered (or not). It must not block.
	StartAttempt func(ctx context.Context, c *tokenkeeper.Credential) (context.Context, func(ev *tokenkeeper.Event))
}

// Refresher refreshes credentials in the background and serves their tokens.
type Refresher struct {
	cfg    Config
	store  tokenkeeper.Store
	logger *slog.Logger
	now    func() time.Time

	wake  chan struct{} // capacity 1: a pending wake-up for the loop
	slots chan struct{} // one token per refresh in flight
	wg    sync.WaitGroup
	group singleflight.Group // per credential name: forced refreshes and cache loads

	cache *cache
	batch *batcher // nil: results are committed one by one

	claims atomic.Int64 // numbers each claim's owner string
	// nextPass is when the loop plans its next pass, in Unix nanoseconds of
	// the refresher's clock; 0 while a pass runs or before Run. A change
	// notification wakes the loop only if it may make work due sooner.
	nextPass atomic.Int64

	// calls and commits are the contexts of all refresh work: Run's
	// shutdown cancels calls (provider requests not yet answered) after
	// ShutdownTimeout, and commits a little later.
	calls, commits               context.Context
	abandonCalls, abandonCommits context.CancelFunc

	mu       sync.Mutex
	stopping bool // guarded by mu: Run is shutting down; no new work is tracked in wg

	// Used only by the Run goroutine: consecutive failures to reach the
	// store, since when, and when that was last logged.
	loopFailures              int
	loopDownSince, loopLogged time.Time
	// lastClaim is when the loop last claimed due credentials (see
	// ClaimBatchWait), and claimedFull whether that claim took every free
	// slot.
	lastClaim   time.Time
	claimedFull bool
}

// DefaultClaimBatchWait is the default Config.ClaimBatchWait.
const DefaultClaimBatchWait = 50 * time.Millisecond

// claimOwner returns a lease owner unique to one claim: this process's name
// and a sequence number. Two claims in one process (a background refresh and
// a forced one) thus exclude each other like claims of two processes.
func (r *Refresher) claimOwner() string {
	return fmt.Sprintf("%s#%d", r.cfg.Owner, r.claims.Add(1))
}

// New returns a Refresher; it starts nothing until Run is called.
func New(cfg Config) (*Refresher, error) {
	if cfg.Store == nil {
		return nil, errors.New("refresh: a store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Owner == "" {
		cfg.Owner = DefaultOwner()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.ProviderTimeout <= 0 {
		cfg.ProviderTimeout = DefaultProviderTimeout
	}
	if cfg.Lease <= 0 {
		cfg.Lease = cfg.ProviderTimeout + 5*time.Second
	}
	if cfg.Lease <= cfg.ProviderTimeout {
		return nil, fmt.Errorf("refresh: lease %s must be longer than the provider timeout %s", cfg.Lease, cfg.ProviderTimeout)
	}
	if cfg.HTTPClient == nil {
		// Concurrency refreshes may call one provider at once: keep as
		// many connections to it (Go's default keeps 2, and each refresh
		// beyond them paid a new connection).
		cfg.HTTPClient = netguard.NewHTTPClient(cfg.ProviderTimeout, true)
		tr := cfg.HTTPClient.Transport.(*http.Transport)
		tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, cfg.Concurrency)
	}
	if cfg.KeepAliveInterval <= 0 {
		cfg.KeepAliveInterval = catalog.DefaultKeepAlive
	}
	if cfg.MinKeepAlive <= 0 {
		cfg.MinKeepAlive = time.Minute
	}
	if cfg.Profiles == nil {
		cfg.Profiles = catalog.Lookup
	}
	if cfg.DefaultLifetime <= 0 {
		cfg.DefaultLifetime = DefaultLifetime
	}
	if cfg.LeadFraction <= 0 || cfg.LeadFraction >= 1 {
		cfg.LeadFraction = DefaultLeadFraction
	}
	if cfg.MaxLead <= 0 {
		cfg.MaxLead = DefaultMaxLead
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.RetryAfterMax <= 0 {
		cfg.RetryAfterMax = DefaultRetryAfterMax
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 2 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = cfg.ProviderTimeout + 5*time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EventPruneInterval == 0 {
		cfg.EventPruneInterval = DefaultEventPruneInterval
	}
	if cfg.VacuumInterval == 0 {
		cfg.VacuumInterval = DefaultVacuumInterval
	}
	r := &Refresher{
		cfg:    cfg,
		store:  cfg.Store,
		logger: cfg.Logger.With("component", "refresher", "owner", cfg.Owner),
		now:    cfg.Now,
		wake:   make(chan struct{}, 1),
		slots:  make(chan struct{}, cfg.Concurrency),
	}
	r.cache = newCache(cfg.PollInterval)
	if bc, ok := cfg.Store.(tokenkeeper.RefreshBatchCommitter); ok && cfg.CommitBatchWait >= 0 {
		if cfg.CommitBatchWait == 0 {
			cfg.CommitBatchWait = DefaultCommitBatchWait
		}
		r.cfg.CommitBatchWait = cfg.CommitBatchWait
		r.batch = &batcher{store: bc, wait: cfg.CommitBatchWait, timeout: cfg.StoreTimeout, kick: make(chan struct{}, 1),
			enough: max(1, cfg.Concurrency/2)}
	}
	if cfg.ClaimBatchWait == 0 {
		r.cfg.ClaimBatchWait = DefaultClaimBatchWait
	}
	r.calls, r.abandonCalls = context.WithCancel(context.Background())
	r.commits, r.abandonCommits = context.WithCancel(context.Background())
	return r, nil
}

// Owner returns the name this refresher uses in leases.
func (r *Refresher) Owner() string { return r.cfg.Owner }

// Wake makes the loop look for due credentials now; call it after a
// credential was created or changed.
func (r *Refresher) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run claims and refreshes due credentials until ctx is done; call it once.
// It then stops claiming and waits for the refreshes in flight, background
// and forced ones alike: a provider answer already received is committed.
// After ShutdownTimeout the provider calls not yet answered are cancelled
// (their leases expire and another worker takes the credentials), and
// commits still retrying get StoreTimeout more before they are given up
// too. Run thus returns within ShutdownTimeout + StoreTimeout of ctx's end,
// and returns nil. After Run has returned, Refresh fails with EUNAVAILABLE.
//
// With a store that is an EventPruner, Run also deletes events past the
// store's retention every EventPruneInterval, in small batches beside the
// refreshes; with a store that is a Vacuumer, it asks it to vacuum every
// VacuumInterval.
func (r *Refresher) Run(ctx context.Context) error {
	r.logger.Info("refresher started", "concurrency", r.cfg.Concurrency, "lease", r.cfg.Lease.String())
	defer r.logger.Info("refresher stopped")
	defer r.shutdown()
	if p, ok := r.store.(EventPruner); ok && r.cfg.EventPruneInterval > 0 {
		pctx, stop := context.WithCancel(ctx)
		done := lowprio.Go(func() { r.pruneEventsLoop(pctx, p) })
		defer func() { stop(); <-done }()
	}
	if v, ok := r.store.(Vacuumer); ok && r.cfg.VacuumInterval > 0 {
		vctx, stop := context.WithCancel(ctx)
		done := lowprio.Go(func() { r.vacuumLoop(vctx, v) })
		defer func() { stop(); <-done }()
	}

	// The pruning and the vacuuming run on threads of lower CPU priority
	// (package lowprio); the claims and commits do not: a niced thread
	// yields to every other process's threads too, and on a host busy
	// elsewhere tokens would expire unrefreshed.
	r.loop(ctx)
	return nil
}

// loop claims due credentials and starts their refreshes until ctx ends.
func (r *Refresher) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.wake:
		}
		r.nextPass.Store(0)
		sleep := r.pass(ctx)
		r.nextPass.Store(r.now().Add(sleep).UnixNano())
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(sleep)
	}
}

// track counts one refresh in wg, unless Run is shutting down.
func (r *Refresher) track() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return false
	}
	r.wg.Add(1)
	return true
}

// shutdown waits for the tracked refreshes, abandoning provider calls after
// ShutdownTimeout and commits StoreTimeout later.
func (r *Refresher) shutdown() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	r.nextPass.Store(0)
	defer r.abandonCommits()
	defer r.abandonCalls()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(r.cfg.ShutdownTimeout):
	}
	r.logger.Warn("abandoning refreshes still waiting for the provider at shutdown; their leases will expire", "in_flight", len(r.slots))
	r.abandonCalls()
	select {
	case <-done:
		return
	case <-time.After(r.cfg.StoreTimeout):
	}
	r.logger.Error("abandoning refresh results still not committed at shutdown")
	r.abandonCommits()
	<-done
}

// pass claims what is due and returns how long to sleep before the next one.
func (r *Refresher) pass(ctx context.Context) time.Duration {
	free := cap(r.slots) - len(r.slots)
	// After a claim that took every free slot (a backlog: more were due),
	// a quarter of the slots free is worth a claim at once: waiting would
	// hold the refresh rate below what the slots allow.
	backlog := r.claimedFull && free >= max(1, cap(r.slots)/4)
	if free > 0 && len(r.slots) > 0 && r.cfg.ClaimBatchWait > 0 && !backlog {
		// Refreshes in flight: the credentials due now wait a moment for
		// those coming due, to be claimed together.
		if since := time.Since(r.lastClaim); since < r.cfg.ClaimBatchWait {
			return r.cfg.ClaimBatchWait - since
		}
	}
	if free > 0 {
		r.lastClaim = time.Now()
		now := r.now()
		// A claim that takes long eats into the lease the provider call
		// needs (attempt cuts the call short rather than outlive the lease).
		cctx, cancel := context.WithTimeout(ctx, max(r.cfg.Lease-r.cfg.ProviderTimeout, r.cfg.StoreTimeout))
		claimed, err := r.store.ClaimDue(cctx, r.claimOwner(), now, r.cfg.Lease, free)
		cancel()
		if err != nil {
			return r.loopFailed(ctx, "claim due credentials", err)
		}
		r.loopRecovered()
		if r.cfg.OnClaim != nil && len(claimed) > 0 {
			r.cfg.OnClaim(len(claimed))
		}
		for _, c := range claimed {
			r.slots <- struct{}{}
			if !r.track() { // unreachable: only Run's shutdown sets stopping
				<-r.slots
				continue
			}
			go func() {
				defer r.wg.Done()
				defer func() { <-r.slots; r.Wake() }()
				r.refresh(r.calls, r.commits, c, false, true)
			}()
		}
		r.claimedFull = len(claimed) == free
		if r.claimedFull {
			return 0 // there may be more due; loop once a slot frees (Wake) or now
		}
	}
	if len(r.slots) == cap(r.slots) {
		return r.cfg.PollInterval // a finishing worker wakes the loop
	}
	nctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	next, ok, err := r.store.NextRefreshAt(nctx)
	cancel()
	if err != nil {
		return r.loopFailed(ctx, "find next refresh time", err)
	}
	r.loopRecovered()
	if !ok {
		return r.cfg.PollInterval
	}
	return min(max(next.Sub(r.now()), 0), r.cfg.PollInterval)
}

// loopBackoffMax caps the loop's wait between attempts while the store is
// unreachable.
const loopBackoffMax = 5 * time.Second

// loopFailed notes a failure of the loop to reach the store and returns how
// long to wait before the next pass: exponential from BackoffMin up to
// loopBackoffMax (or PollInterval if shorter). It logs the first failure
// and then at most once a minute, so that an outage does not flood the log.
func (r *Refresher) loopFailed(ctx context.Context, op string, err error) time.Duration {
	if ctx.Err() != nil {
		return 0 // shutting down
	}
	r.loopFailures++
	now := time.Now()
	if r.loopFailures == 1 {
		r.loopDownSince, r.loopLogged = now, now
		r.logger.Warn("refreshes paused: the store is unreachable", "op", op, "err", err)
	} else if now.Sub(r.loopLogged) >= time.Minute {
		r.loopLogged = now
		r.logger.Warn("refreshes still paused: the store is unreachable", "op", op, "err", err,
			"down_for", now.Sub(r.loopDownSince).Round(time.Second).String(), "attempts", r.loopFailures)
	}
	wait := float64(r.cfg.BackoffMin) * math.Pow(2, float64(min(r.loopFailures-1, 30)))
	d := time.Duration(math.Min(wait, float64(min(loopBackoffMax, r.cfg.PollInterval))))
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// loopRecovered notes that the loop reached the store.
func (r *Refresher) loopRecovered() {
	if r.loopFailures > 0 {
		r.logger.Info("refreshes resumed: the store is reachable again",
			"down_for", time.Since(r.loopDownSince).Round(time.Millisecond).String(), "attempts", r.loopFailures)
		r.loopFailures = 0
	}
}

// refresh performs one attempt for a claimed credential and commits it. The
// provider call ends with callCtx, the commit retries until commitCtx ends.
// With rejected set, a consumer reported c's current access token as
// rejected by the resource server: if the attempt fails, the token is
// committed with its expiry cut to now, so that no replica serves it again
// (they all read it from the store) until a new token arrives. It returns
// nil when nothing was committed. A scheduled attempt (not a forced one)
// of a grant whose profile has a token check may be that check instead.
func (r *Refresher) refresh(callCtx, commitCtx context.Context, c *tokenkeeper.Credential, rejected, scheduled bool) *tokenkeeper.Credential {
	var res *tokenkeeper.RefreshResult
	if scheduled && !rejected {
		res = r.checkInstead(callCtx, c)
	}
	if res == nil {
		res = r.attempt(callCtx, c)
	}
	if res == nil {
		return nil
	}
	if res.Token == nil && callCtx.Err() != nil {
		// Abandoned (shutdown): the provider may still be processing the
		// request, so the claim is kept until its lease expires rather than
		// released for another worker to present the same refresh token.
		r.logger.Warn("refresh abandoned before the provider answered; the credential is retried once its lease expires",
			"credential", c.Name, "lease_expires_at", c.LeaseExpiresAt.UTC().Format(time.RFC3339Nano))
		return nil
	}
	if rejected && res.Token == nil && c.Token != nil {
		t := *c.Token
		if t.ExpiresAt.IsZero() || t.ExpiresAt.After(res.LastRefreshAt) {
			t.ExpiresAt = res.LastRefreshAt
		}
		res.Token = &t
		res.Event.Message += "; the access token reported as rejected is no longer served"
	}
	return r.commit(commitCtx, c, res, !scheduled) // a forced result is waited for
}

// attempt asks the provider for a new token and builds the result to commit.
// The call never outlives the claim's lease, less a margin, since another
// worker may claim the credential once it has expired; attempt returns nil
// without calling when too little of the lease is left.
func (r *Refresher) attempt(ctx context.Context, c *tokenkeeper.Credential) *tokenkeeper.RefreshResult {
	cfg := r.oauthConfig(c)
	timeout := r.cfg.ProviderTimeout
	if !c.LeaseExpiresAt.IsZero() {
		margin := min(time.Second, (r.cfg.Lease-r.cfg.ProviderTimeout)/2)
		left := c.LeaseExpiresAt.Sub(r.now()) - margin
		if left < r.cfg.ProviderTimeout/10 {
			r.logger.Warn("claim obtained too late to call the provider within its lease; leaving the credential to the lease's expiry",
				"credential", c.Name, "lease_left", c.LeaseExpiresAt.Sub(r.now()).String())
			return nil
		}
		timeout = min(timeout, left)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var done func(*tokenkeeper.Event)
	if r.cfg.StartAttempt != nil {
		pctx, done = r.cfg.StartAttempt(pctx, c)
	}
	start := r.now()
	var tok *oauth.Token
	var err error
	if c.GrantType == tokenkeeper.GrantRefreshToken {
		tok, err = cfg.Refresh(pctx, c.RefreshToken)
	} else {
		tok, err = cfg.ClientCredentials(pctx)
	}
	now := r.now()
	latency := now.Sub(start)
	ev := &tokenkeeper.Event{
		CredentialID: c.ID, CredentialName: c.Name, Time: now, Kind: tokenkeeper.EventRefresh,
		Latency: latency, Actor: "refresher:" + r.cfg.Owner,
	}
	res := &tokenkeeper.RefreshResult{LastRefreshAt: now, Event: ev}
	if done != nil {
		defer done(ev)
	}
	if err == nil {
		t := &tokenkeeper.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, ExpiresAt: tok.Expiry}
		res.Token = t
		res.RefreshToken = tok.RefreshToken
		res.Status = tokenkeeper.StatusActive
		res.NextRefreshAt = r.schedule(c, t, now)
		ev.Outcome = tokenkeeper.OutcomeOK
		ev.Message = fmt.Sprintf("new token valid for %s", t.ExpiresAt.Sub(now).Round(time.Second))
		if tok.RefreshToken != "" && c.GrantType == tokenkeeper.GrantRefreshToken {
			ev.Message += ", refresh token rotated"
		}
		return res
	}
	res.LastErrorCode = oauth.Class(err)
	res.LastError = err.Error()
	ev.ErrorCode = res.LastErrorCode
	ev.Message = res.LastError
	res.FailureCount = c.FailureCount + 1
	if oauth.IsPermanent(err) {
		res.Status = tokenkeeper.StatusNeedsReauth
		res.NextRefreshAt = now // not claimed while needs_reauth
		ev.Outcome = tokenkeeper.OutcomeNeedsReauth
		return res
	}
	res.Status = tokenkeeper.StatusError
	res.NextRefreshAt = now.Add(r.backoff(res.FailureCount, oauth.RetryAfter(err)))
	ev.Outcome = tokenkeeper.OutcomeError
	return res
}

// commit writes res, retrying while the store is unreachable: the result may
// hold the only copy of a rotated refresh token. It gives up only when fenced
// out or when ctx ends. Urgent results (a caller waits) are committed at
// once; the others may wait CommitBatchWait to share a transaction.
func (r *Refresher) commit(ctx context.Context, c *tokenkeeper.Credential, res *tokenkeeper.RefreshResult, urgent bool) *tokenkeeper.Credential {
	log := r.logger.With("credential", c.Name)
	// The store commits on top of an operator's edit that left the grant
	// as claimed, and otherwise releases the lease at once (see
	// tokenkeeper.RefreshResult.Claimed).
	res.Claimed = c
	wait := 50 * time.Millisecond
	for {
		var updated *tokenkeeper.Credential
		var err error
		if r.batch != nil {
			updated, err = r.batch.complete(ctx, tokenkeeper.RefreshCommit{ID: c.ID, Owner: c.LeaseOwner, Version: c.Version, Result: res}, urgent)
		} else {
			updated, err = r.store.CompleteRefresh(ctx, c.ID, c.LeaseOwner, c.Version, res)
		}
		if err == nil {
			if urgent {
				r.cache.put(updated, r.now())
			} else {
				// A background refresh updates the cached state of a
				// credential someone reads, and caches no other: the
				// cache holds what is read, not every credential.
				r.cache.replace(updated, r.now())
			}
			r.logAttempt(log, updated, res)
			if r.cfg.OnAttempt != nil {
				r.cfg.OnAttempt(updated, res.Event)
			}
			return updated
		}
		switch tokenkeeper.ErrorCode(err) {
		case tokenkeeper.ECONFLICT, tokenkeeper.ENOTFOUND:
			// Someone else owns the credential now (our lease expired and it
			// was claimed again, an operator replaced its grant, or it was
			// deleted): their state wins. When the operator's edit fenced us
			// out, the store released our lease in the same transaction;
			// the loop looks again at once for what is due.
			log.Warn("refresh result discarded: credential changed or was claimed by another worker", "outcome", res.Event.Outcome)
			ev := *res.Event
			ev.Outcome = tokenkeeper.OutcomeFenced
			ev.Message = "result discarded: fenced out by a newer version"
			if tokenkeeper.ErrorCode(err) == tokenkeeper.ECONFLICT {
				if aerr := r.store.AddEvent(ctx, &ev); aerr != nil {
					log.Warn("record fenced event", "err", aerr)
				}
			}
			if r.cfg.OnAttempt != nil {
				r.cfg.OnAttempt(c, &ev)
			}
			r.cache.invalidate(c.Name)
			r.Wake()
			return nil
		}
		if ctx.Err() != nil {
			log.Error("refresh result not committed before shutdown", "err", err)
			return nil
		}
		log.Warn("commit refresh result, retrying", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

func (r *Refresher) logAttempt(log *slog.Logger, c *tokenkeeper.Credential, res *tokenkeeper.RefreshResult) {
	ev := res.Event
	attrs := []any{"outcome", ev.Outcome, "latency_ms", ev.Latency.Milliseconds()}
	switch ev.Outcome {
	case tokenkeeper.OutcomeOK:
		attrs = append(attrs, "expires_at", res.Token.ExpiresAt.UTC().Format(time.RFC3339), "next_refresh_at", res.NextRefreshAt.UTC().Format(time.RFC3339Nano))
		log.Debug("token refreshed", attrs...)
	case tokenkeeper.OutcomeNeedsReauth:
		log.Warn("credential needs re-authorization", append(attrs, "error_code", ev.ErrorCode, "err", ev.Message)...)
	default:
		log.Warn("refresh failed, will retry", append(attrs, "error_code", ev.ErrorCode, "err", ev.Message, "failures", res.FailureCount, "next_attempt_at", res.NextRefreshAt.UTC().Format(time.RFC3339Nano))...)
	}
}

// oauthConfig builds the provider request configuration of c.
func (r *Refresher) oauthConfig(c *tokenkeeper.Credential) *oauth.Config {
	style := oauth.AuthStyleHeader
	if c.AuthStyle == tokenkeeper.AuthStyleBody {
		style = oauth.AuthStyleBody
	}
	// The provider's token parameters, then the credential's own.
	var params url.Values
	if len(c.TokenParams)+len(c.Params) > 0 {
		params = url.Values{}
		for _, m := range []map[string]string{c.TokenParams, c.Params} {
			for k, v := range m {
				params.Set(k, v)
			}
		}
	}
	cfg := &oauth.Config{
		TokenURL: c.TokenURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret, AuthStyle: style,
		Scopes: c.Scopes, Params: params, HTTPClient: r.cfg.HTTPClient,
		DefaultLifetime: r.cfg.DefaultLifetime, Now: r.now,
	}
	// A provider made from a preset: the profile's departures from RFC
	// 6749 (body format, response paths, error classes, ...). The
	// provider's own token URL stays: an operator may have overridden it.
	if c.Preset != "" {
		if prof, err := r.cfg.Profiles(c.Preset); err == nil {
			if a, err := prof.Apply(c.TemplateVars); err == nil {
				a.Configure(cfg) // the profile's refresh URL only with its token URL
			}
		}
	}
	return cfg
}

// Lead returns how long before expiry a token of the given lifetime is
// refreshed for c: its own RefreshLead, or min(lifetime × LeadFraction,
// MaxLead). A lead at least as long as the lifetime is cut to half of it so
// that a credential is never refreshed in a loop.
func (r *Refresher) Lead(c *tokenkeeper.Credential, lifetime time.Duration) time.Duration {
	lead := c.RefreshLead
	if lead <= 0 {
		lead = min(time.Duration(float64(lifetime)*r.cfg.LeadFraction), r.cfg.MaxLead)
	}
	if lead >= lifetime {
		lead = lifetime / 2
	}
	return lead
}

// schedule returns when the token t, obtained at now, should be refreshed:
// its expiry less the lead, less up to 10% of the lead as jitter so that
// credentials created together spread out; and, for a grant whose
// provider's profile says its refresh tokens die when idle (or whose
// access tokens never expire), no later than the profile's keep-alive.
func (r *Refresher) schedule(c *tokenkeeper.Credential, t *tokenkeeper.Token, now time.Time) time.Time {
	lifetime := t.ExpiresAt.Sub(now)
	if lifetime <= 0 {
		return now.Add(r.cfg.BackoffMin) // an already expired token: try again shortly
	}
	lead := r.Lead(c, lifetime)
	jitter := time.Duration(mrand.Int64N(int64(lead/10) + 1))
	at := t.ExpiresAt.Add(-lead - jitter)
	if ka := r.keepAlive(c); ka > 0 && now.Add(ka).Before(at) {
		at = now.Add(ka)
	}
	return at
}

// keepAlive returns the keep-alive interval of c's profile (see
// catalog.Profile.KeepAlive: half the idle limit, or KeepAliveInterval when
// the tokens never expire and no limit is known), never under
// MinKeepAlive; 0 for a credential without a preset or without a refresh
// token.
func (r *Refresher) keepAlive(c *tokenkeeper.Credential) time.Duration {
	if c.Preset == "" || c.GrantType != tokenkeeper.GrantRefreshToken || c.RefreshToken == "" {
		return 0
	}
	prof, err := r.cfg.Profiles(c.Preset)
	if err != nil {
		return 0
	}
	ka := prof.KeepAlive(r.cfg.KeepAliveInterval)
	if ka <= 0 {
		return 0
	}
	return max(ka, r.cfg.MinKeepAlive)
}

// backoff returns the wait before attempt n+1 after n consecutive temporary
// failures: exponential from BackoffMin, capped at BackoffMax, with "equal
// jitter" (half fixed, half random), and never less than retryAfter (itself
// capped at RetryAfterMax).
func (r *Refresher) backoff(failures int, retryAfter time.Duration) time.Duration {
	exp := math.Min(float64(r.cfg.BackoffMin)*math.Pow(2, float64(max(failures-1, 0))), float64(r.cfg.BackoffMax))
	d := time.Duration(exp/2) + time.Duration(mrand.Int64N(int64(exp/2)+1))
	return max(d, min(retryAfter, r.cfg.RetryAfterMax))
}

// DefaultOwner returns a new lease owner name for a refresher whose
// Config leaves Owner empty: the host name, the process id and 8 random
// hex digits, unique across replicas and restarts.
func DefaultOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomHex(4))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
