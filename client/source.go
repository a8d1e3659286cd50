package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// ErrClosed is returned by a TokenSource after Close.
var ErrClosed = errors.New("client: token source closed")

// fetchRequest is what a fetch needs to know about the source's state.
type fetchRequest struct {
	// prev is the current token: it may hold only a refresh token (the
	// seed), and is nil when there is none. Read only.
	prev *oauth2.Token
	// rejected is the access token a resource server rejected, "" if the
	// fetch is not caused by Invalidate.
	rejected string
	// minTTL, when positive, asks for a token with at least this much life
	// left (used by the broker source when refreshing ahead).
	minTTL time.Duration
}

// fetchFunc obtains a new token: one request to the token endpoint (or the
// broker, or one call of a wrapped source). A returned token's Expiry is
// zero when the server did not say; the source then applies the default
// lifetime. An empty RefreshToken keeps the previous one.
type fetchFunc func(ctx context.Context, req fetchRequest) (*oauth2.Token, error)

// call is one fetch in flight, shared by every caller that waits for it.
type call struct {
	done chan struct{} // closed when tok and err are set
	tok  *oauth2.Token // a copy for the waiters; nil on error
	err  error
}

// TokenSource hands out a valid access token, refreshing it in the
// background before it expires. It implements oauth2.TokenSource.
//
// All methods are safe for concurrent use. Token and TokenContext never wait
// for the network while the current token has more than the leeway left;
// otherwise all callers share one request to the token endpoint and its
// result. No lock is held during that request. Close stops the background
// work.
type TokenSource struct {
	kind  string // "client_credentials", "refresh_token", "wrap" or "broker", for logs
	fetch fetchFunc
	set   settings
	log   *slog.Logger

	ctx    context.Context    // canceled by Close; parent of every fetch and save
	cancel context.CancelFunc // cancels ctx
	wg     sync.WaitGroup     // the loop and every fetch goroutine
	wake   chan struct{}      // capacity 1: nudges the loop after a state change

	saveMu   sync.Mutex // serializes Save calls; guards savedGen
	savedGen uint64     // generation of the newest token saved successfully

	hookMu  sync.Mutex // serializes calls of the onToken and onSaveError hooks; guards hookGen
	hookGen uint64     // generation of the newest token passed to onToken

	mu sync.Mutex // guards the fields below
	// loaded reports whether the store has been consulted.
	loaded bool
	// cur is the current token. It may hold only a refresh token (the seed
	// of a RefreshToken source) and is nil before the first token.
	cur *oauth2.Token
	// lifetime is cur's lifetime, measured when it arrived.
	lifetime time.Duration
	// gen counts the tokens installed; it identifies cur.
	gen uint64
	// rejected is an access token reported by Invalidate while it was
	// current; while cur.AccessToken == rejected, cur is not handed out.
	rejected string
	// inflight is the fetch in progress, nil if none.
	inflight *call
	// failures counts consecutive temporary failures.
	failures int
	// lastErr is the last temporary failure, nil after a success.
	lastErr error
	// retryAt is when the next attempt may be made after a temporary
	// failure; callers asking for a token before then get lastErr.
	retryAt time.Time
	// permErr is a permanent failure: no further attempts are made.
	permErr error
	// unsaved reports that cur (generation gen) could not be saved yet;
	// saveFailures counts the attempts and saveRetryAt is the next one.
	unsaved      bool
	saveFailures int
	saveRetryAt  time.Time
	// closed is set by Close.
	closed bool
}

var _ oauth2.TokenSource = (*TokenSource)(nil)

// newSource validates opts and starts a source's background loop.
func newSource(kind string, fetch fetchFunc, seed *oauth2.Token, set settings) *TokenSource {
	ctx, cancel := context.WithCancel(context.Background())
	s := &TokenSource{
		kind:   kind,
		fetch:  fetch,
		set:    set,
		log:    set.logger.With("token_source", kind),
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		cur:    seed,
	}
	s.wg.Add(1)
	go s.loop()
	return s
}

// Token returns a valid token. It is TokenContext with a background context,
// for oauth2.TokenSource.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	return s.TokenContext(context.Background())
}

// TokenContext returns a valid access token: the current one while it has
// more than the leeway left, otherwise the result of the one request in
// flight (started if needed), shared with every other caller. The returned
// token is the caller's copy.
//
// It returns an error wrapping the failure: a permanent one (test it with
// errors.Is, e.g. ErrInvalidGrant, or IsPermanent), or during the backoff
// after a temporary failure the last such failure, without sending a
// request. It returns ctx's error if ctx ends first; the request in flight
// then continues for the other callers and the next ones.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	now := s.set.clock.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if s.usableLocked(now) {
		t := copyToken(s.cur)
		s.mu.Unlock()
		return t, nil
	}
	if s.permErr != nil {
		err := s.permErr
		s.mu.Unlock()
		return nil, fmt.Errorf("client: get token: %w", err)
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("client: wait for token: %w", err)
	}
	c := s.inflight
	if c == nil {
		if s.lastErr != nil && now.Before(s.retryAt) {
			err, wait := s.lastErr, s.retryAt.Sub(now)
			s.mu.Unlock()
			return nil, fmt.Errorf("client: get token (next attempt in %v): %w", wait.Round(time.Millisecond), err)
		}
		c = s.startFetchLocked(nil, "no valid token", 0)
	}
	s.mu.Unlock()

	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("client: wait for token: %w", ctx.Err())
	}
	if c.err != nil {
		return nil, fmt.Errorf("client: get token: %w", c.err)
	}
	return copyToken(c.tok), nil
}

// Invalidate reports that a resource server rejected t. If t is still the
// current token, it is no longer handed out and a new one is requested at
// once (unless a request is already in flight, or the source is backing off
// after a failure); otherwise Invalidate does nothing. So any number of
// callers reporting the same rejected token cause one request. It never
// blocks on the network.
func (s *TokenSource) Invalidate(t *oauth2.Token) {
	if t == nil || t.AccessToken == "" {
		return
	}
	now := s.set.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cur == nil || s.cur.AccessToken != t.AccessToken || s.rejected == t.AccessToken {
		return
	}
	s.rejected = t.AccessToken
	s.log.Info("token rejected by a resource server; requesting a new one")
	if s.inflight == nil && s.permErr == nil && (s.lastErr == nil || !now.Before(s.retryAt)) {
		s.startFetchLocked(nil, "token rejected", 0)
	}
}

// Close stops the background work and waits for it to end, canceling a
// request in flight. If the current token could not be saved so far, Close
// makes one last attempt and returns its error. Close is idempotent; after
// it, Token returns ErrClosed.
func (s *TokenSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()

	s.mu.Lock()
	unsaved, t, gen := s.unsaved, copyToken(s.cur), s.gen
	s.mu.Unlock()
	if !unsaved {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.save(ctx, t, gen); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}

// usableLocked reports whether cur can be handed out at now.
func (s *TokenSource) usableLocked(now time.Time) bool {
	t := s.cur
	if t == nil || t.AccessToken == "" || t.AccessToken == s.rejected {
		return false
	}
	return t.Expiry.Sub(now) > s.set.leewayFor(s.lifetime)
}

// refreshAtLocked returns when cur should be refreshed in the background.
func (s *TokenSource) refreshAtLocked() time.Time {
	return s.cur.Expiry.Add(-s.set.leadFor(s.lifetime))
}

// startFetchLocked starts a fetch and returns its call: c, or a new call if c
// is nil. s.mu must be held, the source must not be closed and no other
// fetch must be in flight.
func (s *TokenSource) startFetchLocked(c *call, reason string, minTTL time.Duration) *call {
	if c == nil {
		c = &call{done: make(chan struct{})}
	}
	s.inflight = c
	req := fetchRequest{prev: copyToken(s.cur), minTTL: minTTL}
	if s.cur != nil && s.rejected != "" && s.cur.AccessToken == s.rejected {
		req.rejected = s.rejected
	}
	needLoad := !s.loaded
	s.wg.Add(1)
	go s.runFetch(c, req, needLoad, reason)
	return c
}

// runFetch performs one fetch (after loading the store if needed), saves
// its token and installs it, then completes c.
func (s *TokenSource) runFetch(c *call, req fetchRequest, needLoad bool, reason string) {
	defer s.wg.Done()
	if needLoad {
		stored, err := s.set.store.Load(s.ctx)
		if err != nil {
			s.finish(c, nil, fmt.Errorf("load stored token: %w", err), req)
			return
		}
		if done := s.adoptStored(c, stored); done {
			return
		}
		s.mu.Lock()
		req.prev = copyToken(s.cur)
		s.mu.Unlock()
	}
	start := s.set.clock.Now()
	t, err := s.fetch(s.ctx, req)
	if err != nil {
		s.finish(c, nil, err, req)
		return
	}
	if t == nil || t.AccessToken == "" {
		s.finish(c, nil, errors.New("token source returned no access token"), req)
		return
	}
	t = copyToken(t)
	now := s.set.clock.Now()
	if t.Expiry.IsZero() {
		t.Expiry = now.Add(s.set.lifetime)
	}
	if !t.Expiry.After(now) {
		// Installing it would only schedule another request at once.
		s.finish(c, nil, errors.New("token source returned an expired token"), req)
		return
	}
	if t.ExpiresIn <= 0 {
		// Kept so that a stored token's lifetime is known after a restart.
		t.ExpiresIn = int64(math.Ceil(t.Expiry.Sub(now).Seconds()))
	}
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	if t.RefreshToken == "" && req.prev != nil {
		t.RefreshToken = req.prev.RefreshToken
	}
	s.log.Debug("obtained token", "reason", reason, "expires_in", t.Expiry.Sub(now).Round(time.Millisecond),
		"latency", now.Sub(start).Round(time.Millisecond), "refresh_token_rotated",
		req.prev != nil && req.prev.RefreshToken != "" && t.RefreshToken != req.prev.RefreshToken)
	s.finish(c, t, nil, req)
}

// adoptStored installs a token loaded from the store. It returns true if the
// token is usable and c has been completed with it.
func (s *TokenSource) adoptStored(c *call, stored *oauth2.Token) bool {
	now := s.set.clock.Now()
	s.mu.Lock()
	s.loaded = true
	if stored == nil {
		s.mu.Unlock()
		return false
	}
	stored = copyToken(stored)
	if stored.RefreshToken == "" && s.cur != nil {
		// A stored token without a refresh token keeps the seed's.
		stored.RefreshToken = s.cur.RefreshToken
	}
	s.cur = stored
	s.lifetime = storedLifetime(stored, now)
	s.gen++
	gen := s.gen
	usable := s.usableLocked(now)
	if usable {
		s.inflight = nil
		c.tok = copyToken(stored)
		close(c.done)
	}
	s.mu.Unlock()

	s.saveMu.Lock()
	s.savedGen = max(s.savedGen, gen) // it came from the store
	s.saveMu.Unlock()
	if !usable {
		return false
	}
	s.log.Debug("using stored token", "expires_in", stored.Expiry.Sub(now).Round(time.Millisecond))
	s.nudge()
	return true
}

// storedLifetime estimates the lifetime of a token from a store.
func storedLifetime(t *oauth2.Token, now time.Time) time.Duration {
	if t.ExpiresIn > 0 {
		return time.Duration(t.ExpiresIn) * time.Second
	}
	if t.Expiry.IsZero() {
		return 0
	}
	return max(t.Expiry.Sub(now), 0)
}

// finish records the outcome of a fetch: a new token is saved first, then
// installed and handed to the waiters of c.
func (s *TokenSource) finish(c *call, t *oauth2.Token, err error, req fetchRequest) {
	if err == nil {
		// Only this goroutine installs tokens while it runs, so gen+1
		// is the generation t gets.
		s.mu.Lock()
		gen := s.gen + 1
		s.mu.Unlock()
		saveErr := s.save(s.ctx, t, gen)

		now := s.set.clock.Now()
		s.mu.Lock()
		s.loaded = true
		s.cur = t
		s.gen = gen
		s.lifetime = max(t.Expiry.Sub(now), 0)
		s.failures, s.lastErr, s.retryAt = 0, nil, time.Time{}
		if saveErr != nil {
			s.unsaved = true
			s.saveFailures++
			s.saveRetryAt = now.Add(s.set.backoff(s.saveFailures, 0))
		} else {
			s.unsaved, s.saveFailures = false, 0
		}
		// A token rejected by a resource server while this fetch was in
		// flight stays rejected if the fetch returned it again (a
		// broker's cached token, say): ask once more, saying it was
		// rejected, and let the waiters wait for that answer. If the
		// server returns it even then, it is used.
		again := s.rejected != "" && t.AccessToken == s.rejected && req.rejected == "" && !s.closed
		if again {
			s.startFetchLocked(c, "token rejected", 0)
		} else {
			s.rejected = ""
			s.inflight = nil
			c.tok = copyToken(t)
			close(c.done)
		}
		s.mu.Unlock()
		s.nudge()
		s.hook(func() {
			if saveErr != nil && s.set.onSaveError != nil {
				s.set.onSaveError(saveErr)
			}
			// Hooks run after the waiters are released, so a newer
			// token may have been reported already: never report an
			// older one after it.
			if s.set.onToken != nil && gen > s.hookGen {
				s.hookGen = gen
				s.set.onToken(copyToken(t))
			}
		})
		return
	}

	now := s.set.clock.Now()
	s.mu.Lock()
	closed := s.closed
	switch {
	case closed:
		err = fmt.Errorf("%w (%w)", ErrClosed, err)
	case IsPermanent(err):
		s.permErr = err
		s.log.Error("token request failed permanently; no further attempts", "class", errorClass(err), "error", err)
	default:
		s.failures++
		s.lastErr = err
		d := s.set.backoff(s.failures, retryAfter(err))
		s.retryAt = now.Add(d)
		s.log.Warn("token request failed; will retry", "class", errorClass(err), "error", err,
			"failures", s.failures, "retry_in", d.Round(time.Millisecond))
	}
	s.inflight = nil
	c.err = err
	close(c.done)
	s.mu.Unlock()
	s.nudge()
}

// save stores t (generation gen) unless a newer generation is already saved.
// It logs a failure; the caller reports it to the hook.
func (s *TokenSource) save(ctx context.Context, t *oauth2.Token, gen uint64) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if gen <= s.savedGen {
		return nil
	}
	if err := s.set.store.Save(ctx, t); err != nil {
		err = fmt.Errorf("client: save token: %w", err)
		s.log.Error("saving the token failed; using it anyway and retrying the save", "error", err)
		return err
	}
	s.savedGen = gen
	return nil
}

// hook runs f with the hook lock held, so hooks never run concurrently.
func (s *TokenSource) hook(f func()) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	f()
}

// nudge wakes the loop to recompute its schedule.
func (s *TokenSource) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop is the background goroutine: it refreshes ahead of expiry, retries
// after temporary failures and retries failed saves.
func (s *TokenSource) loop() {
	defer s.wg.Done()
	for {
		now := s.set.clock.Now()
		s.mu.Lock()
		next, ok := s.scheduleLocked(now)
		s.mu.Unlock()

		var timer <-chan time.Time
		stop := func() bool { return false }
		if ok {
			timer, stop = s.set.clock.NewTimer(max(next.Sub(now), 0))
		}
		select {
		case <-s.ctx.Done():
			stop()
			return
		case <-s.wake:
			stop()
			continue
		case <-timer:
		}
		s.runDue()
	}
}

// scheduleLocked returns the time of the next background action, if any.
func (s *TokenSource) scheduleLocked(now time.Time) (time.Time, bool) {
	var next time.Time
	ok := false
	earliest := func(t time.Time) {
		if !ok || t.Before(next) {
			next, ok = t, true
		}
	}
	if s.unsaved {
		earliest(s.saveRetryAt)
	}
	if s.permErr == nil && s.inflight == nil {
		switch {
		case s.lastErr != nil:
			earliest(s.retryAt)
		case s.cur != nil && s.cur.AccessToken != "":
			if s.cur.AccessToken == s.rejected {
				earliest(now)
			} else if s.set.leadFor(s.lifetime) > 0 {
				earliest(s.refreshAtLocked())
			}
		}
	}
	return next, ok
}

// runDue performs the background actions that are due.
func (s *TokenSource) runDue() {
	now := s.set.clock.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var (
		saveTok *oauth2.Token
		saveGen uint64
	)
	if s.unsaved && !now.Before(s.saveRetryAt) {
		saveTok, saveGen = copyToken(s.cur), s.gen
	}
	if s.permErr == nil && s.inflight == nil {
		switch {
		case s.lastErr != nil:
			if !now.Before(s.retryAt) {
				s.startFetchLocked(nil, "retry after failure", 0)
			}
		case s.cur != nil && s.cur.AccessToken != "":
			if s.cur.AccessToken == s.rejected {
				s.startFetchLocked(nil, "token rejected", 0)
			} else if lead := s.set.leadFor(s.lifetime); lead > 0 && !now.Before(s.refreshAtLocked()) {
				// A broker asked for min_ttl refreshes first if its token
				// has no more life than this one: ask for a bit more.
				s.startFetchLocked(nil, "refresh ahead", lead+s.set.leewayFor(s.lifetime))
			}
		}
	}
	s.mu.Unlock()

	if saveTok != nil {
		err := s.save(s.ctx, saveTok, saveGen)
		now := s.set.clock.Now()
		s.mu.Lock()
		if s.gen == saveGen {
			if err != nil {
				s.saveFailures++
				s.saveRetryAt = now.Add(s.set.backoff(s.saveFailures, 0))
			} else {
				s.unsaved, s.saveFailures = false, 0
				s.log.Info("saved the token after earlier failures")
			}
		}
		s.mu.Unlock()
		if err != nil && s.set.onSaveError != nil {
			s.hook(func() { s.set.onSaveError(err) })
		}
	}
}
