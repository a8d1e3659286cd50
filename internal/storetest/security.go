package storetest

import (
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// testPruneAudit: PruneAudit deletes at most limit records older than
// before, oldest first, and nothing younger.
func testPruneAudit(e *authEnv) {
	t := e.t
	var ids []int64
	for i := range 12 {
		// Added out of time order: pruning goes by time, not id.
		at := start.Add(time.Duration((i*5)%12) * time.Hour)
		r := &tokenkeeper.AuditRecord{Time: at, Actor: "apikey:a", Action: "x", Target: fmt.Sprint(i)}
		if err := e.a.AddAudit(e.ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	hours := func() map[int]bool {
		t.Helper()
		recs, err := e.a.Audit(e.ctx, tokenkeeper.AuditFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		m := map[int]bool{}
		for _, r := range recs {
			m[int(r.Time.Sub(start)/time.Hour)] = true
		}
		return m
	}
	// Records of hours 0 to 5 are older than start+6h (the one of 6h is not).
	n, err := e.a.PruneAudit(e.ctx, start.Add(6*time.Hour), 4)
	if err != nil || n != 4 {
		t.Fatalf("PruneAudit(limit 4) = %d, %v; want 4", n, err)
	}
	got := hours()
	for h := range 12 {
		if got[h] != (h >= 4) {
			t.Fatalf("after the first batch, hours kept %v: the oldest 4 must be gone, nothing else", got)
		}
	}
	n, err = e.a.PruneAudit(e.ctx, start.Add(6*time.Hour), 4)
	if err != nil || n != 2 {
		t.Fatalf("second PruneAudit = %d, %v; want 2", n, err)
	}
	n, err = e.a.PruneAudit(e.ctx, start.Add(6*time.Hour), 4)
	if err != nil || n != 0 {
		t.Fatalf("third PruneAudit = %d, %v; want 0", n, err)
	}
	if got := hours(); len(got) != 6 || !got[6] || !got[11] {
		t.Fatalf("hours kept %v, want 6 to 11", got)
	}
	for _, limit := range []int{0, -1, 1 << 30} {
		_, err := e.a.PruneAudit(e.ctx, start, limit)
		wantCode(t, err, tokenkeeper.EINVALID)
	}
	_, err = e.a.PruneAudit(e.ctx, time.Time{}, 10)
	wantCode(t, err, tokenkeeper.EINVALID)
	if len(hours()) != 6 {
		t.Fatal("a refused PruneAudit deleted records")
	}
}

// testRefreshesDoNotEraseOperatorEvents (M3): refresh events are a rolling
// history trimmed apart from operator events; 2000 refresh events (twice
// the default cap) leave the created event, and EventsOfClass lists one
// class at a time.
func testRefreshesDoNotEraseOperatorEvents(e *env) {
	t := e.t
	c := e.create(newCred("busy"))
	created := &tokenkeeper.Event{CredentialID: c.ID, CredentialName: c.Name, Kind: tokenkeeper.EventCreated, Actor: "apikey:ops"}
	if err := e.s.AddEvent(e.ctx, created); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		e.clock.Add(time.Millisecond)
		ev := &tokenkeeper.Event{CredentialID: c.ID, CredentialName: c.Name, Kind: tokenkeeper.EventRefresh,
			Outcome: tokenkeeper.OutcomeOK, Actor: "refresher:x", Message: fmt.Sprint(i)}
		if err := e.s.AddEvent(e.ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	ops, err := e.s.EventsOfClass(e.ctx, c.Name, tokenkeeper.EventClassOperator, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].ID != created.ID || ops[0].Kind != tokenkeeper.EventCreated {
		t.Fatalf("operator events after %d refreshes: %s", n, asJSON(ops))
	}
	refreshes, err := e.s.EventsOfClass(e.ctx, c.Name, tokenkeeper.EventClassRefresh, 5000)
	if err != nil {
		t.Fatal(err)
	}
	// The rolling history still has a cap (the stores' default, 1000).
	if len(refreshes) == 0 || len(refreshes) >= n || refreshes[0].Message != fmt.Sprint(n-1) {
		t.Fatalf("%d refresh events kept, newest %q: want the newest, and fewer than %d", len(refreshes), refreshes[0].Message, n)
	}
	for _, ev := range refreshes {
		if ev.Kind != tokenkeeper.EventRefresh {
			t.Fatalf("refresh class holds a %q event", ev.Kind)
		}
	}
	all, err := e.s.Events(e.ctx, c.Name, 5000)
	if err != nil || len(all) != len(refreshes)+1 || all[len(all)-1].ID != created.ID {
		t.Fatalf("Events = %d events, %v; want the refreshes and the created event, oldest last", len(all), err)
	}
	_, err = e.s.EventsOfClass(e.ctx, c.Name, "secret", 10)
	wantCode(t, err, tokenkeeper.EINVALID)
	_, err = e.s.EventsOfClass(e.ctx, "nope", tokenkeeper.EventClassRefresh, 10)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}
