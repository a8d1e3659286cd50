package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestVerifyRemembersTokens: a token verified once is answered from memory
// (the same Claims), and what can change about it still counts: expiry,
// revocation of its family, a single changed byte.
func TestVerifyRemembersTokens(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	a := e.login(t, "alice", alicePassword)
	first, err := e.s.Verify(ctx, a.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.s.Verify(ctx, a.AccessToken)
	if err != nil || again != first {
		t.Fatalf("second Verify = %p, %v; want the remembered claims %p", again, err, first)
	}
	if n := e.s.verified.len(); n != 1 {
		t.Fatalf("%d tokens remembered, want 1", n)
	}
	// Another signature on the same header and claims is refused.
	tampered := []byte(a.AccessToken)
	last := &tampered[len(tampered)-2]
	if *last == 'A' {
		*last = 'B'
	} else {
		*last = 'A'
	}
	if _, err := e.s.Verify(ctx, string(tampered)); !errors.Is(err, errSignature) {
		t.Fatalf("tampered token: %v, want %v", err, errSignature)
	}

	// Revoked after it was remembered: refused at once.
	e.clock.Add(time.Second)
	if _, err := e.s.RevokeSessions(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Verify(ctx, a.AccessToken); !errors.Is(err, errRevoked) {
		t.Fatalf("remembered token after revoke-sessions: %v, want %v", err, errRevoked)
	}

	// Expired after it was remembered: refused from its exp (plus leeway) on.
	e.clock.Add(time.Second)
	b := e.login(t, "alice", alicePassword)
	cl, err := e.s.Verify(ctx, b.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	leeway := (e.s.params.leeway + time.Second - 1).Truncate(time.Second)
	e.clock.Add(cl.ExpiresAt.Add(leeway).Sub(e.clock.Now()) - time.Second)
	if _, err := e.s.Verify(ctx, b.AccessToken); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	e.clock.Add(time.Second)
	if _, err := e.s.Verify(ctx, b.AccessToken); !errors.Is(err, errExpired) {
		t.Fatalf("remembered token at its expiry: %v, want %v", err, errExpired)
	}
}

// TestVerifiedCacheBounded: the cache never holds more than maxVerified
// tokens; expired ones go first.
func TestVerifiedCacheBounded(t *testing.T) {
	c := newVerifiedCache()
	now := time.Unix(1_800_000_000, 0)
	v := func(tok string, until time.Time) *verified {
		return &verified{token: tok, claims: &Claims{}, until: until.Unix()}
	}
	for i := range maxVerified {
		until := now.Add(time.Hour)
		if i%2 == 0 {
			until = now.Add(-time.Second) // expired
		}
		c.put(v(fmt.Sprintf("h.p.%043d", i), until), now)
	}
	c.put(v("h.p."+strings.Repeat("x", sigLen), now.Add(time.Hour)), now)
	if n := c.len(); n != maxVerified/2+1 {
		t.Fatalf("%d entries after the cache filled up, want the %d unexpired", n, maxVerified/2+1)
	}
	for i := range maxVerified {
		c.put(v(fmt.Sprintf("h.q.%043d", i), now.Add(time.Hour)), now)
	}
	if n := c.len(); n > maxVerified {
		t.Fatalf("%d entries, more than %d", n, maxVerified)
	}
}

// TestVerifiedCacheMatchesWholeToken: an entry is found by the signature
// but serves only the very token verified.
func TestVerifiedCacheMatchesWholeToken(t *testing.T) {
	c := newVerifiedCache()
	sig := strings.Repeat("s", sigLen)
	c.put(&verified{token: "h.p." + sig, claims: &Claims{}, until: 1 << 40}, time.Unix(0, 0))
	if c.get("h.p."+sig) == nil {
		t.Fatal("the token verified is not found")
	}
	for _, tok := range []string{"h.q." + sig, "x.p." + sig, "h.p" + sig, sig, "", "h.p." + sig[1:] + "t"} {
		if c.get(tok) != nil {
			t.Errorf("get(%q) found the entry of another token", tok)
		}
	}
}
