package bench

import (
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func TestRefreshTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := &refreshTracker{expiry: map[string]time.Time{}}
	attempt := func(name, outcome string, at time.Time, expires time.Time) {
		c := &tokenkeeper.Credential{Name: name}
		if !expires.IsZero() {
			c.Token = &tokenkeeper.Token{ExpiresAt: expires}
		}
		tr.onAttempt(c, &tokenkeeper.Event{Outcome: outcome, Time: at, Latency: 20 * time.Millisecond})
	}
	// First tokens, before measuring: tracked, not counted.
	attempt("a", tokenkeeper.OutcomeOK, t0, t0.Add(10*time.Second))
	attempt("b", tokenkeeper.OutcomeOK, t0, t0.Add(10*time.Second))
	attempt("b", tokenkeeper.OutcomeFenced, t0, time.Time{})
	if tr.tokens() != 2 || tr.ok != 0 || tr.fenced != 0 {
		t.Fatalf("before measuring: %d tokens, %d ok, %d fenced", tr.tokens(), tr.ok, tr.fenced)
	}
	tr.setMeasuring(true)
	attempt("a", tokenkeeper.OutcomeOK, t0.Add(7*time.Second), t0.Add(17*time.Second))  // in time
	attempt("b", tokenkeeper.OutcomeOK, t0.Add(11*time.Second), t0.Add(21*time.Second)) // after expiry
	attempt("c", tokenkeeper.OutcomeOK, t0.Add(11*time.Second), t0.Add(21*time.Second)) // a first token: not late
	attempt("a", tokenkeeper.OutcomeFenced, t0.Add(12*time.Second), time.Time{})
	attempt("a", "error", t0.Add(12*time.Second), time.Time{})
	tr.setMeasuring(false)
	attempt("a", "error", t0.Add(13*time.Second), time.Time{})
	if tr.ok != 3 || tr.late != 1 || tr.fenced != 1 || tr.failed != 1 || len(tr.latencies) != 3 || tr.tokens() != 3 {
		t.Errorf("ok %d late %d fenced %d failed %d latencies %d tokens %d; want 3 1 1 1 3 3",
			tr.ok, tr.late, tr.fenced, tr.failed, len(tr.latencies), tr.tokens())
	}
	if !tr.expiry["b"].Equal(t0.Add(21 * time.Second)) {
		t.Errorf("b expires %s", tr.expiry["b"])
	}
}
