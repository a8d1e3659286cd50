package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// runConcurrently calls f from n goroutines at once and returns the results
// once every call has returned. It waits until all n are blocked in
// TokenContext (or done) before calling release.
func runConcurrently(t *testing.T, n int, s *TokenSource, release func()) ([]*oauth2.Token, []error) {
	t.Helper()
	toks := make([]*oauth2.Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = s.TokenContext(context.Background())
		}()
	}
	eventually(t, func() bool { return goroutinesIn("client.(*TokenSource).TokenContext(") >= n }, "%d callers waiting", n)
	release()
	wg.Wait()
	return toks, errs
}

func TestConcurrentCallersShareOneRequest(t *testing.T) {
	clk := newFakeClock()
	f := newFakeFetch(tokenFor(clk, time.Hour))
	f.hold()
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))

	toks, errs := runConcurrently(t, 100, s, f.release)
	if got := f.count(); got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
	for i := range toks {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if toks[i].AccessToken != "at-1" {
			t.Fatalf("caller %d got %q, want at-1", i, toks[i].AccessToken)
		}
	}
	// Each caller has its own copy.
	toks[0].AccessToken = "changed"
	if got := mustToken(t, s).AccessToken; got != "at-1" {
		t.Fatalf("after a caller modified its copy, Token = %q", got)
	}
}

func TestConcurrentCallersShareOneFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"temporary", &oauth.Error{StatusCode: 503}, false},
		{"permanent", &oauth.Error{Code: "invalid_grant", StatusCode: 400}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			f := newFakeFetch(func(int, fetchRequest) (*oauth2.Token, error) { return nil, tc.err })
			f.hold()
			s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))

			_, errs := runConcurrently(t, 100, s, f.release)
			if got := f.count(); got != 1 {
				t.Fatalf("fetches = %d, want 1", got)
			}
			for i, err := range errs {
				if !errors.Is(err, tc.err) {
					t.Fatalf("caller %d: err = %v, want %v", i, err, tc.err)
				}
				if IsPermanent(err) != tc.permanent {
					t.Fatalf("caller %d: IsPermanent = %v", i, !tc.permanent)
				}
			}
			// Later callers get the failure too, without a request: the
			// permanent one for good, the temporary one until the backoff
			// has passed.
			if _, err := s.Token(); !errors.Is(err, tc.err) {
				t.Fatalf("later caller: err = %v", err)
			}
			if got := f.count(); got != 1 {
				t.Fatalf("fetches after a later call = %d, want 1", got)
			}
			if tc.permanent && !errors.Is(errs[0], ErrInvalidGrant) {
				t.Fatalf("errors.Is(err, ErrInvalidGrant) = false for %v", errs[0])
			}
		})
	}
}

func TestCallersDoNotWaitWhileTokenValid(t *testing.T) {
	clk := newFakeClock()
	f := newFakeFetch(tokenFor(clk, time.Hour))
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))
	first := mustToken(t, s)

	// Refresh ahead starts 5 minutes before expiry; hold that request.
	f.hold()
	refreshAt := first.Expiry.Add(-5 * time.Minute)
	clk.waitTimer(t, refreshAt)
	clk.AdvanceTo(refreshAt)
	f.waitCalls(t, 2)

	// While the request hangs, callers keep getting the current token at
	// once, down to the leeway (10 s), and the other methods don't block.
	for _, at := range []time.Time{refreshAt, first.Expiry.Add(-time.Minute), first.Expiry.Add(-10*time.Second - time.Nanosecond)} {
		clk.AdvanceTo(at)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		tok, err := s.TokenContext(ctx)
		cancel()
		if err != nil || tok.AccessToken != "at-1" {
			t.Fatalf("at expiry%v: Token = %v, %v; want at-1 at once", at.Sub(first.Expiry), tok, err)
		}
	}
	s.Invalidate(&oauth2.Token{AccessToken: "some-other-token"})

	// Inside the leeway a caller waits for the request in flight.
	clk.AdvanceTo(first.Expiry.Add(-10 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := s.TokenContext(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("inside the leeway: err = %v, want a wait that ends with the context", err)
	}
	f.release()
	eventually(t, func() bool { return mustToken(t, s).AccessToken == "at-2" }, "the refreshed token")
	if got := f.count(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
}

func TestRefreshAheadSchedule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lifetime time.Duration
		opts     []Option
		lead     time.Duration
	}{
		{"1s default", time.Second, nil, 333 * time.Millisecond},
		{"2s default", 2 * time.Second, nil, 667 * time.Millisecond},
		{"1m default", time.Minute, nil, 20 * time.Second},
		{"10m default", 10 * time.Minute, nil, 200 * time.Second},
		{"1h default", time.Hour, nil, 5 * time.Minute},
		{"24h default", 24 * time.Hour, nil, 5 * time.Minute},
		{"1h lead 20m", time.Hour, []Option{WithLead(20 * time.Minute)}, 20 * time.Minute},
		{"1m lead 20m capped", time.Minute, []Option{WithLead(20 * time.Minute)}, 54 * time.Second},
		{"1h fraction 0.5", time.Hour, []Option{WithLeadFraction(0.5)}, 30 * time.Minute},
		{"1h lead 10m fraction 0.1", time.Hour, []Option{WithLead(10 * time.Minute), WithLeadFraction(0.1)}, 6 * time.Minute},
		{"1h lead 0", time.Hour, []Option{WithLead(0)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			f := newFakeFetch(tokenFor(clk, tc.lifetime))
			s := newTestSource(t, "test", f.fetch, nil, append(tc.opts, WithClock(clk))...)
			tok := mustToken(t, s)
			refreshAt := tok.Expiry.Add(-tc.lead)
			if tc.lead == 0 {
				// No refresh ahead: nothing is scheduled.
				time.Sleep(10 * time.Millisecond)
				if n := clk.pending(); n != 0 {
					t.Fatalf("%d timers pending, want none", n)
				}
				return
			}
			clk.waitTimer(t, refreshAt)
			clk.AdvanceTo(refreshAt.Add(-time.Nanosecond))
			clk.waitTimer(t, refreshAt)
			if got := f.count(); got != 1 {
				t.Fatalf("fetches before the lead = %d, want 1", got)
			}
			clk.AdvanceTo(refreshAt)
			f.waitCalls(t, 2)
			eventually(t, func() bool { return mustToken(t, s).AccessToken == "at-2" }, "the refreshed token")
			if got := f.count(); got != 2 {
				t.Fatalf("fetches = %d, want 2", got)
			}
		})
	}
}

func TestLeadAndLeeway(t *testing.T) {
	type opts = []Option
	for _, tc := range []struct {
		opts     opts
		lifetime time.Duration
		lead     time.Duration
		leeway   time.Duration
	}{
		{nil, time.Second, 333 * time.Millisecond, 50 * time.Millisecond},
		{nil, 2 * time.Second, 667 * time.Millisecond, 100 * time.Millisecond},
		{nil, time.Minute, 20 * time.Second, 3 * time.Second},
		{nil, time.Hour, 5 * time.Minute, 10 * time.Second},
		{nil, 0, 0, 0},
		{opts{WithLeeway(time.Second)}, time.Hour, 5 * time.Minute, time.Second},
		{opts{WithLeeway(time.Minute)}, 2 * time.Second, 667 * time.Millisecond, 100 * time.Millisecond},
		{opts{WithLeeway(0)}, time.Hour, 5 * time.Minute, 0},
		{opts{WithLead(time.Hour)}, time.Hour, 54 * time.Minute, 10 * time.Second},
		{opts{WithLeadFraction(0.99)}, 10 * time.Second, 9 * time.Second, 500 * time.Millisecond},
		{opts{WithLeadFraction(0.01)}, 10 * time.Hour, 6 * time.Minute, 10 * time.Second},
	} {
		set := defaultSettings()
		if err := set.apply(tc.opts); err != nil {
			t.Fatal(err)
		}
		if got := set.leadFor(tc.lifetime); got != tc.lead {
			t.Errorf("lifetime %v, %d options: lead = %v, want %v", tc.lifetime, len(tc.opts), got, tc.lead)
		}
		if got := set.leewayFor(tc.lifetime); got != tc.leeway {
			t.Errorf("lifetime %v, %d options: leeway = %v, want %v", tc.lifetime, len(tc.opts), got, tc.leeway)
		}
	}
}

func TestBackoffDelays(t *testing.T) {
	set := defaultSettings()
	if err := set.apply([]Option{WithBackoff(time.Second, 10*time.Second)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n          int
		random     float64
		retryAfter time.Duration
		want       time.Duration
	}{
		{1, 0, 0, 500 * time.Millisecond},
		{1, 0.999999, 0, time.Second - time.Microsecond/2},
		{2, 0, 0, time.Second},
		{3, 0, 0, 2 * time.Second},
		{4, 0.5, 0, 6 * time.Second},
		{5, 0, 0, 5 * time.Second},
		{50, 0, 0, 5 * time.Second},
		{1, 0, 30 * time.Second, 30 * time.Second},
		{5, 0, 2 * time.Second, 5 * time.Second},
		{1, 0, 48 * time.Hour, time.Hour},
	} {
		set.randomFraction = func() float64 { return tc.random }
		got := set.backoff(tc.n, tc.retryAfter)
		if d := got - tc.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("backoff(%d, random %v, retry-after %v) = %v, want %v", tc.n, tc.random, tc.retryAfter, got, tc.want)
		}
	}
}

func TestTemporaryFailuresBackOff(t *testing.T) {
	clk := newFakeClock()
	fail := &oauth.Error{StatusCode: 503}
	var mu sync.Mutex
	answer := func(int, fetchRequest) (*oauth2.Token, error) { return nil, fail }
	f := newFakeFetch(func(n int, req fetchRequest) (*oauth2.Token, error) {
		mu.Lock()
		defer mu.Unlock()
		return answer(n, req)
	})
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk), WithBackoff(time.Second, 8*time.Second), withRandom(0))

	if _, err := s.Token(); !errors.Is(err, fail) {
		t.Fatalf("err = %v", err)
	}
	// Retries at 0.5 s, then 1 s, 2 s, 4 s, 4 s after each failure (full
	// delay halved by the jitter fixed at 0).
	for i, d := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		next := clk.Now().Add(d)
		clk.waitTimer(t, next)
		// Meanwhile callers get the failure at once, without a request.
		if _, err := s.Token(); !errors.Is(err, fail) || !strings.Contains(err.Error(), "next attempt in") {
			t.Fatalf("during backoff: err = %v", err)
		}
		if got := f.count(); got != i+1 {
			t.Fatalf("fetches before retry %d = %d, want %d", i+1, got, i+1)
		}
		clk.AdvanceTo(next)
		f.waitCalls(t, i+2)
	}

	// A Retry-After longer than the backoff wins.
	mu.Lock()
	answer = func(int, fetchRequest) (*oauth2.Token, error) {
		return nil, &oauth.Error{StatusCode: 429, RetryAfter: 30 * time.Second}
	}
	mu.Unlock()
	next := clk.Now().Add(4 * time.Second)
	clk.waitTimer(t, next)
	clk.AdvanceTo(next)
	f.waitCalls(t, 7)
	next = clk.Now().Add(30 * time.Second)
	clk.waitTimer(t, next)

	// Success resets the backoff and serves callers again.
	mu.Lock()
	answer = tokenFor(clk, time.Hour)
	mu.Unlock()
	clk.AdvanceTo(next)
	f.waitCalls(t, 8)
	eventually(t, func() bool { _, err := s.Token(); return err == nil }, "a token after recovery")
	clk.waitTimer(t, clk.Now().Add(55*time.Minute))
}

func TestTemporaryFailureKeepsServingValidToken(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	fail := false
	f := newFakeFetch(func(n int, req fetchRequest) (*oauth2.Token, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, &oauth.Error{StatusCode: 502}
		}
		return tokenFor(clk, time.Hour)(n, req)
	})
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk), withRandom(0))
	first := mustToken(t, s)
	mu.Lock()
	fail = true
	mu.Unlock()
	clk.waitTimer(t, first.Expiry.Add(-5*time.Minute))
	clk.AdvanceTo(first.Expiry.Add(-5 * time.Minute))
	f.waitCalls(t, 2)
	clk.waitTimer(t, clk.Now().Add(500*time.Millisecond))
	if got := mustToken(t, s).AccessToken; got != "at-1" {
		t.Fatalf("after a failed refresh ahead, Token = %q, want the still valid at-1", got)
	}
}

func TestPermanentFailureStopsAttempts(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	fail := false
	f := newFakeFetch(func(n int, req fetchRequest) (*oauth2.Token, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, &oauth.Error{Code: "invalid_grant", StatusCode: 400, Description: "refresh token revoked"}
		}
		return tokenFor(clk, time.Hour)(n, req)
	})
	lb, logger := newLogBuffer()
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk), WithLogger(logger))
	first := mustToken(t, s)
	mu.Lock()
	fail = true
	mu.Unlock()
	clk.waitTimer(t, first.Expiry.Add(-5*time.Minute))
	clk.AdvanceTo(first.Expiry.Add(-5 * time.Minute))
	f.waitCalls(t, 2)
	eventually(t, func() bool { return strings.Contains(lb.String(), "failed permanently") }, "the permanent failure logged")

	// The valid token is still served...
	clk.AdvanceTo(first.Expiry.Add(-11 * time.Second))
	if got := mustToken(t, s).AccessToken; got != "at-1" {
		t.Fatalf("Token = %q, want at-1 while valid", got)
	}
	// ...then the typed error, and no more requests, ever.
	clk.AdvanceTo(first.Expiry.Add(time.Hour))
	_, err := s.Token()
	if !errors.Is(err, ErrInvalidGrant) || !IsPermanent(err) {
		t.Fatalf("err = %v, want invalid_grant, permanent", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 400 {
		t.Fatalf("errors.As(*Error) = %v, %+v", errors.As(err, &e), e)
	}
	s.Invalidate(first)
	clk.Advance(24 * time.Hour)
	time.Sleep(10 * time.Millisecond)
	if got := f.count(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (no attempt after the permanent failure)", got)
	}
	if n := clk.pending(); n != 0 {
		t.Fatalf("%d timers pending after a permanent failure", n)
	}
}

func TestNewTokenSavedBeforeAnyCallerGetsIt(t *testing.T) {
	clk := newFakeClock()
	st := &recordStore{block: make(chan struct{})}
	f := newFakeFetch(func(n int, req fetchRequest) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "at-" + itoa(n), RefreshToken: "rt-" + itoa(n), Expiry: clk.Now().Add(time.Hour)}, nil
	})
	var onToken []string
	var hookMu sync.Mutex
	s := newTestSource(t, "test", f.fetch, &oauth2.Token{RefreshToken: "rt-0"}, WithClock(clk), WithStore(st),
		WithOnToken(func(tok *oauth2.Token) {
			hookMu.Lock()
			defer hookMu.Unlock()
			// Called after the save.
			st.mu.Lock()
			saved := slices.ContainsFunc(st.saves, func(s *oauth2.Token) bool { return s.AccessToken == tok.AccessToken })
			st.mu.Unlock()
			if !saved {
				t.Errorf("OnToken(%s) before the token was saved", tok.AccessToken)
			}
			onToken = append(onToken, tok.AccessToken)
		}))

	got := make(chan *oauth2.Token, 1)
	go func() {
		tok, _ := s.Token()
		got <- tok
	}()
	f.waitCalls(t, 1)
	eventually(t, func() bool { return goroutinesIn("(*recordStore).Save(") == 1 }, "the save to start")
	select {
	case tok := <-got:
		t.Fatalf("caller got %v while the save was still in progress", tok)
	case <-time.After(20 * time.Millisecond):
	}
	close(st.block)
	tok := <-got
	if saved := st.stored(); saved == nil || saved.AccessToken != tok.AccessToken || saved.RefreshToken != "rt-1" {
		t.Fatalf("stored %+v, caller got %s", saved, tok.AccessToken)
	}
	// The next refresh presents the rotated refresh token.
	clk.waitTimer(t, tok.Expiry.Add(-5*time.Minute))
	clk.AdvanceTo(tok.Expiry.Add(-5 * time.Minute))
	f.waitCalls(t, 2)
	if rt := f.request(1).prev.RefreshToken; rt != "rt-1" {
		t.Fatalf("second refresh presented %q, want rt-1", rt)
	}
	eventually(t, func() bool { return st.stored().RefreshToken == "rt-2" }, "rt-2 saved")
	eventually(t, func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(onToken) > 0 && onToken[len(onToken)-1] == "at-2"
	}, "OnToken(at-2)")
	hookMu.Lock()
	defer hookMu.Unlock()
	if len(onToken) == 2 && onToken[0] != "at-1" {
		t.Fatalf("OnToken calls out of order: %q", onToken)
	}
}

func TestResponseWithoutRefreshTokenKeepsTheOldOne(t *testing.T) {
	clk := newFakeClock()
	st := &recordStore{}
	f := newFakeFetch(tokenFor(clk, time.Hour)) // no refresh token
	s := newTestSource(t, "test", f.fetch, &oauth2.Token{RefreshToken: "rt-0"}, WithClock(clk), WithStore(st))
	tok := mustToken(t, s)
	if tok.RefreshToken != "rt-0" || st.stored().RefreshToken != "rt-0" {
		t.Fatalf("refresh token: caller %q, stored %q; want rt-0", tok.RefreshToken, st.stored().RefreshToken)
	}
	if f.request(0).prev.RefreshToken != "rt-0" {
		t.Fatalf("presented %q", f.request(0).prev.RefreshToken)
	}
}

func TestStoredTokenWinsOverSeed(t *testing.T) {
	clk := newFakeClock()
	for _, tc := range []struct {
		name      string
		stored    *oauth2.Token
		fetches   int
		presented string
	}{
		{"valid access token", &oauth2.Token{AccessToken: "stored-at", RefreshToken: "rt-9", Expiry: epoch.Add(time.Hour), ExpiresIn: 3600}, 0, ""},
		{"expired access token", &oauth2.Token{AccessToken: "stored-at", RefreshToken: "rt-9", Expiry: epoch.Add(-time.Hour)}, 1, "rt-9"},
		{"refresh token only", &oauth2.Token{RefreshToken: "rt-9"}, 1, "rt-9"},
		{"access token only", &oauth2.Token{AccessToken: "stored-at", Expiry: epoch.Add(-time.Second)}, 1, "rt-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &recordStore{tok: tc.stored}
			f := newFakeFetch(tokenFor(clk, time.Hour))
			s := newTestSource(t, "test", f.fetch, &oauth2.Token{RefreshToken: "rt-0"}, WithClock(clk), WithStore(st))
			tok := mustToken(t, s)
			if got := f.count(); got != tc.fetches {
				t.Fatalf("fetches = %d, want %d", got, tc.fetches)
			}
			if tc.fetches == 0 {
				if tok.AccessToken != "stored-at" || st.saveCount() != 0 {
					t.Fatalf("got %q with %d saves, want the stored token unsaved", tok.AccessToken, st.saveCount())
				}
				// Its lifetime comes from expires_in: refresh ahead 5 min
				// before expiry.
				clk.waitTimer(t, tok.Expiry.Add(-5*time.Minute))
				return
			}
			if got := f.request(0).prev.RefreshToken; got != tc.presented {
				t.Fatalf("presented %q, want %q", got, tc.presented)
			}
		})
	}
}

func TestLoadFailureIsTemporary(t *testing.T) {
	clk := newFakeClock()
	st := &recordStore{loadErr: errors.New("permission denied")}
	f := newFakeFetch(tokenFor(clk, time.Hour))
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk), WithStore(st), withRandom(0))
	if _, err := s.Token(); err == nil || !strings.Contains(err.Error(), "permission denied") || IsPermanent(err) {
		t.Fatalf("err = %v, want the temporary load failure", err)
	}
	if f.count() != 0 {
		t.Fatal("fetched without a successful load: a newer stored refresh token could be lost")
	}
	st.mu.Lock()
	st.loadErr = nil
	st.mu.Unlock()
	clk.waitTimer(t, clk.Now().Add(500*time.Millisecond))
	clk.Advance(500 * time.Millisecond)
	f.waitCalls(t, 1)
	eventually(t, func() bool { _, err := s.Token(); return err == nil }, "a token")
}

func TestSaveFailure(t *testing.T) {
	clk := newFakeClock()
	st := &recordStore{failN: 2}
	f := newFakeFetch(func(n int, req fetchRequest) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "at-" + itoa(n), RefreshToken: "rt-" + itoa(n), Expiry: clk.Now().Add(time.Hour)}, nil
	})
	lb, logger := newLogBuffer()
	var mu sync.Mutex
	var saveErrs []error
	s := newTestSource(t, "test", f.fetch, &oauth2.Token{RefreshToken: "rt-0"}, WithClock(clk), WithStore(st), WithLogger(logger),
		WithBackoff(time.Second, time.Minute), withRandom(0),
		WithOnSaveError(func(err error) { mu.Lock(); defer mu.Unlock(); saveErrs = append(saveErrs, err) }))

	// The token is used although it could not be saved.
	tok := mustToken(t, s)
	if tok.AccessToken != "at-1" || st.stored() != nil {
		t.Fatalf("got %q, stored %v", tok.AccessToken, st.stored())
	}
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(saveErrs) == 1 }, "the save error hook")
	mu.Lock()
	if !errors.Is(saveErrs[0], errDiskFull) {
		t.Fatalf("hook got %v", saveErrs[0])
	}
	mu.Unlock()
	if !strings.Contains(lb.String(), "saving the token failed") || !strings.Contains(lb.String(), "disk full") {
		t.Fatalf("log does not report the save failure:\n%s", lb)
	}
	// The save is retried with backoff: fails once more, then succeeds.
	clk.waitTimer(t, clk.Now().Add(500*time.Millisecond))
	clk.Advance(500 * time.Millisecond)
	clk.waitTimer(t, clk.Now().Add(time.Second))
	clk.Advance(time.Second)
	eventually(t, func() bool { return st.stored() != nil }, "the token saved")
	if got := st.stored(); got.AccessToken != "at-1" || got.RefreshToken != "rt-1" {
		t.Fatalf("stored %+v", got)
	}
	mu.Lock()
	if len(saveErrs) != 2 {
		t.Fatalf("%d save errors reported, want 2", len(saveErrs))
	}
	mu.Unlock()
	if f.count() != 1 {
		t.Fatalf("fetches = %d: a failed save must not cause a new request", f.count())
	}
}

func TestCloseSavesUnsavedToken(t *testing.T) {
	clk := newFakeClock()
	st := &recordStore{failN: 1}
	f := newFakeFetch(tokenFor(clk, time.Hour))
	set := defaultSettings()
	if err := set.apply([]Option{WithClock(clk), WithStore(st)}); err != nil {
		t.Fatal(err)
	}
	s := newSource("test", f.fetch, nil, set)
	mustToken(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st.stored() == nil || st.stored().AccessToken != "at-1" {
		t.Fatalf("Close did not save the unsaved token: %v", st.stored())
	}

	// When the last attempt fails too, Close says so.
	st = &recordStore{failN: 2}
	set.store = st
	s = newSource("test", f.fetch, nil, set)
	mustToken(t, s)
	if err := s.Close(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close = %v, want the save error", err)
	}
	checkNoSourceGoroutines(t)
}

func TestMissingExpiryGetsDefaultLifetime(t *testing.T) {
	clk := newFakeClock()
	f := newFakeFetch(func(n int, _ fetchRequest) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "at-" + itoa(n)}, nil
	})
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk), WithDefaultLifetime(10*time.Minute))
	tok := mustToken(t, s)
	if want := epoch.Add(10 * time.Minute); !tok.Expiry.Equal(want) || tok.ExpiresIn != 600 || tok.TokenType != "Bearer" {
		t.Fatalf("token expiry %v expires_in %d type %q, want %v, 600, Bearer", tok.Expiry, tok.ExpiresIn, tok.TokenType, want)
	}
	clk.waitTimer(t, tok.Expiry.Add(-200*time.Second))
}

func TestExpiredOrEmptyFetchResultIsAnError(t *testing.T) {
	clk := newFakeClock()
	for _, tc := range []struct {
		name string
		tok  *oauth2.Token
		want string
	}{
		{"nil", nil, "no access token"},
		{"empty", &oauth2.Token{}, "no access token"},
		{"expired", &oauth2.Token{AccessToken: "x", Expiry: epoch.Add(-time.Second)}, "expired token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeFetch(func(int, fetchRequest) (*oauth2.Token, error) { return tc.tok, nil })
			s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))
			if _, err := s.Token(); err == nil || !strings.Contains(err.Error(), tc.want) || IsPermanent(err) {
				t.Fatalf("err = %v, want temporary %q", err, tc.want)
			}
		})
	}
}

func TestInvalidate(t *testing.T) {
	clk := newFakeClock()
	f := newFakeFetch(tokenFor(clk, time.Hour))
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))
	first := mustToken(t, s)

	// A token that is not current is ignored, as is nil.
	s.Invalidate(&oauth2.Token{AccessToken: "stale"})
	s.Invalidate(nil)
	if f.count() != 1 || mustToken(t, s).AccessToken != "at-1" {
		t.Fatal("Invalidate of a token that is not current had an effect")
	}

	// Many callers reporting the current token cause one request, and the
	// rejected token is no longer handed out.
	f.hold()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); s.Invalidate(first) }()
	}
	wg.Wait()
	f.waitCalls(t, 2)
	if got := f.request(1).rejected; got != "at-1" {
		t.Fatalf("fetch after Invalidate: rejected = %q, want at-1", got)
	}
	_, errs := runConcurrently(t, 20, s, f.release)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := mustToken(t, s).AccessToken; got != "at-2" {
		t.Fatalf("after Invalidate: Token = %q, want at-2", got)
	}
	s.Invalidate(first) // late report of the old token
	time.Sleep(5 * time.Millisecond)
	if got := f.count(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
}

func TestInvalidateDuringFetchThatReturnsTheRejectedToken(t *testing.T) {
	// A broker's plain read may return the token the resource server just
	// rejected; the source then asks again, saying it was rejected, and
	// callers get the answer of that second request.
	clk := newFakeClock()
	var mu sync.Mutex
	current := "at-1"
	f := newFakeFetch(func(n int, req fetchRequest) (*oauth2.Token, error) {
		mu.Lock()
		defer mu.Unlock()
		if req.rejected == current {
			current = "at-new"
		}
		return &oauth2.Token{AccessToken: current, Expiry: clk.Now().Add(time.Hour)}, nil
	})
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))
	first := mustToken(t, s)
	f.hold()
	clk.waitTimer(t, first.Expiry.Add(-5*time.Minute))
	clk.AdvanceTo(first.Expiry.Add(-5 * time.Minute))
	f.waitCalls(t, 2) // refresh ahead, in flight
	s.Invalidate(first)
	toks, errs := runConcurrently(t, 10, s, f.release)
	for i := range toks {
		if errs[i] != nil || toks[i].AccessToken != "at-new" {
			t.Fatalf("caller %d: %v, %v; want at-new", i, toks[i], errs[i])
		}
	}
	if got := f.count(); got != 3 {
		t.Fatalf("fetches = %d, want 3", got)
	}
	if r := f.request(2).rejected; r != "at-1" {
		t.Fatalf("third fetch: rejected = %q", r)
	}
}

func TestInvalidateWhenSourceReturnsSameToken(t *testing.T) {
	// A source that insists on its token (a caching wrapped source): the
	// token is used again after one request, not requested in a loop.
	clk := newFakeClock()
	f := newFakeFetch(func(int, fetchRequest) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "same", Expiry: epoch.Add(time.Hour)}, nil
	})
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))
	tok := mustToken(t, s)
	s.Invalidate(tok)
	f.waitCalls(t, 2)
	eventually(t, func() bool { tok, err := s.Token(); return err == nil && tok.AccessToken == "same" }, "the token")
	time.Sleep(5 * time.Millisecond)
	if got := f.count(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
}

func TestContextHonoured(t *testing.T) {
	clk := newFakeClock()
	f := newFakeFetch(tokenFor(clk, time.Hour))
	f.hold()
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.TokenContext(ctx)
		done <- err
	}()
	f.waitCalls(t, 1)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("TokenContext did not return after its context was canceled")
	}
	// The request goes on for the others, and its result is kept.
	f.release()
	if got := mustToken(t, s).AccessToken; got != "at-1" || f.count() != 1 {
		t.Fatalf("Token = %q after %d fetches, want at-1 after 1", got, f.count())
	}
}

func TestCloseStopsEverything(t *testing.T) {
	clk := newFakeClock()
	f := newFakeFetch(tokenFor(clk, time.Hour))
	set := defaultSettings()
	if err := set.apply([]Option{WithClock(clk)}); err != nil {
		t.Fatal(err)
	}
	checkNoSourceGoroutines(t) // none left by earlier tests
	s := newSource("test", f.fetch, nil, set)
	tok := mustToken(t, s)
	// A request in flight, with a caller waiting for it.
	f.hold()
	s.Invalidate(tok)
	f.waitCalls(t, 2)
	waiter := make(chan error, 1)
	go func() {
		_, err := s.Token()
		waiter <- err
	}()
	eventually(t, func() bool { return goroutinesIn("client.(*TokenSource).TokenContext(") == 1 }, "the waiter")
	if sourceGoroutines() == "" {
		t.Fatal("no source goroutine found while running: the leak check would prove nothing")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter got %v, want ErrClosed", err)
	}
	checkNoSourceGoroutines(t)
	if _, err := s.Token(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Token after Close = %v", err)
	}
	s.Invalidate(tok)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if f.count() != 2 {
		t.Fatalf("fetches = %d after Close", f.count())
	}
}

func TestHooksNeverConcurrent(t *testing.T) {
	clk := newFakeClock()
	st := &recordStore{failN: 1000}
	f := newFakeFetch(tokenFor(clk, time.Hour))
	var active, maxActive int
	var mu sync.Mutex
	enter := func() {
		mu.Lock()
		active++
		maxActive = max(maxActive, active)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		active--
		mu.Unlock()
	}
	s := newTestSource(t, "test", f.fetch, nil, WithClock(clk), WithStore(st), withRandom(0),
		WithOnToken(func(*oauth2.Token) { enter() }), WithOnSaveError(func(error) { enter() }))
	for i := range 20 {
		tok := mustToken(t, s)
		s.Invalidate(tok)
		clk.Advance(time.Second) // due save retries
		f.waitCalls(t, i+2)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxActive != 1 {
		t.Fatalf("hooks ran %d at a time", maxActive)
	}
}

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithStore(nil), "WithStore"},
		{WithLead(-time.Second), "WithLead"},
		{WithLeadFraction(0), "WithLeadFraction"},
		{WithLeadFraction(1), "WithLeadFraction"},
		{WithLeadFraction(-0.5), "WithLeadFraction"},
		{WithLeadFraction(1.5), "WithLeadFraction"},
		{WithLeeway(-1), "WithLeeway"},
		{WithDefaultLifetime(0), "WithDefaultLifetime"},
		{WithLogger(nil), "WithLogger"},
		{WithBackoff(0, time.Second), "WithBackoff"},
		{WithBackoff(2*time.Second, time.Second), "WithBackoff"},
		{WithClock(nil), "WithClock"},
		{WithHTTPClient(nil), "WithHTTPClient"},
		{nil, "nil Option"},
	} {
		set := defaultSettings()
		err := set.apply([]Option{tc.opt})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v", tc.want, err)
		}
	}
}

func TestNoGoroutineLeftByAnySource(t *testing.T) {
	// Every constructor starts a background loop; Close ends it.
	cfg := Config{TokenURL: "http://127.0.0.1:1/token", ClientID: "id", AuthStyle: AuthStyleHeader}
	var sources []*TokenSource
	for _, mk := range []func() (*TokenSource, error){
		func() (*TokenSource, error) { return ClientCredentials(cfg) },
		func() (*TokenSource, error) { return RefreshToken(cfg, "rt") },
		func() (*TokenSource, error) {
			return Wrap(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"}))
		},
		func() (*TokenSource, error) { return Broker("http://127.0.0.1:1", "key", "cred") },
	} {
		s, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, s)
	}
	if sourceGoroutines() == "" {
		t.Fatal("no loop goroutine found: the leak check would prove nothing")
	}
	for _, s := range sources {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	checkNoSourceGoroutines(t)
}

func ExampleWrap() {
	// Any oauth2.TokenSource gains refresh ahead, one shared request for
	// concurrent callers, persistence and Invalidate.
	src, err := Wrap(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static-token"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	tok, err := src.Token()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.Type(), len(tok.AccessToken))
	// Output: Bearer 12
}
