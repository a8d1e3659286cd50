package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// store is what the hub watches.
type store interface {
	tokenkeeper.Store
	tokenkeeper.ConsoleStore
}

// expectWake fails unless ch receives within d.
func expectWake(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("no wake-up after %s", what)
	}
}

// testHub: one watcher wakes every subscriber after a credential is
// created, refreshed or deleted, with changes from another process
// included; it runs only while someone listens, and close ends it.
func testHub(t *testing.T, s, peer store, changes tokenkeeper.ChangeNotifier, poll time.Duration) {
	ctx := context.Background()
	h := newHub(s, changes, poll, slog.New(slog.DiscardHandler))
	a, unA, ok := h.subscribe()
	b, unB, _ := h.subscribe()
	if !ok {
		t.Fatal("subscribe refused")
	}
	time.Sleep(500 * time.Millisecond) // the watcher is in place
	// drain forgets the wake-ups so far (a resync when the subscription
	// starts, a change seen twice).
	drain := func() {
		for _, ch := range []<-chan struct{}{a, b} {
			select {
			case <-ch:
			default:
			}
		}
	}
	drain()
	c := &tokenkeeper.Credential{Name: "cal", TokenURL: "https://idp.example/token", ClientID: "c", ClientSecret: "s",
		AuthStyle: tokenkeeper.AuthStyleHeader, GrantType: tokenkeeper.GrantClientCredentials}
	if err := peer.CreateCredential(ctx, c); err != nil { // another process's change
		t.Fatal(err)
	}
	expectWake(t, a, 10*time.Second, "a creation")
	expectWake(t, b, 10*time.Second, "a creation")
	unB()
	time.Sleep(200 * time.Millisecond)
	drain()
	disabled := tokenkeeper.StatusDisabled
	if _, err := s.UpdateCredential(ctx, "cal", tokenkeeper.CredentialUpdate{Status: &disabled}, nil); err != nil {
		t.Fatal(err)
	}
	expectWake(t, a, 10*time.Second, "a status change")
	unA()
	h.mu.Lock()
	running := h.stop != nil
	h.mu.Unlock()
	if running {
		t.Fatal("the watcher runs with no one listening")
	}
	h.close()
	if _, _, ok := h.subscribe(); ok {
		t.Fatal("a closed hub took a subscriber")
	}
}

func TestHubSQLite(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	path := filepath.Join(t.TempDir(), "tk.db")
	s, err := sqlite.Open(context.Background(), path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peer, err := sqlite.Open(context.Background(), path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	testHub(t, s, peer, nil, 100*time.Millisecond)
}

// TestHubPostgres: with PostgreSQL the watcher follows LISTEN/NOTIFY: the
// poll interval is an hour, so only a notification can wake the pages.
func TestHubPostgres(t *testing.T) {
	url := os.Getenv("TOKENKEEPER_TEST_DATABASE_URL")
	if url == "" {
		if os.Getenv("TOKENKEEPER_REQUIRE_POSTGRES") != "" {
			t.Fatal("TOKENKEEPER_REQUIRE_POSTGRES is set but TOKENKEEPER_TEST_DATABASE_URL is not")
		}
		t.Skip("TOKENKEEPER_TEST_DATABASE_URL is not set")
	}
	ctx := context.Background()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "tk_console_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`)
	})
	opt := postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
		c.ConnConfig.RuntimeParams["application_name"] = schema
	})
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s, err := postgres.Open(ctx, url, key, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peer, err := postgres.Open(ctx, url, key, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	testHub(t, s, peer, s, time.Hour)
}
