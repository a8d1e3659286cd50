package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/crypto/argon2"
)

// RunAuth runs the conformance suite of tokenkeeper.AuthStore. The stores
// the harness opens (Store and OpenPeer) must implement AuthStore as well
// as Store; the suite uses the same raw access as Run:
//
//	func TestAuthStore(t *testing.T) { storetest.RunAuth(t, newHarness) }
//
// Subtests run in parallel, each on its own harness.
func RunAuth(t *testing.T, newHarness NewHarness) {
	tests := []struct {
		name string
		fn   func(e *authEnv)
	}{
		{"Users", testUsers},
		{"UsersInvalid", testUsersInvalid},
		{"UserLookupUntrusted", testUserLookupUntrusted},
		{"DeleteUserRevokesFamilies", testDeleteUser},
		{"RefreshTokenCreate", testRefreshTokenCreate},
		{"RefreshTokenCreateInvalid", testRefreshTokenCreateInvalid},
		{"RotateRefreshToken", testRotateRefreshToken},
		{"RotateRefreshTokenNotCurrent", testRotateNotCurrent},
		{"RotateRefreshTokenInvalid", testRotateInvalid},
		{"RotateRefreshTokenConcurrent", testRotateConcurrent},
		{"RotateRefreshTokenTwoStores", testRotateTwoStores},
		{"RevokeFamily", testRevokeFamily},
		{"RevokeFamilyDuringRotations", testRevokeDuringRotations},
		{"ExpiredFamiliesPruned", testPrune},
		{"ServiceClients", testServiceClients},
		{"ServiceClientsInvalid", testServiceClientsInvalid},
		{"SigningKeys", testSigningKeys},
		{"SigningKeysInvalid", testSigningKeysInvalid},
		{"SigningKeyMoved", testSigningKeyMoved},
		{"RotateKeyResealsSigningKeys", testRotateKeySigningKeys},
		{"AuthSecretsNotAtRest", testAuthSecretsNotAtRest},
		{"Audit", testAudit},
		{"AuditCleansAndCaps", testAuditCleansAndCaps},
		{"AuditInvalid", testAuditInvalid},
		{"AuditConcurrent", testAuditConcurrent},
		{"PruneAudit", testPruneAudit},
		{"PasswordChangeRevokesSessions", testPasswordChangeRevokesSessions},
		{"AdminGuard", testAdminGuard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(start)
			h := newHarness(t, clock.Now)
			a, ok := h.Store.(tokenkeeper.AuthStore)
			if !ok {
				t.Fatalf("%T does not implement tokenkeeper.AuthStore", h.Store)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t.Cleanup(cancel)
			tt.fn(&authEnv{env: &env{Harness: h, t: t, ctx: ctx, clock: clock, s: h.Store}, a: a})
		})
	}
}

// authEnv is what each auth subtest works with.
type authEnv struct {
	*env
	a tokenkeeper.AuthStore
}

// peer opens a second AuthStore on the same database.
func (e *authEnv) peer() tokenkeeper.AuthStore {
	e.t.Helper()
	p, ok := e.OpenPeer(e.t).(tokenkeeper.AuthStore)
	if !ok {
		e.t.Fatal("the peer store does not implement tokenkeeper.AuthStore")
	}
	return p
}

// passwordHash returns an argon2id PHC string of password, with a cost
// small enough for tests.
func passwordHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", enc.EncodeToString(salt), enc.EncodeToString(key))
}

func sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func (e *authEnv) addUser(name string, role tokenkeeper.Role) *tokenkeeper.User {
	e.t.Helper()
	u := &tokenkeeper.User{Username: name, PasswordHash: passwordHash(secret("password-" + name)), Role: role}
	if err := e.a.CreateUser(e.ctx, u); err != nil {
		e.t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// newRefresh returns the first token of a family of user, at the clock's
// time: one hour of inactivity, one day in all. token is the opaque token.
func (e *authEnv) newRefresh(userID string) (rt *tokenkeeper.RefreshToken, token string) {
	now := e.clock.Now()
	token = secret("refresh")
	return &tokenkeeper.RefreshToken{
		UserID: userID, Hash: sum(token), AuthTime: now,
		ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: now.Add(24 * time.Hour),
	}, token
}

func (e *authEnv) login(userID string) *tokenkeeper.RefreshToken {
	e.t.Helper()
	rt, _ := e.newRefresh(userID)
	if err := e.a.CreateRefreshToken(e.ctx, rt); err != nil {
		e.t.Fatalf("CreateRefreshToken: %v", err)
	}
	return rt
}

// rotate rotates old at the clock's time and returns its successor.
func (e *authEnv) rotate(old *tokenkeeper.RefreshToken) *tokenkeeper.RefreshToken {
	e.t.Helper()
	now := e.clock.Now()
	next := &tokenkeeper.RefreshToken{Hash: sum(secret("next")), ExpiresAt: now.Add(time.Hour)}
	if err := e.a.RotateRefreshToken(e.ctx, old.ID, now, next); err != nil {
		e.t.Fatalf("RotateRefreshToken(%s): %v", old.ID, err)
	}
	return next
}

func (e *authEnv) token(hash []byte) *tokenkeeper.RefreshToken {
	e.t.Helper()
	rt, err := e.a.RefreshTokenByHash(e.ctx, hash)
	if err != nil {
		e.t.Fatalf("RefreshTokenByHash: %v", err)
	}
	return rt
}

// count runs a raw COUNT(*) query.
func (e *authEnv) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.QueryRow(e.ctx, query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// familyTokens returns the stored tokens of a family, as the raw count and
// the number still current (neither rotated nor revoked).
func (e *authEnv) familyTokens(familyID string) (all, current int) {
	e.t.Helper()
	all = e.count(`SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1`, familyID)
	current = e.count(`SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1 AND rotated_at IS NULL AND revoked_at IS NULL`, familyID)
	return all, current
}

func same(t testing.TB, what string, got, want any) {
	t.Helper()
	if g, w := asJSON(got), asJSON(want); g != w {
		t.Fatalf("%s differs\n got: %s\nwant: %s", what, g, w)
	}
}

func testUsers(e *authEnv) {
	t := e.t
	bob := e.addUser("bob", tokenkeeper.RoleViewer)
	e.clock.Add(time.Second)
	alice := e.addUser("alice", tokenkeeper.RoleAdmin)
	if alice.ID == "" || alice.ID == bob.ID || !alice.CreatedAt.Equal(start.Add(time.Second)) || !alice.UpdatedAt.Equal(alice.CreatedAt) {
		t.Fatalf("CreateUser assigned %s", asJSON(alice))
	}
	got, err := e.a.User(e.ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "User(alice)", got, alice)
	got, err = e.a.UserByID(e.ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "UserByID(bob)", got, bob)
	all, err := e.a.Users(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "Users", all, []*tokenkeeper.User{alice, bob})

	// Usernames are unique, exactly as written.
	dup := &tokenkeeper.User{Username: "alice", PasswordHash: passwordHash("x"), Role: tokenkeeper.RoleViewer}
	wantCode(t, e.a.CreateUser(e.ctx, dup), tokenkeeper.ECONFLICT)
	upper := e.addUser("Alice", tokenkeeper.RoleViewer)
	if all, _ := e.a.Users(e.ctx); len(all) != 3 || all[0].ID != upper.ID {
		t.Fatalf("Users not in byte order: %s", asJSON(all))
	}

	// A new password hash; the update time moves.
	now := e.clock.Add(time.Minute)
	hash := passwordHash("new password")
	if err := e.a.SetUserPassword(e.ctx, "alice", hash); err != nil {
		t.Fatal(err)
	}
	got, err = e.a.User(e.ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	alice.PasswordHash, alice.UpdatedAt = hash, now
	same(t, "user after SetUserPassword", got, alice)
	wantCode(t, e.a.SetUserPassword(e.ctx, "nobody", hash), tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.SetUserPassword(e.ctx, "alice", ""), tokenkeeper.EINVALID)
	wantCode(t, e.a.SetUserPassword(e.ctx, "alice", "has space"), tokenkeeper.EINVALID)
	if got, _ := e.a.User(e.ctx, "alice"); got.PasswordHash != hash {
		t.Fatal("a refused SetUserPassword changed the hash")
	}

	if err := e.a.DeleteUser(e.ctx, "bob", now, now.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err = e.a.User(e.ctx, "bob")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_, err = e.a.UserByID(e.ctx, bob.ID)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.DeleteUser(e.ctx, "bob", now, now.Add(15*time.Minute)), tokenkeeper.ENOTFOUND)
	// The name is free again.
	e.addUser("bob", tokenkeeper.RoleAdmin)
}

func testUsersInvalid(e *authEnv) {
	t := e.t
	valid := func() *tokenkeeper.User {
		return &tokenkeeper.User{Username: "carol", PasswordHash: passwordHash("pw"), Role: tokenkeeper.RoleViewer}
	}
	for _, tc := range []struct {
		name string
		edit func(u *tokenkeeper.User)
	}{
		{"empty username", func(u *tokenkeeper.User) { u.Username = "" }},
		{"username with a space", func(u *tokenkeeper.User) { u.Username = "carol smith" }},
		{"username too long", func(u *tokenkeeper.User) { u.Username = strings.Repeat("c", 65) }},
		{"username with NUL", func(u *tokenkeeper.User) { u.Username = "carol\x00" }},
		{"no role", func(u *tokenkeeper.User) { u.Role = "" }},
		{"consumer role", func(u *tokenkeeper.User) { u.Role = tokenkeeper.RoleConsumer }},
		{"unknown role", func(u *tokenkeeper.User) { u.Role = "root" }},
		{"no password hash", func(u *tokenkeeper.User) { u.PasswordHash = "" }},
		{"password hash too long", func(u *tokenkeeper.User) { u.PasswordHash = strings.Repeat("x", 2000) }},
		{"password hash with NUL", func(u *tokenkeeper.User) { u.PasswordHash += "\x00" }},
	} {
		u := valid()
		tc.edit(u)
		before := asJSON(u)
		wantCode(t, e.a.CreateUser(e.ctx, u), tokenkeeper.EINVALID)
		if asJSON(u) != before {
			t.Errorf("%s: a refused CreateUser changed its argument", tc.name)
		}
	}
	wantCode(t, e.a.CreateUser(e.ctx, nil), tokenkeeper.EINVALID)
	if all, err := e.a.Users(e.ctx); err != nil || len(all) != 0 {
		t.Fatalf("refused users were written: %d, %v", len(all), err)
	}
	if n := e.count(`SELECT COUNT(*) FROM users`); n != 0 {
		t.Fatalf("%d rows in users", n)
	}
	e.addUser("carol", tokenkeeper.RoleViewer)
	wantCode(t, e.a.DeleteUser(e.ctx, "carol", time.Time{}, start), tokenkeeper.EINVALID)
	wantCode(t, e.a.DeleteUser(e.ctx, "carol", start, time.Time{}), tokenkeeper.EINVALID)
	if _, err := e.a.User(e.ctx, "carol"); err != nil {
		t.Fatalf("a refused DeleteUser deleted the user: %v", err)
	}
}

// testUserLookupUntrusted looks users and clients up by names straight from
// a login or token request: anything at all is ENOTFOUND, and the error
// never repeats the name (a password typed as a username).
func testUserLookupUntrusted(e *authEnv) {
	t := e.t
	e.addUser("dave", tokenkeeper.RoleAdmin)
	pw := secret("typed-into-username")
	for _, name := range []string{pw, "", "dave\x00", "\xff\xfe", strings.Repeat("d", 10000), "dave ", "DAVE", "' OR 1=1 --"} {
		_, err := e.a.User(e.ctx, name)
		wantCode(t, err, tokenkeeper.ENOTFOUND)
		checkErrNoSecret(t, err, []string{pw})
		_, err = e.a.UserByID(e.ctx, name)
		wantCode(t, err, tokenkeeper.ENOTFOUND)
		_, err = e.a.ServiceClient(e.ctx, name)
		wantCode(t, err, tokenkeeper.ENOTFOUND)
		checkErrNoSecret(t, err, []string{pw})
		wantCode(t, e.a.SetUserPassword(e.ctx, name, passwordHash("x")), tokenkeeper.ENOTFOUND)
		wantCode(t, e.a.DeleteUser(e.ctx, name, start, start.Add(time.Minute)), tokenkeeper.ENOTFOUND)
		wantCode(t, e.a.DeleteServiceClient(e.ctx, name), tokenkeeper.ENOTFOUND)
	}
	for _, h := range [][]byte{nil, {}, {0}, sum("unknown"), bytes.Repeat([]byte{1}, 1000)} {
		_, err := e.a.RefreshTokenByHash(e.ctx, h)
		wantCode(t, err, tokenkeeper.ENOTFOUND)
	}
}

func testDeleteUser(e *authEnv) {
	t := e.t
	erin := e.addUser("erin", tokenkeeper.RoleAdmin)
	frank := e.addUser("frank", tokenkeeper.RoleViewer)
	f1 := e.login(erin.ID)
	e.clock.Add(time.Minute)
	f1b := e.rotate(f1)
	f2 := e.login(erin.ID)
	other := e.login(frank.ID)
	// One of erin's families was revoked earlier, with a longer expiry that
	// the deletion must not shorten.
	if err := e.a.RevokeFamily(e.ctx, f2.FamilyID, e.clock.Now(), e.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	earlier := e.clock.Now()

	now := e.clock.Add(time.Minute)
	exp := now.Add(15 * time.Minute)
	if err := e.a.DeleteUser(e.ctx, "erin", now, exp); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []*tokenkeeper.RefreshToken{f1, f1b, f2} {
		got := e.token(rt.Hash)
		if got.RevokedAt.IsZero() {
			t.Errorf("token %s of the deleted user not revoked", rt.ID)
		}
	}
	if got := e.token(f1b.Hash); !got.RevokedAt.Equal(now) {
		t.Errorf("revoked at %v, want %v", got.RevokedAt, now)
	}
	if got := e.token(f2.Hash); !got.RevokedAt.Equal(earlier) {
		t.Errorf("an earlier revocation time was overwritten: %v, want %v", got.RevokedAt, earlier)
	}
	if got := e.token(other.Hash); !got.RevokedAt.IsZero() {
		t.Fatal("another user's family was revoked")
	}
	revs, err := e.a.Revocations(e.ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []*tokenkeeper.Revocation{
		{FamilyID: f1.FamilyID, RevokedAt: now, ExpiresAt: exp},
		{FamilyID: f2.FamilyID, RevokedAt: earlier, ExpiresAt: earlier.Add(time.Hour)},
	}
	sort.Slice(want, func(i, j int) bool { return want[i].FamilyID < want[j].FamilyID })
	same(t, "revocations after DeleteUser", revs, want)
	next := &tokenkeeper.RefreshToken{Hash: sum(secret("n")), ExpiresAt: now.Add(time.Hour)}
	wantCode(t, e.a.RotateRefreshToken(e.ctx, f1b.ID, now, next), tokenkeeper.ECONFLICT)
	// No new family for a deleted user.
	rt, _ := e.newRefresh(erin.ID)
	wantCode(t, e.a.CreateRefreshToken(e.ctx, rt), tokenkeeper.ENOTFOUND)
	e.rotate(other)
}
