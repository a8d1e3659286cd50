package refresh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// gatedStore holds its Credential calls while closed, and counts them.
type gatedStore struct {
	tokenkeeper.Store
	mu     sync.Mutex
	closed chan struct{} // nil: open
	calls  int
}

func (g *gatedStore) Credential(ctx context.Context, name string) (*tokenkeeper.Credential, error) {
	g.mu.Lock()
	g.calls++
	wait := g.closed
	g.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Store.Credential(ctx, name)
}

func (g *gatedStore) close() {
	g.mu.Lock()
	g.closed = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedStore) open() {
	g.mu.Lock()
	close(g.closed)
	g.closed = nil
	g.mu.Unlock()
}

func (g *gatedStore) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// TestOldEntryReloadedInBackground reads a cached credential that nothing
// is known to change, in the last quarter of the time the cache trusts it
// (PollInterval, without change notifications): the read answers from the
// cache at once, although the store does not answer, and reloads the
// credential in the background, once for all the reads; what the reload
// finds (an operator disabled the credential elsewhere) is served before
// the entry would have been stale. The entry is never trusted longer than
// before: once stale, a read waits for the store as it always did.
func TestOldEntryReloadedInBackground(t *testing.T) {
	w := newWorld(t, false, nil)
	ctx := context.Background()
	st := w.open("a", nil)
	w.credential(st, "c", time.Time{})
	g := &gatedStore{Store: st}
	const maxAge = 2 * time.Second
	r := w.replica("a", g, refresh.Config{PollInterval: maxAge}, false)
	eventually(t, 10*time.Second, "first refresh", func() bool { return stored(t, st, "c").Token != nil })

	loaded := time.Now()
	first, err := r.Token(ctx, "c", 0)
	if err != nil {
		t.Fatal(err)
	}
	calls := g.count()

	// Before the last quarter: answered from the cache, nothing loaded.
	time.Sleep(maxAge / 2)
	if s, err := r.Token(ctx, "c", 0); err != nil || s.Token.AccessToken != first.Token.AccessToken {
		t.Fatalf("read at half the age: %v, %v", s, err)
	}
	if n := g.count(); n != calls {
		t.Fatalf("a read at half the cache's age loaded the credential (%d loads)", n-calls)
	}

	// Disabled elsewhere: this replica follows no notifications.
	disabled := tokenkeeper.StatusDisabled
	if _, err := st.UpdateCredential(ctx, "c", tokenkeeper.CredentialUpdate{Status: &disabled}, nil); err != nil {
		t.Fatal(err)
	}
	g.close()
	time.Sleep(time.Until(loaded.Add(maxAge*3/4 + 100*time.Millisecond)))
	for range 20 {
		t0 := time.Now()
		s, err := r.Token(ctx, "c", 0)
		if err != nil || s.Token.AccessToken != first.Token.AccessToken {
			t.Fatalf("read in the last quarter: %v, %v", s, err)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Fatalf("a read in the last quarter waited %s for the store", d)
		}
	}
	if time.Since(loaded) >= maxAge {
		t.Skip("the machine is too slow for this test's timing")
	}
	eventually(t, time.Second, "a load started", func() bool { return g.count() > calls })
	if n := g.count(); n != calls+1 {
		t.Fatalf("the reads in the last quarter started %d loads, want 1", n-calls)
	}
	g.open()
	eventually(t, maxAge, "the reload's state served", func() bool {
		_, err := r.Token(ctx, "c", 0)
		return tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTREADY
	})
	if time.Since(loaded) >= maxAge {
		t.Fatalf("the disabled state showed only %s after the load, when the entry was stale anyway", time.Since(loaded))
	}

	// A stale entry still waits for the store: enabled again elsewhere,
	// then read past its age with the store answering late.
	active := tokenkeeper.StatusActive
	if _, err := st.UpdateCredential(ctx, "c", tokenkeeper.CredentialUpdate{Status: &active}, nil); err != nil {
		t.Fatal(err)
	}
	g.close()
	time.Sleep(maxAge + 100*time.Millisecond)
	done := make(chan error, 1)
	go func() { _, err := r.Token(ctx, "c", 0); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a read of a stale entry answered (%v) without the store", err)
	case <-time.After(100 * time.Millisecond):
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatalf("read once the store answers: %v", err)
	}
}

// TestDeletedElsewhereLeavesTheCacheOnReload: a credential deleted
// elsewhere (no notifications) is read in the last quarter of the time the
// cache trusts its entry; the background reload finds it gone and drops the
// entry, so that reads answer ENOTFOUND from then on, not the deleted
// credential's token until the entry would have gone stale anyway.
func TestDeletedElsewhereLeavesTheCacheOnReload(t *testing.T) {
	w := newWorld(t, false, nil)
	ctx := context.Background()
	st := w.open("a", nil)
	w.credential(st, "c", time.Time{})
	const maxAge = 4 * time.Second
	r := w.replica("a", st, refresh.Config{PollInterval: maxAge}, false)
	eventually(t, 10*time.Second, "first refresh", func() bool { return stored(t, st, "c").Token != nil })
	loaded := time.Now()
	first, err := r.Token(ctx, "c", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteCredential(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	// Before the last quarter: the cache answers, as it always has.
	if s, err := r.Token(ctx, "c", 0); err != nil || s.Token.AccessToken != first.Token.AccessToken {
		t.Fatalf("read before the last quarter: %v, %v", s, err)
	}
	time.Sleep(time.Until(loaded.Add(maxAge*3/4 + 100*time.Millisecond)))
	// This read starts the reload (and may still answer from the cache).
	_, _ = r.Token(ctx, "c", 0)
	eventually(t, maxAge, "ENOTFOUND once the reload found the credential gone", func() bool {
		_, err := r.Token(ctx, "c", 0)
		return tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND
	})
	if at := time.Since(loaded); at >= maxAge {
		t.Fatalf("the deletion showed %s after the first read, when the entry was stale anyway (%s)", at.Round(time.Millisecond), maxAge)
	}
	if n := r.Cached(); n != 0 {
		t.Fatalf("the cache holds %d entries after the deletion showed", n)
	}
}
