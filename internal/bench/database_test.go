package bench

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// credentialPages counts the pages of the credentials table (not its
// indexes) of the SQLite database at path, with SQLite's dbstat table.
func credentialPages(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM dbstat WHERE name = 'credentials'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// leaseCycleCase seeds n credentials in bulk on a new SQLite file, as
// bench scale does, runs the lease cycle if asked, and then refreshes a
// fifth of them through the store's claims and commits, as the window
// does. It returns the pages of the credentials table after the seeding
// (and cycle) and after the refreshes.
func leaseCycleCase(t *testing.T, n int, cycle bool) (seeded, refreshed int) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bench.db")
	db, err := sqlite.Open(ctx, path, make([]byte, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateProvider(ctx, &tokenkeeper.Provider{Name: "scale", TokenURL: "http://127.0.0.1:1/token", ClientID: "bench",
		ClientSecret: "bench-secret-0123456789", AuthStyle: tokenkeeper.AuthStyleHeader}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var cs []*tokenkeeper.Credential
	for i := range n {
		cs = append(cs, &tokenkeeper.Credential{Name: fmt.Sprintf("scale-%07d", i), GrantType: tokenkeeper.GrantClientCredentials,
			Token:         &tokenkeeper.Token{AccessToken: oauthtest.NewAccessToken(), TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)},
			LastRefreshAt: now, NextRefreshAt: now.Add(time.Duration(i) * time.Millisecond)})
	}
	if err := db.ImportCredentials(ctx, "scale", cs); err != nil {
		t.Fatal(err)
	}
	if cycle {
		leased, err := sqliteLeaseCycle(ctx, path, 64)
		if err != nil || leased != n {
			t.Fatalf("sqliteLeaseCycle = %d, %v; want %d", leased, err, n)
		}
		// Every row released, its version moved by a claim and a commit.
		var held, off int
		ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		if err := ro.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM credentials WHERE lease_owner <> '' OR lease_expires_at IS NOT NULL),
			(SELECT COUNT(*) FROM credentials WHERE version <> 3)`).Scan(&held, &off); err != nil {
			t.Fatal(err)
		}
		if held != 0 || off != 0 {
			t.Fatalf("after the lease cycle: %d rows still leased, %d with a version other than 3", held, off)
		}
	}
	seeded = credentialPages(t, path)
	for done := 0; done < n/5; {
		got, err := db.ClaimDue(ctx, "bench-owner-0123456789", now.Add(time.Hour), time.Minute, 64)
		if err != nil || len(got) == 0 {
			t.Fatalf("claim: %d, %v", len(got), err)
		}
		for _, c := range got {
			if _, err := db.CompleteRefresh(ctx, c.ID, "bench-owner-0123456789", c.Version, &tokenkeeper.RefreshResult{
				Token:  &tokenkeeper.Token{AccessToken: oauthtest.NewAccessToken(), TokenType: "Bearer", ExpiresAt: now.Add(2 * time.Hour)},
				Status: tokenkeeper.StatusActive, LastRefreshAt: now, NextRefreshAt: now.Add(2 * time.Hour),
				Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK}, Claimed: c,
			}); err != nil {
				t.Fatal(err)
			}
		}
		done += len(got)
	}
	return seeded, credentialPages(t, path)
}

// TestSQLiteLeaseCycle: a bulk-seeded credentials table grows when its
// rows are first refreshed (a leased row is longer, and the seeding left
// its pages full); after the lease cycle, refreshes leave it as it is,
// as in the steady state.
func TestSQLiteLeaseCycle(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 3000
	}
	before, after := leaseCycleCase(t, n, false)
	if after <= before {
		t.Fatalf("without the cycle: %d pages, then %d after refreshing a fifth; the seeding left room, and the cycle is moot", before, after)
	}
	t.Logf("without the lease cycle: %d pages, %d after refreshing a fifth (+%d)", before, after, after-before)
	cycled, cycledAfter := leaseCycleCase(t, n, true)
	if cycledAfter > cycled {
		t.Fatalf("after the lease cycle: %d pages, then %d after refreshing a fifth", cycled, cycledAfter)
	}
	t.Logf("with the lease cycle: %d pages, %d after refreshing a fifth", cycled, cycledAfter)
}
