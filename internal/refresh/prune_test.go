package refresh_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// Run prunes refresh events older than the store's retention (12 hours by
// default) in the background, and leaves younger ones and operator events.
func TestRunPrunesOldEvents(t *testing.T) {
	w := newWorld(t, false, nil)
	st := w.open("a", nil)
	c := w.credential(st, "old-history", time.Now().Add(time.Hour))
	ctx := context.Background()
	for _, ev := range []*tokenkeeper.Event{
		{Kind: tokenkeeper.EventRefresh, Time: time.Now().Add(-48 * time.Hour)},
		{Kind: tokenkeeper.EventRefresh, Time: time.Now().Add(-25 * time.Hour)},
		{Kind: tokenkeeper.EventRefresh, Time: time.Now().Add(-time.Hour)},
		{Kind: tokenkeeper.EventCreated, Time: time.Now().Add(-48 * time.Hour)},
	} {
		ev.CredentialID, ev.CredentialName, ev.Outcome = c.ID, c.Name, tokenkeeper.OutcomeOK
		if err := st.AddEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	w.replica("a", st, refresh.Config{EventPruneInterval: 50 * time.Millisecond}, false)
	eventually(t, 10*time.Second, "old refresh events pruned", func() bool {
		evs, err := st.Events(ctx, c.Name, 10)
		return err == nil && len(evs) == 2
	})
	evs, err := st.Events(ctx, c.Name, 10)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Kind != tokenkeeper.EventRefresh || evs[1].Kind != tokenkeeper.EventCreated {
		t.Fatalf("kept %v, %v; want the refresh of an hour ago and the created event", evs[0].Kind, evs[1].Kind)
	}
}

// Background refreshes update the cached tokens of credentials that are
// read, and cache no other: the cache grows with what is read, not with
// every credential.
func TestBackgroundRefreshCachesOnlyWhatIsRead(t *testing.T) {
	w := newWorld(t, false, nil, oauthtest.WithLifetime(3*time.Second))
	st := w.open("a", nil)
	w.credential(st, "read", time.Time{})
	w.credential(st, "unread", time.Time{})
	r := w.replica("a", st, refresh.Config{}, false)
	ctx := context.Background()
	eventually(t, 10*time.Second, "first tokens", func() bool {
		c, err := st.Credential(ctx, "unread")
		return err == nil && c.Token != nil && stored(t, st, "read").Token != nil
	})
	first, err := r.Token(ctx, "read", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Past a background refresh of both (a 3 s token is replaced after 2 s).
	eventually(t, 10*time.Second, "a background refresh of the read credential", func() bool {
		c := stored(t, st, "read")
		return c.Token.AccessToken != first.Token.AccessToken
	})
	if n := r.Cached(); n != 1 {
		t.Fatalf("the cache holds %d credentials; want 1, the one read", n)
	}
	sv, err := r.Token(ctx, "read", 0)
	if err != nil || sv.Token.AccessToken == first.Token.AccessToken {
		t.Fatalf("the read credential's cached token was not replaced by the background refresh: %v", err)
	}
}
