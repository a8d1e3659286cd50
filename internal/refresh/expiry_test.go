package refresh_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

func TestAdvertisedExpiry(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)
	tok := func(exp time.Time) *tokenkeeper.Token { return &tokenkeeper.Token{AccessToken: "a", ExpiresAt: exp} }
	for _, tc := range []struct {
		name string
		c    tokenkeeper.Credential
		want time.Time
	}{
		{"no token", tokenkeeper.Credential{Status: tokenkeeper.StatusActive, NextRefreshAt: t0}, time.Time{}},
		{"one-hour token: refresh time less ExpiryMargin",
			tokenkeeper.Credential{Status: tokenkeeper.StatusActive, Token: tok(t0.Add(time.Hour)), LastRefreshAt: t0, NextRefreshAt: t0.Add(55 * time.Minute)},
			t0.Add(55*time.Minute - refresh.ExpiryMargin)},
		{"3 s token: the margin is a tenth of the lifetime",
			tokenkeeper.Credential{Status: tokenkeeper.StatusActive, Token: tok(t0.Add(3 * time.Second)), LastRefreshAt: t0, NextRefreshAt: t0.Add(2 * time.Second)},
			t0.Add(1700 * time.Millisecond)},
		{"failing: the next retry less the margin",
			tokenkeeper.Credential{Status: tokenkeeper.StatusError, Token: tok(t0.Add(time.Hour)), LastRefreshAt: t0, NextRefreshAt: t0.Add(time.Minute)},
			t0.Add(time.Minute - refresh.ExpiryMargin)},
		{"failing, next retry after the expiry: the provider's expiry",
			tokenkeeper.Credential{Status: tokenkeeper.StatusError, Token: tok(t0.Add(time.Hour)), LastRefreshAt: t0, NextRefreshAt: t0.Add(2 * time.Hour)},
			t0.Add(time.Hour)},
		{"needs_reauth: never replaced by the broker, the provider's expiry",
			tokenkeeper.Credential{Status: tokenkeeper.StatusNeedsReauth, Token: tok(t0.Add(time.Hour)), LastRefreshAt: t0, NextRefreshAt: t0},
			t0.Add(time.Hour)},
		{"disabled: the provider's expiry",
			tokenkeeper.Credential{Status: tokenkeeper.StatusDisabled, Token: tok(t0.Add(time.Hour)), LastRefreshAt: t0, NextRefreshAt: t0},
			t0.Add(time.Hour)},
		{"no refresh time: the provider's expiry",
			tokenkeeper.Credential{Status: tokenkeeper.StatusActive, Token: tok(t0.Add(time.Hour)), LastRefreshAt: t0},
			t0.Add(time.Hour)},
		{"unknown provider expiry: the refresh time less ExpiryMargin",
			tokenkeeper.Credential{Status: tokenkeeper.StatusActive, Token: tok(time.Time{}), NextRefreshAt: t0.Add(time.Hour)},
			t0.Add(time.Hour - refresh.ExpiryMargin)},
	} {
		if got := refresh.AdvertisedExpiry(&tc.c); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestReadInLastSecondWaitsForPlannedRefresh: a read that finds less than
// a second of advertised life waits for the planned refresh rather than
// refresh early, so the provider (which revokes the previous access token)
// never replaces a token before the expiry the broker advertised with it;
// concurrent readers share that refresh.
func TestReadInLastSecondWaitsForPlannedRefresh(t *testing.T) {
	w := newWorld(t, false, nil, oauthtest.WithLifetime(3*time.Second), oauthtest.WithRevokePrevious(true))
	ctx := context.Background()
	st := w.open("a", nil)
	r := w.replica("a", st, refresh.Config{}, false)
	w.credential(st, "c", time.Time{})
	eventually(t, 2*time.Second, "first token", func() bool { return token(r, "c") != "" })

	for round := range 3 {
		sv, err := r.Token(ctx, "c", 0)
		if err != nil {
			t.Fatal(err)
		}
		c := stored(t, st, "c")
		if !sv.ExpiresAt.Equal(refresh.AdvertisedExpiry(c)) || !sv.ExpiresAt.Before(c.NextRefreshAt) || !sv.ExpiresAt.Before(sv.Token.ExpiresAt) {
			t.Fatalf("served expiry %v, next refresh %v, provider expiry %v", sv.ExpiresAt, c.NextRefreshAt, sv.Token.ExpiresAt)
		}
		// Read in the last half second of the advertised life, eight at once.
		time.Sleep(time.Until(sv.ExpiresAt.Add(-500 * time.Millisecond)))
		before := w.refreshes()
		start := time.Now()
		got := make(chan *refresh.Served, 8)
		for range cap(got) {
			go func() {
				s, err := r.Token(ctx, "c", 0)
				if err != nil {
					t.Error(err)
				}
				got <- s
			}()
		}
		for range cap(got) {
			s := <-got
			if s == nil {
				t.FailNow()
			}
			if s.Token.AccessToken == sv.Token.AccessToken || time.Until(s.ExpiresAt) < refresh.MinServedLife-100*time.Millisecond {
				t.Fatalf("round %d: a last-second read got the old token or too little life (%s)", round, time.Until(s.ExpiresAt))
			}
		}
		took := time.Since(start)
		if n := w.refreshes() - before; n != 1 {
			t.Fatalf("round %d: %d provider requests for eight last-second reads, want 1", round, n)
		}
		evs, err := st.Events(ctx, "c", 1)
		if err != nil || len(evs) != 1 {
			t.Fatal(err)
		}
		// The provider revoked the old token when it answered: not before
		// the advertised expiry, nor before the planned refresh time.
		if sent := evs[0].Time.Add(-evs[0].Latency); sent.Before(sv.ExpiresAt) || sent.Before(c.NextRefreshAt.Add(-5*time.Millisecond)) {
			t.Fatalf("round %d: refreshed at %v, before the advertised expiry %v or the refresh time %v", round, sent, sv.ExpiresAt, c.NextRefreshAt)
		}
		// The planned refresh comes about 0.8 s after these reads; the
		// bound leaves a loaded machine (CI runs packages in parallel)
		// slack while still failing a wait for a lease or a poll.
		if took > 2*time.Second {
			t.Fatalf("round %d: the last-second reads waited %s", round, took)
		}
		t.Logf("round %d: last-second reads waited %s for the planned refresh", round, took.Round(time.Millisecond))
	}
	w.checkProvider()
}

// TestRejectedTokenWithdrawnOnTemporaryFailure: when the refresh forced by
// a rejected token fails only temporarily, the token is still never served
// again, by this replica or another; the next successful retry brings a new
// one.
func TestRejectedTokenWithdrawnOnTemporaryFailure(t *testing.T) {
	w := newWorld(t, true, nil)
	ctx := context.Background()
	stA, stB := w.open("a", nil), w.open("b", nil)
	cfg := refresh.Config{PollInterval: time.Minute, BackoffMin: 3 * time.Second}
	a := w.replica("a", stA, cfg, true)
	b := w.replica("b", stB, cfg, true)
	w.credential(stA, "c", time.Time{})
	eventually(t, 2*time.Second, "first token", func() bool { return token(a, "c") != "" && token(b, "c") != "" })
	rejected := token(b, "c")

	w.idp.Script(oauthtest.Fault{Kind: oauthtest.FaultServerError, Status: 503})
	c, err := a.Refresh(ctx, "c", rejected)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != tokenkeeper.StatusError || c.Token.Valid(time.Now(), 0) {
		t.Fatalf("after a failed refresh of a rejected token: status %s, token still valid", c.Status)
	}
	for name, r := range map[string]*replica{"a": a, "b": b} {
		eventually(t, time.Second, "replica "+name+" withdraws the rejected token", func() bool {
			s, err := r.Token(ctx, "c", 0)
			if err == nil && s.Token.AccessToken == rejected {
				return false
			}
			if err != nil && (tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTREADY || s.Status != tokenkeeper.StatusError) {
				t.Fatalf("replica %s: %v", name, err)
			}
			return true
		})
	}
	// A second report of the same token costs no provider request.
	before := w.refreshes()
	if _, err := b.Refresh(ctx, "c", rejected); err != nil {
		t.Fatal(err)
	}
	if w.refreshes() != before {
		t.Fatal("a second report of a withdrawn token called the provider")
	}
	// The loop retries after its backoff (1.5 to 3 s) and succeeds.
	eventually(t, 8*time.Second, "a new token on both replicas", func() bool {
		ta, tb := token(a, "c"), token(b, "c")
		return ta != "" && ta != rejected && ta == tb
	})
	w.checkProvider()
}
