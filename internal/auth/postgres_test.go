package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

// openPostgresReplicas opens n stores on one fresh PostgreSQL schema, each
// with its own pool, as n broker processes would. It skips the test when
// TOKENKEEPER_TEST_DATABASE_URL is unset (and fails if
// TOKENKEEPER_REQUIRE_POSTGRES asks for PostgreSQL).
func openPostgresReplicas(t *testing.T, clock *fakeClock, n int) []*postgres.DB {
	t.Helper()
	url := storetest.PostgresURL(t)
	ctx := context.Background()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "tk_auth_test_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Error(err)
		}
	})
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var dbs []*postgres.DB
	for range n {
		db, err := postgres.Open(ctx, url, key, postgres.WithPoolConfig(func(c *pgxpool.Config) {
			c.ConnConfig.RuntimeParams["search_path"] = schema
		}))
		if err != nil {
			t.Fatal(err)
		}
		db.Now = clock.Now
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	return dbs
}

// TestPostgresReplicas runs two Services on two connection pools of one
// PostgreSQL database: they share one signing key, a refresh race between
// them has one winner, and a reuse or a logout on one reaches the other.
func TestPostgresReplicas(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: testNow}
	dbs := openPostgresReplicas(t, clock, 2)
	var svcs []*Service
	for _, db := range dbs {
		s, err := New(ctx, Config{Store: db, Now: clock.Now, PasswordParams: cheapArgon2})
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, s)
	}
	a, b := svcs[0], svcs[1]
	if keys, err := dbs[0].SigningKeys(ctx); err != nil || len(keys) != 1 {
		t.Fatalf("%d signing keys after two starts: %v", len(keys), err)
	}
	clock.Add(time.Minute)
	if _, err := a.CreateUser(ctx, "alice", alicePassword, tokenkeeper.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	login, err := b.Login(ctx, "alice", alicePassword, "192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(ctx, login.AccessToken); err != nil {
		t.Fatalf("replica a refuses b's token: %v", err)
	}

	// Both replicas race to refresh one token: one wins, the others are
	// taken as reuse and end the family.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Go(func() {
			_, err := svcs[i%2].Refresh(ctx, login.RefreshToken)
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
				t.Errorf("refresh: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d refreshes won, want 1", wins)
	}
	for _, s := range svcs {
		if err := s.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(ctx, login.AccessToken); !errors.Is(err, errRevoked) {
			t.Fatalf("token of a family ended by reuse: %v", err)
		}
	}

	// A logout on a reaches b at its next reload.
	second, err := a.Login(ctx, "alice", alicePassword, "192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Logout(ctx, second.Claims); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, second.AccessToken); err != nil {
		t.Fatalf("b before reload: %v", err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, second.AccessToken); !errors.Is(err, errRevoked) {
		t.Fatalf("b after reload: %v", err)
	}

	// A key rotated on a signs on b after propagation; both verify both.
	third, err := b.Login(ctx, "alice", alicePassword, "192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	kid, err := a.RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(3 * time.Second)
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	fourth, err := b.Login(ctx, "alice", alicePassword, "192.0.2.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, fourth.AccessToken) != kid {
		t.Fatal("b does not sign with the rotated key")
	}
	for _, s := range svcs {
		for _, tok := range []string{third.AccessToken, fourth.AccessToken} {
			if _, err := s.Verify(ctx, tok); err != nil {
				t.Fatalf("after rotation: %v", err)
			}
		}
	}
}
