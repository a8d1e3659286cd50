package refresh_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/lowprio"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// priorityProbe is a store that tells, for each claim and each batch of
// commits, whether it ran on a thread of lowered priority.
type priorityProbe struct {
	tokenkeeper.Store
	bc                                     tokenkeeper.RefreshBatchCommitter
	claims, claimsLowered, batches, lowerd atomic.Int32
}

func (p *priorityProbe) ClaimDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]*tokenkeeper.Credential, error) {
	p.claims.Add(1)
	if lowprio.Lowered() {
		p.claimsLowered.Add(1)
	}
	return p.Store.ClaimDue(ctx, owner, now, lease, limit)
}

func (p *priorityProbe) CompleteRefreshes(ctx context.Context, batch []tokenkeeper.RefreshCommit) ([]*tokenkeeper.Credential, []error) {
	p.batches.Add(1)
	if lowprio.Lowered() {
		p.lowerd.Add(1)
	}
	return p.bc.CompleteRefreshes(ctx, batch)
}

// The claims and the commits of background refreshes run on threads of
// lower CPU priority than the requests' while the host is not busy
// elsewhere and those threads keep up (lowprio.Lane, whose tests show
// that a busy host or a starved thread gives the work back to the
// process's priority; TestBenchRefreshOnABusyHost shows tokens kept fresh
// so); with a negative PriorityMaxDelay they run at the process's
// priority.
func TestClaimsAndCommitsPriority(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxDelay time.Duration
		lowered  bool
	}{
		// A delay no machine reaches: every claim and commit runs niced.
		{"niced while they keep up", 10 * time.Second, true},
		{"at the process's priority if asked", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// This machine may be busy with other tests: the lanes take
			// the host for idle.
			t.Cleanup(refresh.SetBusyElsewhere(func() bool { return false }))
			w := newWorld(t, false, nil)
			st := w.open("a", nil)
			bc, ok := st.(tokenkeeper.RefreshBatchCommitter)
			if !ok {
				t.Fatal("the store commits no batches: the test would prove nothing")
			}
			probe := &priorityProbe{Store: st, bc: bc}
			const n = 20
			for i := range n {
				w.credential(st, fmt.Sprintf("c%02d", i), time.Now().Add(200*time.Millisecond))
			}
			r := w.replica("a", probe, refresh.Config{PriorityMaxDelay: tc.maxDelay}, false)
			eventually(t, 20*time.Second, "every credential refreshed", func() bool { return w.refreshes() >= n })
			r.stop() // no claim or commit runs while the counts are read
			claims, batches := probe.claims.Load(), probe.batches.Load()
			if claims == 0 || batches == 0 {
				t.Fatalf("%d claims, %d batches of commits: the test would prove nothing", claims, batches)
			}
			want := int32(0)
			if tc.lowered {
				want = claims
			}
			if probe.claimsLowered.Load() != want {
				t.Errorf("%d of %d claims ran on a thread of lowered priority, want %d", probe.claimsLowered.Load(), claims, want)
			}
			if tc.lowered {
				want = batches
			}
			if probe.lowerd.Load() != want {
				t.Errorf("%d of %d batches of commits ran on a thread of lowered priority, want %d", probe.lowerd.Load(), batches, want)
			}
		})
	}
}
