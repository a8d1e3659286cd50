package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// fakeClock is a settable clock shared by the service and the store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time // guarded by mu
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from any goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a Service on a real SQLite store in a temporary directory, with a
// fake clock and captured debug logs.
type env struct {
	s     *Service
	db    *sqlite.DB
	clock *fakeClock
	logs  *syncBuffer
	cfg   Config
}

func openDB(t testing.TB, clock *fakeClock) *sqlite.DB {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tokenkeeper.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.Now = clock.Now
	return db
}

// newEnv opens a store and a Service on it; mod adjusts the configuration.
// Passwords are hashed with cheap parameters unless mod sets others.
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	clock := &fakeClock{t: testNow}
	db := openDB(t, clock)
	return newEnvOn(t, db, clock, mod)
}

// newEnvOn starts another Service (a replica) on an existing store.
func newEnvOn(t testing.TB, db *sqlite.DB, clock *fakeClock, mod func(*Config)) *env {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		Store: db, Now: clock.Now, PasswordParams: cheapArgon2,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, db: db, clock: clock, logs: logs, cfg: cfg}
}

const alicePassword = "alice's long password"

func (e *env) addUser(t testing.TB, name, password string, role tokenkeeper.Role) *tokenkeeper.User {
	t.Helper()
	u, err := e.s.CreateUser(context.Background(), name, password, role)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (e *env) login(t testing.TB, name, password string) *Tokens {
	t.Helper()
	tok, err := e.s.Login(context.Background(), name, password, "192.0.2.10:5000")
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return tok
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := tokenkeeper.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func TestLoginRefreshLogout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	u := e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	if u.PasswordHash != "" || u.ID == "" {
		t.Fatalf("CreateUser returned %+v", u)
	}

	login := e.login(t, "alice", alicePassword)
	if login.TokenType != "Bearer" || login.ExpiresIn != 900 || !strings.HasPrefix(login.RefreshToken, RefreshTokenPrefix) {
		t.Fatalf("login answer %+v", login)
	}
	c, err := e.s.Verify(ctx, login.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != u.ID || c.Username != "alice" || c.Role != tokenkeeper.RoleAdmin || !c.IsFresh(e.clock.Now()) ||
		!c.AuthTime.Equal(testNow) || !c.ExpiresAt.Equal(testNow.Add(15*time.Minute)) || c.FamilyID == "" || c.ID == "" {
		t.Fatalf("login claims %+v", c)
	}
	if *login.Claims != *c {
		t.Fatalf("Tokens.Claims %+v differ from verified %+v", *login.Claims, *c)
	}

	e.clock.Add(time.Minute)
	ref, err := e.s.Refresh(ctx, login.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if ref.RefreshToken == login.RefreshToken {
		t.Fatal("refresh token not rotated")
	}
	rc, err := e.s.Verify(ctx, ref.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Fresh || rc.IsFresh(e.clock.Now()) || rc.FamilyID != c.FamilyID || !rc.AuthTime.Equal(testNow) || rc.ID == c.ID {
		t.Fatalf("refreshed claims %+v", rc)
	}
	// The login's access token stays valid until it expires.
	if _, err := e.s.Verify(ctx, login.AccessToken); err != nil {
		t.Fatal(err)
	}

	e.clock.Add(time.Minute)
	ref2, err := e.s.Refresh(ctx, ref.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}

	// Logout revokes the family: every access token of it, at once, and its
	// refresh token.
	if err := e.s.Logout(ctx, rc); err != nil {
		t.Fatal(err)
	}
	for i, at := range []string{login.AccessToken, ref.AccessToken, ref2.AccessToken} {
		if _, err := e.s.Verify(ctx, at); !errors.Is(err, errRevoked) {
			t.Fatalf("access token %d after logout: %v", i, err)
		}
	}
	_, err = e.s.Refresh(ctx, ref2.RefreshToken)
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)

	// A new login is a new family, unaffected.
	again := e.login(t, "alice", alicePassword)
	if _, err := e.s.Verify(ctx, again.AccessToken); err != nil {
		t.Fatal(err)
	}
	// The revocation outlives every access token of the family, then lapses.
	e.clock.Add(15*time.Minute + 10*time.Second)
	if err := e.s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(*e.s.revoked.Load()); n != 0 {
		t.Fatalf("%d revocations kept after every token expired", n)
	}
	if err := e.s.Logout(ctx, nil); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
		t.Fatalf("logout without claims: %v", err)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	replica := newEnvOn(t, e.db, e.clock, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleViewer)
	login := e.login(t, "alice", alicePassword)
	ref, err := e.s.Refresh(ctx, login.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []string{login.AccessToken, ref.AccessToken} {
		if _, err := replica.s.Verify(ctx, at); err != nil {
			t.Fatalf("replica refuses a valid token: %v", err)
		}
	}

	// The rotated token comes back: someone else holds a copy.
	_, err = e.s.Refresh(ctx, login.RefreshToken)
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	if tokenkeeper.ErrorMessage(err) != msgBadRefreshToken {
		t.Fatalf("message %q", tokenkeeper.ErrorMessage(err))
	}
	// The legitimate holder's newest refresh token is dead too.
	_, err = e.s.Refresh(ctx, ref.RefreshToken)
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	// Here the access tokens are refused at once; on the replica once its
	// in-memory set reloads.
	for _, at := range []string{login.AccessToken, ref.AccessToken} {
		if _, err := e.s.Verify(ctx, at); !errors.Is(err, errRevoked) {
			t.Fatalf("access token of a revoked family: %v", err)
		}
	}
	if err := replica.s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, at := range []string{login.AccessToken, ref.AccessToken} {
		if _, err := replica.s.Verify(ctx, at); !errors.Is(err, errRevoked) {
			t.Fatalf("replica after reload: %v", err)
		}
	}
	if !strings.Contains(e.logs.String(), "reuse detected") {
		t.Fatal("reuse not logged")
	}
}

// TestConcurrentRefresh: of many concurrent refreshes with one token,
// exactly one wins; the others count as reuse and end the family.
func TestConcurrentRefresh(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	login := e.login(t, "alice", alicePassword)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []*Tokens
	for range 8 {
		wg.Go(func() {
			tok, err := e.s.Refresh(ctx, login.RefreshToken)
			if err == nil {
				mu.Lock()
				won = append(won, tok)
				mu.Unlock()
			} else if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
				t.Errorf("refresh: %v", err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d refreshes won, want 1", len(won))
	}
	_, err := e.s.Refresh(ctx, won[0].RefreshToken)
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
}

func TestRefreshExpiry(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *Config) { c.RefreshIdleTTL, c.RefreshMaxAge = time.Hour, 3*time.Hour })
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)

	t.Run("idle", func(t *testing.T) {
		login := e.login(t, "alice", alicePassword)
		e.clock.Add(time.Hour - time.Second)
		ref, err := e.s.Refresh(ctx, login.RefreshToken)
		if err != nil {
			t.Fatalf("refresh inside the idle time: %v", err)
		}
		e.clock.Add(time.Hour)
		_, err = e.s.Refresh(ctx, ref.RefreshToken)
		wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	})
	t.Run("absolute", func(t *testing.T) {
		login := e.login(t, "alice", alicePassword)
		rt := login.RefreshToken
		for range 5 { // 5 x 35m = 2h55m
			e.clock.Add(35 * time.Minute)
			ref, err := e.s.Refresh(ctx, rt)
			if err != nil {
				t.Fatalf("refresh inside the family's life: %v", err)
			}
			rt = ref.RefreshToken
		}
		stored, err := e.db.RefreshTokenByHash(ctx, sha256Of(rt))
		if err != nil {
			t.Fatal(err)
		}
		if !stored.ExpiresAt.Equal(stored.FamilyExpiresAt) {
			t.Fatalf("idle expiry %s passes the family's end %s", stored.ExpiresAt, stored.FamilyExpiresAt)
		}
		e.clock.Add(5 * time.Minute) // 3h after login; used 5 minutes ago
		_, err = e.s.Refresh(ctx, rt)
		wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	})
}

func TestFreshness(t *testing.T) {
	ctx := context.Background()
	t.Run("login only", func(t *testing.T) {
		e := newEnv(t, nil)
		e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
		login := e.login(t, "alice", alicePassword)
		if !login.Claims.IsFresh(e.clock.Now().Add(14*time.Minute)) || !login.Claims.FreshUntil.IsZero() {
			t.Fatalf("login claims %+v", login.Claims)
		}
		ref, err := e.s.Refresh(ctx, login.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if ref.Claims.IsFresh(e.clock.Now()) {
			t.Fatal("refreshed token is fresh")
		}
	})
	t.Run("window", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.FreshWindow = 5 * time.Minute })
		e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
		login := e.login(t, "alice", alicePassword)
		c, err := e.s.Verify(ctx, login.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		end := testNow.Add(5 * time.Minute)
		if !c.FreshUntil.Equal(end) || !c.IsFresh(end.Add(-time.Second)) || c.IsFresh(end) {
			t.Fatalf("login claims %+v", c)
		}
		e.clock.Add(2 * time.Minute)
		ref, err := e.s.Refresh(ctx, login.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := e.s.Verify(ctx, ref.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if !rc.IsFresh(e.clock.Now()) || !rc.FreshUntil.Equal(end) {
			t.Fatalf("refresh inside the window: %+v", rc)
		}
		e.clock.Add(4 * time.Minute)
		ref2, err := e.s.Refresh(ctx, ref.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		rc2, err := e.s.Verify(ctx, ref2.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if rc2.Fresh || rc2.IsFresh(e.clock.Now()) {
			t.Fatalf("refresh after the window: %+v", rc2)
		}
	})
}

func TestSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	replica := newEnvOn(t, e.db, e.clock, nil)
	keys, err := e.db.SigningKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("after two New: %d keys, %v", len(keys), err)
	}
	kid1 := keys[0].ID
	e.clock.Add(time.Minute)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	old := e.login(t, "alice", alicePassword)
	if kidOf(t, old.AccessToken) != kid1 {
		t.Fatal("first token not signed with the first key")
	}

	kid2, err := e.s.RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kid2 == kid1 {
		t.Fatal("same kid")
	}
	// Until every replica can have loaded it, the new key does not sign.
	if got := kidOf(t, e.login(t, "alice", alicePassword).AccessToken); got != kid1 {
		t.Fatalf("signed with %s before propagation", got)
	}
	e.clock.Add(3 * time.Second)
	if err := replica.s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := e.login(t, "alice", alicePassword)
	if kidOf(t, fresh.AccessToken) != kid2 {
		t.Fatal("new tokens not signed with the new key")
	}
	if kidOf(t, replica.login(t, "alice", alicePassword).AccessToken) != kid2 {
		t.Fatal("replica does not sign with the new key")
	}
	for _, s := range []*Service{e.s, replica.s} {
		for _, tok := range []string{old.AccessToken, fresh.AccessToken} {
			if _, err := s.Verify(ctx, tok); err != nil {
				t.Fatalf("after rotation: %v", err)
			}
		}
	}
	// Once every token of the old key has expired, the old key is retired.
	e.clock.Add(15*time.Minute + 10*time.Second)
	if _, err := e.s.Verify(ctx, old.AccessToken); !errors.Is(err, errRetiredKey) {
		t.Fatalf("old key after its tokens expired: %v", err)
	}
}

func kidOf(t testing.TB, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(raw), `"kid":"`)
	kid, _, _ := strings.Cut(rest, `"`)
	return kid
}

// TestVerifyWithoutStore proves that Verify asks nothing of the database:
// it keeps working after the store is closed.
func TestVerifyWithoutStore(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	login := e.login(t, "alice", alicePassword)
	other := e.login(t, "alice", alicePassword)
	if err := e.s.Logout(ctx, other.Claims); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Verify(ctx, login.AccessToken); err != nil {
		t.Fatalf("verify with the store closed: %v", err)
	}
	if _, err := e.s.Verify(ctx, other.AccessToken); !errors.Is(err, errRevoked) {
		t.Fatalf("revoked token with the store closed: %v", err)
	}
	// A failed reload keeps the loaded state.
	if err := e.s.Reload(ctx); err == nil {
		t.Fatal("reload from a closed store succeeded")
	}
	if _, err := e.s.Verify(ctx, login.AccessToken); err != nil {
		t.Fatalf("verify after a failed reload: %v", err)
	}
	if _, err := e.s.Verify(ctx, other.AccessToken); !errors.Is(err, errRevoked) {
		t.Fatalf("revoked token after a failed reload: %v", err)
	}
}

// TestRunReloadsRevocations: a logout on one replica reaches another
// through Run alone.
func TestRunReloadsRevocations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	replica := newEnvOn(t, e.db, e.clock, func(c *Config) { c.ReloadInterval = 10 * time.Millisecond })
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- replica.s.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	login := e.login(t, "alice", alicePassword)
	if _, err := replica.s.Verify(ctx, login.AccessToken); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Logout(ctx, login.Claims); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := replica.s.Verify(ctx, login.AccessToken)
		if errors.Is(err, errRevoked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica still accepts a logged-out token: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hookedStore is the real store with a hook run in the middle of
// Revocations, to interleave a logout with a reload deterministically.
type hookedStore struct {
	*sqlite.DB
	hook func()
}

func (h *hookedStore) Revocations(ctx context.Context, now time.Time) ([]*tokenkeeper.Revocation, error) {
	list, err := h.DB.Revocations(ctx, now)
	if h.hook != nil {
		h.hook()
	}
	return list, err
}

// TestReloadKeepsConcurrentLogout: a logout that lands while a reload is
// reading the store is not undone by the older snapshot.
func TestReloadKeepsConcurrentLogout(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: testNow}
	hs := &hookedStore{DB: openDB(t, clock)}
	e := newEnvOn(t, hs.DB, clock, func(c *Config) { c.Store = hs })
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	login := e.login(t, "alice", alicePassword)
	hs.hook = func() {
		hs.hook = nil
		if err := e.s.Logout(ctx, login.Claims); err != nil {
			t.Error(err)
		}
	}
	if err := e.s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Verify(ctx, login.AccessToken); !errors.Is(err, errRevoked) {
		t.Fatalf("logout lost by a concurrent reload: %v", err)
	}
	if err := e.s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Verify(ctx, login.AccessToken); !errors.Is(err, errRevoked) {
		t.Fatalf("logout lost by the next reload: %v", err)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *Config) {
		c.LoginRatePair, c.LoginRateUser, c.LoginRateAddress = Rate{Disabled: true}, Rate{Disabled: true}, Rate{Disabled: true}
	})
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	cases := []struct{ user, pw string }{
		{"alice", "wrong password"},
		{"bob", alicePassword},
		{"", alicePassword},
		{"alice", ""},
		{"Alice", alicePassword},
		{"not a valid name!", "x"},
		{strings.Repeat("a", 1000), alicePassword},
		{"alice", strings.Repeat("p", MaxPasswordLength+1)},
	}
	for _, c := range cases {
		tok, err := e.s.Login(ctx, c.user, c.pw, "192.0.2.1:1")
		if tok != nil || tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED || tokenkeeper.ErrorMessage(err) != msgBadLogin {
			t.Errorf("login %q: %v", c.user, err)
		}
	}
}

// TestLoginTiming checks, loosely, that an unknown user and a wrong
// password take about the same time: both run one argon2id verification
// with the production parameters.
func TestLoginTiming(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *Config) {
		c.PasswordParams = DefaultArgon2
		c.LoginRatePair, c.LoginRateUser, c.LoginRateAddress = Rate{Disabled: true}, Rate{Disabled: true}, Rate{Disabled: true}
	})
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	login := func(user string) time.Duration {
		start := time.Now()
		if _, err := e.s.Login(ctx, user, "wrong password", "192.0.2.1:1"); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	login("alice") // warm up
	// Interleaved, so that load from elsewhere on the machine hits both
	// series alike; the minimum is the least noisy estimate of the cost.
	const n = 12
	var wrong, unknown []time.Duration
	for range n {
		wrong = append(wrong, login("alice"))
		unknown = append(unknown, login("nobody"))
	}
	w, u := slices.Min(wrong), slices.Min(unknown)
	t.Logf("login time: wrong password min %s median %s; unknown user min %s median %s", w, median(wrong), u, median(unknown))
	if ratio := float64(u) / float64(w); ratio < 0.5 || ratio > 2 {
		t.Fatalf("unknown user %s vs wrong password %s: the difference reveals which users exist", u, w)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestLoginRateLimit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	for i := range 10 {
		if _, err := e.s.Login(ctx, "alice", "guess"+string(rune('a'+i)), "192.0.2.1:1"); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	// Even the right password is refused now from that address.
	_, err := e.s.Login(ctx, "alice", alicePassword, "192.0.2.1:2")
	var rl *RateLimitError
	if !errors.As(err, &rl) {
		t.Fatalf("11th attempt: %v", err)
	}
	wantCode(t, err, ETOOMANYREQUESTS)
	if rl.RetryAfter != 12*time.Second || rl.RetryAfterSeconds() != 12 {
		t.Fatalf("RetryAfter %s", rl.RetryAfter)
	}
	if strings.Contains(err.Error(), alicePassword) || strings.Contains(tokenkeeper.ErrorMessage(err), alicePassword) {
		t.Fatal("error quotes the password")
	}
	if !strings.Contains(tokenkeeper.ErrorMessage(err), "12 seconds") {
		t.Fatalf("message %q", tokenkeeper.ErrorMessage(err))
	}
	e.clock.Add(12 * time.Second)
	e.login(t, "alice", alicePassword)
	// The address limit: many usernames from one address.
	e2 := newEnv(t, nil)
	var limited bool
	for i := range 31 {
		_, err := e2.s.Login(ctx, fmt.Sprintf("user%d", i), "password", "[2001:db8::1]:1")
		if errors.As(err, &rl) {
			limited = i == 30
			break
		}
	}
	if !limited {
		t.Fatal("address not limited after 30 attempts")
	}
	// Another host in the same IPv6 /64 shares the limit.
	if _, err := e2.s.Login(ctx, "zed", "password", "[2001:db8::2]:1"); !errors.As(err, &rl) {
		t.Fatalf("same /64: %v", err)
	}
}

func TestPasswordHashUpgrade(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	stronger := cheapArgon2
	stronger.Memory, stronger.Time = 128, 2
	e2 := newEnvOn(t, e.db, e.clock, func(c *Config) { c.PasswordParams = stronger })
	e2.login(t, "alice", alicePassword)
	u, err := e.db.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u.PasswordHash, "$m=128,t=2,p=1$") || !CheckPassword(u.PasswordHash, alicePassword) {
		t.Fatalf("hash not upgraded: %s", u.PasswordHash[:30])
	}
	e.login(t, "alice", alicePassword) // older parameters still verify
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	bad := []struct {
		name, user, pw string
		role           tokenkeeper.Role
	}{
		{"bad username", "al ice", alicePassword, tokenkeeper.RoleAdmin},
		{"empty username", "", alicePassword, tokenkeeper.RoleAdmin},
		{"consumer role", "alice", alicePassword, tokenkeeper.RoleConsumer},
		{"empty role", "alice", alicePassword, ""},
		{"short password", "alice", "short", tokenkeeper.RoleAdmin},
		{"empty password", "alice", "", tokenkeeper.RoleAdmin},
	}
	for _, b := range bad {
		_, err := e.s.CreateUser(ctx, b.user, b.pw, b.role)
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v", b.name, err)
		}
	}
	if us, err := e.s.Users(ctx); err != nil || len(us) != 0 {
		t.Fatalf("bad input stored users: %v %v", us, err)
	}
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	e.addUser(t, "bob", "bob's long password", tokenkeeper.RoleViewer)
	_, err := e.s.CreateUser(ctx, "alice", alicePassword, tokenkeeper.RoleViewer)
	wantCode(t, err, tokenkeeper.ECONFLICT)
	us, err := e.s.Users(ctx)
	if err != nil || len(us) != 2 || us[0].Username != "alice" || us[1].Role != tokenkeeper.RoleViewer {
		t.Fatalf("Users: %v %v", us, err)
	}
	for _, u := range us {
		if u.PasswordHash != "" {
			t.Fatal("Users returns password hashes")
		}
	}
	if u, err := e.s.User(ctx, "bob"); err != nil || u.PasswordHash != "" || u.Username != "bob" {
		t.Fatalf("User: %+v %v", u, err)
	}

	// A viewer's tokens say so.
	if c := e.login(t, "bob", "bob's long password").Claims; c.Role != tokenkeeper.RoleViewer {
		t.Fatalf("viewer claims %+v", c)
	}

	// A new password replaces the old one.
	if err := e.s.SetPassword(ctx, "alice", "short"); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
		t.Fatalf("short new password: %v", err)
	}
	wantCode(t, e.s.SetPassword(ctx, "nobody", "a long new password"), tokenkeeper.ENOTFOUND)
	if err := e.s.SetPassword(ctx, "alice", "a long new password"); err != nil {
		t.Fatal(err)
	}
	// Logins begun at the instant of the change are refused: the clock
	// moves on.
	e.clock.Add(time.Second)
	_, err = e.s.Login(ctx, "alice", alicePassword, "192.0.2.1:1")
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	login := e.login(t, "alice", "a long new password")

	// The last admin cannot be deleted; with another one, alice can.
	wantCode(t, e.s.DeleteUser(ctx, "alice"), tokenkeeper.ECONFLICT)
	e.addUser(t, "carol", "carol's long password", tokenkeeper.RoleAdmin)

	// Deleting a user ends its sessions at once.
	if err := e.s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Verify(ctx, login.AccessToken); !errors.Is(err, errRevoked) {
		t.Fatalf("deleted user's token: %v", err)
	}
	_, err = e.s.Refresh(ctx, login.RefreshToken)
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	wantCode(t, e.s.DeleteUser(ctx, "alice"), tokenkeeper.ENOTFOUND)
}

func TestWrongTokenKinds(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	login := e.login(t, "alice", alicePassword)
	secret, _, err := e.s.CreateServiceClient(ctx, "billing", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{login.RefreshToken, secret, "tk_" + strings.Repeat("A", 43)} {
		if _, err := e.s.Verify(ctx, tok); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
			t.Errorf("Verify accepted a non-access token: %v", err)
		}
	}
	for _, tok := range []string{login.AccessToken, secret, "", RefreshTokenPrefix + strings.Repeat("A", 43)} {
		if _, err := e.s.Refresh(ctx, tok); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
			t.Errorf("Refresh accepted a non-refresh token: %v", err)
		}
	}
}

func TestServiceClients(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	secret, c, err := e.s.CreateServiceClient(ctx, "billing", []string{"stripe", "github", "stripe"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, ClientSecretPrefix) || len(secret) != len(ClientSecretPrefix)+43 {
		t.Fatalf("secret shape %d", len(secret))
	}
	if c.SecretHash != nil || len(c.Credentials) != 2 || c.Credentials[0] != "github" {
		t.Fatalf("created %+v", c)
	}
	for _, bad := range []struct {
		id    string
		creds []string
	}{{"bad id!", nil}, {"ok", []string{"bad name!"}}} {
		if _, _, err := e.s.CreateServiceClient(ctx, bad.id, bad.creds); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("CreateServiceClient(%q, %q): %v", bad.id, bad.creds, err)
		}
	}
	_, _, err = e.s.CreateServiceClient(ctx, "billing", nil)
	wantCode(t, err, tokenkeeper.ECONFLICT)

	got, err := e.s.AuthenticateClient(ctx, "billing", secret)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CanRead("stripe") || got.CanRead("other") {
		t.Fatalf("grants %v", got.Credentials)
	}
	// Unknown id and wrong secret: the same answer.
	_, errUnknown := e.s.AuthenticateClient(ctx, "nobody", secret)
	_, errWrong := e.s.AuthenticateClient(ctx, "billing", secret+"x")
	_, errEmpty := e.s.AuthenticateClient(ctx, "billing", "")
	for _, err := range []error{errUnknown, errWrong, errEmpty} {
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED || tokenkeeper.ErrorMessage(err) != msgBadClient {
			t.Fatalf("failure: %v", err)
		}
	}

	// Served from memory for ClientCacheTTL: a change made elsewhere (here
	// straight in the store) applies once the entry expires.
	if err := e.db.DeleteServiceClient(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.AuthenticateClient(ctx, "billing", secret); err != nil {
		t.Fatalf("cached client: %v", err)
	}
	e.clock.Add(5 * time.Second)
	if _, err := e.s.AuthenticateClient(ctx, "billing", secret); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
		t.Fatalf("deleted client after the cache expired: %v", err)
	}

	// Rotation and deletion through the service apply at once.
	secret, _, err = e.s.CreateServiceClient(ctx, "billing", []string{"stripe"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.AuthenticateClient(ctx, "billing", secret); err != nil {
		t.Fatal(err)
	}
	newSecret, err := e.s.RotateClientSecret(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.AuthenticateClient(ctx, "billing", secret); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
		t.Fatalf("old secret after rotation: %v", err)
	}
	if _, err := e.s.AuthenticateClient(ctx, "billing", newSecret); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	if cs, err := e.s.ServiceClients(ctx); err != nil || len(cs) != 1 || cs[0].SecretHash != nil {
		t.Fatalf("ServiceClients: %v %v", cs, err)
	}
	if err := e.s.DeleteServiceClient(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.AuthenticateClient(ctx, "billing", newSecret); tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
		t.Fatalf("deleted client: %v", err)
	}
	wantCode(t, e.s.DeleteServiceClient(ctx, "billing"), tokenkeeper.ENOTFOUND)
	_, err = e.s.RotateClientSecret(ctx, "billing")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}

func TestNewConfig(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: testNow}
	db := openDB(t, clock)
	bad := map[string]Config{
		"no store":          {},
		"short access TTL":  {Store: db, AccessTTL: time.Second},
		"long access TTL":   {Store: db, AccessTTL: 25 * time.Hour},
		"negative window":   {Store: db, FreshWindow: -time.Second},
		"idle over max age": {Store: db, RefreshIdleTTL: 48 * time.Hour, RefreshMaxAge: 24 * time.Hour},
		"huge leeway":       {Store: db, Leeway: time.Hour},
		"bad rate":          {Store: db, LoginRateUser: Rate{Limit: 1}},
		"bad argon2":        {Store: db, PasswordParams: Argon2Params{Memory: 1}},
	}
	for name, cfg := range bad {
		if _, err := New(ctx, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if keys, err := db.SigningKeys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("a refused configuration created keys: %d %v", len(keys), err)
	}
}

// TestNoSecretInLogs runs every operation and looks for each secret in the
// logs and in the error messages.
func TestNoSecretInLogs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	var secrets []string
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	secrets = append(secrets, alicePassword, "wrong horse battery", "typed-into-username-field")
	_, err := e.s.Login(ctx, "alice", "wrong horse battery", "192.0.2.1:1")
	note(err)
	_, err = e.s.Login(ctx, "typed-into-username-field", alicePassword, "192.0.2.1:1")
	note(err)
	login := e.login(t, "alice", alicePassword)
	ref, err := e.s.Refresh(ctx, login.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Refresh(ctx, login.RefreshToken) // reuse
	note(err)
	_, err = e.s.Verify(ctx, ref.AccessToken)
	note(err)
	note(e.s.Logout(ctx, ref.Claims))
	note(e.s.SetPassword(ctx, "alice", "another long password"))
	secrets = append(secrets, "another long password", login.AccessToken, login.RefreshToken, ref.AccessToken, ref.RefreshToken)
	cs, _, err := e.s.CreateServiceClient(ctx, "billing", []string{"stripe"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.s.AuthenticateClient(ctx, "billing", cs+"x")
	note(err)
	cs2, err := e.s.RotateClientSecret(ctx, "billing")
	note(err)
	secrets = append(secrets, cs, cs2)
	_, err = e.s.RotateSigningKey(ctx)
	note(err)
	keys, err := e.db.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		secrets = append(secrets, base64.RawURLEncoding.EncodeToString(k.Secret), base64.StdEncoding.EncodeToString(k.Secret), string(k.Secret))
	}
	_, err = e.s.Login(ctx, "alice", alicePassword, "192.0.2.1:1")
	note(err)

	logs := e.logs.String()
	if !strings.Contains(logs, "login") || !strings.Contains(logs, "reuse detected") {
		t.Fatalf("expected log lines missing:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%d bytes) is in the logs", len(s))
		}
		for _, err := range errs {
			if strings.Contains(err.Error(), s) {
				t.Errorf("a secret (%d bytes) is in an error: %v", len(s), err)
			}
		}
	}
}

// BenchmarkVerify measures Service.Verify on a real store: the cost the
// token read path pays per request.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, func(c *Config) {
		c.LoginRatePair, c.LoginRateUser, c.LoginRateAddress = Rate{Disabled: true}, Rate{Disabled: true}, Rate{Disabled: true}
	})
	e.addUser(b, "alice", alicePassword, tokenkeeper.RoleAdmin)
	tok := e.login(b, "alice", alicePassword).AccessToken
	for range 100 { // some revoked families in the set
		other := e.login(b, "alice", alicePassword)
		if err := e.s.Logout(context.Background(), other.Claims); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.s.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func sha256Of(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// TestAuthenticateClientFromMemory: once looked up, a client id (known or
// not) is answered without the store.
func TestAuthenticateClientFromMemory(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	secret, _, err := e.s.CreateServiceClient(ctx, "billing", []string{"stripe"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.AuthenticateClient(ctx, "billing", secret); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.AuthenticateClient(ctx, "nobody", secret)
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.AuthenticateClient(ctx, "billing", secret); err != nil {
		t.Fatalf("cached client with the store closed: %v", err)
	}
	_, err = e.s.AuthenticateClient(ctx, "billing", "tkcs_wrong")
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	_, err = e.s.AuthenticateClient(ctx, "nobody", secret)
	wantCode(t, err, tokenkeeper.EUNAUTHORIZED)
	// Past the TTL the store is asked again, and its failure is reported
	// as such, not as bad credentials.
	e.clock.Add(5 * time.Second)
	if _, err := e.s.AuthenticateClient(ctx, "billing", secret); err == nil || tokenkeeper.ErrorCode(err) == tokenkeeper.EUNAUTHORIZED {
		t.Fatalf("store closed, cache expired: %v", err)
	}
}

func TestClientCacheBounded(t *testing.T) {
	c := newClientCache(time.Second)
	for i := range maxCachedClients + 5 {
		c.put(strconv.Itoa(i), nil, testNow)
	}
	if n := c.entries.Len(); n > maxCachedClients {
		t.Fatalf("%d entries", n)
	}
	c.sweep(testNow.Add(time.Second))
	if n := c.entries.Len(); n != 0 {
		t.Fatalf("%d entries after expiry", n)
	}
}

// L4: an attacker at one address cannot lock a user out of login: the
// limit per username and address is tighter than the one per username,
// which holds only against guesses spread over many addresses.
func TestLoginLockoutNeedsManyAddresses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.addUser(t, "alice", alicePassword, tokenkeeper.RoleAdmin)
	var rl *RateLimitError
	limitedAt := -1
	for i := range 60 {
		if _, err := e.s.Login(ctx, "alice", "guess", "192.0.2.1:1"); errors.As(err, &rl) {
			limitedAt = i
			break
		}
	}
	if limitedAt != 10 {
		t.Fatalf("one address guessing alice's password was limited after %d attempts, want 10", limitedAt)
	}
	// alice herself, from her own address, still logs in.
	e.login(t, "alice", alicePassword)
	// Guesses spread over many addresses still meet the per-username limit.
	spread := 0
	for i := range 100 {
		if _, err := e.s.Login(ctx, "alice", "guess", fmt.Sprintf("198.51.100.%d:1", i)); errors.As(err, &rl) {
			break
		}
		spread++
	}
	if spread < 40 || spread > 60 {
		t.Fatalf("guesses from many addresses limited after %d, want the per-user burst (about 50 left of 60)", spread)
	}
}

// Sum256 is sha256.Sum256 for every length, the stack buffer's edges
// included, and allocates nothing for a secret of the usual size.
func TestSum256(t *testing.T) {
	for _, n := range []int{0, 1, 32, 33, 127, 128, 129, 600} {
		s := strings.Repeat("k", n)
		if got, want := Sum256(s), sha256.Sum256([]byte(s)); got != want {
			t.Errorf("Sum256 of %d bytes: %x, want %x", n, got, want)
		}
	}
	secret, _ := NewClientSecret()
	var sink [sha256.Size]byte
	if a := testing.AllocsPerRun(100, func() { sink = Sum256(secret) }); a != 0 {
		t.Errorf("Sum256 of a %d-byte secret allocates %.0f objects, want 0", len(secret), a)
	}
	_ = sink
}
