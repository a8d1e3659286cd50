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
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
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

func testRefreshTokenCreate(e *authEnv) {
	t := e.t
	u := e.addUser("gina", tokenkeeper.RoleAdmin)
	e.clock.Add(1500 * time.Millisecond)
	rt, _ := e.newRefresh(u.ID)
	rt.AuthTime = start.Add(time.Second) // may precede the token
	if err := e.a.CreateRefreshToken(e.ctx, rt); err != nil {
		t.Fatal(err)
	}
	if rt.ID == "" || rt.FamilyID == "" || rt.ID == rt.FamilyID || !rt.CreatedAt.Equal(e.clock.Now()) {
		t.Fatalf("CreateRefreshToken assigned %s", asJSON(rt))
	}
	same(t, "RefreshTokenByHash", e.token(rt.Hash), rt)

	// Caller-chosen ids and creation time are kept, in UTC.
	chosen, _ := e.newRefresh(u.ID)
	chosen.ID, chosen.FamilyID = "tok-1", "fam_A-1.x"
	chosen.CreatedAt = start.In(time.FixedZone("X", 3600))
	if err := e.a.CreateRefreshToken(e.ctx, chosen); err != nil {
		t.Fatal(err)
	}
	if chosen.ID != "tok-1" || chosen.FamilyID != "fam_A-1.x" || chosen.CreatedAt.Location() != time.UTC || !chosen.CreatedAt.Equal(start) {
		t.Fatalf("chosen fields: %s", asJSON(chosen))
	}
	same(t, "RefreshTokenByHash(chosen)", e.token(chosen.Hash), chosen)

	for _, tc := range []struct {
		name string
		code string
		edit func(r *tokenkeeper.RefreshToken)
	}{
		{"same hash", tokenkeeper.ECONFLICT, func(r *tokenkeeper.RefreshToken) { r.Hash = rt.Hash }},
		{"same id", tokenkeeper.ECONFLICT, func(r *tokenkeeper.RefreshToken) { r.ID = "tok-1" }},
		{"existing family", tokenkeeper.ECONFLICT, func(r *tokenkeeper.RefreshToken) { r.FamilyID = rt.FamilyID }},
		{"unknown user", tokenkeeper.ENOTFOUND, func(r *tokenkeeper.RefreshToken) { r.UserID = "0123456789abcdef" }},
	} {
		r, _ := e.newRefresh(u.ID)
		tc.edit(r)
		err := e.a.CreateRefreshToken(e.ctx, r)
		if tokenkeeper.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	if n := e.count(`SELECT COUNT(*) FROM refresh_tokens`); n != 2 {
		t.Fatalf("%d refresh tokens stored, want 2", n)
	}
	// A revoked family's id cannot start a new family either.
	if err := e.a.RevokeFamily(e.ctx, "fam-revoked", start, start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r, _ := e.newRefresh(u.ID)
	r.FamilyID = "fam-revoked"
	wantCode(t, e.a.CreateRefreshToken(e.ctx, r), tokenkeeper.ECONFLICT)
}

func testRefreshTokenCreateInvalid(e *authEnv) {
	t := e.t
	u := e.addUser("hank", tokenkeeper.RoleAdmin)
	for _, tc := range []struct {
		name string
		edit func(r *tokenkeeper.RefreshToken)
	}{
		{"no user", func(r *tokenkeeper.RefreshToken) { r.UserID = "" }},
		{"bad user id", func(r *tokenkeeper.RefreshToken) { r.UserID = "a b" }},
		{"bad id", func(r *tokenkeeper.RefreshToken) { r.ID = "x\x00" }},
		{"id too long", func(r *tokenkeeper.RefreshToken) { r.ID = strings.Repeat("i", 129) }},
		{"bad family id", func(r *tokenkeeper.RefreshToken) { r.FamilyID = "fam/1" }},
		{"no hash", func(r *tokenkeeper.RefreshToken) { r.Hash = nil }},
		{"short hash", func(r *tokenkeeper.RefreshToken) { r.Hash = r.Hash[:16] }},
		{"no auth time", func(r *tokenkeeper.RefreshToken) { r.AuthTime = time.Time{} }},
		{"no expiry", func(r *tokenkeeper.RefreshToken) { r.ExpiresAt = time.Time{} }},
		{"no family expiry", func(r *tokenkeeper.RefreshToken) { r.FamilyExpiresAt = time.Time{} }},
		{"expiry out of range", func(r *tokenkeeper.RefreshToken) { r.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"created out of range", func(r *tokenkeeper.RefreshToken) { r.CreatedAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }},
	} {
		r, _ := e.newRefresh(u.ID)
		tc.edit(r)
		before := fmt.Sprintf("%+v", *r) // asJSON refuses the out-of-range years
		if err := e.a.CreateRefreshToken(e.ctx, r); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.name, err)
		}
		if fmt.Sprintf("%+v", *r) != before {
			t.Errorf("%s: a refused CreateRefreshToken changed its argument", tc.name)
		}
	}
	wantCode(t, e.a.CreateRefreshToken(e.ctx, nil), tokenkeeper.EINVALID)
	if n := e.count(`SELECT COUNT(*) FROM refresh_tokens`); n != 0 {
		t.Fatalf("%d refused refresh tokens stored", n)
	}
}

func testRotateRefreshToken(e *authEnv) {
	t := e.t
	u := e.addUser("ivy", tokenkeeper.RoleAdmin)
	first := e.login(u.ID)
	chain := []*tokenkeeper.RefreshToken{first}
	for i := range 3 {
		now := e.clock.Add(10 * time.Minute)
		next := &tokenkeeper.RefreshToken{Hash: sum(secret("next")), ExpiresAt: now.Add(time.Hour)}
		if i == 1 {
			// The family fields may be given if they match.
			next.FamilyID, next.UserID, next.AuthTime, next.FamilyExpiresAt = first.FamilyID, u.ID, first.AuthTime, first.FamilyExpiresAt
			next.ID = "chosen-next"
		}
		if err := e.a.RotateRefreshToken(e.ctx, chain[len(chain)-1].ID, now, next); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		want := tokenkeeper.RefreshToken{
			ID: next.ID, FamilyID: first.FamilyID, UserID: u.ID, Hash: next.Hash, AuthTime: first.AuthTime,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), FamilyExpiresAt: first.FamilyExpiresAt,
		}
		same(t, "the rotated-to token", next, &want)
		same(t, "the stored rotated-to token", e.token(next.Hash), &want)
		prev := e.token(chain[len(chain)-1].Hash)
		if !prev.RotatedAt.Equal(now) || !prev.RevokedAt.IsZero() {
			t.Fatalf("the rotated token: %s", asJSON(prev))
		}
		chain = append(chain, next)
	}
	if chain[2].ID != "chosen-next" {
		t.Fatalf("a chosen id was replaced: %s", chain[2].ID)
	}
	all, current := e.familyTokens(first.FamilyID)
	if all != 4 || current != 1 {
		t.Fatalf("family has %d tokens, %d current; want 4, 1", all, current)
	}
	// The rotated tokens keep their first rotation time.
	if got := e.token(first.Hash); !got.RotatedAt.Equal(start.Add(10 * time.Minute)) {
		t.Fatalf("first token rotated at %v", got.RotatedAt)
	}
}

func testRotateNotCurrent(e *authEnv) {
	t := e.t
	u := e.addUser("jack", tokenkeeper.RoleAdmin)
	a := e.login(u.ID)
	e.clock.Add(time.Minute)
	a2 := e.rotate(a)

	next := func() *tokenkeeper.RefreshToken {
		return &tokenkeeper.RefreshToken{Hash: sum(secret("n")), ExpiresAt: e.clock.Now().Add(time.Hour)}
	}
	stored := e.count(`SELECT COUNT(*) FROM refresh_tokens`)
	// Reuse of a rotated token.
	n := next()
	before := asJSON(n)
	wantCode(t, e.a.RotateRefreshToken(e.ctx, a.ID, e.clock.Now(), n), tokenkeeper.ECONFLICT)
	if asJSON(n) != before {
		t.Fatal("a refused rotation changed its argument")
	}
	// An unknown token.
	wantCode(t, e.a.RotateRefreshToken(e.ctx, "0123456789abcdef0123456789abcdef", e.clock.Now(), next()), tokenkeeper.ECONFLICT)
	wantCode(t, e.a.RotateRefreshToken(e.ctx, "", e.clock.Now(), next()), tokenkeeper.ECONFLICT)
	// The current token past its inactivity expiry.
	wantCode(t, e.a.RotateRefreshToken(e.ctx, a2.ID, a2.ExpiresAt, next()), tokenkeeper.ECONFLICT)

	// A family past its absolute expiry, with a current token still active.
	b := e.login(u.ID)
	// 28 rotations 50 minutes apart: 23h20m, within the family's day.
	for range 28 {
		e.clock.Add(50 * time.Minute)
		b = e.rotate(b)
	}
	wantCode(t, e.a.RotateRefreshToken(e.ctx, b.ID, b.FamilyExpiresAt, next()), tokenkeeper.ECONFLICT)

	// A revoked family, through the token's own mark or the revocation.
	c := e.login(u.ID)
	if err := e.a.RevokeFamily(e.ctx, c.FamilyID, e.clock.Now(), e.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.a.RotateRefreshToken(e.ctx, c.ID, e.clock.Now(), next()), tokenkeeper.ECONFLICT)
	d := e.login(u.ID)
	if err := e.Exec(e.ctx, `INSERT INTO revocations (family_id, revoked_at, expires_at)
		SELECT family_id, created_at, expires_at FROM refresh_tokens WHERE id = $1`, d.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.a.RotateRefreshToken(e.ctx, d.ID, e.clock.Now(), next()), tokenkeeper.ECONFLICT)

	if got, want := e.count(`SELECT COUNT(*) FROM refresh_tokens`), stored+1+28+1+1; got != want {
		t.Fatalf("%d refresh tokens, want %d: a refused rotation wrote one", got, want)
	}
	if got := e.token(a2.Hash); !got.RotatedAt.IsZero() {
		t.Fatal("an expired token was marked rotated")
	}
}

func testRotateInvalid(e *authEnv) {
	t := e.t
	u := e.addUser("kate", tokenkeeper.RoleAdmin)
	v := e.addUser("liam", tokenkeeper.RoleAdmin)
	a := e.login(u.ID)
	now := e.clock.Add(time.Minute)
	for _, tc := range []struct {
		name string
		now  time.Time
		edit func(r *tokenkeeper.RefreshToken)
	}{
		{"no hash", now, func(r *tokenkeeper.RefreshToken) { r.Hash = nil }},
		{"short hash", now, func(r *tokenkeeper.RefreshToken) { r.Hash = []byte("abc") }},
		{"no expiry", now, func(r *tokenkeeper.RefreshToken) { r.ExpiresAt = time.Time{} }},
		{"no now", time.Time{}, func(r *tokenkeeper.RefreshToken) {}},
		{"bad id", now, func(r *tokenkeeper.RefreshToken) { r.ID = "a;b" }},
		{"another family", now, func(r *tokenkeeper.RefreshToken) { r.FamilyID = "other" }},
		{"another user", now, func(r *tokenkeeper.RefreshToken) { r.UserID = v.ID }},
		{"another auth time", now, func(r *tokenkeeper.RefreshToken) { r.AuthTime = now }},
		{"a longer family life", now, func(r *tokenkeeper.RefreshToken) { r.FamilyExpiresAt = a.FamilyExpiresAt.Add(time.Hour) }},
	} {
		r := &tokenkeeper.RefreshToken{Hash: sum(secret("n")), ExpiresAt: now.Add(time.Hour)}
		tc.edit(r)
		if err := e.a.RotateRefreshToken(e.ctx, a.ID, tc.now, r); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.name, err)
		}
	}
	wantCode(t, e.a.RotateRefreshToken(e.ctx, a.ID, now, nil), tokenkeeper.EINVALID)
	if all, current := e.familyTokens(a.FamilyID); all != 1 || current != 1 {
		t.Fatalf("refused rotations wrote: %d tokens, %d current", all, current)
	}
	e.rotate(a) // still current
}

// rotateRace has every store in stores try to rotate the same current token
// at once, from several goroutines each, round after round: each round
// exactly one rotation succeeds and the others get ECONFLICT.
func rotateRace(e *authEnv, stores []tokenkeeper.AuthStore, perStore, rounds int) {
	t := e.t
	u := e.addUser("race", tokenkeeper.RoleAdmin)
	cur := e.login(u.ID)
	for round := range rounds {
		now := e.clock.Add(time.Second)
		n := len(stores) * perStore
		nexts := make([]*tokenkeeper.RefreshToken, n)
		errs := make([]error, n)
		var ready, wg sync.WaitGroup
		startGate := make(chan struct{})
		for i := range n {
			nexts[i] = &tokenkeeper.RefreshToken{Hash: sum(secret("race")), ExpiresAt: now.Add(time.Hour)}
			ready.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ready.Done()
				<-startGate
				errs[i] = stores[i%len(stores)].RotateRefreshToken(e.ctx, cur.ID, now, nexts[i])
			}()
		}
		ready.Wait()
		close(startGate)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch tokenkeeper.ErrorCode(err) {
			case "":
				if winner >= 0 {
					t.Fatalf("round %d: rotations %d and %d both succeeded", round, winner, i)
				}
				winner = i
			case tokenkeeper.ECONFLICT:
			default:
				t.Fatalf("round %d: rotation %d: %v", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no rotation succeeded", round)
		}
		for i, next := range nexts {
			_, err := e.a.RefreshTokenByHash(e.ctx, next.Hash)
			if i == winner && err != nil {
				t.Fatalf("round %d: the winner's token: %v", round, err)
			} else if i != winner && tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
				t.Fatalf("round %d: a losing rotation stored its token: %v", round, err)
			}
		}
		cur = nexts[winner]
	}
	all, current := e.familyTokens(cur.FamilyID)
	if all != rounds+1 || current != 1 {
		t.Fatalf("family has %d tokens, %d current; want %d, 1", all, current, rounds+1)
	}
}

func testRotateConcurrent(e *authEnv) {
	rotateRace(e, []tokenkeeper.AuthStore{e.a}, 12, 8)
}

func testRotateTwoStores(e *authEnv) {
	rotateRace(e, []tokenkeeper.AuthStore{e.a, e.peer()}, 6, 8)
}

func testRevokeFamily(e *authEnv) {
	t := e.t
	u := e.addUser("mia", tokenkeeper.RoleAdmin)
	a := e.login(u.ID)
	e.clock.Add(time.Minute)
	a2 := e.rotate(a)
	b := e.login(u.ID)

	revokedAt := e.clock.Add(time.Minute)
	exp := revokedAt.Add(15 * time.Minute)
	if err := e.a.RevokeFamily(e.ctx, a.FamilyID, revokedAt, exp); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []*tokenkeeper.RefreshToken{a, a2} {
		if got := e.token(rt.Hash); !got.RevokedAt.Equal(revokedAt) {
			t.Fatalf("token %s revoked at %v, want %v", rt.ID, got.RevokedAt, revokedAt)
		}
	}
	if got := e.token(a.Hash); got.RotatedAt.IsZero() {
		t.Fatal("revocation cleared the rotation time")
	}
	if got := e.token(b.Hash); !got.RevokedAt.IsZero() {
		t.Fatal("another family was revoked")
	}
	want := []*tokenkeeper.Revocation{{FamilyID: a.FamilyID, RevokedAt: revokedAt, ExpiresAt: exp}}
	revs, err := e.a.Revocations(e.ctx, revokedAt)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "Revocations", revs, want)

	// Idempotent: a later call keeps the first times, and only extends the
	// expiry.
	later := e.clock.Add(time.Minute)
	if err := e.a.RevokeFamily(e.ctx, a.FamilyID, later, exp.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	revs, _ = e.a.Revocations(e.ctx, later)
	same(t, "Revocations after a repeated revocation", revs, want)
	if got := e.token(a2.Hash); !got.RevokedAt.Equal(revokedAt) {
		t.Fatalf("a repeated revocation moved the revocation time to %v", got.RevokedAt)
	}
	if err := e.a.RevokeFamily(e.ctx, a.FamilyID, later, exp.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	want[0].ExpiresAt = exp.Add(time.Hour)
	revs, _ = e.a.Revocations(e.ctx, later)
	same(t, "Revocations after an extended revocation", revs, want)
	if all, current := e.familyTokens(a.FamilyID); all != 2 || current != 0 {
		t.Fatalf("revoked family: %d tokens, %d current", all, current)
	}

	// A family without stored tokens is recorded too.
	if err := e.a.RevokeFamily(e.ctx, "gone", later, later.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Only unexpired revocations are returned.
	revs, _ = e.a.Revocations(e.ctx, later.Add(time.Minute))
	same(t, "Revocations at the short one's expiry", revs, want)
	revs, _ = e.a.Revocations(e.ctx, later.Add(time.Minute-time.Microsecond))
	if len(revs) != 2 {
		t.Fatalf("Revocations before the short one's expiry: %s", asJSON(revs))
	}
	revs, err = e.a.Revocations(e.ctx, want[0].ExpiresAt)
	if err != nil || len(revs) != 0 {
		t.Fatalf("Revocations after every expiry: %s, %v", asJSON(revs), err)
	}
	// A peer sees the same revocations.
	revs, err = e.peer().Revocations(e.ctx, later)
	if err != nil || len(revs) != 2 {
		t.Fatalf("peer Revocations: %s, %v", asJSON(revs), err)
	}

	for _, tc := range []struct {
		name     string
		family   string
		now, exp time.Time
	}{
		{"no family", "", later, exp},
		{"bad family", "a b", later, exp},
		{"no now", b.FamilyID, time.Time{}, exp},
		{"no expiry", b.FamilyID, later, time.Time{}},
		{"expiry out of range", b.FamilyID, later, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if err := e.a.RevokeFamily(e.ctx, tc.family, tc.now, tc.exp); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.name, err)
		}
	}
	if got := e.token(b.Hash); !got.RevokedAt.IsZero() {
		t.Fatal("a refused revocation revoked")
	}
	_, err = e.a.Revocations(e.ctx, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
	wantCode(t, err, tokenkeeper.EINVALID)
}

// testRevokeDuringRotations revokes a family while two stores keep rotating
// it: afterwards no token of the family is current, however the revocation
// interleaved with the rotations.
func testRevokeDuringRotations(e *authEnv) {
	t := e.t
	peer := e.peer()
	stores := []tokenkeeper.AuthStore{e.a, peer}
	u := e.addUser("nina", tokenkeeper.RoleAdmin)
	for round := range 6 {
		first := e.login(u.ID)
		now := e.clock.Now()
		var mu sync.Mutex
		cur := first.ID // guarded by mu
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 6 {
					mu.Lock()
					id := cur
					mu.Unlock()
					next := &tokenkeeper.RefreshToken{Hash: sum(secret("r")), ExpiresAt: now.Add(time.Hour)}
					err := stores[w%2].RotateRefreshToken(e.ctx, id, now, next)
					switch tokenkeeper.ErrorCode(err) {
					case "":
						mu.Lock()
						cur = next.ID
						mu.Unlock()
					case tokenkeeper.ECONFLICT:
					default:
						t.Errorf("rotate: %v", err)
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(round) * time.Millisecond)
			if err := stores[round%2].RevokeFamily(e.ctx, first.FamilyID, now, now.Add(time.Hour)); err != nil {
				t.Errorf("revoke: %v", err)
			}
		}()
		wg.Wait()
		if all, current := e.familyTokens(first.FamilyID); current != 0 {
			t.Fatalf("round %d: %d of %d tokens still current after the revocation", round, current, all)
		}
		if n := e.count(`SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL`, first.FamilyID); n != 0 {
			t.Fatalf("round %d: %d tokens not marked revoked", round, n)
		}
	}
}

// testPrune checks that expired families and revocations are deleted as new
// families are created, and nothing else.
func testPrune(e *authEnv) {
	t := e.t
	u := e.addUser("olga", tokenkeeper.RoleAdmin)
	old := e.login(u.ID) // family expires at start+24h
	e.clock.Add(time.Minute)
	e.rotate(old)
	if err := e.a.RevokeFamily(e.ctx, "short", start, start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(start.Add(12 * time.Hour))
	mid := e.login(u.ID) // expires at start+36h
	if err := e.a.RevokeFamily(e.ctx, mid.FamilyID, e.clock.Now(), start.Add(30*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT COUNT(*) FROM refresh_tokens`); n != 3 {
		t.Fatalf("%d tokens before the old family expired, want 3", n)
	}
	if n := e.count(`SELECT COUNT(*) FROM revocations`); n != 1 {
		t.Fatalf("%d revocations, want 1 (the expired one pruned)", n)
	}

	e.clock.Set(start.Add(24 * time.Hour))
	e.login(u.ID)
	_, err := e.a.RefreshTokenByHash(e.ctx, old.Hash)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	if all, _ := e.familyTokens(old.FamilyID); all != 0 {
		t.Fatalf("%d tokens of the expired family kept", all)
	}
	e.token(mid.Hash)
	revs, err := e.a.Revocations(e.ctx, e.clock.Now())
	if err != nil || len(revs) != 1 || revs[0].FamilyID != mid.FamilyID {
		t.Fatalf("revocations: %s, %v", asJSON(revs), err)
	}
}

func testServiceClients(e *authEnv) {
	t := e.t
	billing := &tokenkeeper.ServiceClient{ClientID: "billing", SecretHash: sum(secret("cs")), Credentials: []string{"stripe", "github.app"}}
	if err := e.a.CreateServiceClient(e.ctx, billing); err != nil {
		t.Fatal(err)
	}
	if billing.ID == "" || !billing.CreatedAt.Equal(start) || !billing.UpdatedAt.Equal(start) {
		t.Fatalf("CreateServiceClient assigned %s", asJSON(billing))
	}
	e.clock.Add(time.Second)
	batch := &tokenkeeper.ServiceClient{ClientID: "Batch", SecretHash: sum(secret("cs"))}
	if err := e.a.CreateServiceClient(e.ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := e.a.ServiceClient(e.ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "ServiceClient(billing)", got, billing)
	if !got.CanRead("stripe") || got.CanRead("other") {
		t.Fatal("grants did not survive the round trip")
	}
	all, err := e.a.ServiceClients(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "ServiceClients", all, []*tokenkeeper.ServiceClient{batch, billing})

	dup := &tokenkeeper.ServiceClient{ClientID: "billing", SecretHash: sum("x")}
	wantCode(t, e.a.CreateServiceClient(e.ctx, dup), tokenkeeper.ECONFLICT)

	now := e.clock.Add(time.Minute)
	h := sum(secret("rotated"))
	if err := e.a.SetServiceClientSecret(e.ctx, "billing", h); err != nil {
		t.Fatal(err)
	}
	billing.SecretHash, billing.UpdatedAt = h, now
	got, _ = e.a.ServiceClient(e.ctx, "billing")
	same(t, "client after SetServiceClientSecret", got, billing)
	wantCode(t, e.a.SetServiceClientSecret(e.ctx, "nobody", h), tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.SetServiceClientSecret(e.ctx, "billing", h[:31]), tokenkeeper.EINVALID)
	wantCode(t, e.a.SetServiceClientSecret(e.ctx, "billing", nil), tokenkeeper.EINVALID)
	got, _ = e.a.ServiceClient(e.ctx, "billing")
	same(t, "client after refused secrets", got, billing)

	if err := e.a.DeleteServiceClient(e.ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	_, err = e.a.ServiceClient(e.ctx, "billing")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.DeleteServiceClient(e.ctx, "billing"), tokenkeeper.ENOTFOUND)
	all, _ = e.a.ServiceClients(e.ctx)
	same(t, "ServiceClients after delete", all, []*tokenkeeper.ServiceClient{batch})
	// A peer sees the same clients.
	pall, err := e.peer().ServiceClients(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "peer ServiceClients", pall, all)
}

func testServiceClientsInvalid(e *authEnv) {
	t := e.t
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	for _, tc := range []struct {
		name string
		edit func(c *tokenkeeper.ServiceClient)
	}{
		{"no client_id", func(c *tokenkeeper.ServiceClient) { c.ClientID = "" }},
		{"bad client_id", func(c *tokenkeeper.ServiceClient) { c.ClientID = "svc:1" }},
		{"client_id with NUL", func(c *tokenkeeper.ServiceClient) { c.ClientID = "svc\x00" }},
		{"no secret hash", func(c *tokenkeeper.ServiceClient) { c.SecretHash = nil }},
		{"short secret hash", func(c *tokenkeeper.ServiceClient) { c.SecretHash = c.SecretHash[:31] }},
		{"long secret hash", func(c *tokenkeeper.ServiceClient) { c.SecretHash = append(c.SecretHash, 0) }},
		{"bad credential name", func(c *tokenkeeper.ServiceClient) { c.Credentials = []string{"ok", "not ok"} }},
		{"empty credential name", func(c *tokenkeeper.ServiceClient) { c.Credentials = []string{""} }},
		{"too many credentials", func(c *tokenkeeper.ServiceClient) { c.Credentials = many }},
	} {
		c := &tokenkeeper.ServiceClient{ClientID: "svc", SecretHash: sum("s"), Credentials: []string{"a"}}
		tc.edit(c)
		before := asJSON(c)
		if err := e.a.CreateServiceClient(e.ctx, c); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.name, err)
		}
		if asJSON(c) != before {
			t.Errorf("%s: a refused CreateServiceClient changed its argument", tc.name)
		}
	}
	wantCode(t, e.a.CreateServiceClient(e.ctx, nil), tokenkeeper.EINVALID)
	if n := e.count(`SELECT COUNT(*) FROM service_clients`); n != 0 {
		t.Fatalf("%d refused clients stored", n)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func testSigningKeys(e *authEnv) {
	t := e.t
	k1 := &tokenkeeper.SigningKey{ID: "k1", Algorithm: "HS256", Secret: randomBytes(32)}
	if err := e.a.AddSigningKey(e.ctx, k1); err != nil {
		t.Fatal(err)
	}
	if !k1.CreatedAt.Equal(start) {
		t.Fatalf("CreatedAt = %v", k1.CreatedAt)
	}
	e.clock.Add(time.Hour)
	k2 := &tokenkeeper.SigningKey{ID: "k2", Algorithm: "HS512", Secret: randomBytes(64)}
	if err := e.a.AddSigningKey(e.ctx, k2); err != nil {
		t.Fatal(err)
	}
	// Added at the same instant: the higher id counts as newer, everywhere.
	k0 := &tokenkeeper.SigningKey{ID: "k0", Algorithm: "HS256", Secret: randomBytes(40)}
	if err := e.a.AddSigningKey(e.ctx, k0); err != nil {
		t.Fatal(err)
	}
	want := []*tokenkeeper.SigningKey{k2, k0, k1}
	got, err := e.a.SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "SigningKeys", got, want)
	got, err = e.peer().SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "peer SigningKeys", got, want)

	dup := &tokenkeeper.SigningKey{ID: "k1", Algorithm: "HS256", Secret: randomBytes(32)}
	wantCode(t, e.a.AddSigningKey(e.ctx, dup), tokenkeeper.ECONFLICT)
	got, _ = e.a.SigningKeys(e.ctx)
	same(t, "SigningKeys after a duplicate", got, want)
	// The caller's slice is not kept.
	k1.Secret[0] ^= 0xff
	got, _ = e.a.SigningKeys(e.ctx)
	if bytes.Equal(got[2].Secret, k1.Secret) {
		t.Fatal("AddSigningKey kept the caller's secret slice")
	}
}

func testSigningKeysInvalid(e *authEnv) {
	t := e.t
	for _, tc := range []struct {
		name string
		edit func(k *tokenkeeper.SigningKey)
	}{
		{"no id", func(k *tokenkeeper.SigningKey) { k.ID = "" }},
		{"bad id", func(k *tokenkeeper.SigningKey) { k.ID = "k/1" }},
		{"no algorithm", func(k *tokenkeeper.SigningKey) { k.Algorithm = "" }},
		{"bad algorithm", func(k *tokenkeeper.SigningKey) { k.Algorithm = "HS 256" }},
		{"long algorithm", func(k *tokenkeeper.SigningKey) { k.Algorithm = strings.Repeat("A", 33) }},
		{"no secret", func(k *tokenkeeper.SigningKey) { k.Secret = nil }},
		{"short secret", func(k *tokenkeeper.SigningKey) { k.Secret = k.Secret[:31] }},
		{"huge secret", func(k *tokenkeeper.SigningKey) { k.Secret = randomBytes(16385) }},
	} {
		k := &tokenkeeper.SigningKey{ID: "k", Algorithm: "HS256", Secret: randomBytes(32)}
		tc.edit(k)
		err := e.a.AddSigningKey(e.ctx, k)
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.name, err)
		}
		if len(k.Secret) > 0 {
			checkErrNoSecret(t, err, []string{string(k.Secret)})
		}
	}
	wantCode(t, e.a.AddSigningKey(e.ctx, nil), tokenkeeper.EINVALID)
	if keys, err := e.a.SigningKeys(e.ctx); err != nil || len(keys) != 0 {
		t.Fatalf("refused keys stored: %d, %v", len(keys), err)
	}
}

// testSigningKeyMoved checks that a signing key's sealed secret is bound to
// its row: copied to another key's row with raw SQL, it no longer opens.
func testSigningKeyMoved(e *authEnv) {
	t := e.t
	a := &tokenkeeper.SigningKey{ID: "a", Algorithm: "HS256", Secret: randomBytes(32)}
	b := &tokenkeeper.SigningKey{ID: "b", Algorithm: "HS256", Secret: randomBytes(32)}
	for _, k := range []*tokenkeeper.SigningKey{a, b} {
		if err := e.a.AddSigningKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Exec(e.ctx, `UPDATE signing_keys SET secret = (SELECT secret FROM signing_keys WHERE id = $1) WHERE id = $2`, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.a.SigningKeys(e.ctx)
	if err == nil {
		t.Fatal("a signing key secret moved from another row opened")
	}
	checkErrNoSecret(t, err, []string{string(a.Secret), string(b.Secret)})
	// A credential's sealed secret moved into a signing key does not open
	// either: the table and the column are bound too.
	c := e.create(newCred("c"))
	if err := e.Exec(e.ctx, `UPDATE signing_keys SET secret = (SELECT client_secret FROM providers WHERE id = $1) WHERE id = $2`, c.ProviderID, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.SigningKeys(e.ctx); err == nil {
		t.Fatal("a credential's sealed secret opened as a signing key")
	}
	if _, err := e.s.RotateKey(e.ctx); err == nil {
		t.Fatal("RotateKey re-sealed a moved signing key secret")
	}
}

func testRotateKeySigningKeys(e *authEnv) {
	t := e.t
	cc := newCred("cc")
	cc.GrantType, cc.RefreshToken = tokenkeeper.GrantClientCredentials, ""
	e.create(cc) // 1 sealed value
	keys := []*tokenkeeper.SigningKey{
		{ID: "k1", Algorithm: "HS256", Secret: randomBytes(32)},
		{ID: "k2", Algorithm: "HS256", Secret: randomBytes(48)},
	}
	for _, k := range keys {
		e.clock.Add(time.Second)
		if err := e.a.AddSigningKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	keyOf := func(id string) uint32 {
		t.Helper()
		var ct []byte
		if err := e.QueryRow(e.ctx, `SELECT secret FROM signing_keys WHERE id = $1`, id).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		kid, err := seal.KeyID(ct)
		if err != nil {
			t.Fatal(err)
		}
		return kid
	}
	before := keyOf("k1")
	peer := e.peer() // loaded the keys before the rotation

	n, err := e.s.RotateKey(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("RotateKey re-sealed %d secrets, want 3 (1 credential secret, 2 signing keys)", n)
	}
	after := e.keyIDOf(cc.ID, "client_secret")
	if after == before {
		t.Fatal("the data key did not change")
	}
	for _, k := range keys {
		if got := keyOf(k.ID); got != after {
			t.Errorf("signing key %s sealed with data key %d, want %d", k.ID, got, after)
		}
	}
	want := []*tokenkeeper.SigningKey{keys[1], keys[0]}
	got, err := e.a.SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "SigningKeys after RotateKey", got, want)
	// The peer opens secrets sealed with a key it has never seen, and its
	// own rotation counts the same secrets.
	got, err = peer.SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "peer SigningKeys after RotateKey", got, want)
	k3 := &tokenkeeper.SigningKey{ID: "k3", Algorithm: "HS256", Secret: randomBytes(32)}
	if err := e.a.AddSigningKey(e.ctx, k3); err != nil {
		t.Fatal(err)
	}
	if got := keyOf("k3"); got != after {
		t.Errorf("a new signing key sealed with data key %d, want %d", got, after)
	}
	if n, err := peer.(tokenkeeper.Store).RotateKey(e.ctx); err != nil || n != 4 {
		t.Fatalf("RotateKey on the peer: %d, %v; want 4", n, err)
	}
	got, err = e.a.SigningKeys(e.ctx)
	if err != nil || len(got) != 3 {
		t.Fatalf("SigningKeys after the peer's rotation: %d, %v", len(got), err)
	}
}

// testAuthSecretsNotAtRest is invariant 5 for the auth store: a raw scan
// finds no signing key secret, and none of the secrets whose hashes the
// store keeps (passwords, refresh tokens, client secrets); the hashes and
// the names are there.
func testAuthSecretsNotAtRest(e *authEnv) {
	t := e.t
	var secrets []string
	var positive [][]byte

	password := secret("password")
	u := &tokenkeeper.User{Username: "pat", PasswordHash: passwordHash(password), Role: tokenkeeper.RoleAdmin}
	if err := e.a.CreateUser(e.ctx, u); err != nil {
		t.Fatal(err)
	}
	password2 := secret("new-password")
	if err := e.a.SetUserPassword(e.ctx, "pat", passwordHash(password2)); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, password, password2)
	positive = append(positive, []byte("pat"))

	rt, token := e.newRefresh(u.ID)
	if err := e.a.CreateRefreshToken(e.ctx, rt); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Add(time.Minute)
	token2 := secret("refresh-2")
	next := &tokenkeeper.RefreshToken{Hash: sum(token2), ExpiresAt: now.Add(time.Hour)}
	if err := e.a.RotateRefreshToken(e.ctx, rt.ID, now, next); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, token, token2)
	positive = append(positive, []byte(rt.FamilyID))

	clientSecret, clientSecret2 := secret("client-secret"), secret("client-secret-2")
	c := &tokenkeeper.ServiceClient{ClientID: "svc-quux", SecretHash: sum(clientSecret), Credentials: []string{"github"}}
	if err := e.a.CreateServiceClient(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := e.a.SetServiceClientSecret(e.ctx, "svc-quux", sum(clientSecret2)); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, clientSecret, clientSecret2)
	positive = append(positive, []byte("svc-quux"))

	// Signing key secrets: printable, and raw random bytes.
	printable := &tokenkeeper.SigningKey{ID: "kid-printable", Algorithm: "HS256", Secret: []byte(secret("signing-key"))}
	binary := &tokenkeeper.SigningKey{ID: "kid-binary", Algorithm: "HS256", Secret: randomBytes(32)}
	for _, k := range []*tokenkeeper.SigningKey{printable, binary} {
		if err := e.a.AddSigningKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, string(k.Secret))
		positive = append(positive, []byte(k.ID))
	}
	// A key rotation re-seals the signing keys.
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := e.a.SigningKeys(e.ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("SigningKeys: %d, %v", len(keys), err)
	}
	for _, k := range keys {
		want := printable
		if k.ID == binary.ID {
			want = binary
		}
		if !bytes.Equal(k.Secret, want.Secret) {
			t.Fatalf("signing key %s did not survive the round trip", k.ID)
		}
	}
	// An audit record names things, never secrets.
	if err := e.a.AddAudit(e.ctx, &tokenkeeper.AuditRecord{Actor: "user:pat", Action: "auth.login", Target: "pat", Outcome: "ok", RemoteAddr: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	positive = append(positive, []byte("auth.login"))

	dump := e.RawDump(t)
	checkNoSecret(t, "raw database dump", dump, secrets)
	if bytes.Contains(dump, binary.Secret) {
		t.Error("raw database dump contains a binary signing key secret")
	}
	for _, p := range positive {
		if !bytes.Contains(dump, p) {
			t.Fatalf("raw dump lacks the non-secret %q: the dump does not cover the data", p)
		}
	}
	// The stored password hash is what the caller gave: no secret in it.
	got, err := e.a.User(e.ctx, "pat")
	if err != nil {
		t.Fatal(err)
	}
	checkNoSecret(t, "password hash", []byte(got.PasswordHash), secrets)
}

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
