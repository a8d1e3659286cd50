package storetest

import (
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// consoleStore returns the store as a ConsoleStore, failing the test when
// it is not one.
func (e *env) consoleStore() tokenkeeper.ConsoleStore {
	e.t.Helper()
	cs, ok := e.s.(tokenkeeper.ConsoleStore)
	if !ok {
		e.t.Fatalf("%T does not implement tokenkeeper.ConsoleStore", e.s)
	}
	return cs
}

// refreshOnce commits one refresh of c at the clock's time: a token that
// expires after lifetime, or a failure with status.
func (e *env) refreshOnce(c *tokenkeeper.Credential, lifetime time.Duration, status tokenkeeper.Status) {
	e.t.Helper()
	claimed := e.claim(c.ID, "w")
	now := e.clock.Now()
	res := &tokenkeeper.RefreshResult{Status: status, LastRefreshAt: now, NextRefreshAt: now.Add(time.Hour),
		Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK, Actor: "refresher:w"}}
	if status == tokenkeeper.StatusActive {
		res.Token = &tokenkeeper.Token{AccessToken: secret("access"), TokenType: "Bearer", ExpiresAt: now.Add(lifetime)}
	} else {
		res.FailureCount, res.LastError, res.LastErrorCode = 1, "refused", "invalid_grant"
		res.Event.Outcome, res.Event.ErrorCode = string(status), "invalid_grant"
	}
	if _, err := e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, res); err != nil {
		e.t.Fatalf("CompleteRefresh(%s): %v", c.Name, err)
	}
}

// testConsoleSummaries: pages of summaries by name with filters, counts,
// the overview's counts, failing and expiring lists and refresh counts,
// and a change cursor that moves with every kind of change. Nothing
// sealed is read.
func testConsoleSummaries(e *env) {
	t := e.t
	cs := e.consoleStore()
	cursor := func() string {
		t.Helper()
		c, err := cs.ChangeCursor(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c0 := cursor()
	var creds []*tokenkeeper.Credential
	for _, n := range []string{"b", "a", "d", "c", "e"} {
		c := newCred(n)
		if n == "d" || n == "e" {
			c.EndUserID = "u-7"
		}
		creds = append(creds, e.create(c))
		e.clock.Add(time.Second)
	}
	c1 := cursor()
	if c1 == c0 {
		t.Fatal("the cursor did not move when credentials were created")
	}
	e.refreshOnce(creds[0], 30*time.Minute, tokenkeeper.StatusActive) // b
	e.refreshOnce(creds[2], 10*time.Minute, tokenkeeper.StatusActive) // d
	e.clock.Add(time.Second)
	e.refreshOnce(creds[3], 0, tokenkeeper.StatusNeedsReauth) // c
	c2 := cursor()
	if c2 == c1 {
		t.Fatal("the cursor did not move with refreshes")
	}
	disabled := tokenkeeper.StatusDisabled
	e.clock.Add(time.Second)
	if _, err := e.s.UpdateCredential(e.ctx, "e", tokenkeeper.CredentialUpdate{Status: &disabled}, nil); err != nil {
		t.Fatal(err)
	}
	c3 := cursor()
	if c3 == c2 {
		t.Fatal("the cursor did not move with a status change")
	}

	names := func(l []*tokenkeeper.CredentialSummary) string {
		var s []string
		for _, c := range l {
			s = append(s, c.Name)
		}
		return strings.Join(s, ",")
	}
	page, err := cs.CredentialSummaries(e.ctx, tokenkeeper.CredentialFilter{}, "", 2)
	if err != nil || names(page) != "a,b" {
		t.Fatalf("first page: %s %v", names(page), err)
	}
	page, err = cs.CredentialSummaries(e.ctx, tokenkeeper.CredentialFilter{}, "b", 2)
	if err != nil || names(page) != "c,d" {
		t.Fatalf("second page: %s %v", names(page), err)
	}
	page, _ = cs.CredentialSummaries(e.ctx, tokenkeeper.CredentialFilter{}, "d", 2)
	if names(page) != "e" {
		t.Fatalf("last page: %s", names(page))
	}
	b, _ := cs.CredentialSummaries(e.ctx, tokenkeeper.CredentialFilter{}, "a", 1)
	now := e.clock.Now()
	if len(b) != 1 || b[0].Name != "b" || b[0].Provider == "" || !b[0].HasToken || b[0].Status != tokenkeeper.StatusActive ||
		b[0].ExpiresAt.IsZero() || b[0].LastRefreshAt.IsZero() || b[0].ExpiresAt.Location() != time.UTC {
		t.Fatalf("summary of b: %s", asJSON(b))
	}
	for _, f := range []struct {
		f    tokenkeeper.CredentialFilter
		want string
	}{
		{tokenkeeper.CredentialFilter{Status: tokenkeeper.StatusNeedsReauth}, "c"},
		{tokenkeeper.CredentialFilter{EndUserID: "u-7"}, "d,e"},
		{tokenkeeper.CredentialFilter{Provider: creds[0].Provider}, "b"},
		{tokenkeeper.CredentialFilter{Provider: "nosuch"}, ""},
	} {
		got, err := cs.CredentialSummaries(e.ctx, f.f, "", 100)
		if err != nil || names(got) != f.want {
			t.Errorf("filter %+v: %s %v, want %s", f.f, names(got), err, f.want)
		}
		n, err := cs.CountCredentials(e.ctx, f.f)
		if err != nil || n != len(got) {
			t.Errorf("count %+v: %d %v, want %d", f.f, n, err, len(got))
		}
	}
	if n, _ := cs.CountCredentials(e.ctx, tokenkeeper.CredentialFilter{}); n != 5 {
		t.Errorf("count of all: %d", n)
	}
	_, err = cs.CredentialSummaries(e.ctx, tokenkeeper.CredentialFilter{Status: "broken"}, "", 10)
	wantCode(t, err, tokenkeeper.EINVALID)
	_, err = cs.CredentialSummaries(e.ctx, tokenkeeper.CredentialFilter{}, "", 0)
	wantCode(t, err, tokenkeeper.EINVALID)
	_, err = cs.CountCredentials(e.ctx, tokenkeeper.CredentialFilter{Status: "broken"})
	wantCode(t, err, tokenkeeper.EINVALID)

	o, err := cs.Overview(e.ctx, now.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if o.Total != 5 || o.ByStatus[tokenkeeper.StatusActive] != 3 || o.ByStatus[tokenkeeper.StatusNeedsReauth] != 1 ||
		o.ByStatus[tokenkeeper.StatusDisabled] != 1 {
		t.Errorf("overview counts: %d %v", o.Total, o.ByStatus)
	}
	if names(o.Failing) != "c" || o.Failing[0].LastErrorCode != "invalid_grant" {
		t.Errorf("failing: %s", asJSON(o.Failing))
	}
	if names(o.Expiring) != "d,b" {
		t.Errorf("expiring: %s", names(o.Expiring))
	}
	if o.Refreshes != 3 || o.RefreshFailures != 1 {
		t.Errorf("refreshes %d, failures %d", o.Refreshes, o.RefreshFailures)
	}
	o, err = cs.Overview(e.ctx, now.Add(time.Minute), 1)
	if err != nil || o.Refreshes != 0 || o.RefreshFailures != 0 || len(o.Expiring) != 1 {
		t.Errorf("overview after the refreshes: %+v %v", o, err)
	}
	_, err = cs.Overview(e.ctx, now, 0)
	wantCode(t, err, tokenkeeper.EINVALID)

	if err := e.s.DeleteCredential(e.ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if cursor() == c3 {
		t.Fatal("the cursor did not move with a deletion")
	}
}
