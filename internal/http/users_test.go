package http

import (
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
)

// TestUserCallers: the requests of one access token share a caller while
// its freshness holds; once the freshness window ends the token gets a
// caller that is not fresh; the cache stays bounded.
func TestUserCallers(t *testing.T) {
	var u userCallers
	u.m.Max = maxCachedKeys // as NewServer sets it
	now := time.Unix(1_800_000_000, 0)
	cl := &auth.Claims{Username: "ada", Role: tokenkeeper.RoleAdmin, Fresh: true, FreshUntil: now.Add(time.Minute)}
	a := u.caller(cl, now)
	if b := u.caller(cl, now.Add(time.Second)); b != a {
		t.Fatal("a second request of the same token made a new caller")
	}
	if !a.fresh || a.actor() != "user:ada" || a.role != tokenkeeper.RoleAdmin || a.claims != cl {
		t.Fatalf("caller %+v", a)
	}
	late := u.caller(cl, now.Add(2*time.Minute))
	if late.fresh {
		t.Fatal("the caller is still fresh after the freshness window")
	}
	if other := u.caller(&auth.Claims{Username: "bob", Role: tokenkeeper.RoleViewer}, now); other == late || other.actor() != "user:bob" {
		t.Fatalf("another token's caller: %+v", other)
	}
	for i := range 2 * maxCachedKeys {
		u.caller(&auth.Claims{Username: "u", Role: tokenkeeper.RoleViewer, ID: string(rune(i))}, now)
	}
	if n := u.m.Len(); n > maxCachedKeys {
		t.Fatalf("%d callers cached, more than %d", n, maxCachedKeys)
	}
}
