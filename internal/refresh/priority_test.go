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

// batchProbe is a store that tells, for each batch of commits, whether it
// ran on a thread of lowered priority.
type batchProbe struct {
	tokenkeeper.Store
	bc              tokenkeeper.RefreshBatchCommitter
	batches, lowerd atomic.Int32
}

func (p *batchProbe) CompleteRefreshes(ctx context.Context, batch []tokenkeeper.RefreshCommit) ([]*tokenkeeper.Credential, []error) {
	p.batches.Add(1)
	if lowprio.Lowered() {
		p.lowerd.Add(1)
	}
	return p.bc.CompleteRefreshes(ctx, batch)
}

// The claims and the commits that keep tokens fresh run at the process's
// CPU priority, never on lowprio's threads: a niced thread yields to every
// other process's threads too, and on a host busy elsewhere (a CI run's
// other test binaries) tokens of a few seconds expired unrefreshed. The
// pruning and the vacuuming may wait, and do run there.
func TestClaimsAndCommitsAtTheProcessPriority(t *testing.T) {
	w := newWorld(t, false, nil)
	st := w.open("a", nil)
	bc, ok := st.(tokenkeeper.RefreshBatchCommitter)
	if !ok {
		t.Fatal("the store commits no batches: the test would prove nothing")
	}
	probe := &batchProbe{Store: st, bc: bc}
	const n = 20
	for i := range n {
		w.credential(st, fmt.Sprintf("c%02d", i), time.Now().Add(200*time.Millisecond))
	}
	var claims, lowered atomic.Int32
	w.replica("a", probe, refresh.Config{OnClaim: func(int) {
		claims.Add(1)
		if lowprio.Lowered() {
			lowered.Add(1)
		}
	}}, false)
	eventually(t, 20*time.Second, "every credential refreshed", func() bool { return w.refreshes() >= n })
	if claims.Load() == 0 || probe.batches.Load() == 0 {
		t.Fatalf("%d claims, %d batches of commits: the test would prove nothing", claims.Load(), probe.batches.Load())
	}
	if lowered.Load() != 0 || probe.lowerd.Load() != 0 {
		t.Errorf("%d of %d claims and %d of %d batches of commits ran on a thread of lowered priority",
			lowered.Load(), claims.Load(), probe.lowerd.Load(), probe.batches.Load())
	}
}
