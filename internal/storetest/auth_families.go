package storetest

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

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
