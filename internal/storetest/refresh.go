package storetest

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func testClaimDue(e *env) {
	t := e.t
	now := start
	mk := func(name string, next time.Time, status tokenkeeper.Status) *tokenkeeper.Credential {
		c := newCred(name)
		c.NextRefreshAt, c.Status = next, status
		return e.create(c)
	}
	a := mk("a", now.Add(-time.Minute), tokenkeeper.StatusActive)
	b := mk("b", now.Add(-time.Hour), tokenkeeper.StatusError)
	c := mk("c", now, tokenkeeper.StatusActive)
	mk("future", now.Add(time.Microsecond), tokenkeeper.StatusActive)
	mk("reauth", now.Add(-time.Hour), tokenkeeper.StatusNeedsReauth)
	mk("off", now.Add(-time.Hour), tokenkeeper.StatusDisabled)

	got, err := e.s.ClaimDue(e.ctx, "w1", now, 30*time.Second, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != b.ID || got[1].ID != a.ID {
		t.Fatalf("first claim = %v, want [b a] (earliest first, limit 2)", names(got))
	}
	for _, g := range got {
		if g.LeaseOwner != "w1" || !g.LeaseExpiresAt.Equal(now.Add(30*time.Second)) || g.Version != 2 {
			t.Errorf("claimed %s: owner %q, lease %v, version %d", g.Name, g.LeaseOwner, g.LeaseExpiresAt, g.Version)
		}
		if g.RefreshToken == "" || g.ClientSecret == "" {
			t.Errorf("claimed %s without its secrets", g.Name)
		}
	}
	got, err = e.s.ClaimDue(e.ctx, "w2", now, 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != c.ID {
		t.Fatalf("second claim = %v, want [c]", names(got))
	}
	got, err = e.s.ClaimDue(e.ctx, "w2", now, 30*time.Second, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("third claim = %v, %v; want nothing", names(got), err)
	}
	// The stored lease matches what the claim returned.
	stored := e.get("a")
	if stored.LeaseOwner != "w1" || stored.Version != 2 {
		t.Fatalf("stored after claim: owner %q version %d", stored.LeaseOwner, stored.Version)
	}

	for _, bad := range []struct {
		owner string
		lease time.Duration
		limit int
	}{{"", time.Minute, 1}, {"w", 0, 1}, {"w", time.Minute, 0}} {
		_, err := e.s.ClaimDue(e.ctx, bad.owner, now, bad.lease, bad.limit)
		wantCode(t, err, tokenkeeper.EINVALID)
	}
}

func names(cs []*tokenkeeper.Credential) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// claimAll has workers claim from stores until nothing is due, and checks
// that every due credential was claimed exactly once.
func claimAll(e *env, stores []tokenkeeper.Store, workers, due int) {
	t := e.t
	var (
		mu     sync.Mutex
		claims = map[string][]string{} // credential id -> owners
	)
	var wg sync.WaitGroup
	for w := range workers {
		s := stores[w%len(stores)]
		owner := fmt.Sprintf("worker-%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A correct store runs dry after due/3 rounds in all; the bound
			// only stops a broken one that hands out leased credentials.
			for range due {
				got, err := s.ClaimDue(e.ctx, owner, start, time.Hour, 3)
				if err != nil {
					t.Errorf("%s: ClaimDue: %v", owner, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, c := range got {
					claims[c.ID] = append(claims[c.ID], owner)
					if c.LeaseOwner != owner {
						t.Errorf("%s got %s leased to %q", owner, c.Name, c.LeaseOwner)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(claims) != due {
		t.Errorf("%d credentials claimed, want %d", len(claims), due)
	}
	for id, owners := range claims {
		if len(owners) != 1 {
			t.Errorf("credential %s claimed %d times: %v", id, len(owners), owners)
		}
	}
	all, err := e.s.Credentials(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		if c.Version != 2 || c.LeaseOwner == "" || claims[c.ID] == nil || claims[c.ID][0] != c.LeaseOwner {
			t.Errorf("%s: version %d, lease %q, claims %v", c.Name, c.Version, c.LeaseOwner, claims[c.ID])
		}
	}
}

func createDue(e *env, n int) {
	for i := range n {
		c := newCred(fmt.Sprintf("due-%03d", i))
		c.NextRefreshAt = start.Add(-time.Duration(i) * time.Second)
		e.create(c)
	}
}

func testClaimDueConcurrent(e *env) {
	createDue(e, 60)
	claimAll(e, []tokenkeeper.Store{e.s}, 12, 60)
}

func testClaimDueTwoStores(e *env) {
	peer := e.OpenPeer(e.t)
	createDue(e, 60)
	claimAll(e, []tokenkeeper.Store{e.s, peer}, 12, 60)
}

func testLeaseExpiry(e *env) {
	t := e.t
	c := newCred("lease")
	c.NextRefreshAt = start
	e.create(c)
	first, err := e.s.ClaimDue(e.ctx, "w1", start, 30*time.Second, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("claim: %v, %v", names(first), err)
	}
	got, err := e.s.ClaimDue(e.ctx, "w2", start.Add(29*time.Second), 30*time.Second, 1)
	if err != nil || len(got) != 0 {
		t.Fatalf("claim within the lease: %v, %v", names(got), err)
	}
	got, err = e.s.ClaimDue(e.ctx, "w2", start.Add(30*time.Second), 30*time.Second, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim after the lease: %v, %v", names(got), err)
	}
	if got[0].LeaseOwner != "w2" || got[0].Version != first[0].Version+1 {
		t.Fatalf("re-claim: owner %q version %d", got[0].LeaseOwner, got[0].Version)
	}
	// The first worker, which lost its lease, is fenced out.
	_, err = e.s.CompleteRefresh(e.ctx, c.ID, "w1", first[0].Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("late")}, Status: tokenkeeper.StatusActive})
	wantCode(t, err, tokenkeeper.ECONFLICT)
	if _, err := e.s.CompleteRefresh(e.ctx, c.ID, "w2", got[0].Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("ok")}, Status: tokenkeeper.StatusActive,
		NextRefreshAt: start.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

func testClaimCredential(e *env) {
	t := e.t
	c := newCred("forced")
	c.Status = tokenkeeper.StatusNeedsReauth
	c.NextRefreshAt = start.Add(24 * time.Hour)
	e.create(c)

	got, err := e.s.ClaimCredential(e.ctx, c.ID, "w1", start, time.Minute)
	if err != nil {
		t.Fatalf("forced claim of a needs_reauth credential not due: %v", err)
	}
	if got.LeaseOwner != "w1" || got.Version != 2 || !got.LeaseExpiresAt.Equal(start.Add(time.Minute)) {
		t.Fatalf("claim: %s", asJSON(got))
	}
	_, err = e.s.ClaimCredential(e.ctx, c.ID, "w2", start.Add(59*time.Second), time.Minute)
	wantCode(t, err, tokenkeeper.ECONFLICT)
	again, err := e.s.ClaimCredential(e.ctx, c.ID, "w1", start.Add(10*time.Second), time.Minute)
	if err != nil || again.Version != 3 {
		t.Fatalf("the holder claiming again: %v", err)
	}
	other, err := e.s.ClaimCredential(e.ctx, c.ID, "w2", start.Add(70*time.Second), time.Minute)
	if err != nil || other.LeaseOwner != "w2" || other.Version != 4 {
		t.Fatalf("claim after expiry: %v", err)
	}
	_, err = e.s.ClaimCredential(e.ctx, "0123456789abcdef0123456789abcdef", "w1", start, time.Minute)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_, err = e.s.ClaimCredential(e.ctx, c.ID, "", start, time.Minute)
	wantCode(t, err, tokenkeeper.EINVALID)
}

func testCompleteRefresh(e *env) {
	t := e.t
	c := e.create(newCred("done"))
	claimed := e.claim(c.ID, "w")
	now := e.clock.Add(2 * time.Second)
	at, rt := secret("access"), secret("rotated")
	res := &tokenkeeper.RefreshResult{
		Token:         &tokenkeeper.Token{AccessToken: at, TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)},
		RefreshToken:  rt,
		Status:        tokenkeeper.StatusActive,
		LastRefreshAt: now,
		NextRefreshAt: now.Add(50 * time.Minute),
		Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK,
			Latency: 1234567 * time.Microsecond, Actor: "refresher:w"},
	}
	got, err := e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, res)
	if err != nil {
		t.Fatal(err)
	}
	want := *claimed
	want.Token = res.Token
	want.RefreshToken = rt
	want.LastRefreshAt = now
	want.NextRefreshAt = now.Add(50 * time.Minute)
	want.Version = claimed.Version + 1
	want.LeaseOwner, want.LeaseExpiresAt = "", time.Time{}
	// The status did not change: UpdatedAt stays (LastRefreshAt moved).
	sameCredential(t, got, &want)
	sameCredential(t, e.get("done"), &want)

	evs := e.events("done")
	if len(evs) != 1 || evs[0].CredentialID != c.ID || evs[0].CredentialName != "done" || evs[0].Latency != res.Event.Latency ||
		evs[0].Outcome != tokenkeeper.OutcomeOK || !evs[0].Time.Equal(now) {
		t.Fatalf("events = %s", asJSON(evs))
	}

	// The lease is released: committing again is fenced out.
	_, err = e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, res)
	wantCode(t, err, tokenkeeper.ECONFLICT)

	// A response without a refresh token keeps the current one.
	claimed = e.claim(c.ID, "w")
	got, err = e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("access2"), TokenType: "Bearer"}, Status: tokenkeeper.StatusActive,
		NextRefreshAt: now.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != rt {
		t.Fatal("a result without a refresh token dropped the current one")
	}
	if !got.Token.ExpiresAt.IsZero() || !got.LastRefreshAt.Equal(now) {
		t.Fatalf("token without expiry or zero LastRefreshAt: %s", asJSON(got))
	}
	_, err = e.s.CompleteRefresh(e.ctx, "0123456789abcdef0123456789abcdef", "w", 1, res)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}

func testCompleteRefreshFailure(e *env) {
	t := e.t
	c := newCred("fail")
	c.Token = &tokenkeeper.Token{AccessToken: secret("current"), TokenType: "Bearer", ExpiresAt: start.Add(time.Minute)}
	e.create(c)
	claimed := e.claim(c.ID, "w")
	got, err := e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Status: tokenkeeper.StatusError, FailureCount: 3, LastError: "provider answered 503",
		LastErrorCode: "http_503", NextRefreshAt: start.Add(8 * time.Second),
		Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeError, ErrorCode: "http_503"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Token == nil || got.Token.AccessToken != c.Token.AccessToken || !got.Token.ExpiresAt.Equal(c.Token.ExpiresAt) ||
		got.RefreshToken != c.RefreshToken {
		t.Fatalf("a failed refresh changed the tokens: %s", asJSON(got))
	}
	if got.Status != tokenkeeper.StatusError || got.FailureCount != 3 || got.LastErrorCode != "http_503" ||
		got.LastError != "provider answered 503" || !got.NextRefreshAt.Equal(start.Add(8*time.Second)) {
		t.Fatalf("failure state: %s", asJSON(got))
	}
	evs := e.events("fail")
	if len(evs) != 1 || evs[0].ErrorCode != "http_503" {
		t.Fatalf("events = %s", asJSON(evs))
	}
	// The status changed (active to error): UpdatedAt moved with it. A
	// second failure leaves the status, and UpdatedAt, as they were.
	failedAt := e.clock.Now()
	if !got.UpdatedAt.Equal(failedAt) {
		t.Fatalf("UpdatedAt = %v after the status changed at %v", got.UpdatedAt, failedAt)
	}
	e.clock.Add(10 * time.Second)
	claimed = e.claim(c.ID, "w")
	got, err = e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Status: tokenkeeper.StatusError, FailureCount: 4, LastError: "provider answered 503",
		LastErrorCode: "http_503", NextRefreshAt: start.Add(30 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.FailureCount != 4 || !got.UpdatedAt.Equal(failedAt) {
		t.Fatalf("a second failure: FailureCount %d, UpdatedAt %v (want 4, %v)", got.FailureCount, got.UpdatedAt, failedAt)
	}
	// Back to active: UpdatedAt moves again.
	e.clock.Add(10 * time.Second)
	claimed = e.claim(c.ID, "w")
	got, err = e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Token:  &tokenkeeper.Token{AccessToken: secret("recovered"), TokenType: "Bearer", ExpiresAt: e.clock.Now().Add(time.Hour)},
		Status: tokenkeeper.StatusActive, NextRefreshAt: e.clock.Now().Add(50 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != tokenkeeper.StatusActive || got.FailureCount != 0 || !got.UpdatedAt.Equal(e.clock.Now()) {
		t.Fatalf("recovered: %s", asJSON(got))
	}
}

func testCompleteRefreshFenced(e *env) {
	t := e.t
	c := e.create(newCred("fenced"))
	claimed := e.claim(c.ID, "w")
	updated, err := e.s.UpdateCredential(e.ctx, "fenced", tokenkeeper.CredentialUpdate{ClientSecret: ptr(secret("new"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := &tokenkeeper.RefreshResult{
		Token:        &tokenkeeper.Token{AccessToken: secret("stale-access")},
		RefreshToken: secret("stale-rotated"), Status: tokenkeeper.StatusActive,
		Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK},
	}
	_, err = e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, res)
	wantCode(t, err, tokenkeeper.ECONFLICT)
	checkErrNoSecret(t, err, []string{res.Token.AccessToken, res.RefreshToken})

	// Wrong owner, right version.
	_, err = e.s.CompleteRefresh(e.ctx, c.ID, "intruder", updated.Version, res)
	wantCode(t, err, tokenkeeper.ECONFLICT)
	claimed = e.claim(c.ID, "w")
	_, err = e.s.CompleteRefresh(e.ctx, c.ID, "intruder", claimed.Version, res)
	wantCode(t, err, tokenkeeper.ECONFLICT)

	sameCredential(t, e.get("fenced"), claimed)
	if evs := e.events("fenced"); len(evs) != 0 {
		t.Fatalf("a fenced commit recorded %d events", len(evs))
	}
	checkNoSecret(t, "raw dump after fenced commits", e.RawDump(t), []string{res.Token.AccessToken, res.RefreshToken})
}

// testCompleteRefreshOvertaken: a commit refused because an operator's
// edit moved the version while the worker still holds the lease is
// committed on top of the edit when the grant is as claimed (the rotated
// refresh token is kept), and otherwise discarded with the lease released
// at once; single and batched commits alike. A lease that is no longer
// the worker's is left alone.
func testCompleteRefreshOvertaken(e *env) {
	t := e.t
	bc, ok := e.s.(tokenkeeper.RefreshBatchCommitter)
	if !ok {
		t.Fatal("the store does not commit refresh results in batches (CompleteRefreshes)")
	}
	commits := map[string]func(id, owner string, version int64, r *tokenkeeper.RefreshResult) (*tokenkeeper.Credential, error){
		"single": func(id, owner string, version int64, r *tokenkeeper.RefreshResult) (*tokenkeeper.Credential, error) {
			return e.s.CompleteRefresh(e.ctx, id, owner, version, r)
		},
		"batch": func(id, owner string, version int64, r *tokenkeeper.RefreshResult) (*tokenkeeper.Credential, error) {
			creds, errs := bc.CompleteRefreshes(e.ctx, []tokenkeeper.RefreshCommit{{ID: id, Owner: owner, Version: version, Result: r}})
			return creds[0], errs[0]
		},
	}
	result := func(claimed *tokenkeeper.Credential, label string) *tokenkeeper.RefreshResult {
		return &tokenkeeper.RefreshResult{
			Token:        &tokenkeeper.Token{AccessToken: secret("at-" + label), TokenType: "Bearer", ExpiresAt: start.Add(time.Hour)},
			RefreshToken: secret("rotated-" + label), Status: tokenkeeper.StatusActive,
			LastRefreshAt: start, NextRefreshAt: start.Add(50 * time.Minute),
			Event:   &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK},
			Claimed: claimed,
		}
	}
	for _, mode := range []string{"single", "batch"} {
		commit := commits[mode]
		name := "overtaken-" + mode
		c := e.create(newCred(name))

		// An access token set by hand moves the version but leaves the
		// grant: the result is committed on the new version.
		claimed := e.claim(c.ID, "w1")
		hand := &tokenkeeper.Token{AccessToken: secret("by-hand"), TokenType: "Bearer", ExpiresAt: start.Add(time.Minute)}
		edited, err := e.s.UpdateCredential(e.ctx, name, tokenkeeper.CredentialUpdate{Token: hand, RefreshLead: ptr(time.Minute)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if edited.Version == claimed.Version {
			t.Fatalf("%s: setting the access token did not move the version", mode)
		}
		res := result(claimed, mode+"-1")
		got, err := commit(c.ID, "w1", claimed.Version, res)
		if err != nil {
			t.Fatalf("%s: commit over an edit that kept the grant: %v", mode, err)
		}
		if got.RefreshToken != res.RefreshToken || got.Token.AccessToken != res.Token.AccessToken ||
			got.LeaseOwner != "" || got.Version <= edited.Version || got.RefreshLead != time.Minute {
			t.Fatalf("%s: after commit over an edit: %s", mode, asJSON(got))
		}
		if evs := e.events(name); len(evs) != 1 || evs[0].Outcome != tokenkeeper.OutcomeOK {
			t.Fatalf("%s: events = %s", mode, asJSON(evs))
		}

		// Without the claimed credential: the plain fence, refused and the
		// lease left to expire.
		claimed = e.claim(c.ID, "w2")
		if _, err := e.s.UpdateCredential(e.ctx, name, tokenkeeper.CredentialUpdate{Token: hand}, nil); err != nil {
			t.Fatal(err)
		}
		res = result(nil, mode+"-2")
		_, err = commit(c.ID, "w2", claimed.Version, res)
		wantCode(t, err, tokenkeeper.ECONFLICT)
		if cur := e.get(name); cur.LeaseOwner != "w2" || cur.RefreshToken == res.RefreshToken {
			t.Fatalf("%s: after a refused commit without the claim: %s", mode, asJSON(cur))
		}
		e.clock.Add(2 * time.Minute)

		// A new refresh token (a re-authorization): discarded, lease
		// released at once; the operator's grant stays.
		claimed = e.claim(c.ID, "w3")
		reauth := secret("reauth-" + mode)
		edited, err = e.s.UpdateCredential(e.ctx, name, tokenkeeper.CredentialUpdate{RefreshToken: &reauth}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res = result(claimed, mode+"-3")
		_, err = commit(c.ID, "w3", claimed.Version, res)
		wantCode(t, err, tokenkeeper.ECONFLICT)
		checkErrNoSecret(t, err, []string{res.Token.AccessToken, res.RefreshToken})
		cur := e.get(name)
		if cur.LeaseOwner != "" || !cur.LeaseExpiresAt.IsZero() || cur.RefreshToken != reauth || cur.Token.AccessToken == res.Token.AccessToken {
			t.Fatalf("%s: after a refused commit over a re-authorization: %s", mode, asJSON(cur))
		}
		if cur.Version < edited.Version {
			t.Fatalf("%s: the release moved the version back: %d < %d", mode, cur.Version, edited.Version)
		}
		// The next claim, by anyone, succeeds at once.
		next := e.claim(c.ID, "w4")
		if next.RefreshToken != reauth {
			t.Fatalf("%s: the next claim does not see the new grant", mode)
		}
		// A stale commit of the released claim stays refused and leaves
		// the new lease alone.
		_, err = commit(c.ID, "w3", claimed.Version, res)
		wantCode(t, err, tokenkeeper.ECONFLICT)
		if cur := e.get(name); cur.LeaseOwner != "w4" {
			t.Fatalf("%s: a stale commit touched another worker's lease: %s", mode, asJSON(cur))
		}

		// A status change with a version move (disabled with new secrets):
		// discarded, released.
		if _, err := commit(c.ID, "w4", next.Version, result(next, mode+"-4")); err != nil {
			t.Fatal(err)
		}
		claimed = e.claim(c.ID, "w5")
		if _, err := e.s.UpdateCredential(e.ctx, name, tokenkeeper.CredentialUpdate{Status: ptr(tokenkeeper.StatusDisabled), Token: hand}, nil); err != nil {
			t.Fatal(err)
		}
		_, err = commit(c.ID, "w5", claimed.Version, result(claimed, mode+"-5"))
		wantCode(t, err, tokenkeeper.ECONFLICT)
		if cur := e.get(name); cur.LeaseOwner != "" || cur.Status != tokenkeeper.StatusDisabled {
			t.Fatalf("%s: after a refused commit over a switch-off: %s", mode, asJSON(cur))
		}
		if _, err := e.s.UpdateCredential(e.ctx, name, tokenkeeper.CredentialUpdate{Status: ptr(tokenkeeper.StatusActive)}, nil); err != nil {
			t.Fatal(err)
		}

		// Our lease expired and another worker claimed: its lease is left
		// alone, even when the grant is as we claimed it.
		claimed = e.claim(c.ID, "w6")
		e.clock.Add(2 * time.Minute)
		e.claim(c.ID, "w7")
		_, err = commit(c.ID, "w6", claimed.Version, result(claimed, mode+"-6"))
		wantCode(t, err, tokenkeeper.ECONFLICT)
		if cur := e.get(name); cur.LeaseOwner != "w7" {
			t.Fatalf("%s: a late commit touched another worker's lease: %s", mode, asJSON(cur))
		}
	}
}

func testCompleteRefreshInvalid(e *env) {
	t := e.t
	c := e.create(newCred("badres"))
	claimed := e.claim(c.ID, "w")
	for name, r := range map[string]*tokenkeeper.RefreshResult{
		"nil":                nil,
		"bad status":         {Status: "weird"},
		"empty status":       {},
		"empty token":        {Token: &tokenkeeper.Token{}, Status: tokenkeeper.StatusActive},
		"negative failures":  {Status: tokenkeeper.StatusError, FailureCount: -1},
		"event without kind": {Status: tokenkeeper.StatusActive, Event: &tokenkeeper.Event{Outcome: "ok"}},
	} {
		_, err := e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, r)
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}
	sameCredential(t, e.get("badres"), claimed)
}

// testCompleteRefreshKeepsDisabled: an operator disables a credential while
// a refresh is in flight; the refresh commits its token (a rotated refresh
// token may be the only valid one) but does not switch the credential back on.
func testCompleteRefreshKeepsDisabled(e *env) {
	t := e.t
	c := e.create(newCred("off"))
	claimed := e.claim(c.ID, "w")
	if _, err := e.s.UpdateCredential(e.ctx, "off", tokenkeeper.CredentialUpdate{Status: ptr(tokenkeeper.StatusDisabled)}, nil); err != nil {
		t.Fatal(err)
	}
	rt := secret("rotated")
	got, err := e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("at")}, RefreshToken: rt, Status: tokenkeeper.StatusActive,
		NextRefreshAt: start.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != tokenkeeper.StatusDisabled || got.RefreshToken != rt {
		t.Fatalf("status %s, rotated token kept %v; want disabled and kept", got.Status, got.RefreshToken == rt)
	}
}

func testNextRefreshAt(e *env) {
	t := e.t
	if _, ok, err := e.s.NextRefreshAt(e.ctx); err != nil || ok {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	mk := func(name string, next time.Time, status tokenkeeper.Status) *tokenkeeper.Credential {
		c := newCred(name)
		c.NextRefreshAt, c.Status = next, status
		return e.create(c)
	}
	mk("off", start.Add(time.Minute), tokenkeeper.StatusDisabled)
	mk("reauth", start.Add(time.Minute), tokenkeeper.StatusNeedsReauth)
	if _, ok, err := e.s.NextRefreshAt(e.ctx); err != nil || ok {
		t.Fatalf("nothing refreshable: ok=%v err=%v", ok, err)
	}
	a := mk("a", start.Add(10*time.Minute), tokenkeeper.StatusActive)
	b := mk("b", start.Add(5*time.Minute), tokenkeeper.StatusError)
	want := func(w time.Time) {
		t.Helper()
		got, ok, err := e.s.NextRefreshAt(e.ctx)
		if err != nil || !ok || !got.Equal(w) {
			t.Fatalf("NextRefreshAt = %v, %v, %v; want %v", got, ok, err, w)
		}
	}
	want(b.NextRefreshAt)

	// b leased for an hour: a is next.
	got, err := e.s.ClaimDue(e.ctx, "w", b.NextRefreshAt, time.Hour, 1)
	if err != nil || len(got) != 1 {
		t.Fatal(err)
	}
	want(a.NextRefreshAt)
	// a leased until 11m: its lease end is next.
	if _, err := e.s.ClaimDue(e.ctx, "w", a.NextRefreshAt, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	want(start.Add(11 * time.Minute))
	// A leased credential rescheduled past its lease counts by its schedule.
	later := start.Add(2 * time.Hour)
	if _, err := e.s.UpdateCredential(e.ctx, "a", tokenkeeper.CredentialUpdate{NextRefreshAt: &later}, nil); err != nil {
		t.Fatal(err)
	}
	want(b.NextRefreshAt.Add(time.Hour))
}

func testConcurrentWriters(e *env) {
	t := e.t
	peer := e.OpenPeer(t)
	stores := []tokenkeeper.Store{e.s, peer}
	var wg sync.WaitGroup
	for w := range 8 {
		s := stores[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				name := fmt.Sprintf("w%d-%d", w, i)
				if err := s.CreateCredential(e.ctx, newCred(name)); err != nil {
					t.Errorf("create %s: %v", name, err)
					return
				}
				if _, err := s.UpdateCredential(e.ctx, name, tokenkeeper.CredentialUpdate{RefreshLead: ptr(time.Minute)},
					&tokenkeeper.Event{Kind: tokenkeeper.EventUpdated}); err != nil {
					t.Errorf("update %s: %v", name, err)
					return
				}
				if err := s.AddEvent(e.ctx, &tokenkeeper.Event{CredentialName: name, Kind: "note"}); err != nil {
					t.Errorf("event %s: %v", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	all, err := peer.Credentials(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 80 {
		t.Fatalf("%d credentials, want 80", len(all))
	}
	sorted := sort.SliceIsSorted(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	if !sorted {
		t.Fatal("Credentials not sorted by name")
	}
}

func testPing(e *env) {
	if err := e.s.Ping(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

// testCompleteRefreshes: a batch commits each result as CompleteRefresh
// would, on its own terms: the fenced and the invalid ones get their
// errors and write nothing, the others are committed with their events.
func testCompleteRefreshes(e *env) {
	t := e.t
	bc, ok := e.s.(tokenkeeper.RefreshBatchCommitter)
	if !ok {
		t.Fatal("the store does not commit refresh results in batches (CompleteRefreshes)")
	}
	a := e.create(newCred("batch-a"))
	b := e.create(newCred("batch-b"))
	f := e.create(newCred("batch-fenced"))
	ca, cb, cf := e.claim(a.ID, "w"), e.claim(b.ID, "w"), e.claim(f.ID, "w")
	now := e.clock.Add(time.Second)
	result := func(label string) *tokenkeeper.RefreshResult {
		return &tokenkeeper.RefreshResult{
			Token:        &tokenkeeper.Token{AccessToken: secret(label), TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)},
			RefreshToken: secret(label + "-rotated"), Status: tokenkeeper.StatusActive, LastRefreshAt: now,
			NextRefreshAt: now.Add(50 * time.Minute),
			Event:         &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK, Actor: "refresher:w"},
		}
	}
	ra, rb, rf := result("a"), result("b"), result("f")
	creds, errs := bc.CompleteRefreshes(e.ctx, []tokenkeeper.RefreshCommit{
		{ID: b.ID, Owner: "w", Version: cb.Version, Result: rb},
		{ID: f.ID, Owner: "w", Version: cf.Version - 1, Result: rf}, // fenced: an older version
		{ID: a.ID, Owner: "w", Version: ca.Version, Result: ra},
		{ID: a.ID, Owner: "", Version: ca.Version, Result: ra}, // invalid: no owner
		{ID: "0123456789abcdef0123456789abcdef", Owner: "w", Version: 1, Result: result("gone")},
	})
	if len(creds) != 5 || len(errs) != 5 {
		t.Fatalf("CompleteRefreshes returned %d credentials and %d errors for 5 items", len(creds), len(errs))
	}
	for i, want := range []struct {
		name string
		r    *tokenkeeper.RefreshResult
	}{{"batch-b", rb}, {"", nil}, {"batch-a", ra}} {
		if want.r == nil {
			continue
		}
		if errs[i] != nil || creds[i] == nil || creds[i].Name != want.name || creds[i].Token.AccessToken != want.r.Token.AccessToken ||
			creds[i].RefreshToken != want.r.RefreshToken || creds[i].LeaseOwner != "" {
			t.Fatalf("item %d: %v, %s", i, errs[i], asJSON(creds[i]))
		}
		if got := e.get(want.name); got.Token.AccessToken != want.r.Token.AccessToken || got.Version != creds[i].Version {
			t.Fatalf("%s as stored: %s", want.name, asJSON(got))
		}
		if evs := e.events(want.name); len(evs) != 1 || evs[0].Outcome != tokenkeeper.OutcomeOK {
			t.Fatalf("%s events: %s", want.name, asJSON(evs))
		}
	}
	wantCode(t, errs[1], tokenkeeper.ECONFLICT)
	wantCode(t, errs[3], tokenkeeper.EINVALID)
	wantCode(t, errs[4], tokenkeeper.ENOTFOUND)
	for _, err := range errs {
		checkErrNoSecret(t, err, []string{rf.Token.AccessToken, rf.RefreshToken})
	}
	sameCredential(t, e.get("batch-fenced"), cf)
	if evs := e.events("batch-fenced"); len(evs) != 0 {
		t.Fatalf("a fenced item recorded %d events", len(evs))
	}
	checkNoSecret(t, "raw dump after a batch", e.RawDump(t), []string{rf.Token.AccessToken, rf.RefreshToken})
}
