package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
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

func randomName(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// freshSchema creates an empty schema, dropped at cleanup, and returns an
// option that makes a pool use it.
func freshSchema(t testing.TB) (string, Option) {
	t.Helper()
	url := storetest.PostgresURL(t)
	ctx := context.Background()
	schema := randomName("tk_test_")
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
	return schema, WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
		c.ConnConfig.RuntimeParams["application_name"] = schema
	})
}

func openTest(t testing.TB, master []byte, now func() time.Time, opts ...Option) *DB {
	t.Helper()
	db, err := Open(context.Background(), storetest.PostgresURL(t), master, opts...)
	if err != nil {
		t.Fatal(err)
	}
	db.Now = now
	t.Cleanup(func() { db.Close() })
	return db
}

func newHarness(t testing.TB, now func() time.Time) *storetest.Harness {
	schema, inSchema := freshSchema(t)
	master := testKey(t)
	db := openTest(t, master, now, inSchema)
	h := &storetest.Harness{Store: db, AddDataKey: db.AddDataKey}
	h.Exec = func(ctx context.Context, query string, args ...any) error {
		_, err := db.pool.Exec(ctx, query, args...)
		return err
	}
	h.QueryRow = func(ctx context.Context, query string, args ...any) storetest.Row {
		return db.pool.QueryRow(ctx, query, args...)
	}
	h.RawDump = func(t testing.TB) []byte { return dumpSchema(t, db.pool, schema) }
	h.OpenPeer = func(t testing.TB) tokenkeeper.Store { return openTest(t, master, now, inSchema) }
	return h
}

// dumpSchema returns every row of every table of the schema, as text in
// COPY format: what a database dump would hold.
func dumpSchema(t testing.TB, pool *pgxpool.Pool, schema string) []byte {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 5 {
		t.Fatalf("schema %s has tables %v", schema, tables)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var out strings.Builder
	for _, table := range tables {
		out.WriteString("-- " + table + "\n")
		ident := pgx.Identifier{schema, table}.Sanitize()
		if _, err := conn.Conn().PgConn().CopyTo(ctx, &out, `COPY (SELECT * FROM `+ident+`) TO STDOUT`); err != nil {
			t.Fatal(err)
		}
	}
	return []byte(out.String())
}

func TestStore(t *testing.T) {
	storetest.Run(t, newHarness)
}

func TestMigrateOnceAndConcurrently(t *testing.T) {
	_, inSchema := freshSchema(t)
	ctx := context.Background()
	url := storetest.PostgresURL(t)
	master := testKey(t)

	// Replicas starting together on an empty schema all succeed and agree
	// on one first data key.
	var wg sync.WaitGroup
	dbs := make([]*DB, 4)
	errs := make([]error, 4)
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(ctx, url, master, inSchema)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	var n int
	if err := dbs[0].pool.QueryRow(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("data keys: %d, %v", n, err)
	}
	applied, err := Migrate(ctx, url, inSchema)
	if err != nil || len(applied) != 0 {
		t.Fatalf("Migrate on a migrated schema applied %v, %v", applied, err)
	}

	_, other := freshSchema(t)
	applied, err = Migrate(ctx, url, other)
	if err != nil || !slices.Equal(applied, allMigrations(t)) {
		t.Fatalf("Migrate on an empty schema = %v, %v", applied, err)
	}
}

func TestWrongMasterKey(t *testing.T) {
	_, inSchema := freshSchema(t)
	ctx := context.Background()
	db := openTest(t, testKey(t), time.Now, inSchema)
	db.Close()
	_, err := Open(ctx, storetest.PostgresURL(t), testKey(t), inSchema)
	if !errors.Is(err, seal.ErrMasterKeyMismatch) || !strings.Contains(err.Error(), "master key does not match this database") {
		t.Fatalf("Open with another master key = %v", err)
	}
	if _, err := Open(ctx, storetest.PostgresURL(t), []byte("short"), inSchema); err == nil {
		t.Fatal("Open with a short master key succeeded")
	}
}

func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Nothing listens on port 1.
	_, err := Open(ctx, "postgres://tk:hunter2secret@127.0.0.1:1/db?sslmode=disable", testKey(t))
	if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAVAILABLE {
		t.Fatalf("Open(unreachable) = %v, want EUNAVAILABLE", err)
	}
	if strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("error shows the password: %v", err)
	}
	var cause interface{ Unwrap() []error }
	if !errors.As(err, &cause) || len(cause.Unwrap()) != 2 || cause.Unwrap()[1] == nil {
		t.Fatalf("EUNAVAILABLE error does not keep its cause: %#v", err)
	}

	_, err = Open(ctx, "postgres://tk:hunter2secret@127.0.0.1:5432/db?sslmode=bogus", testKey(t))
	if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID || strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("Open(bad URL) = %v, want EINVALID without the password", err)
	}
}

// TestConnectionLost checks that a connection the server terminates is
// reported as EUNAVAILABLE and that the pool recovers by itself.
func TestConnectionLost(t *testing.T) {
	schema, inSchema := freshSchema(t)
	ctx := context.Background()
	db := openTest(t, testKey(t), time.Now, inSchema, WithPoolConfig(func(c *pgxpool.Config) {
		c.MaxConns = 1
	}))
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, schema); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `SELECT 1`)
	conn.Release()
	if err == nil {
		t.Fatal("query on a terminated connection succeeded")
	}
	if got := tokenkeeper.ErrorCode(sqlstore.Err(dialect, "query", err)); got != tokenkeeper.EUNAVAILABLE {
		t.Fatalf("terminated connection: %v classified %q, want EUNAVAILABLE", err, got)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("the pool did not recover: %v", err)
	}
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"postgres://u@h/db":   true,
		"postgresql://h/db":   true,
		"/var/lib/tk.db":      false,
		"tokenkeeper.db":      false,
		"postgres.db":         false,
		"file:postgres://x":   false,
		"POSTGRES://u@h/db":   false,
		"postgres:/not-a-url": false,
	} {
		if got := IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestPrefixed(t *testing.T) {
	if got := prefixed("c.", "a, b,\n\tc"); got != "c.a, c.b,\n\tc.c" {
		t.Fatalf("prefixed = %q", got)
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, newHarness)
}

// TestOneConnectionPool checks that no method needs a second connection
// while it holds one: a replica whose pool has a single connection updates
// a row sealed with a data key it has not loaded yet (it must read the key
// inside its own transaction).
func TestOneConnectionPool(t *testing.T) {
	_, inSchema := freshSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	master := testKey(t)
	a := openTest(t, master, time.Now, inSchema)
	b := openTest(t, master, time.Now, inSchema, WithPoolConfig(func(c *pgxpool.Config) { c.MaxConns = 1 }))
	c := &tokenkeeper.Credential{Name: "c", TokenURL: "https://p.example/t", GrantType: tokenkeeper.GrantRefreshToken,
		ClientID: "id", ClientSecret: "s", RefreshToken: "r", AuthStyle: tokenkeeper.AuthStyleHeader}
	if err := a.CreateCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	lead := time.Minute
	got, err := b.UpdateCredential(ctx, "c", tokenkeeper.CredentialUpdate{RefreshLead: &lead}, &tokenkeeper.Event{Kind: "updated"})
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != "r" || got.RefreshLead != lead {
		t.Fatalf("update: %+v", got)
	}
	if n, err := b.RotateKey(ctx); err != nil || n != 2 {
		t.Fatalf("RotateKey on a one-connection pool: %d, %v", n, err)
	}
}

// allMigrations lists every embedded migration, in the order they apply.
func allMigrations(t *testing.T) []string {
	t.Helper()
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil || len(names) < 2 || names[0] != "migrations/0001_init.sql" || names[1] != "migrations/0002_auth.sql" {
		t.Fatalf("embedded migrations: %v, %v", names, err)
	}
	for i, n := range names {
		names[i] = path.Base(n)
	}
	slices.Sort(names)
	return names
}
