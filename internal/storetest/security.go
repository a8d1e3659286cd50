package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// testPruneAudit: PruneAudit deletes at most limit records older than
// before, oldest first, and nothing younger.
func testPruneAudit(e *authEnv) {
	t := e.t
	var ids []int64
	for i := range 12 {
		// Added out of time order: pruning goes by time, not id.
		at := start.Add(time.Duration((i*5)%12) * time.Hour)
		r := &tokenkeeper.AuditRecord{Time: at, Actor: "apikey:a", Action: "x", Target: fmt.Sprint(i)}
		if err := e.a.AddAudit(e.ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	hours := func() map[int]bool {
		t.Helper()
		recs, err := e.a.Audit(e.ctx, tokenkeeper.AuditFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		m := map[int]bool{}
		for _, r := range recs {
			m[int(r.Time.Sub(start)/time.Hour)] = true
		}
		return m
	}
	// Records of hours 0 to 5 are older than start+6h (the one of 6h is not).
	n, err := e.a.PruneAudit(e.ctx, start.Add(6*time.Hour), 4)
	if err != nil || n != 4 {
		t.Fatalf("PruneAudit(limit 4) = %d, %v; want 4", n, err)
	}
	got := hours()
	for h := range 12 {
		if got[h] != (h >= 4) {
			t.Fatalf("after the first batch, hours kept %v: the oldest 4 must be gone, nothing else", got)
		}
	}
	n, err = e.a.PruneAudit(e.ctx, start.Add(6*time.Hour), 4)
	if err != nil || n != 2 {
		t.Fatalf("second PruneAudit = %d, %v; want 2", n, err)
	}
	n, err = e.a.PruneAudit(e.ctx, start.Add(6*time.Hour), 4)
	if err != nil || n != 0 {
		t.Fatalf("third PruneAudit = %d, %v; want 0", n, err)
	}
	if got := hours(); len(got) != 6 || !got[6] || !got[11] {
		t.Fatalf("hours kept %v, want 6 to 11", got)
	}
	for _, limit := range []int{0, -1, 1 << 30} {
		_, err := e.a.PruneAudit(e.ctx, start, limit)
		wantCode(t, err, tokenkeeper.EINVALID)
	}
	_, err = e.a.PruneAudit(e.ctx, time.Time{}, 10)
	wantCode(t, err, tokenkeeper.EINVALID)
	if len(hours()) != 6 {
		t.Fatal("a refused PruneAudit deleted records")
	}
}

// testRefreshesDoNotEraseOperatorEvents (M3): refresh events are a rolling
// history trimmed apart from operator events; 2000 refresh events (twice
// the default cap) leave the created event, and EventsOfClass lists one
// class at a time.
func testRefreshesDoNotEraseOperatorEvents(e *env) {
	t := e.t
	c := e.create(newCred("busy"))
	created := &tokenkeeper.Event{CredentialID: c.ID, CredentialName: c.Name, Kind: tokenkeeper.EventCreated, Actor: "apikey:ops"}
	if err := e.s.AddEvent(e.ctx, created); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		e.clock.Add(time.Millisecond)
		ev := &tokenkeeper.Event{CredentialID: c.ID, CredentialName: c.Name, Kind: tokenkeeper.EventRefresh,
			Outcome: tokenkeeper.OutcomeOK, Actor: "refresher:x", Message: fmt.Sprint(i)}
		if err := e.s.AddEvent(e.ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	ops, err := e.s.EventsOfClass(e.ctx, c.Name, tokenkeeper.EventClassOperator, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].ID != created.ID || ops[0].Kind != tokenkeeper.EventCreated {
		t.Fatalf("operator events after %d refreshes: %s", n, asJSON(ops))
	}
	refreshes, err := e.s.EventsOfClass(e.ctx, c.Name, tokenkeeper.EventClassRefresh, 5000)
	if err != nil {
		t.Fatal(err)
	}
	// The rolling history still has a cap (the stores' default, 100).
	if len(refreshes) == 0 || len(refreshes) >= n || refreshes[0].Message != fmt.Sprint(n-1) {
		t.Fatalf("%d refresh events kept, newest %q: want the newest, and fewer than %d", len(refreshes), refreshes[0].Message, n)
	}
	for _, ev := range refreshes {
		if ev.Kind != tokenkeeper.EventRefresh {
			t.Fatalf("refresh class holds a %q event", ev.Kind)
		}
	}
	all, err := e.s.Events(e.ctx, c.Name, 5000)
	if err != nil || len(all) != len(refreshes)+1 || all[len(all)-1].ID != created.ID {
		t.Fatalf("Events = %d events, %v; want the refreshes and the created event, oldest last", len(all), err)
	}
	_, err = e.s.EventsOfClass(e.ctx, c.Name, "secret", 10)
	wantCode(t, err, tokenkeeper.EINVALID)
	_, err = e.s.EventsOfClass(e.ctx, "nope", tokenkeeper.EventClassRefresh, 10)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}

// testPasswordChangeRevokesSessions (M2): ChangeUserPassword and
// RevokeUserSessions revoke every family of the user (and only of that
// user) with revocations of their access tokens, and a family whose login
// began at or before the change is refused.
func testPasswordChangeRevokesSessions(e *authEnv) {
	t := e.t
	alice := e.addUser("alice", tokenkeeper.RoleAdmin)
	bob := e.addUser("bob", tokenkeeper.RoleViewer)
	f1 := e.login(alice.ID)
	f2 := e.login(alice.ID)
	other := e.login(bob.ID)
	// A login that read the user before the change, storing its family
	// after it.
	racing, _ := e.newRefresh(alice.ID)

	now := e.clock.Add(time.Minute)
	exp := now.Add(15 * time.Minute)
	hash := passwordHash("new password")
	if err := e.a.ChangeUserPassword(e.ctx, "alice", hash, now, exp); err != nil {
		t.Fatal(err)
	}
	if u, err := e.a.User(e.ctx, "alice"); err != nil || u.PasswordHash != hash || !u.UpdatedAt.Equal(now) {
		t.Fatalf("after ChangeUserPassword: %+v, %v", u, err)
	}
	for _, rt := range []*tokenkeeper.RefreshToken{f1, f2} {
		if got := e.token(rt.Hash); !got.RevokedAt.Equal(now) {
			t.Fatalf("family %s revoked at %v, want %v", rt.FamilyID, got.RevokedAt, now)
		}
	}
	if got := e.token(other.Hash); !got.RevokedAt.IsZero() {
		t.Fatal("another user's family was revoked")
	}
	revs, err := e.a.Revocations(e.ctx, now)
	if err != nil || len(revs) != 2 {
		t.Fatalf("revocations: %s, %v", asJSON(revs), err)
	}
	for _, r := range revs {
		if (r.FamilyID != f1.FamilyID && r.FamilyID != f2.FamilyID) || !r.ExpiresAt.Equal(exp) {
			t.Fatalf("revocation %s", asJSON(r))
		}
	}
	wantCode(t, e.a.CreateRefreshToken(e.ctx, racing), tokenkeeper.ECONFLICT)
	e.clock.Add(time.Second)
	after := e.login(alice.ID) // a login begun after the change

	now2 := e.clock.Add(time.Minute)
	// Of alice's three families only the one begun after the password
	// change is live: the sessions ended are counted, not the families
	// revoked before.
	n, err := e.a.RevokeUserSessions(e.ctx, "alice", now2, now2.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("RevokeUserSessions = %d, %v; want 1 session ended", n, err)
	}
	if got := e.token(after.Hash); !got.RevokedAt.Equal(now2) {
		t.Fatalf("family after the change not revoked: %v", got.RevokedAt)
	}
	if u, _ := e.a.User(e.ctx, "alice"); u.PasswordHash != hash {
		t.Fatal("RevokeUserSessions changed the password")
	}
	if n, err := e.a.RevokeUserSessions(e.ctx, "alice", now2, now2.Add(time.Minute)); err != nil || n != 0 {
		t.Fatalf("RevokeUserSessions again = %d, %v; want 0 sessions ended", n, err)
	}
	_, err = e.a.RevokeUserSessions(e.ctx, "nobody", now2, now2.Add(time.Minute))
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.ChangeUserPassword(e.ctx, "nobody", hash, now2, now2.Add(time.Minute)), tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.ChangeUserPassword(e.ctx, "alice", "", now2, now2.Add(time.Minute)), tokenkeeper.EINVALID)
	_, err = e.a.RevokeUserSessions(e.ctx, "alice", time.Time{}, now2)
	wantCode(t, err, tokenkeeper.EINVALID)
	// SetUserPassword (a re-hash) leaves sessions alone.
	e.clock.Add(time.Second)
	kept := e.login(bob.ID)
	if err := e.a.SetUserPassword(e.ctx, "bob", passwordHash("rehash")); err != nil {
		t.Fatal(err)
	}
	if got := e.token(kept.Hash); !got.RevokedAt.IsZero() {
		t.Fatal("SetUserPassword revoked a family")
	}
}

// testTamperedRowSkippedInList (Info: tampered row): ReadableCredentials
// lists every row that opens and names the ones that do not (a sealed
// field moved from another row, or overwritten), without a secret in sight.
func testTamperedRowSkippedInList(e *env) {
	t := e.t
	a := e.create(newCred("a"))
	b := e.create(newCred("b"))
	c := e.create(newCred("c"))
	d := e.create(newCred("d"))
	secrets := append(append(secretsOf(a), secretsOf(b)...), secretsOf(c)...)
	// b: another row's refresh token; d: a refresh token overwritten.
	if err := e.Exec(e.ctx, `UPDATE credentials SET refresh_token = (SELECT refresh_token FROM credentials WHERE id = $1) WHERE id = $2`, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.Exec(e.ctx, `UPDATE credentials SET refresh_token = $1 WHERE id = $2`, []byte("not a sealed value at all"), d.ID); err != nil {
		t.Fatal(err)
	}
	creds, unreadable, err := e.s.ReadableCredentials(e.ctx, tokenkeeper.CredentialFilter{})
	if err != nil {
		t.Fatalf("ReadableCredentials: %v", err)
	}
	if len(creds) != 2 || creds[0].Name != "a" || creds[1].Name != "c" || creds[1].ClientSecret != c.ClientSecret {
		t.Fatalf("readable credentials: %s", asJSON(names(creds)))
	}
	if asJSON(unreadable) != `["b","d"]` {
		t.Fatalf("unreadable = %v, want [b d]", unreadable)
	}
	checkNoSecret(t, "unreadable names", []byte(asJSON(unreadable)), secrets)
	// With a filter, only the rows it selects are read and named.
	creds, unreadable, err = e.s.ReadableCredentials(e.ctx, tokenkeeper.CredentialFilter{Provider: b.Provider})
	if err != nil || len(creds) != 0 || asJSON(unreadable) != `["b"]` {
		t.Fatalf("ReadableCredentials(provider of b) = %v, unreadable %v, %v", names(creds), unreadable, err)
	}
	creds, unreadable, err = e.s.ReadableCredentials(e.ctx, tokenkeeper.CredentialFilter{Provider: c.Provider, Status: tokenkeeper.StatusActive})
	if err != nil || asJSON(names(creds)) != `["c"]` || len(unreadable) != 0 {
		t.Fatalf("ReadableCredentials(provider of c, active) = %v, unreadable %v, %v", names(creds), unreadable, err)
	}
}

// masterKeyRotator is implemented by stores that can re-wrap their data
// keys under a new master key (tokenkeeper keys rotate-master).
type masterKeyRotator interface {
	RotateMasterKey(ctx context.Context, newMaster []byte) (int, error)
}

// dataKeys returns the wrapped data keys by id.
func (e *env) dataKeys() map[int64][]byte {
	e.t.Helper()
	out := map[int64][]byte{}
	var maxID int64
	if err := e.QueryRow(e.ctx, `SELECT COALESCE(MAX(id), 0) FROM data_keys`).Scan(&maxID); err != nil {
		e.t.Fatal(err)
	}
	for id := int64(1); id <= maxID; id++ {
		var w []byte
		if err := e.QueryRow(e.ctx, `SELECT wrapped FROM data_keys WHERE id = $1`, id).Scan(&w); err != nil {
			continue
		}
		out[id] = w
	}
	return out
}

// testRotateMasterKey (Info: master-key rotation): RotateMasterKey
// re-wraps every data key under the new master key, which then unwraps
// them; a data key the current master key does not unwrap stops it before
// anything is written.
func testRotateMasterKey(e *env) {
	t := e.t
	r, ok := e.s.(masterKeyRotator)
	if !ok {
		t.Skipf("%T cannot rotate its master key", e.s)
	}
	a := e.create(newCred("a"))
	if err := e.AddDataKey(e.ctx); err != nil { // two data keys
		t.Fatal(err)
	}
	b := e.create(newCred("b"))
	before := e.dataKeys()
	if len(before) != 2 {
		t.Fatalf("%d data keys, want 2", len(before))
	}

	// A data key wrapped under another master key: the current one does
	// not unwrap it, and nothing changes.
	foreign := randomBytes(seal.KeySize)
	dk, _ := seal.NewDataKey()
	wrapped, err := seal.WrapKey(foreign, 3, dk)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Exec(e.ctx, `INSERT INTO data_keys (id, wrapped, created_at) VALUES (3, $1, $2)`, wrapped, start); err != nil {
		t.Fatal(err)
	}
	newMaster := randomBytes(seal.KeySize)
	if _, err := r.RotateMasterKey(e.ctx, newMaster); !errors.Is(err, seal.ErrMasterKeyMismatch) {
		t.Fatalf("RotateMasterKey with a data key it cannot unwrap = %v, want ErrMasterKeyMismatch", err)
	}
	after := e.dataKeys()
	for id, w := range before {
		if !bytes.Equal(after[id], w) {
			t.Fatalf("data key %d changed although the rotation failed", id)
		}
	}
	if err := e.Exec(e.ctx, `DELETE FROM data_keys WHERE id = 3`); err != nil {
		t.Fatal(err)
	}

	for _, bad := range [][]byte{nil, randomBytes(16)} {
		_, err := r.RotateMasterKey(e.ctx, bad)
		wantCode(t, err, tokenkeeper.EINVALID)
	}
	n, err := r.RotateMasterKey(e.ctx, newMaster)
	if err != nil || n != 2 {
		t.Fatalf("RotateMasterKey = %d, %v; want 2", n, err)
	}
	for id, w := range e.dataKeys() {
		if bytes.Equal(w, before[id]) {
			t.Fatalf("data key %d was not re-wrapped", id)
		}
		if _, err := seal.UnwrapKey(newMaster, uint32(id), w); err != nil {
			t.Fatalf("the new master key does not unwrap data key %d: %v", id, err)
		}
	}
	// The sealed values were not touched and still open.
	if got := e.get("a"); got.ClientSecret != a.ClientSecret {
		t.Fatal("a's secret changed")
	}
	if got := e.get("b"); got.RefreshToken != b.RefreshToken {
		t.Fatal("b's secret changed")
	}
}

// rawParams returns the stored params column of credential id.
func (e *env) rawParams(id string) string {
	e.t.Helper()
	var p string
	if err := e.QueryRow(e.ctx, `SELECT params FROM credentials WHERE id = $1`, id).Scan(&p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// testSecretParamsSealed (L2): params named like secrets are sealed,
// bound to their row and name, re-sealed by RotateKey (which also seals
// plain-text ones of an earlier version); an update that sends
// tokenkeeper.SealedParamValue back keeps the stored value.
func testSecretParamsSealed(e *env) {
	t := e.t
	assertion, pw := secret("assertion"), secret("password")
	c := newCred("p")
	c.Params = map[string]string{"client_assertion": assertion, "password": pw, "resource": "visible-resource"}
	e.create(c)
	raw := e.rawParams(c.ID)
	checkNoSecret(t, "params column", []byte(raw), []string{assertion, pw})
	if !strings.Contains(raw, "visible-resource") {
		t.Fatalf("a non-secret param was sealed: %s", raw)
	}
	if got := e.get("p"); got.Params["client_assertion"] != assertion || got.Params["password"] != pw {
		t.Fatal("sealed params do not open")
	}

	// Sent back as the API shows it, a sealed value is kept; a new one
	// replaces it.
	newPW := secret("new-password")
	upd := map[string]string{"client_assertion": tokenkeeper.SealedParamValue, "password": newPW, "resource": "r2"}
	got, err := e.s.UpdateCredential(e.ctx, "p", tokenkeeper.CredentialUpdate{Params: &upd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Params["client_assertion"] != assertion || got.Params["password"] != newPW || got.Params["resource"] != "r2" {
		t.Fatalf("params after update: keys %v", len(got.Params))
	}
	checkNoSecret(t, "params column after update", []byte(e.rawParams(c.ID)), []string{assertion, pw, newPW})
	// With no stored value to keep, the placeholder is refused.
	bad := newCred("q")
	bad.Params = map[string]string{"my_secret": tokenkeeper.SealedParamValue}
	wantCode(t, e.s.CreateCredential(e.ctx, bad), tokenkeeper.EINVALID)

	// A sealed value copied to another param does not open.
	other := newCred("other")
	other.Params = map[string]string{"password": secret("other")}
	e.create(other)
	var moved map[string]string
	if err := json.Unmarshal([]byte(e.rawParams(c.ID)), &moved); err != nil {
		t.Fatal(err)
	}
	movedJSON, _ := json.Marshal(map[string]string{"password": moved["password"]})
	if err := e.Exec(e.ctx, `UPDATE credentials SET params = $1 WHERE id = $2`, string(movedJSON), other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Credential(e.ctx, "other"); err == nil {
		t.Fatal("a sealed param moved to another row opened")
	}
	if err := e.s.DeleteCredential(e.ctx, "other"); err != nil {
		t.Fatal(err)
	}

	// A plain-text secret param of an earlier version is read as it is,
	// and RotateKey seals it; sealed ones are re-sealed.
	legacy := secret("legacy-token")
	old := newCred("old")
	e.create(old)
	plainJSON, _ := json.Marshal(map[string]string{"subject_token": legacy, "audience": "aud"})
	if err := e.Exec(e.ctx, `UPDATE credentials SET params = $1 WHERE id = $2`, string(plainJSON), old.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.get("old"); got.Params["subject_token"] != legacy {
		t.Fatal("a plain-text secret param of an earlier version does not read")
	}
	before := e.rawParams(c.ID)
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	checkNoSecret(t, "params column after RotateKey", []byte(e.rawParams(old.ID)), []string{legacy})
	if e.rawParams(c.ID) == before {
		t.Fatal("RotateKey did not re-seal the sealed params")
	}
	if got := e.get("old"); got.Params["subject_token"] != legacy || got.Params["audience"] != "aud" {
		t.Fatal("the legacy param does not open after RotateKey")
	}
	if got := e.get("p"); got.Params["client_assertion"] != assertion || got.Params["password"] != newPW {
		t.Fatal("sealed params do not open after RotateKey")
	}

	// A store opening on the database seals plain-text ones too.
	legacy2 := secret("legacy-secret")
	plainJSON, _ = json.Marshal(map[string]string{"Client-Secret-2": legacy2})
	if err := e.Exec(e.ctx, `UPDATE credentials SET params = $1 WHERE id = $2`, string(plainJSON), old.ID); err != nil {
		t.Fatal(err)
	}
	peer := e.OpenPeer(t)
	checkNoSecret(t, "params column after a store opened", []byte(e.rawParams(old.ID)), []string{legacy2})
	if got, err := peer.Credential(e.ctx, "old"); err != nil || got.Params["Client-Secret-2"] != legacy2 {
		t.Fatalf("the param sealed at open does not open: %v", err)
	}
}
