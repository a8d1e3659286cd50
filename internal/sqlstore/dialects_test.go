package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for raw access in tests
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// store is what the dialects' DB types offer.
type store interface {
	tokenkeeper.Store
	tokenkeeper.AuthStore
}

// database is an empty database of one dialect, for one test.
type database struct {
	dialect string
	// open opens the store on the database, with the dialect's event
	// retention option set to retention when it is positive, and its clock
	// set to now unless now is nil.
	open func(t testing.TB, master []byte, retention int, now func() time.Time) store
	// raw opens the database with database/sql, bypassing the store.
	raw func(t testing.TB) *sql.DB
}

// databases returns an empty database of every dialect. PostgreSQL is left
// out when TOKENKEEPER_TEST_DATABASE_URL is not set, unless
// TOKENKEEPER_REQUIRE_POSTGRES is.
func databases(t *testing.T) []database {
	path := filepath.Join(t.TempDir(), "tk.db")
	dbs := []database{{
		dialect: "sqlite",
		open: func(t testing.TB, master []byte, retention int, now func() time.Time) store {
			db, err := sqlite.Open(context.Background(), path, master, sqlite.WithEventRetention(retention))
			if err != nil {
				t.Fatal(err)
			}
			if now != nil {
				db.Now = now
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		raw: func(t testing.TB) *sql.DB { return rawDB(t, "sqlite", "file:"+path+"?_pragma=foreign_keys(1)") },
	}}
	u := os.Getenv("TOKENKEEPER_TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("TOKENKEEPER_REQUIRE_POSTGRES") != "" {
			t.Fatal("TOKENKEEPER_REQUIRE_POSTGRES is set but TOKENKEEPER_TEST_DATABASE_URL is not")
		}
		t.Log("TOKENKEEPER_TEST_DATABASE_URL is not set: SQLite only")
		return dbs
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := "tk_test_" + hex.EncodeToString(b)
	admin := rawDB(t, "pgx", u)
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Error(err)
		}
	})
	return append(dbs, database{
		dialect: "postgres",
		open: func(t testing.TB, master []byte, retention int, now func() time.Time) store {
			db, err := postgres.Open(context.Background(), u, master, postgres.WithEventRetention(retention),
				postgres.WithPoolConfig(func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["search_path"] = schema }))
			if err != nil {
				t.Fatal(err)
			}
			if now != nil {
				db.Now = now
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		raw: func(t testing.TB) *sql.DB {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			q := pu.Query()
			q.Set("search_path", schema)
			pu.RawQuery = q.Encode()
			return rawDB(t, "pgx", pu.String())
		},
	})
}

func rawDB(t testing.TB, driver, dsn string) *sql.DB {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestEventRetention(t *testing.T) {
	for _, d := range databases(t) {
		t.Run(d.dialect, func(t *testing.T) {
			ctx := context.Background()
			db := d.open(t, masterKey(t), 3, nil)
			c := &tokenkeeper.Credential{Name: "c", TokenURL: "https://p.example/t", GrantType: tokenkeeper.GrantClientCredentials,
				ClientID: "id", ClientSecret: "s", AuthStyle: tokenkeeper.AuthStyleHeader}
			if err := db.CreateCredential(ctx, c); err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if err := db.AddEvent(ctx, &tokenkeeper.Event{CredentialID: c.ID, Kind: "note", Time: time.Unix(int64(1000+i), 0)}); err != nil {
					t.Fatal(err)
				}
			}
			evs, err := db.Events(ctx, "c", 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 3 || evs[0].Time.Unix() != 1009 || evs[2].Time.Unix() != 1007 {
				t.Fatalf("kept %d events: %v", len(evs), evs)
			}
		})
	}
}

func masterKey(t testing.TB) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}
