package refresh_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// A background refresh's result waits CommitBatchWait for others to share
// its commit; a read that needs that result (it found the credential
// leased by the loop) hurries it instead of waiting out the batch. The
// control shows that the result does linger without a reader.
func TestReadHurriesBackgroundCommit(t *testing.T) {
	const latency, linger = 300 * time.Millisecond, 3 * time.Second
	w := newWorld(t, false, nil, oauthtest.WithLatency(latency))
	st := w.open("a", nil)
	ctx := context.Background()
	w.credential(st, "bg", time.Time{})
	// Due once the control is over and the batcher has gone idle (it
	// waits once more after a commit before it looks for more), and
	// refreshed by the loop alone.
	readDue := time.Now().Add(2*linger + time.Second)
	w.credential(st, "rd", readDue)
	r := w.replica("a", st, refresh.Config{CommitBatchWait: linger}, false)

	leased := func(name string) bool { return stored(t, st, name).LeaseOwner != "" }
	committed := func(name string) bool { c := stored(t, st, name); return c.Token != nil && c.LeaseOwner == "" }

	// Control: nobody reads bg, so its result waits out the batch.
	eventually(t, 5*time.Second, "bg claimed", func() bool { return leased("bg") })
	took := eventually(t, 2*linger, "bg committed", func() bool { return committed("bg") })
	if took < linger-time.Second {
		t.Fatalf("a background result nobody waits for was committed %s after its claim, want about the batch wait %s (the control does not hold)", took, linger)
	}

	// A read of rd while the loop's refresh of it is at the provider.
	eventually(t, 2*linger+10*time.Second, "rd claimed", func() bool { return leased("rd") })
	start := time.Now()
	served, err := r.Token(ctx, "rd", 0)
	took = time.Since(start)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if served.Token == nil || served.Token.AccessToken == "" || served.Status != tokenkeeper.StatusActive {
		t.Fatalf("served %+v, want the new token of an active credential", served)
	}
	if took > linger/2 {
		t.Errorf("the read waited %s for the loop's refresh, want the provider's %s and a poll, not the batch wait %s", took, latency, linger)
	}
	if got := w.refreshes(); got != 2 {
		t.Errorf("%d refreshes at the provider, want 2 (the read shares the loop's)", got)
	}
	w.checkProvider()
}

// The batch waits do not hold a backlog below the rate the slots allow:
// results are committed once half the slots' worth are pending, and after
// a claim that took every free slot the loop claims again as soon as a
// quarter of them are free. With 400 ms waits that never ended early, 8
// slots held for a commit wait each would refresh 8 credentials per 400
// ms at best: 300 in 15 s or more. (At 200 ms waits: 13.3 s here with
// both rules taken out, 1.2 s with them; at 400 ms, 3.6 s under -race.)
func TestBatchWaitsKeepBacklogRate(t *testing.T) {
	const n, slots, wait = 300, 8, 400 * time.Millisecond
	w := newWorld(t, false, nil, oauthtest.WithLatency(20*time.Millisecond))
	st := w.open("a", nil)
	for i := range n {
		w.credential(st, fmt.Sprintf("c%03d", i), time.Time{})
	}
	start := time.Now()
	w.replica("a", st, refresh.Config{Concurrency: slots, CommitBatchWait: wait, ClaimBatchWait: wait}, false)
	took := eventually(t, 60*time.Second, "every credential refreshed", func() bool {
		return w.refreshes() >= n && countCommitted(t, st) == n
	})
	t.Logf("%d credentials refreshed and committed in %s", n, time.Since(start))
	if bound := time.Duration(n/slots) * wait; took > bound/2 {
		t.Errorf("%d due credentials took %s, want under half the %s that waiting out every batch wait takes", n, took, bound)
	}
	if got := w.refreshes(); got != n {
		t.Errorf("%d refreshes, want %d", got, n)
	}
	w.checkProvider()
}

// countCommitted returns how many of st's credentials hold a token and no
// lease.
func countCommitted(t *testing.T, st tokenkeeper.Store) int {
	t.Helper()
	cs, err := st.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	for _, c := range cs {
		if c.Token != nil && c.LeaseOwner == "" {
			k++
		}
	}
	return k
}
