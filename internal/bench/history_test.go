package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

type eventSink struct{ events []*tokenkeeper.Event }

func (s *eventSink) ImportEvents(_ context.Context, es []*tokenkeeper.Event) error {
	for _, e := range es {
		c := *e
		s.events = append(s.events, &c)
	}
	return nil
}

// historyN is the number of credentials of the history tests.
const historyN = 11000

// historySetup is bench scale's setting for the history tests: historyN
// credentials with 1 h tokens, a 10-minute window a minute from now, and
// the default retention's 12 hours (the age limit binds).
func historySetup() (cfg ScaleConfig, lead, period time.Duration, ret sqlstore.EventRetention, windowStart time.Time) {
	cfg = ScaleConfig{Credentials: historyN, Lifetime: time.Hour, Window: 10 * time.Minute, Latency: 20 * time.Millisecond}
	lead = 5 * time.Minute
	return cfg, lead, cfg.Lifetime - lead, sqlstore.EventRetention{RefreshCount: 1000, RefreshMaxAge: 12 * time.Hour}, time.Now().Add(time.Minute)
}

func historyID(i int) string { return fmt.Sprintf("c%07d", i) }

// inTimeOrder fails the test unless the events come oldest first, as the
// broker writes them: the pruner's oldest rows lie together.
func inTimeOrder(t *testing.T, events []*tokenkeeper.Event) {
	t.Helper()
	for k := 1; k < len(events); k++ {
		if events[k].Time.Before(events[k-1].Time) {
			t.Fatalf("event %d at %s comes after one at %s", k, events[k].Time, events[k-1].Time)
		}
	}
}

// TestSeedHistorySteadyState: with the age limit binding, every credential
// that the window prunes or refreshes has its whole history within the age
// limit, one event a period, and no other credential has any.
func TestSeedHistorySteadyState(t *testing.T) {
	cfg, lead, period, ret, windowStart := historySetup()
	sink := &eventSink{}
	total, why, err := seedHistory(context.Background(), sink, ret, historyID, cfg, period, lead, windowStart)
	if err != nil || total != len(sink.events) || !strings.Contains(why, "age limit") {
		t.Fatalf("seedHistory = %d, %q, %v; %d events", total, why, err, len(sink.events))
	}
	inTimeOrder(t, sink.events)
	// Counted without an importer, as Scale sizes the vacuum cycle: as many.
	if counted, _, err := seedHistory(context.Background(), nil, ret, historyID, cfg, period, lead, windowStart); err != nil || counted != total {
		t.Fatalf("seedHistory without an importer counted %d, %v; imported %d", counted, err, total)
	}
	per := map[string][]time.Time{}
	for _, e := range sink.events {
		per[e.CredentialID] = append(per[e.CredentialID], e.Time)
		if e.Time.Before(windowStart.Add(-ret.RefreshMaxAge)) {
			t.Fatalf("event at %s: older than the age limit at the window's start", e.Time)
		}
	}
	// The window with its margin covers 15 of the 55 minutes of refreshes,
	// and the pruned events lie 5 minutes (12 h less 13 periods) before
	// theirs: about 20/55 of the credentials, each with the refreshes of
	// the last 12 hours, 13 or 14 of them (12 h is 13.09 periods).
	want := historyN * 20 / 55
	if d := len(per) - want; d < -historyN/50 || d > historyN/50 {
		t.Fatalf("%d credentials with history, want about %d", len(per), want)
	}
	for id, ts := range per {
		if len(ts) != 13 && len(ts) != 14 {
			t.Fatalf("%s: %d events, want 13 or 14 (12 h of 55-minute periods)", id, len(ts))
		}
		for k := 1; k < len(ts); k++ {
			if ts[k].Sub(ts[k-1]) != period {
				t.Fatalf("%s: events %s and %s are not a period apart", id, ts[k-1], ts[k])
			}
		}
	}
	// Every credential refreshed in the window has a history.
	now := time.Now()
	for i := range historyN {
		next := now.Add(time.Duration(float64(period) * float64(i+1) / float64(historyN)))
		for next.Before(windowStart) {
			next = next.Add(period)
		}
		if next.Before(windowStart.Add(cfg.Window)) && len(per[historyID(i)]) == 0 {
			t.Fatalf("credential %d, refreshed at %s in the window, has no history", i, next)
		}
	}

	// With the count limit binding, every credential has that many.
	sink = &eventSink{}
	ret = sqlstore.EventRetention{RefreshCount: 3, RefreshMaxAge: 12 * time.Hour}
	total, why, err = seedHistory(context.Background(), sink, ret, historyID, cfg, period, lead, windowStart)
	if err != nil || total != 3*historyN || !strings.Contains(why, "count limit") {
		t.Fatalf("count limit: seedHistory = %d, %q, %v", total, why, err)
	}
}

// TestSeedPrunedCycle: the cycle before the window holds about the events
// asked for, all of them past the age limit at the window's start and
// younger than the cycle: what the store prunes at that time.
func TestSeedPrunedCycle(t *testing.T) {
	cfg, lead, period, ret, windowStart := historySetup()
	sink := &eventSink{}
	got, err := seedPrunedCycle(context.Background(), sink, ret, historyID, cfg, period, lead, windowStart, 1500)
	if err != nil || got != len(sink.events) {
		t.Fatalf("seedPrunedCycle = %d, %v; %d events", got, err, len(sink.events))
	}
	if got < 1490 || got > 1510 {
		t.Fatalf("%d events seeded, want about 1500", got)
	}
	to := windowStart.Add(-ret.RefreshMaxAge)
	from := to.Add(-period * 1500 / historyN)
	ids := map[string]bool{}
	inTimeOrder(t, sink.events)
	for _, e := range sink.events {
		if !e.Time.Before(to) || e.Time.Before(from.Add(-time.Second)) {
			t.Fatalf("event at %s, outside the cycle [%s, %s)", e.Time, from, to)
		}
		ids[e.CredentialID] = true
	}
	if len(ids) != got {
		t.Fatalf("%d credentials for %d events: one each, the cycle is shorter than a period", len(ids), got)
	}
}
