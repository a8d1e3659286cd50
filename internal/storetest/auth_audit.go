package storetest

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func testAudit(e *authEnv) {
	t := e.t
	var added []*tokenkeeper.AuditRecord
	for i := range 25 {
		r := &tokenkeeper.AuditRecord{
			Actor:  []string{"user:alice", "apikey:ops", "client:billing"}[i%3],
			Action: []string{"token.read", "auth.login"}[i%2],
			Target: fmt.Sprintf("cred-%d", i), Outcome: "ok", RemoteAddr: "192.0.2.1:1234", Detail: "d",
		}
		if i == 3 {
			r.Time = start.Add(-time.Hour) // a given time is kept
		}
		if err := e.a.AddAudit(e.ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.ID <= 0 || (i > 0 && r.ID <= added[i-1].ID) {
			t.Fatalf("record %d: id %d not increasing", i, r.ID)
		}
		want := e.clock.Now()
		if i == 3 {
			want = start.Add(-time.Hour)
		}
		if !r.Time.Equal(want) {
			t.Fatalf("record %d: time %v, want %v", i, r.Time, want)
		}
		added = append(added, r)
		e.clock.Add(time.Second)
	}
	newestFirst := func(match func(r *tokenkeeper.AuditRecord) bool) []*tokenkeeper.AuditRecord {
		var out []*tokenkeeper.AuditRecord
		for i := len(added) - 1; i >= 0; i-- {
			if match(added[i]) {
				out = append(out, added[i])
			}
		}
		return out
	}
	all := newestFirst(func(*tokenkeeper.AuditRecord) bool { return true })
	get := func(f tokenkeeper.AuditFilter) []*tokenkeeper.AuditRecord {
		t.Helper()
		got, err := e.a.Audit(e.ctx, f)
		if err != nil {
			t.Fatalf("Audit(%+v): %v", f, err)
		}
		return got
	}
	same(t, "Audit(default)", get(tokenkeeper.AuditFilter{}), all)
	same(t, "Audit(limit 5)", get(tokenkeeper.AuditFilter{Limit: 5}), all[:5])

	// Paging through everything, 7 at a time.
	var paged []*tokenkeeper.AuditRecord
	f := tokenkeeper.AuditFilter{Limit: 7}
	for range 10 {
		page := get(f)
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		f.BeforeID = page[len(page)-1].ID
	}
	same(t, "paged Audit", paged, all)

	byActor := newestFirst(func(r *tokenkeeper.AuditRecord) bool { return r.Actor == "apikey:ops" })
	same(t, "Audit(actor)", get(tokenkeeper.AuditFilter{Actor: "apikey:ops"}), byActor)
	byAction := newestFirst(func(r *tokenkeeper.AuditRecord) bool { return r.Action == "auth.login" })
	same(t, "Audit(action)", get(tokenkeeper.AuditFilter{Action: "auth.login"}), byAction)
	both := newestFirst(func(r *tokenkeeper.AuditRecord) bool {
		return r.Actor == "user:alice" && r.Action == "token.read" && r.ID < added[20].ID
	})
	same(t, "Audit(actor, action, before)", get(tokenkeeper.AuditFilter{Actor: "user:alice", Action: "token.read", BeforeID: added[20].ID, Limit: 2}), both[:2])
	if got := get(tokenkeeper.AuditFilter{Actor: "nobody"}); len(got) != 0 {
		t.Fatalf("Audit(unknown actor) = %d records", len(got))
	}
	if got := get(tokenkeeper.AuditFilter{BeforeID: added[0].ID}); len(got) != 0 {
		t.Fatalf("Audit(before the first) = %d records", len(got))
	}
	// A peer reads the same log.
	pg, err := e.peer().Audit(e.ctx, tokenkeeper.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	same(t, "peer Audit", pg, all)
}

func testAuditCleansAndCaps(e *authEnv) {
	t := e.t
	r := &tokenkeeper.AuditRecord{
		Actor:      strings.Repeat("a", 500),
		Action:     "auth.failed",
		Target:     "bad\x00name\xff",
		Outcome:    strings.Repeat("é", 40), // 2-byte runes cut on a boundary
		RemoteAddr: strings.Repeat("1", 200),
		Detail:     strings.Repeat("x", 5000),
	}
	if err := e.a.AddAudit(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	if len(r.Actor) > 200 || len(r.RemoteAddr) > 100 || len(r.Detail) > 2000 || len(r.Outcome) > 32 {
		t.Fatalf("fields not capped: %d %d %d %d", len(r.Actor), len(r.RemoteAddr), len(r.Detail), len(r.Outcome))
	}
	if !strings.HasSuffix(r.Actor, "…") || !strings.HasPrefix(r.Outcome, "éé") || !utf8Valid(r.Outcome) {
		t.Fatalf("cut fields: %q %q", r.Actor, r.Outcome)
	}
	if r.Target != "bad\uFFFDname\uFFFD" {
		t.Fatalf("target = %q", r.Target)
	}
	got, err := e.a.Audit(e.ctx, tokenkeeper.AuditFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	same(t, "stored audit record", got, []*tokenkeeper.AuditRecord{r})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func testAuditInvalid(e *authEnv) {
	t := e.t
	for _, r := range []*tokenkeeper.AuditRecord{
		nil,
		{Actor: "user:x"},
		{Action: ""},
		{Action: "x", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		wantCode(t, e.a.AddAudit(e.ctx, r), tokenkeeper.EINVALID)
	}
	if n := e.count(`SELECT COUNT(*) FROM audit`); n != 0 {
		t.Fatalf("%d refused audit records stored", n)
	}
	for _, f := range []tokenkeeper.AuditFilter{
		{Limit: -1}, {Limit: 1001}, {BeforeID: -1},
		{Actor: strings.Repeat("a", 201)}, {Actor: "a\x00"}, {Action: "\xff"},
	} {
		_, err := e.a.Audit(e.ctx, f)
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("Audit(%+v) = %v, want EINVALID", f, err)
		}
	}
	for i := range 3 {
		if err := e.a.AddAudit(e.ctx, &tokenkeeper.AuditRecord{Action: fmt.Sprintf("a%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{1, 1000} {
		got, err := e.a.Audit(e.ctx, tokenkeeper.AuditFilter{Limit: limit})
		if err != nil || len(got) != min(limit, 3) {
			t.Fatalf("Audit(limit %d) = %d, %v", limit, len(got), err)
		}
	}
}

func testAuditConcurrent(e *authEnv) {
	t := e.t
	stores := []tokenkeeper.AuthStore{e.a, e.peer()}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				r := &tokenkeeper.AuditRecord{Actor: fmt.Sprintf("w%d", w), Action: "token.read", Target: fmt.Sprint(i)}
				if err := stores[w%2].AddAudit(e.ctx, r); err != nil {
					t.Errorf("AddAudit: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := e.a.Audit(e.ctx, tokenkeeper.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 60 {
		t.Fatalf("%d records, want 60", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID >= got[i-1].ID {
			t.Fatalf("records not newest first: id %d after %d", got[i].ID, got[i-1].ID)
		}
	}
	mine, err := e.a.Audit(e.ctx, tokenkeeper.AuditFilter{Actor: "w3"})
	if err != nil || len(mine) != 10 || mine[0].Target != "9" {
		t.Fatalf("Audit(actor w3) = %s, %v", asJSON(mine), err)
	}
}
