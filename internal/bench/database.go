package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the "sqlite" driver, for sqliteUsedBytes

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// isPostgresURL reports whether database names a PostgreSQL database rather
// than a SQLite file.
func isPostgresURL(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// redactURL hides the password of a database URL.
func redactURL(database string) string {
	scheme, rest, ok := strings.Cut(database, "://")
	if !ok || !isPostgresURL(database) {
		return database
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return database
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	if !hasPassword {
		return database
	}
	return scheme + "://" + user + ":****" + rest[at:]
}

// newSchemaName returns a fresh schema name: prefix and 8 random hex digits.
func newSchemaName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// withSearchPath returns database (a postgres:// URL) with its search_path
// set to schema.
func withSearchPath(database, schema string) (string, error) {
	u, err := url.Parse(database)
	if err != nil {
		return "", configErrorf("--database is not a valid URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// execPG runs one statement on a new connection to database, within timeout.
func execPG(ctx context.Context, database string, timeout time.Duration, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, database)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// benchStore is the store a Refresh or Read run works on.
type benchStore struct {
	store tokenkeeper.Store
	desc  string // "SQLite (PATH)" or "PostgreSQL (schema NAME)"
	// cleanup closes the store and removes the database: the temporary
	// directory, or the schema.
	cleanup func()
	// database reopens the same database (the SQLite path, or the URL with
	// the schema's search_path) for OpenStore.
	database string
	// size returns the bytes the database takes: the SQLite file and its
	// WAL, or every relation of the schema (tables, indexes, TOAST).
	size func(ctx context.Context) (int64, error)
	// key is the master key the store is sealed with.
	key []byte
	// rows counts the rows of a table (a name of this package's choosing,
	// never input).
	rows func(ctx context.Context, table string) (int64, error)
	// settle, if not nil, brings a freshly seeded database into the state
	// a long-running one is in (PostgreSQL: VACUUM ANALYZE). Before that,
	// on a database whose churned tables take back the space of dead rows
	// only in vacuums, it leaves the credentials table the free space of
	// one vacuum's worth of dead row versions: it updates the
	// vacuumThreshold credentials refreshed last, and returns how many.
	settle func(ctx context.Context) (int, error)
	// vacuumThreshold, if not nil, is the number of dead rows at which the
	// broker vacuums a table of live rows (postgres.VacuumThreshold).
	vacuumThreshold func(live int64) int64
	// leaseCycle, if not nil, takes every credential of a freshly seeded
	// database through one lease, group by group, as refreshes do, where
	// that leaves rows on pages the seeding filled (SQLite:
	// sqliteLeaseCycle). It returns how many it leased.
	leaseCycle func(ctx context.Context, group int) (int, error)
}

// openBenchStore opens the store a benchmark runs on, with a random master
// key: a SQLite file in a new temporary directory when database is empty,
// or a fresh schema of the PostgreSQL database it names (dropped by
// cleanup).
func openBenchStore(ctx context.Context, w Wiring, database string) (*benchStore, error) {
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	if !isPostgresURL(database) {
		dir, err := os.MkdirTemp("", "tokenkeeper-bench-")
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "bench.db")
		store, err := w.OpenStore(ctx, path, key)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		size := func(ctx context.Context) (int64, error) { return sqliteUsedBytes(ctx, path) }
		rows := func(ctx context.Context, table string) (int64, error) {
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
			if err != nil {
				return 0, err
			}
			defer db.Close()
			var n int64
			err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n)
			return n, err
		}
		return &benchStore{store: store, desc: "SQLite (" + path + ")", cleanup: func() { store.Close(); os.RemoveAll(dir) },
			database: path, size: size, key: key, rows: rows,
			leaseCycle: func(ctx context.Context, group int) (int, error) { return sqliteLeaseCycle(ctx, path, group) }}, nil
	}
	schema := newSchemaName("tokenkeeper_bench_")
	conn, err := pgx.Connect(ctx, database)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	}
	dbURL, err := withSearchPath(database, schema)
	if err != nil {
		drop()
		return nil, err
	}
	store, err := w.OpenStore(ctx, dbURL, key)
	if err != nil {
		drop()
		return nil, err
	}
	size := func(ctx context.Context) (int64, error) {
		var n int64
		err := conn.QueryRow(ctx, `SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
			JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = $1 AND c.relkind = 'r'`, schema).Scan(&n)
		return n, err
	}
	rows := func(ctx context.Context, table string) (int64, error) {
		var n int64
		err := conn.QueryRow(ctx, "SELECT COUNT(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&n)
		return n, err
	}
	settle := func(ctx context.Context) (int, error) {
		// The row versions the refreshes before the window left dead,
		// up to the broker's vacuum: new versions of the credentials
		// refreshed last (the fencing version moves; nothing else).
		live, err := rows(ctx, "credentials")
		if err != nil {
			return 0, err
		}
		creds := pgx.Identifier{schema, "credentials"}.Sanitize()
		tag, err := conn.Exec(ctx, `UPDATE `+creds+` SET version = version + 1 WHERE id IN (
			SELECT id FROM `+creds+` ORDER BY next_refresh_at DESC LIMIT $1)`, postgres.VacuumThreshold(live))
		if err != nil {
			return 0, err
		}
		var tables []string
		tablesRows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1`, schema)
		if err == nil {
			tables, err = pgx.CollectRows(tablesRows, pgx.RowTo[string])
		}
		if err != nil || len(tables) == 0 {
			return int(tag.RowsAffected()), err
		}
		for i, t := range tables {
			tables[i] = pgx.Identifier{schema, t}.Sanitize()
		}
		_, err = conn.Exec(ctx, "VACUUM ANALYZE "+strings.Join(tables, ", "))
		return int(tag.RowsAffected()), err
	}
	return &benchStore{store: store, desc: "PostgreSQL (schema " + schema + ")", cleanup: func() { store.Close(); drop() },
		database: dbURL, size: size, key: key, rows: rows, settle: settle, vacuumThreshold: postgres.VacuumThreshold}, nil
}

// sqliteLeaseCycle leases every credential of the SQLite database at path
// and releases it, group rows at a time in the order of their seeding
// (their refresh order), as the refresher's claims and commits do: a
// leased row is longer (the owner's name and the lease's expiry), and
// each step moves the fencing version (past 1, which SQLite stores in no
// byte, to one that takes a byte). Seeded in bulk, the table's pages
// are full, and the first refresh of each row split its page: measured
// at 50,000 credentials, refreshing a fifth of them grew the table by
// 177 pages of 4,558, once, and by none after this cycle. At a million,
// that first period's growth is 12 MiB of a 10-minute window, which a
// day's extrapolation multiplies by 144. It returns how many rows it
// leased.
func sqliteLeaseCycle(ctx context.Context, path string, group int) (int, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)&_txlock=immediate")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var lo, hi int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MIN(rowid), 0), COALESCE(MAX(rowid), -1) FROM credentials`).Scan(&lo, &hi); err != nil {
		return 0, err
	}
	owner, leased := refresh.DefaultOwner(), 0
	const groupsPerTx = 200
	for start := lo; start <= hi; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return leased, err
		}
		for g := 0; g < groupsPerTx && start <= hi; g, start = g+1, start+int64(group) {
			res, err := tx.ExecContext(ctx, `UPDATE credentials SET lease_owner = ?, lease_expires_at = ?, version = version + 1
				WHERE rowid >= ? AND rowid < ?`, owner, time.Now().Add(time.Minute).UTC(), start, start+int64(group))
			if err == nil {
				_, err = tx.ExecContext(ctx, `UPDATE credentials SET lease_owner = '', lease_expires_at = NULL, version = version + 1
					WHERE rowid >= ? AND rowid < ?`, start, start+int64(group))
			}
			if err != nil {
				tx.Rollback()
				return leased, err
			}
			n, _ := res.RowsAffected()
			leased += int(n)
		}
		if err := tx.Commit(); err != nil {
			return leased, err
		}
	}
	return leased, nil
}

// sqliteUsedBytes returns the bytes of the SQLite database at path that
// hold data: its pages less the free ones, as of the last commit (WAL
// included). The file itself only grows at checkpoints, and the WAL is
// reused, so their sizes say little about growth over minutes.
func sqliteUsedBytes(ctx context.Context, path string) (int64, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var pages, free, size int64
	for _, q := range []struct {
		pragma string
		dest   *int64
	}{{"page_count", &pages}, {"freelist_count", &free}, {"page_size", &size}} {
		if err := db.QueryRowContext(ctx, "PRAGMA "+q.pragma).Scan(q.dest); err != nil {
			return 0, fmt.Errorf("read %s: %w", q.pragma, err)
		}
	}
	return (pages - free) * size, nil
}
