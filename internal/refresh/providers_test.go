package refresh_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// TestOneSecretForManyCredentials is the acceptance test of providers:
// 10,000 credentials of one provider store its client secret once, and a
// rotation of that secret (at the provider and in the broker, one update)
// is what the next refresh of each credential sends: every one succeeds at
// the provider, which no longer accepts the old secret, with one request
// each.
func TestOneSecretForManyCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("creates and refreshes 10,000 credentials per database (about 10 to 30 s each)")
	}
	t.Run("sqlite", func(t *testing.T) {
		n := 10000
		if raceDetector {
			// SQLite (a Go translation of C) runs about 20 times slower
			// under the race detector: 10,000 refreshes take minutes.
			// Without -race, and on PostgreSQL, the test uses 10,000.
			n = 1000
			t.Logf("the race detector is on: %d credentials on SQLite", n)
		}
		testOneSecretForMany(t, false, n)
	})
	t.Run("postgres", func(t *testing.T) { testOneSecretForMany(t, true, 10000) })
}

func testOneSecretForMany(t *testing.T, pg bool, n int) {
	w := newWorld(t, pg, nil)
	st := w.open("a", nil)
	ctx := context.Background()
	if err := st.CreateProvider(ctx, &tokenkeeper.Provider{Name: "idp", TokenURL: w.idp.TokenURL(), ClientID: "app",
		ClientSecret: w.secret, AuthStyle: tokenkeeper.AuthStyleHeader}); err != nil {
		t.Fatal(err)
	}
	// Each credential holds a token that is good for an hour: the next
	// refresh of each comes after the rotation.
	began := time.Now()
	later := began.Add(time.Hour)
	for i := 0; i < n; i++ {
		c := &tokenkeeper.Credential{Name: fmt.Sprintf("c%05d", i), Provider: "idp", GrantType: tokenkeeper.GrantClientCredentials,
			Token: &tokenkeeper.Token{AccessToken: "seed-" + randomHex(8), TokenType: "Bearer", ExpiresAt: later}, NextRefreshAt: later}
		if err := st.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("created %d credentials in %s", n, time.Since(began).Round(time.Millisecond))

	// At rest: one provider row holds the only sealed client secret; the
	// credentials table has no column for one.
	secrets, providers := w.rawCount(t, `SELECT COUNT(client_secret), COUNT(*) FROM providers`)
	if secrets != 1 || providers != 1 {
		t.Fatalf("%d sealed client secrets in %d provider rows, want 1 and 1", secrets, providers)
	}
	if err := w.rawExec(t, `SELECT client_secret FROM credentials`); err == nil {
		t.Fatal("credentials has a client_secret column")
	}

	// Rotate: the provider now accepts only the new secret; the broker
	// learns it with one update.
	newSecret := "SECRET-rotated-" + randomHex(8)
	w.secrets = append(w.secrets, newSecret)
	w.idp.AddClient("app", newSecret)
	if _, err := st.UpdateProvider(ctx, "idp", tokenkeeper.ProviderUpdate{ClientSecret: &newSecret}); err != nil {
		t.Fatal(err)
	}

	// The refresher runs two hours ahead: every credential is due.
	began = time.Now()
	w.replica("a", st, refresh.Config{Concurrency: 32, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}, false)
	took := eventually(t, 5*time.Minute, "a refresh of every credential", func() bool {
		return w.idp.Stats().TokenRequests["client_credentials"] >= n
	})
	t.Logf("refreshed %d credentials in %s", n, took.Round(time.Millisecond))
	eventually(t, time.Minute, "every refresh committed", func() bool {
		all, err := st.FilterCredentials(ctx, tokenkeeper.CredentialFilter{Provider: "idp"})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range all {
			if c.Token == nil || strings.HasPrefix(c.Token.AccessToken, "seed-") {
				return false
			}
		}
		return true
	})
	if got := w.idp.Stats().TokenRequests["client_credentials"]; got != n {
		t.Errorf("%d client_credentials requests for %d credentials: a refresh was retried (with the old secret?)", got, n)
	}
	all, err := st.Credentials(ctx)
	if err != nil || len(all) != n {
		t.Fatalf("Credentials: %d, %v", len(all), err)
	}
	for _, c := range all {
		if c.Status != tokenkeeper.StatusActive || c.LastErrorCode != "" || c.ClientSecret != newSecret || !w.idp.ValidAccessToken(c.Token.AccessToken) {
			t.Fatalf("%s after the rotation: status %s, error %q, token valid %v", c.Name, c.Status, c.LastErrorCode, w.idp.ValidAccessToken(c.Token.AccessToken))
		}
	}
	if secrets, _ := w.rawCount(t, `SELECT COUNT(client_secret), COUNT(*) FROM providers`); secrets != 1 {
		t.Fatalf("%d sealed client secrets after the rotation, want 1", secrets)
	}
}

// rawCount runs a query of two counts on the world's database, bypassing
// the store.
func (w *world) rawCount(t *testing.T, query string) (a, b int) {
	t.Helper()
	if w.url == "" {
		db := w.rawSQLite(t)
		if err := db.QueryRow(query).Scan(&a, &b); err != nil {
			t.Fatal(err)
		}
		return a, b
	}
	conn := w.rawPG(t)
	if err := conn.QueryRow(context.Background(), query).Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// rawExec runs a statement on the world's database, bypassing the store.
func (w *world) rawExec(t *testing.T, query string) error {
	if w.url == "" {
		_, err := w.rawSQLite(t).Exec(query)
		return err
	}
	_, err := w.rawPG(t).Exec(context.Background(), query)
	return err
}

func (w *world) rawSQLite(t *testing.T) *sql.DB {
	if _, err := os.Stat(w.sqlite); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+w.sqlite+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func (w *world) rawPG(t *testing.T) *pgx.Conn {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, `SET search_path TO `+w.schema); err != nil {
		t.Fatal(err)
	}
	return conn
}
