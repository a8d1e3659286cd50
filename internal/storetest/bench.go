package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Bench runs the store benchmarks: the refresher's claim and commit cycle,
// its wake-up query, and a credential read with its secrets opened.
func Bench(b *testing.B, newHarness NewHarness) {
	b.Run("ClaimComplete", func(b *testing.B) { benchClaimComplete(b, newHarness) })
	b.Run("NextRefreshAt", func(b *testing.B) { benchNextRefreshAt(b, newHarness) })
	b.Run("Credential", func(b *testing.B) { benchCredential(b, newHarness) })
}

func benchStore(b *testing.B, newHarness NewHarness, n int, next func(i int) time.Time) tokenkeeper.Store {
	b.Helper()
	clock := NewClock(start)
	s := newHarness(b, clock.Now).Store
	for i := range n {
		c := newCred(fmt.Sprintf("bench-%05d", i))
		c.NextRefreshAt = next(i)
		if err := s.CreateCredential(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// benchClaimComplete measures one refresh's store work: claim one due
// credential, commit a new token with a rotated refresh token and an event,
// saying what it claimed as the refresher does.
func benchClaimComplete(b *testing.B, newHarness NewHarness) {
	ctx := context.Background()
	s := benchStore(b, newHarness, 100, func(int) time.Time { return start })
	at, rt := secret("access"), secret("refresh")
	for b.Loop() {
		got, err := s.ClaimDue(ctx, "bench", start, time.Minute, 1)
		if err != nil || len(got) != 1 {
			b.Fatalf("claim: %d, %v", len(got), err)
		}
		c := got[0]
		// Due again at once, so that the loop never runs dry.
		if _, err := s.CompleteRefresh(ctx, c.ID, "bench", c.Version, &tokenkeeper.RefreshResult{
			Token: &tokenkeeper.Token{AccessToken: at, TokenType: "Bearer", ExpiresAt: start.Add(time.Hour)}, RefreshToken: rt,
			Status: tokenkeeper.StatusActive, LastRefreshAt: start, NextRefreshAt: start,
			Event:   &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK},
			Claimed: c, // as the refresher commits
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchNextRefreshAt(b *testing.B, newHarness NewHarness) {
	ctx := context.Background()
	s := benchStore(b, newHarness, 2000, func(i int) time.Time { return start.Add(time.Duration(i) * time.Second) })
	for b.Loop() {
		if _, ok, err := s.NextRefreshAt(ctx); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func benchCredential(b *testing.B, newHarness NewHarness) {
	ctx := context.Background()
	s := benchStore(b, newHarness, 100, func(int) time.Time { return start })
	for b.Loop() {
		if _, err := s.Credential(ctx, "bench-00042"); err != nil {
			b.Fatal(err)
		}
	}
}
