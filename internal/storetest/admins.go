package storetest

import (
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// testAdminGuard: the last admin credential (unrevoked admin API key or
// admin user) is never removed through tokenkeeper.AdminGuard, and two
// concurrent removals of the last two cannot both succeed.
func testAdminGuard(e *authEnv) {
	t := e.t
	g, ok := e.s.(tokenkeeper.AdminGuard)
	if !ok {
		t.Fatalf("%T does not implement tokenkeeper.AdminGuard", e.s)
	}
	now := e.clock.Now()
	key := func(name string, role tokenkeeper.Role, creds ...string) *tokenkeeper.APIKey {
		t.Helper()
		k := &tokenkeeper.APIKey{Name: name, Prefix: "tk_x", Hash: hashOf(secret("tk_" + name)), Role: role, Credentials: creds}
		if err := e.s.CreateAPIKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	admin1 := key("admin1", tokenkeeper.RoleAdmin)
	consumer := key("svc", tokenkeeper.RoleConsumer, "github")
	if err := e.a.CreateUser(e.ctx, &tokenkeeper.User{Username: "viewer", PasswordHash: passwordHash("pw"), Role: tokenkeeper.RoleViewer}); err != nil {
		t.Fatal(err)
	}

	// One admin credential: its revocation is refused and changes nothing.
	_, err := g.RevokeAPIKeyKeepingAdmin(e.ctx, "admin1")
	wantCode(t, err, tokenkeeper.ECONFLICT)
	if _, err := e.s.APIKeyByHash(e.ctx, admin1.Hash); err != nil {
		t.Fatalf("a refused revocation revoked the key: %v", err)
	}
	// Consumers and viewers go freely; a second revocation says so.
	if already, err := g.RevokeAPIKeyKeepingAdmin(e.ctx, consumer.ID); err != nil || already {
		t.Fatalf("revoke consumer: %v, already %v", err, already)
	}
	if already, err := g.RevokeAPIKeyKeepingAdmin(e.ctx, "svc"); err != nil || !already {
		t.Fatalf("revoke consumer again: %v, already %v", err, already)
	}
	if err := g.DeleteUserKeepingAdmin(e.ctx, "viewer", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err = g.RevokeAPIKeyKeepingAdmin(e.ctx, "nope")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	wantCode(t, g.DeleteUserKeepingAdmin(e.ctx, "nobody", now, now.Add(time.Minute)), tokenkeeper.ENOTFOUND)

	// An admin user counts: the key may go, then the user may not.
	if err := e.a.CreateUser(e.ctx, &tokenkeeper.User{Username: "alice", PasswordHash: passwordHash("pw"), Role: tokenkeeper.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.RevokeAPIKeyKeepingAdmin(e.ctx, admin1.ID); err != nil {
		t.Fatalf("revoke an admin key while an admin user exists: %v", err)
	}
	wantCode(t, g.DeleteUserKeepingAdmin(e.ctx, "alice", now, now.Add(time.Minute)), tokenkeeper.ECONFLICT)
	if _, err := e.a.User(e.ctx, "alice"); err != nil {
		t.Fatalf("a refused deletion deleted the user: %v", err)
	}

	// Two admins removed at once, from two stores: exactly one succeeds.
	admin2 := key("admin2", tokenkeeper.RoleAdmin)
	peer, ok := e.OpenPeer(t).(tokenkeeper.AdminGuard)
	if !ok {
		t.Fatal("the peer store does not implement tokenkeeper.AdminGuard")
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); _, errs[0] = g.RevokeAPIKeyKeepingAdmin(e.ctx, admin2.ID) }()
	go func() {
		defer wg.Done()
		errs[1] = peer.DeleteUserKeepingAdmin(e.ctx, "alice", now, now.Add(time.Minute))
	}()
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			wantCode(t, err, tokenkeeper.ECONFLICT)
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("concurrent removals of the last two admins: errors %v, want exactly one refusal", errs)
	}
}

// testAPIKeyNameReuse: a revoked key's name may be given to a new key;
// revoking by name then revokes the unrevoked one.
func testAPIKeyNameReuse(e *env) {
	t := e.t
	old := &tokenkeeper.APIKey{Name: "ci", Prefix: "tk_old", Hash: hashOf(secret("tk_old")), Role: tokenkeeper.RoleConsumer, Credentials: []string{"github"}}
	if err := e.s.CreateAPIKey(e.ctx, old); err != nil {
		t.Fatal(err)
	}
	taken := &tokenkeeper.APIKey{Name: "ci", Prefix: "tk_new", Hash: hashOf(secret("tk_new")), Role: tokenkeeper.RoleConsumer, Credentials: []string{"github"}}
	wantCode(t, e.s.CreateAPIKey(e.ctx, taken), tokenkeeper.ECONFLICT)
	if err := e.s.RevokeAPIKey(e.ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Second)
	renewed := &tokenkeeper.APIKey{Name: "ci", Prefix: "tk_new", Hash: hashOf(secret("tk_new2")), Role: tokenkeeper.RoleConsumer, Credentials: []string{"github"}}
	if err := e.s.CreateAPIKey(e.ctx, renewed); err != nil {
		t.Fatalf("a revoked key's name is not reusable: %v", err)
	}
	if _, err := e.s.APIKeyByHash(e.ctx, renewed.Hash); err != nil {
		t.Fatal(err)
	}
	// Revoking by name reaches the unrevoked key, through either method.
	if g, ok := e.s.(tokenkeeper.AdminGuard); ok {
		if already, err := g.RevokeAPIKeyKeepingAdmin(e.ctx, "ci"); err != nil || already {
			t.Fatalf("revoke the new ci: %v, already %v", err, already)
		}
	} else if err := e.s.RevokeAPIKey(e.ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.APIKeyByHash(e.ctx, renewed.Hash)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	keys, err := e.s.APIKeys(e.ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("APIKeys: %d keys, %v", len(keys), err)
	}
}
