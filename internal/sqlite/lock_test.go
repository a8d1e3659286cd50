package sqlite_test

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

func TestLockIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tk.db")
	release, err := sqlite.Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Lock(path)
	if !errors.Is(err, sqlite.ErrLocked) || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("second lock: %v", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	release2, err := sqlite.Lock(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release2()
}

func TestReleaseLeases(t *testing.T) {
	ctx := context.Background()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tk.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	for _, name := range []string{"a", "b"} {
		c := &tokenkeeper.Credential{Name: name, TokenURL: "https://idp.example/token", GrantType: tokenkeeper.GrantClientCredentials,
			ClientID: "id", ClientSecret: "s", AuthStyle: tokenkeeper.AuthStyleHeader, NextRefreshAt: now}
		if err := db.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := db.ClaimDue(ctx, "dead-process#1", now, time.Hour, 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %v %d", err, len(claimed))
	}
	if again, _ := db.ClaimDue(ctx, "new-process#1", now, time.Hour, 10); len(again) != 0 {
		t.Fatalf("leased credentials claimed again: %d", len(again))
	}
	n, err := db.ReleaseLeases(ctx)
	if err != nil || n != 2 {
		t.Fatalf("release: %v %d", err, n)
	}
	again, err := db.ClaimDue(ctx, "new-process#1", now, time.Hour, 10)
	if err != nil || len(again) != 2 {
		t.Fatalf("claim after release: %v %d", err, len(again))
	}
	// The dead worker's commit is fenced out.
	_, err = db.CompleteRefresh(ctx, claimed[0].ID, "dead-process#1", claimed[0].Version, &tokenkeeper.RefreshResult{
		Status: tokenkeeper.StatusActive, Token: &tokenkeeper.Token{AccessToken: "x", ExpiresAt: now.Add(time.Hour)}})
	if tokenkeeper.ErrorCode(err) != tokenkeeper.ECONFLICT {
		t.Fatalf("stale commit: %v", err)
	}
}
