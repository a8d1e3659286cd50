package refresh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// token returns the access token replica r serves for name, "" on error.
func token(r *replica, name string) string {
	s, err := r.Token(context.Background(), name, 0)
	if err != nil || s.Token == nil {
		return ""
	}
	return s.Token.AccessToken
}

// stored returns the credential as the store holds it.
func stored(t *testing.T, st tokenkeeper.Store, name string) *tokenkeeper.Credential {
	t.Helper()
	c, err := st.Credential(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReplicasFollowChanges runs two replicas on two pools of one schema,
// with change notifications: what one does, the other's cache and schedule
// follow within a second, although both poll only once a minute.
func TestReplicasFollowChanges(t *testing.T) {
	w := newWorld(t, true, nil)
	ctx := context.Background()
	stA, stB := w.open("a", nil), w.open("b", nil)
	cfg := refresh.Config{PollInterval: time.Minute}
	a := w.replica("a", stA, cfg, true)
	b := w.replica("b", stB, cfg, true)

	// A credential created through A's store is refreshed at once: the
	// loops sleep for a minute but the notification wakes them.
	w.credential(stA, "c", time.Time{})
	d := eventually(t, time.Second, "first refresh", func() bool { return w.refreshes() == 1 && stored(t, stB, "c").Token != nil })
	t.Logf("created on A: refreshed %s later", d.Round(time.Millisecond))
	first := stored(t, stA, "c").Token.AccessToken
	if token(a, "c") != first || token(b, "c") != first {
		t.Fatal("the replicas do not serve the stored token")
	}

	// A forced refresh on A is served by B within a second.
	c2, err := a.Refresh(ctx, "c", "")
	if err != nil {
		t.Fatal(err)
	}
	if c2.Token.AccessToken == first {
		t.Fatal("forced refresh kept the token")
	}
	d = eventually(t, time.Second, "B serves A's new token", func() bool { return token(b, "c") == c2.Token.AccessToken })
	t.Logf("refreshed on A: served by B %s later", d.Round(time.Millisecond))

	// An edit on A (here a status change, which leaves the fencing version
	// alone) shows on B.
	disabled := tokenkeeper.StatusDisabled
	if _, err := stA.UpdateCredential(ctx, "c", tokenkeeper.CredentialUpdate{Status: &disabled}, nil); err != nil {
		t.Fatal(err)
	}
	a.Forget("c") // what the HTTP API does after an edit
	d = eventually(t, time.Second, "B sees the new status", func() bool {
		s, err := b.Token(ctx, "c", 0) // a disabled credential serves no token
		return tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTREADY && s != nil && s.Status == tokenkeeper.StatusDisabled
	})
	t.Logf("status changed on A: seen by B %s later", d.Round(time.Millisecond))

	// Re-enabled and rescheduled for now on A: a loop refreshes it within
	// a second, and B serves the result.
	active, now := tokenkeeper.StatusActive, time.Now()
	before := w.refreshes()
	if _, err := stA.UpdateCredential(ctx, "c", tokenkeeper.CredentialUpdate{Status: &active, NextRefreshAt: &now}, nil); err != nil {
		t.Fatal(err)
	}
	d = eventually(t, time.Second, "rescheduled refresh", func() bool {
		return w.refreshes() == before+1 && stored(t, stB, "c").LeaseOwner == "" && token(b, "c") == stored(t, stB, "c").Token.AccessToken
	})
	t.Logf("rescheduled on A: refreshed and served by B %s later", d.Round(time.Millisecond))

	// Deleted on A: B stops serving it.
	if err := stA.DeleteCredential(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	d = eventually(t, time.Second, "B forgets the deleted credential", func() bool {
		_, err := b.Token(ctx, "c", 0)
		return tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND
	})
	t.Logf("deleted on A: gone from B %s later", d.Round(time.Millisecond))
	w.checkProvider()
}

// TestReplicasWithoutNotify is the same story without change notifications:
// the fallback poll (PollInterval, here one second) carries it.
func TestReplicasWithoutNotify(t *testing.T) {
	w := newWorld(t, true, nil)
	ctx := context.Background()
	stA, stB := w.open("a", nil), w.open("b", nil)
	poll := time.Second
	cfg := refresh.Config{PollInterval: poll}
	a := w.replica("a", stA, cfg, false)
	b := w.replica("b", stB, cfg, false)
	bound := 2*poll + 500*time.Millisecond

	w.credential(stA, "c", time.Time{})
	d := eventually(t, bound, "first refresh", func() bool { return w.refreshes() == 1 && stored(t, stB, "c").Token != nil })
	t.Logf("created on A: refreshed %s later", d.Round(time.Millisecond))
	if token(b, "c") == "" {
		t.Fatal("B serves no token")
	}

	c2, err := a.Refresh(ctx, "c", "")
	if err != nil {
		t.Fatal(err)
	}
	d = eventually(t, bound, "B serves A's new token", func() bool { return token(b, "c") == c2.Token.AccessToken })
	t.Logf("refreshed on A: served by B %s later", d.Round(time.Millisecond))

	later := time.Now().Add(poll / 2)
	before := w.refreshes()
	if _, err := stA.UpdateCredential(ctx, "c", tokenkeeper.CredentialUpdate{NextRefreshAt: &later}, nil); err != nil {
		t.Fatal(err)
	}
	d = eventually(t, bound, "rescheduled refresh", func() bool { return w.refreshes() == before+1 })
	t.Logf("rescheduled on A: refreshed %s later", d.Round(time.Millisecond))

	if err := stA.DeleteCredential(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	d = eventually(t, bound, "B forgets the deleted credential", func() bool {
		_, err := b.Token(ctx, "c", 0)
		return tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND
	})
	t.Logf("deleted on A: gone from B %s later", d.Round(time.Millisecond))
	w.checkProvider()
}

// TestRejectedTokenJudgedByStore reports a rejected token to a replica whose
// cache is stale: the report is judged against the store, so it causes no
// provider call; and reports of the current token to both replicas at once
// cause one.
func TestRejectedTokenJudgedByStore(t *testing.T) {
	w := newWorld(t, true, nil, oauthtest.WithLatency(100*time.Millisecond))
	ctx := context.Background()
	stA, stB := w.open("a", nil), w.open("b", nil)
	// No notifications and a long poll: B's cache stays stale.
	cfg := refresh.Config{PollInterval: time.Hour}
	a := w.replica("a", stA, cfg, false)
	b := w.replica("b", stB, cfg, false)
	w.credential(stA, "c", time.Now().Add(time.Hour)) // refreshed only when forced

	c1, err := a.Refresh(ctx, "c", "")
	if err != nil {
		t.Fatal(err)
	}
	t1 := c1.Token.AccessToken
	if token(b, "c") != t1 {
		t.Fatal("B does not serve the first token")
	}
	c2, err := a.Refresh(ctx, "c", t1) // a consumer of A reports t1
	if err != nil {
		t.Fatal(err)
	}
	t2 := c2.Token.AccessToken
	if t2 == t1 || w.refreshes() != 2 {
		t.Fatalf("the report of the current token on A: %d provider calls", w.refreshes())
	}
	if token(b, "c") != t1 {
		t.Fatal("B's cache is not stale: the test proves nothing")
	}

	// A consumer of B reports t1, which B still serves: no provider call.
	got, err := b.Refresh(ctx, "c", t1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Token.AccessToken != t2 || w.refreshes() != 2 {
		t.Fatalf("the report of an old token to B refreshed (%d provider calls) or answered an old token", w.refreshes())
	}
	if token(b, "c") != t2 {
		t.Fatal("B still serves the old token after the report")
	}

	// Twenty consumers report t2 to both replicas at once: one refresh.
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]string, 20)
	for i := range results {
		r := a
		if i%2 == 1 {
			r = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := r.Refresh(ctx, "c", t2)
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = c.Token.AccessToken
		}()
	}
	close(start)
	wg.Wait()
	if w.refreshes() != 3 {
		t.Fatalf("20 reports of one token to two replicas made %d provider calls, want 1", w.refreshes()-2)
	}
	for _, r := range results {
		if r != results[0] || r == t2 {
			t.Fatalf("reports were answered with different or old tokens")
		}
	}
	w.checkProvider()
}

// TestSameDueCredentialOneProviderRequest gives two replicas the same due
// credentials at the same instant, through their loops and through reads
// that need a fresher token: each credential costs one provider request.
func TestSameDueCredentialOneProviderRequest(t *testing.T) {
	w := newWorld(t, true, nil, oauthtest.WithLatency(50*time.Millisecond))
	ctx := context.Background()
	stA, stB := w.open("a", nil), w.open("b", nil)
	cfg := refresh.Config{PollInterval: time.Minute}
	a := w.replica("a", stA, cfg, true)
	b := w.replica("b", stB, cfg, true)

	// Twenty credentials due at one instant: both loops wake for it.
	const n = 20
	due := time.Now().Add(500 * time.Millisecond)
	for i := range n {
		w.credential(stA, "due-"+string(rune('a'+i)), due)
	}
	eventually(t, 5*time.Second, "all refreshed", func() bool {
		for i := range n {
			if stored(t, stA, "due-"+string(rune('a'+i))).Token == nil {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // a second request would have arrived by now
	if got := w.refreshes(); got != n {
		t.Fatalf("%d credentials due at once on two replicas: %d provider requests", n, got)
	}
	byOwner := map[string]int{}
	for i := range n {
		evs, err := stA.Events(ctx, "due-"+string(rune('a'+i)), 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Kind == tokenkeeper.EventRefresh {
				byOwner[ev.Actor]++
			}
		}
	}
	t.Logf("refreshes by replica: %v", byOwner)

	// One credential whose token is too short for two readers, one on each
	// replica, asking at the same instant.
	now := time.Now()
	c := &tokenkeeper.Credential{
		Name: "read", TokenURL: w.idp.TokenURL(), GrantType: tokenkeeper.GrantRefreshToken,
		ClientID: "app", ClientSecret: w.secret, RefreshToken: w.idp.IssueRefreshToken("app", ""), AuthStyle: tokenkeeper.AuthStyleHeader,
		Token:         &tokenkeeper.Token{AccessToken: "seed-token", TokenType: "Bearer", ExpiresAt: now.Add(10 * time.Second)},
		LastRefreshAt: now.Add(-50 * time.Second), NextRefreshAt: now.Add(time.Hour),
	}
	w.secrets = append(w.secrets, c.RefreshToken)
	if err := stA.CreateCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*replica{a, b} {
		if token(r, "read") != "seed-token" {
			t.Fatal("the replicas do not serve the seeded token")
		}
	}
	before := w.refreshes()
	var wg sync.WaitGroup
	start := make(chan struct{})
	got := make([]string, 2)
	for i, r := range []*replica{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, err := r.Token(ctx, "read", 30*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = s.Token.AccessToken
		}()
	}
	close(start)
	wg.Wait()
	if w.refreshes() != before+1 {
		t.Fatalf("two replicas reading with min_ttl at once made %d provider requests, want 1", w.refreshes()-before)
	}
	if got[0] != got[1] || got[0] == "seed-token" {
		t.Fatal("the readers got different or old tokens")
	}
	w.checkProvider()
}
