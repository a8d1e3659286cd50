package bench

import (
	"context"
	"errors"
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
// credentials with 1 h tokens seeded two minutes ago, a 10-minute window
// from a minute from now, with a history covering 15 minutes, and the
// default retention's 12 hours (the age limit binds).
func historySetup() (cfg ScaleConfig, lead, period time.Duration, ret sqlstore.EventRetention, span historySpan) {
	cfg = ScaleConfig{Credentials: historyN, Lifetime: time.Hour, Window: 10 * time.Minute, Latency: 20 * time.Millisecond}
	lead = 5 * time.Minute
	now := time.Now()
	span = historySpan{seedStart: now.Add(-2 * time.Minute), start: now.Add(time.Minute), cover: cfg.Window + 5*time.Minute}
	return cfg, lead, cfg.Lifetime - lead, sqlstore.EventRetention{RefreshCount: 1000, RefreshMaxAge: 12 * time.Hour}, span
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
	cfg, lead, period, ret, span := historySetup()
	windowStart := span.start
	sink := &eventSink{}
	total, why, err := seedHistory(context.Background(), sink, ret, historyID, cfg, period, lead, span)
	if err != nil || total != len(sink.events) || !strings.Contains(why, "age limit") {
		t.Fatalf("seedHistory = %d, %q, %v; %d events", total, why, err, len(sink.events))
	}
	inTimeOrder(t, sink.events)
	// Counted without an importer, as Scale sizes the vacuum cycle: as many.
	if counted, _, err := seedHistory(context.Background(), nil, ret, historyID, cfg, period, lead, span); err != nil || counted != total {
		t.Fatalf("seedHistory without an importer counted %d, %v; imported %d", counted, err, total)
	}
	per := map[string][]time.Time{}
	for _, e := range sink.events {
		per[e.CredentialID] = append(per[e.CredentialID], e.Time)
		if e.Time.Before(windowStart.Add(-ret.RefreshMaxAge)) {
			t.Fatalf("event at %s: older than the age limit at the window's start", e.Time)
		}
	}
	// The history covers 15 of the 55 minutes of refreshes,
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
	// Every credential refreshed in the window has a history: the
	// credentials' refreshes are those of their seeding, two minutes
	// before the history's (not a time base of the history's own).
	for i := range historyN {
		next := span.seedStart.Add(time.Duration(float64(period) * float64(i+1) / float64(historyN)))
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
	total, why, err = seedHistory(context.Background(), sink, ret, historyID, cfg, period, lead, span)
	if err != nil || total != 3*historyN || !strings.Contains(why, "count limit") {
		t.Fatalf("count limit: seedHistory = %d, %q, %v", total, why, err)
	}
}

// TestSeedPrunedCycle: the cycle before the window holds about the events
// asked for, all of them past the age limit at the window's start and
// younger than the cycle: what the store prunes at that time.
func TestSeedPrunedCycle(t *testing.T) {
	cfg, lead, period, ret, span := historySetup()
	sink := &eventSink{}
	got, err := seedPrunedCycle(context.Background(), sink, ret, historyID, cfg, period, lead, span, 1500)
	if err != nil || got != len(sink.events) {
		t.Fatalf("seedPrunedCycle = %d, %v; %d events", got, err, len(sink.events))
	}
	if got < 1490 || got > 1510 {
		t.Fatalf("%d events seeded, want about 1500", got)
	}
	to := span.start.Add(-ret.RefreshMaxAge)
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

// TestPlanHistoryCover: the history covers a window that starts after the
// history's seeding, the restart and the backlog, estimated from how long
// the credentials took; a longer cover counts more events, and the plan
// holds for the events it counts.
func TestPlanHistoryCover(t *testing.T) {
	cfg := ScaleConfig{Credentials: 1_000_000, Lifetime: time.Hour, Window: 10 * time.Minute}
	// At a million with 1 h tokens: 13.1 events for each credential whose
	// refresh or pruned event falls in the cover, or the 5 minutes before.
	count := func(cover time.Duration) (int, error) {
		return int(min(1, float64(cover+5*time.Minute)/float64(55*time.Minute)) * float64(cfg.Credentials) * 13.1), nil
	}
	plan := func(seeded time.Duration) (time.Duration, int) {
		t.Helper()
		cover, n, err := planHistoryCover(count, cfg, seeded)
		if err != nil {
			t.Fatal(err)
		}
		// The count returned is the cover's.
		if want, _ := count(cover); n != want {
			t.Fatalf("cover %s: %d events returned, %d counted", cover, n, want)
		}
		return cover, n
	}
	// Seeding in no time: the window and 5 minutes.
	if got, _ := plan(0); got != cfg.Window+5*time.Minute {
		t.Fatalf("instant seeding: cover %s, want %s", got, cfg.Window+5*time.Minute)
	}
	// As measured on SQLite at a million (credentials in 140 s): the
	// history of 4.8 million events took 323 s and the backlog 88 s, so
	// the window ended 7 min 1 s + 10 min after the history's start. The
	// plan covers that, and its own estimate for the events it counted.
	got, n := plan(140 * time.Second)
	if got < 17*time.Minute+time.Second {
		t.Fatalf("credentials seeded in 140 s: cover %s, short of the 17m1s measured", got)
	}
	history := time.Duration(float64(n) * float64(140*time.Second) / float64(cfg.Credentials) / 2)
	if end := history + 15*time.Second + (140*time.Second+history)*3/10 + cfg.Window; end > got {
		t.Fatalf("cover %s, but %d events of history put the window's end at %s", got, n, end)
	}
	if got > 45*time.Minute {
		t.Fatalf("cover %s: more than the whole period's credentials need", got)
	}
	// Slower seeding, a longer cover.
	if slower, _ := plan(280 * time.Second); slower <= got {
		t.Fatalf("credentials seeded in 280 s: cover %s, not longer than %s for 140 s", slower, got)
	}
	// A count that fails fails the plan.
	if _, _, err := planHistoryCover(func(time.Duration) (int, error) { return 0, errors.New("boom") }, cfg, time.Minute); err == nil {
		t.Fatal("planHistoryCover: no error from a failing count")
	}
}
