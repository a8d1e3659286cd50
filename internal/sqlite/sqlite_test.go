package sqlite

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

func testKey(t testing.TB) []byte {
	t.Helper()
	k, err := seal.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openTest(t testing.TB, path string, master []byte, now func() time.Time, opts ...Option) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, master, opts...)
	if err != nil {
		t.Fatal(err)
	}
	db.Now = now
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func newHarness(t *testing.T, now func() time.Time) *storetest.Harness {
	path := filepath.Join(t.TempDir(), "data", "tokenkeeper.db")
	master := testKey(t)
	db := openTest(t, path, master, now)
	return &storetest.Harness{
		Store: db,
		Exec: func(ctx context.Context, query string, args ...any) error {
			_, err := db.writer.ExecContext(ctx, query, args...)
			return err
		},
		QueryRow: func(ctx context.Context, query string, args ...any) storetest.Row {
			return db.reader.QueryRowContext(ctx, query, args...)
		},
		RawDump: func(t testing.TB) []byte {
			var all []byte
			for _, p := range []string{path, path + "-wal", path + "-journal"} {
				b, err := os.ReadFile(p)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			return all
		},
		OpenPeer: func(t testing.TB) tokenkeeper.Store {
			return openTest(t, path, master, now)
		},
		AddDataKey: func(ctx context.Context) error {
			_, err := db.addDataKey(ctx)
			return err
		},
	}
}

func TestStore(t *testing.T) {
	storetest.Run(t, newHarness)
}

func TestOpenCreatesDirAndMigratesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a", "b", "tk.db")
	applied, err := Migrate(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0] != "0001_init.sql" {
		t.Fatalf("applied = %v", applied)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("database directory: %v, %v", fi, err)
	}
	applied, err = Migrate(ctx, path)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v", applied, err)
	}
	master := testKey(t)
	db := openTest(t, path, master, time.Now)
	if db.Path() != path {
		t.Errorf("Path = %q", db.Path())
	}
	if ok, err := Exists(path); !ok || err != nil {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if ok, err := Exists(path + ".nope"); ok || err != nil {
		t.Fatalf("Exists(missing) = %v, %v", ok, err)
	}
	if KeyFilePath(path) != path+".key" {
		t.Fatal(KeyFilePath(path))
	}
	var mode string
	if err := db.reader.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
}

func TestWrongMasterKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tk.db")
	db, err := Open(ctx, path, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(ctx, path, testKey(t))
	if !errors.Is(err, seal.ErrMasterKeyMismatch) {
		t.Fatalf("Open with another master key = %v", err)
	}
	if want := "master key does not match this database"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if _, err := Open(ctx, path, []byte("short")); err == nil {
		t.Fatal("Open with a short master key succeeded")
	}
}

func TestBadPaths(t *testing.T) {
	ctx := context.Background()
	for _, p := range []string{"", ":memory:", "file:x.db"} {
		_, err := Open(ctx, p, testKey(t))
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("Open(%q) = %v, want EINVALID", p, err)
		}
	}
	// A directory where the file should be cannot be opened: unavailable.
	dir := t.TempDir()
	_, err := Open(ctx, dir, testKey(t))
	if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAVAILABLE {
		t.Fatalf("Open(directory) = %v, want EUNAVAILABLE", err)
	}
}

func TestOddPathCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #dir%20", "tk db?.sqlite")
	db := openTest(t, path, testKey(t), time.Now)
	if err := db.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

func TestEventRetention(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "tk.db"), testKey(t), time.Now, WithEventRetention(3))
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
}

// TestIndexesUsed checks that the refresher's queries use the schedule
// index instead of scanning every credential.
func TestIndexesUsed(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "tk.db"), testKey(t), time.Now)
	for _, q := range []string{
		`SELECT id FROM credentials WHERE status IN ('active', 'error') AND next_refresh_at <= ?1
			AND (lease_owner = '' OR lease_expires_at <= ?1) ORDER BY next_refresh_at, id LIMIT 10`,
		`SELECT next_refresh_at FROM credentials WHERE status IN ('active', 'error') AND lease_owner = ''
			ORDER BY next_refresh_at LIMIT 1`,
		`SELECT next_refresh_at FROM credentials WHERE lease_owner <> '' AND status IN ('active', 'error')`,
	} {
		rows, err := db.reader.Query(`EXPLAIN QUERY PLAN `+q, "x")
		if err != nil {
			t.Fatal(err)
		}
		var plan string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan += detail + "\n"
		}
		rows.Close()
		if !bytes.Contains([]byte(plan), []byte("USING INDEX credentials_")) {
			t.Errorf("query does not use an index:\n%s\nplan:\n%s", q, plan)
		}
	}
}
