package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

func TestChaosWindows(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	closed := window{from: at(10), to: at(12)}
	open := window{from: at(10)}
	for _, tc := range []struct {
		w    window
		a, b float64
		want bool
	}{
		{closed, 5, 9, false},   // before
		{closed, 9, 10.5, true}, // in flight when it went down
		{closed, 11, 11.5, true},
		{closed, 12.5, 12.6, true}, // within the settling second
		{closed, 13.1, 13.2, false},
		{open, 100, 101, true},
		{open, 1, 2, false},
	} {
		if got := tc.w.overlaps(at(tc.a), at(tc.b), time.Second); got != tc.want {
			t.Errorf("%+v overlaps [%v, %v] = %v, want %v", tc.w, tc.a, tc.b, got, tc.want)
		}
	}
	var o outages
	o.open(&o.db, at(1))
	o.close(&o.db, at(2))
	o.close(&o.db, at(3)) // a second close changes nothing
	if len(o.db) != 1 || !o.db[0].to.Equal(at(2)) {
		t.Errorf("windows %+v", o.db)
	}
}

func TestClassifyFailedReads(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	o := outages{replica: [][]window{{{from: at(10), to: at(12)}}, nil}, db: []window{{from: at(30), to: at(35)}}}
	failed := []failedRead{
		{replica: 0, name: "a", cause: "connection refused", start: at(11), end: at(11.1)}, // replica 0 down
		{replica: 1, name: "a", cause: "connection refused", start: at(11), end: at(11.1)}, // replica 1 was up
		{replica: 1, name: "a", cause: "http 503", start: at(36), end: at(36.5)},           // database settling (2s)
		{replica: 1, name: "b", cause: "http 409", start: at(50), end: at(50.1)},           // lost credential
		{replica: 0, name: "a", cause: "timeout", start: at(60), end: at(69)},
	}
	rep := &ChaosReport{FailedReadsOtherCauses: map[string]int{}}
	o.classify(failed, map[string]bool{"b": true}, rep)
	if rep.FailedReadsKilledReplica != 1 || rep.FailedReadsDBRestart != 1 || rep.FailedReadsLostCredential != 1 || rep.FailedReadsOther != 2 {
		t.Errorf("killed %d, db %d, lost %d, other %d; want 1, 1, 1, 2", rep.FailedReadsKilledReplica, rep.FailedReadsDBRestart,
			rep.FailedReadsLostCredential, rep.FailedReadsOther)
	}
	if got := formatCounts(rep.FailedReadsOtherCauses); got != "connection refused 1, timeout 1" {
		t.Errorf("other causes: %s", got)
	}
}

func TestCheckCredential(t *testing.T) {
	refresh := func(outcome, code string) *tokenkeeper.Event {
		return &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: outcome, ErrorCode: code}
	}
	ok := refresh(tokenkeeper.OutcomeOK, "")
	fenced := refresh(tokenkeeper.OutcomeFenced, "")
	events := func(evs ...*tokenkeeper.Event) []*tokenkeeper.Event { return evs }
	active := &tokenkeeper.Credential{Name: "c", Status: tokenkeeper.StatusActive}
	reauth := &tokenkeeper.Credential{Name: "c", Status: tokenkeeper.StatusNeedsReauth}
	current := oauthtest.RefreshTokenInfo{Family: "fam-1", Current: true}
	for _, tc := range []struct {
		name   string
		c      *tokenkeeper.Credential
		info   oauthtest.RefreshTokenInfo
		known  bool
		fam    oauthtest.FamilyInfo
		events []*tokenkeeper.Event
		grace  time.Duration
		want   credentialCheck
	}{
		{"two refreshes, all committed", active, current, true,
			oauthtest.FamilyInfo{Generation: 3, Unpresented: 1}, events(ok, ok), 0,
			credentialCheck{}},
		{"one answer cut before its commit", active, current, true,
			oauthtest.FamilyInfo{Generation: 3, Unpresented: 2}, events(ok), 0,
			credentialCheck{uncommitted: 1, byEvents: 1}},
		{"an answer discarded by fencing", active, current, true,
			oauthtest.FamilyInfo{Generation: 3, Unpresented: 2}, events(ok, fenced, refresh(tokenkeeper.OutcomeFenced, "lease_lost")), 0,
			credentialCheck{uncommitted: 1, byEvents: 1, fenced: 1}},
		{"the stored token was presented and is stale: strict provider", active,
			oauthtest.RefreshTokenInfo{Family: "fam-1", Presentations: 1}, true,
			oauthtest.FamilyInfo{Generation: 3, Unpresented: 1}, events(ok), 0,
			credentialCheck{lost: true, stale: true, uncommitted: 1, byEvents: 1}},
		{"stale, with a grace period", active,
			oauthtest.RefreshTokenInfo{Family: "fam-1", Presentations: 1}, true,
			oauthtest.FamilyInfo{Generation: 3, Unpresented: 1}, events(ok), 30 * time.Second,
			credentialCheck{stale: true, uncommitted: 1, byEvents: 1}},
		{"family revoked after a reuse", reauth,
			oauthtest.RefreshTokenInfo{Family: "fam-1", Revoked: true, Presentations: 2}, true,
			oauthtest.FamilyInfo{Generation: 2, Revoked: true}, events(), 0,
			credentialCheck{lost: true, needsReauth: true, revoked: true, byEvents: 1}},
		{"a token the provider never issued", active, oauthtest.RefreshTokenInfo{}, false,
			oauthtest.FamilyInfo{}, events(), 0,
			credentialCheck{lost: true, unknown: true, byEvents: -1}},
		{"events at the retention limit", active, current, true,
			oauthtest.FamilyInfo{Generation: 4, Unpresented: 1}, events(ok, ok, ok), 0,
			credentialCheck{truncated: true}},
	} {
		retention := 10
		if tc.want.truncated {
			retention = len(tc.events)
		}
		got := checkCredential(tc.c, tc.info, tc.known, tc.fam, tc.events, tc.grace, retention)
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

func TestCredentialCheckAdd(t *testing.T) {
	rep := &ChaosReport{}
	lost := map[string]bool{}
	credentialCheck{uncommitted: 2, byEvents: 2, fenced: 1}.add("a", rep, lost)                    // a cut, not lost
	credentialCheck{lost: true, stale: true, uncommitted: 1, byEvents: 1}.add("b", rep, lost)      // lost by a cut
	credentialCheck{lost: true, needsReauth: true, revoked: true, byEvents: 0}.add("c", rep, lost) // lost, no cut
	credentialCheck{lost: true, unknown: true, byEvents: -1}.add("d", rep, lost)                   // counts disagree
	credentialCheck{truncated: true, byEvents: 5}.add("e", rep, lost)
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"lost", rep.CredentialsLost, 3},
		{"unexplained losses", rep.UnexplainedLosses, 2},
		{"needs reauth", rep.NeedsReauth, 1},
		{"families revoked", rep.FamiliesRevoked, 1},
		{"stale", rep.StaleRefreshTokens, 1},
		{"uncommitted", rep.UncommittedAnswers, 3},
		{"by events", rep.UncommittedByEvents, 7},
		{"fenced", rep.FencedAnswers, 1},
		{"cut", rep.CutRefreshes, 2},
		{"credentials with cuts", rep.CredentialsWithCuts, 2},
		{"methods disagree", rep.MethodsDisagree, 1},
		{"truncated", rep.EventsTruncated, 1},
		{"lost map", len(lost), 3},
		{"notes", len(rep.Notes), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
}

func TestCountBadReads(t *testing.T) {
	rep := &ChaosReport{}
	countBadReads([]badRead{{"a", "expired"}, {"a", "revoked"}, {"b", "revoked"}, {"c", "unknown"}, {"c", "rejected by /resource"}},
		map[string]bool{"b": true}, rep)
	if rep.ExpiredServed != 1 || rep.RevokedServed != 2 || rep.UnknownServed != 2 || rep.BadServedLostCredentials != 1 {
		t.Errorf("%+v", rep)
	}
}

func TestCountSecretLines(t *testing.T) {
	token := "ort_" + strings.Repeat("A", 43)
	log := strings.Join([]string{
		`level=INFO msg="refreshed" credential=chaos-00001`,
		`level=ERROR msg="bad" token=` + token,
		`level=INFO msg="key" tk_` + strings.Repeat("b", 43),
		`level=INFO msg="short" oat_abc`,
		`level=INFO msg="client secret" s=the-client-secret`,
		`level=INFO msg="master key" k=the-master-key`,
	}, "\n")
	if got := countSecretLines(strings.NewReader(log), "the-client-secret", "the-master-key", ""); got != 4 {
		t.Errorf("countSecretLines = %d, want 4", got)
	}
}
