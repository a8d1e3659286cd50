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
