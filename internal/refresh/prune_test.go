package refresh_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
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
