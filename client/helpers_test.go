package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// epoch is the fake clock's starting time.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a Clock whose time moves only when Advance is called.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time    // guarded by mu
	timers []*fakeTimer // guarded by mu; pending timers
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t.ch, func() bool { return false }
	}
	c.timers = append(c.timers, t)
	return t.ch, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				return true
			}
		}
		return false
	}
}

// Advance moves the clock forward by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// AdvanceTo moves the clock to at (which must not be in the past).
func (c *fakeClock) AdvanceTo(at time.Time) { c.Advance(at.Sub(c.Now())) }

// pendingAt reports whether a timer is pending with deadline at.
func (c *fakeClock) pendingAt(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if t.at.Equal(at) {
			return true
		}
	}
	return false
}

// pending returns the number of pending timers.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// waitTimer waits until a timer with deadline at is pending: the source's
// loop has scheduled its next action for at.
func (c *fakeClock) waitTimer(t *testing.T, at time.Time) {
	t.Helper()
	eventually(t, func() bool { return c.pendingAt(at) }, "timer at %v (now %v)", at.Sub(epoch), c.Now().Sub(epoch))
}

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeFetch is a fetchFunc that records its requests and answers with
// next, optionally waiting for a release first.
type fakeFetch struct {
	mu    sync.Mutex
	reqs  []fetchRequest                                       // guarded by mu
	next  func(n int, req fetchRequest) (*oauth2.Token, error) // guarded by mu
	gate  chan struct{}                                        // guarded by mu; if not nil, fetches wait for it to close
	inCh  chan struct{}                                        // signaled (non-blocking) when a fetch starts
	calls int                                                  // guarded by mu
}

func newFakeFetch(next func(n int, req fetchRequest) (*oauth2.Token, error)) *fakeFetch {
	return &fakeFetch{next: next, inCh: make(chan struct{}, 100)}
}

// hold makes the following fetches wait until release is called.
func (f *fakeFetch) hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = make(chan struct{})
}

// release lets the held fetches proceed.
func (f *fakeFetch) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
}

func (f *fakeFetch) fetch(ctx context.Context, req fetchRequest) (*oauth2.Token, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.reqs = append(f.reqs, req)
	gate, next := f.gate, f.next
	f.mu.Unlock()
	select {
	case f.inCh <- struct{}{}:
	default:
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return next(n, req)
}

func (f *fakeFetch) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeFetch) request(i int) fetchRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[i]
}

// waitCalls waits until n fetches have started.
func (f *fakeFetch) waitCalls(t *testing.T, n int) {
	t.Helper()
	eventually(t, func() bool { return f.count() >= n }, "%d fetches (have %d)", n, f.count())
}

// tokenFor returns a fetch answer: access token "at-<n>" living lifetime
// from clk's now.
func tokenFor(clk Clock, lifetime time.Duration) func(n int, req fetchRequest) (*oauth2.Token, error) {
	return func(n int, req fetchRequest) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: "at-" + itoa(n), TokenType: "Bearer", Expiry: clk.Now().Add(lifetime)}, nil
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// withRandom fixes the jitter, for tests.
func withRandom(r float64) Option {
	return func(s *settings) error {
		s.randomFraction = func() float64 { return r }
		return nil
	}
}

// newTestSource builds a source around fetch with opts, closing it (and
// checking that no goroutine is left) at the end of the test.
func newTestSource(t *testing.T, kind string, fetch fetchFunc, seed *oauth2.Token, opts ...Option) *TokenSource {
	t.Helper()
	set := defaultSettings()
	if err := set.apply(opts); err != nil {
		t.Fatal(err)
	}
	s := newSource(kind, fetch, seed, set)
	t.Cleanup(func() {
		s.Close()
		checkSourceStopped(t, s)
	})
	return s
}

// checkNoSourceGoroutines fails the test if any goroutine is still running
// code of this package's sources (loop, fetch, save). It polls for up to 5 s,
// because a goroutine lingers for a moment after its deferred
// WaitGroup.Done, which is what Close waits for.
func checkNoSourceGoroutines(t *testing.T) {
	t.Helper()
	waitNoGoroutines(t, func(g string) bool {
		// A goroutine that has not started yet shows only where it was
		// created.
		return strings.Contains(g, "client.(*TokenSource).") || strings.Contains(g, "client.(*brokerClient).") ||
			strings.Contains(g, "client.newSource")
	})
}

// checkSourceStopped fails the test if a goroutine of s is still running.
func checkSourceStopped(t *testing.T, s *TokenSource) {
	t.Helper()
	ptr := fmt.Sprintf("(%p", s)
	waitNoGoroutines(t, func(g string) bool {
		for _, line := range strings.Split(g, "\n") {
			if strings.Contains(line, "client.(*TokenSource).") && strings.Contains(line, ptr) {
				return true
			}
		}
		return false
	})
}

func waitNoGoroutines(t *testing.T, match func(stack string) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var found []string
		for i, g := range strings.Split(allStacks(), "\n\n") {
			if i > 0 && match(g) { // 0 is the calling goroutine
				found = append(found, g)
			}
		}
		if len(found) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still running:\n%s", strings.Join(found, "\n\n"))
		}
		time.Sleep(time.Millisecond)
	}
}

// goroutinesIn counts the goroutines whose stack contains fn.
func goroutinesIn(fn string) int {
	return strings.Count(allStacks(), fn)
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// sourceGoroutines returns the stacks of goroutines running TokenSource
// code, excluding the calling goroutine.
func sourceGoroutines() string {
	var out []string
	for i, g := range strings.Split(allStacks(), "\n\n") {
		if i > 0 && (strings.Contains(g, "client.(*TokenSource).") || strings.Contains(g, "client.newSource")) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// recordStore is a TokenStore that records saves and can be made to fail
// or block.
type recordStore struct {
	mu      sync.Mutex
	tok     *oauth2.Token   // guarded by mu
	saves   []*oauth2.Token // guarded by mu
	loads   int             // guarded by mu
	failN   int             // guarded by mu; fail this many saves
	loadErr error           // guarded by mu
	block   chan struct{}   // if not nil, Save waits for it to close
}

func (r *recordStore) Load(ctx context.Context) (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loads++
	if r.loadErr != nil {
		return nil, r.loadErr
	}
	return copyToken(r.tok), nil
}

var errDiskFull = errors.New("disk full")

func (r *recordStore) Save(ctx context.Context, t *oauth2.Token) error {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.saves = append(r.saves, copyToken(t))
	if r.failN > 0 {
		r.failN--
		return errDiskFull
	}
	r.tok = copyToken(t)
	return nil
}

func (r *recordStore) stored() *oauth2.Token {
	r.mu.Lock()
	defer r.mu.Unlock()
	return copyToken(r.tok)
}

func (r *recordStore) saveCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.saves)
}

// logBuffer captures JSON logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	lb := &logBuffer{}
	return lb, slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustToken calls TokenContext and fails the test on error.
func mustToken(t *testing.T, s *TokenSource) *oauth2.Token {
	t.Helper()
	tok, err := s.TokenContext(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}
