package refresh_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// holdFirst wraps the provider: the first token request is announced on
// arrived and then either delayed by delay before it is answered normally,
// or, with delay < 0, never answered (it ends when the client gives up, and
// the provider never sees it). Later requests pass straight through.
type holdFirst struct {
	delay   time.Duration
	arrived chan struct{}
	once    sync.Once
}

func newHoldFirst(delay time.Duration) *holdFirst {
	return &holdFirst{delay: delay, arrived: make(chan struct{})}
}

func (h *holdFirst) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		if r.URL.Path == "/token" {
			h.once.Do(func() { first = true })
		}
		if !first {
			next.ServeHTTP(w, r)
			return
		}
		// Read the body: only then does the server notice a client that
		// gives up and cancel the request's context.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		close(h.arrived)
		if h.delay < 0 {
			<-r.Context().Done()
			return
		}
		select {
		case <-time.After(h.delay):
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
}

func (h *holdFirst) wait(t *testing.T, w *world) {
	t.Helper()
	select {
	case <-h.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no token request reached the provider; logs:\n" + w.logs.String())
	}
}

// TestShutdownCommitsAnswerInFlight stops a replica while the provider takes
// a second to answer a background refresh: the answer is committed, then Run
// returns.
func TestShutdownCommitsAnswerInFlight(t *testing.T) {
	h := newHoldFirst(time.Second)
	w := newWorld(t, false, h.wrap)
	st := w.open("a", nil)
	r := w.replica("a", st, refresh.Config{ShutdownTimeout: 3 * time.Second, ProviderTimeout: 5 * time.Second}, false)
	w.credential(st, "c", time.Time{})
	r.Wake() // what the HTTP API does after creating a credential
	h.wait(t, w)
	start := time.Now()
	r.stop()
	took := time.Since(start)
	t.Logf("Run returned %s after shutdown began (provider answered after 1s, ShutdownTimeout 3s)", took.Round(time.Millisecond))
	if took < 800*time.Millisecond || took > 2500*time.Millisecond {
		t.Fatalf("shutdown took %s, want about the provider's remaining second", took)
	}
	c := stored(t, st, "c")
	if c.Token == nil || c.LeaseOwner != "" || c.Status != tokenkeeper.StatusActive || w.refreshes() != 1 {
		t.Fatalf("after shutdown: token %v, lease %q, status %s, %d provider calls", c.Token != nil, c.LeaseOwner, c.Status, w.refreshes())
	}
	// The committed (rotated) refresh token is the current one.
	next := w.replica("b", w.open("b", nil), refresh.Config{}, false)
	if _, err := next.Refresh(context.Background(), "c", ""); err != nil {
		t.Fatalf("refresh with the committed refresh token: %v", err)
	}
	w.checkProvider()
}

// TestShutdownWaitsForForcedRefresh stops a replica while a forced refresh
// (a read's or a consumer's) waits for the provider: it is committed too,
// and once Run has returned forced refreshes are refused.
func TestShutdownWaitsForForcedRefresh(t *testing.T) {
	h := newHoldFirst(time.Second)
	w := newWorld(t, false, h.wrap)
	st := w.open("a", nil)
	r := w.replica("a", st, refresh.Config{ShutdownTimeout: 3 * time.Second}, false)
	w.credential(st, "c", time.Now().Add(time.Hour))
	type result struct {
		c   *tokenkeeper.Credential
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := r.Refresh(context.Background(), "c", "")
		done <- result{c, err}
	}()
	h.wait(t, w)
	start := time.Now()
	r.stop()
	took := time.Since(start)
	res := <-done
	if res.err != nil || res.c.Token == nil {
		t.Fatalf("forced refresh during shutdown: %v", res.err)
	}
	t.Logf("Run returned %s after shutdown began, with a forced refresh in flight", took.Round(time.Millisecond))
	if took < 800*time.Millisecond || took > 2500*time.Millisecond {
		t.Fatalf("shutdown took %s, want about the provider's remaining second", took)
	}
	if c := stored(t, st, "c"); c.Token == nil || c.Token.AccessToken != res.c.Token.AccessToken || c.LeaseOwner != "" {
		t.Fatal("the forced refresh was not committed")
	}
	if _, err := r.Refresh(context.Background(), "c", ""); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAVAILABLE {
		t.Fatalf("Refresh after shutdown = %v, want EUNAVAILABLE", err)
	}
	w.checkProvider()
}

// TestShutdownAbandonsUnansweredCall stops a replica while the provider never
// answers: after ShutdownTimeout the call is abandoned, Run returns, and the
// claim stays until its lease expires; then another replica refreshes the
// credential with the same refresh token.
func TestShutdownAbandonsUnansweredCall(t *testing.T) {
	h := newHoldFirst(-1)
	w := newWorld(t, false, h.wrap)
	st := w.open("a", nil)
	cfg := refresh.Config{ProviderTimeout: time.Second, Lease: 2 * time.Second, ShutdownTimeout: 200 * time.Millisecond}
	r := w.replica("a", st, cfg, false)
	w.credential(st, "c", time.Time{})
	r.Wake() // what the HTTP API does after creating a credential
	h.wait(t, w)
	start := time.Now()
	r.stop()
	took := time.Since(start)
	t.Logf("Run returned %s after shutdown began (provider silent, ShutdownTimeout 200ms)", took.Round(time.Millisecond))
	if took < 150*time.Millisecond || took > 700*time.Millisecond {
		t.Fatalf("shutdown took %s, want about ShutdownTimeout", took)
	}
	c := stored(t, st, "c")
	if c.LeaseOwner == "" || c.Token != nil || c.FailureCount != 0 {
		t.Fatalf("after abandoning: lease %q, token %v, failures %d; want the claim kept and nothing committed", c.LeaseOwner, c.Token != nil, c.FailureCount)
	}
	expires := c.LeaseExpiresAt

	b := w.replica("b", w.open("b", nil), cfg, false)
	eventually(t, 5*time.Second, "refresh by the other replica", func() bool { return stored(t, st, "c").Token != nil })
	if c := stored(t, st, "c"); c.LastRefreshAt.Before(expires) {
		t.Fatalf("refreshed at %s, before the abandoned lease expired at %s", c.LastRefreshAt, expires)
	}
	if token(b, "c") == "" || w.refreshes() != 1 {
		t.Fatalf("after the lease expired: %d provider calls", w.refreshes())
	}
	w.checkProvider()
}
