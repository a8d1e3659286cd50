package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

// The refresher's statements are prepared once: after a first claim and
// commit, the writer's cache holds them, and later ones run them prepared
// (a statement first seen in a transaction is prepared after it). A query
// of several statements is never cached (a prepared statement would run
// only the first), and still runs whole.
func TestStatementsPreparedOnce(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "tk.db"), testKey(t), time.Now)
	for i, name := range []string{"a", "b"} {
		if err := db.CreateCredential(ctx, &tokenkeeper.Credential{Name: name, TokenURL: "https://idp.example/token",
			GrantType: tokenkeeper.GrantClientCredentials, ClientID: "id", ClientSecret: "s", AuthStyle: tokenkeeper.AuthStyleHeader,
			NextRefreshAt: time.Now().Add(-time.Duration(i+1) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	claimAndCommit := func() {
		t.Helper()
		cs, err := db.ClaimDue(ctx, "w#1", time.Now(), time.Minute, 1)
		if err != nil || len(cs) != 1 {
			t.Fatalf("claim: %v, %d claimed", err, len(cs))
		}
		c := cs[0]
		if _, err := db.CompleteRefresh(ctx, c.ID, c.LeaseOwner, c.Version, &tokenkeeper.RefreshResult{
			Token:  &tokenkeeper.Token{AccessToken: "at-" + c.Name, TokenType: "Bearer", ExpiresAt: time.Now().Add(time.Hour)},
			Status: tokenkeeper.StatusActive, LastRefreshAt: time.Now(), NextRefreshAt: time.Now().Add(time.Hour),
			Event: &tokenkeeper.Event{Time: time.Now(), Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK}, Claimed: c}); err != nil {
			t.Fatal(err)
		}
	}
	claimAndCommit()
	claim := translate(dialect.ClaimDue)
	db.writeStmts.mu.Lock()
	_, prepared := db.writeStmts.m[claim]
	n := len(db.writeStmts.m)
	db.writeStmts.mu.Unlock()
	if !prepared || n < 3 {
		t.Fatalf("after a claim and a commit: claim prepared %v, %d statements prepared", prepared, n)
	}
	claimAndCommit() // runs them prepared, bound to the transaction
	c, err := db.Credential(ctx, "b")
	if err != nil || c.Token == nil || c.Token.AccessToken != "at-b" {
		t.Fatalf("second credential: %v %+v", err, c)
	}

	// Several statements in one query: run whole, not cached.
	multi := `CREATE TABLE t1 (x INTEGER); CREATE TABLE t2 (x INTEGER);`
	if err := db.conn().Tx(ctx, func(q sqlstore.Querier) error {
		_, err := q.Exec(ctx, multi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var tables int
	if err := db.reader.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name IN ('t1', 't2')`).Scan(&tables); err != nil || tables != 2 {
		t.Fatalf("the multi-statement query made %d tables (%v), want 2", tables, err)
	}
	db.writeStmts.mu.Lock()
	_, cached := db.writeStmts.m[multi]
	db.writeStmts.mu.Unlock()
	if cached {
		t.Fatal("a multi-statement query was prepared")
	}
}
