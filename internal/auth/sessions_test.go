package auth

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// M2: changing a password ends every session of the user, here at once and
// on another replica at its next reload (within ReloadInterval); the
// refresh tokens stop working too.
func TestPasswordChangeRevokesSessions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	peer := newEnvOn(t, e.db, e.clock, nil) // another replica on the same database
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	e.addUser(t, "bob", "bob's long password", tokenkeeper.RoleViewer)
	first := e.login(t, "alice", alicePassword)
	second := e.login(t, "alice", alicePassword)
	e.clock.Add(time.Second)
	rotated, err := e.s.Refresh(ctx, second.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	bob := e.login(t, "bob", "bob's long password")
	for _, tok := range []string{first.AccessToken, rotated.AccessToken} {
		if _, err := peer.s.Verify(ctx, tok); err != nil {
			t.Fatalf("before the change, the peer refuses a token: %v", err)
		}
	}

	e.clock.Add(time.Second)
	if err := e.s.SetPassword(ctx, "alice", "alice's new long password"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{first.AccessToken, second.AccessToken, rotated.AccessToken} {
		if _, err := e.s.Verify(ctx, tok); !errors.Is(err, errRevoked) {
			t.Fatalf("an access token of before the change still works here: %v", err)
		}
	}
	if err := peer.s.Reload(ctx); err != nil { // what the peer's Run does every ReloadInterval
		t.Fatal(err)
	}
	for _, tok := range []string{first.AccessToken, rotated.AccessToken} {
		if _, err := peer.s.Verify(ctx, tok); !errors.Is(err, errRevoked) {
			t.Fatalf("an access token of before the change still works on the peer: %v", err)
		}
	}
	for _, rt := range []string{first.RefreshToken, rotated.RefreshToken} {
		_, err := peer.s.Refresh(ctx, rt)
		wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	}
	// Another user's session is untouched; the new password logs in.
	if _, err := peer.s.Verify(ctx, bob.AccessToken); err != nil {
		t.Fatalf("another user's session was ended: %v", err)
	}
	e.clock.Add(time.Second)
	fresh := e.login(t, "alice", "alice's new long password")
	if _, err := peer.s.Verify(ctx, fresh.AccessToken); err != nil {
		t.Fatalf("a login after the change: %v", err)
	}
}

// M2: revoke-sessions ends every session of a user without changing the
// password.
func TestRevokeSessionsEndsAllSessions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	a := e.login(t, "alice", alicePassword)
	b := e.login(t, "alice", alicePassword)
	e.clock.Add(time.Second)
	n, err := e.s.RevokeSessions(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("RevokeSessions = %d, %v; want 2 families", n, err)
	}
	for _, tok := range []*Tokens{a, b} {
		if _, err := e.s.Verify(ctx, tok.AccessToken); !errors.Is(err, errRevoked) {
			t.Fatalf("access token after revoke-sessions: %v", err)
		}
		_, err := e.s.Refresh(ctx, tok.RefreshToken)
		wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	}
	_, err = e.s.RevokeSessions(ctx, "nobody")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	e.clock.Add(time.Second)
	e.login(t, "alice", alicePassword) // the password still works
}

// duringLogin runs fn once, just before the login it is part of stores its
// refresh-token family: after the password was checked.
type duringLogin struct {
	tokenkeeper.AuthStore
	fn func()
}

func (d *duringLogin) CreateRefreshToken(ctx context.Context, t *tokenkeeper.RefreshToken) error {
	if d.fn != nil {
		d.fn()
		d.fn = nil
	}
	return d.AuthStore.CreateRefreshToken(ctx, t)
}

// M2: a login racing with the deletion of its user, or with a password
// change or revocation of the user's sessions, gets no token, even when
// the user is created again under the same name. The race is made
// deterministic: the change happens after the login checked the password
// and before it stores the family.
func TestLoginRacingUserDeletionGetsNoToken(t *testing.T) {
	ctx := context.Background()
	races := []struct {
		name   string
		change func(e *env)
	}{
		{"deleted", func(e *env) {
			if err := e.s.DeleteUser(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted and created again", func(e *env) {
			if err := e.s.DeleteUser(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
		}},
		{"password changed", func(e *env) {
			if err := e.s.SetPassword(ctx, "alice", "alice's other password"); err != nil {
				t.Fatal(err)
			}
		}},
		{"sessions revoked", func(e *env) {
			if _, err := e.s.RevokeSessions(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, race := range races {
		t.Run(race.name, func(t *testing.T) {
			clock := &fakeClock{t: testNow}
			db := openDB(t, clock)
			admin := newEnvOn(t, db, clock, nil) // another replica, doing the change
			hook := &duringLogin{AuthStore: db}
			e := newEnvOn(t, db, clock, func(c *Config) { c.Store = hook })
			admin.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
			admin.addUser(t, "root", alicePassword, tokenkeeper.RoleAdmin) // alice is not the last admin
			clock.Add(time.Second)
			hook.fn = func() {
				clock.Add(time.Millisecond) // the password check took time
				race.change(admin)
			}
			tok, err := e.s.Login(ctx, "alice", alicePassword, "192.0.2.1:1")
			if err == nil {
				t.Fatalf("the racing login got a token (claims %+v)", tok.Claims)
			}
			wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
			raw, err := sql.Open("sqlite", "file:"+db.Path()+"?mode=ro")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			var families int
			if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM refresh_tokens`).Scan(&families); err != nil {
				t.Fatal(err)
			}
			if families != 0 {
				t.Fatalf("the racing login stored %d families", families)
			}
		})
	}
}

// M2: another replica, left to its own Run, refuses the access tokens of a
// user whose password changed within its ReloadInterval.
func TestPasswordChangePropagatesWithinReloadInterval(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	const interval = 100 * time.Millisecond
	peer := newEnvOn(t, e.db, e.clock, func(c *Config) { c.ReloadInterval = interval })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = peer.s.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	tok := e.login(t, "alice", alicePassword)
	if _, err := peer.s.Verify(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Second)
	changed := time.Now()
	if err := e.s.SetPassword(ctx, "alice", "alice's new long password"); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := peer.s.Verify(ctx, tok.AccessToken); errors.Is(err, errRevoked) {
			break
		}
		// A reload may wait for the store a little under -race on a busy
		// machine: allow a few intervals.
		if time.Since(changed) > 10*interval {
			t.Fatalf("the peer still accepts the token %v after the change", time.Since(changed))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the peer refused the token %v after the change (reload interval %v)", time.Since(changed).Round(time.Millisecond), interval)
}
