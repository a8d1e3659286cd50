// Package sqlite implements tokenkeeper.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go).
//
// The database runs in WAL mode with synchronous=FULL, so that a committed
// rotated refresh token survives a crash or a power loss. A DB keeps two
// connection pools on the file: a single writer connection, on which every
// write is a BEGIN IMMEDIATE transaction, and a pool of read-only connections
// that WAL lets run alongside the writer. Writers in one process therefore
// queue in Go instead of failing; writers in other processes on the same file
// wait through SQLite's busy timeout, and a write that still finds the
// database busy is retried with backoff. Claims are single conditional
// UPDATE statements inside such a transaction, so they are atomic across
// processes.
//
// Secrets are sealed with internal/seal before they reach the database. Schema
// migrations are embedded and applied by Open, or by Migrate alone.
//
// A *DB is safe for concurrent use; several processes may open the same file.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Ensure DB implements the store interface.
var _ tokenkeeper.Store = (*DB)(nil)

// Defaults for the options.
const (
	DefaultBusyTimeout    = 5 * time.Second
	DefaultEventRetention = 1000
)

// timeFormat stores times as fixed-width UTC text, so that text order is
// time order and SQL comparisons work on the column directly.
const timeFormat = "2006-01-02T15:04:05.000000Z"

// DB is a tokenkeeper.Store on one SQLite file.
type DB struct {
	// Now returns the current time. It defaults to time.Now; tests replace
	// it before using the DB. Stored times are UTC with microsecond precision.
	Now func() time.Time

	path           string
	writer         *sql.DB // one connection; every write is a BEGIN IMMEDIATE transaction
	reader         *sql.DB // read-only connections
	master         []byte
	ring           *seal.Ring // safe for concurrent use
	log            *slog.Logger
	eventRetention int

	reloadMu sync.Mutex // serializes reloads of ring from data_keys
}

type config struct {
	log            *slog.Logger
	busyTimeout    time.Duration
	maxReaders     int
	eventRetention int
}

// Option configures Open and Migrate.
type Option func(*config)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithBusyTimeout sets how long a statement waits for another process's
// write lock before the write is retried (default DefaultBusyTimeout).
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.busyTimeout = d
		}
	}
}

// WithMaxReaders sets the number of read-only connections (default: 4).
func WithMaxReaders(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxReaders = n
		}
	}
}

// WithEventRetention sets how many events are kept per credential; older
// ones are deleted as new ones arrive (default DefaultEventRetention).
func WithEventRetention(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.eventRetention = n
		}
	}
}

func newConfig(opts []Option) config {
	c := config{
		log:            slog.New(slog.DiscardHandler),
		busyTimeout:    DefaultBusyTimeout,
		maxReaders:     4,
		eventRetention: DefaultEventRetention,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// KeyFilePath returns where the embedded default keeps the master key file
// of the database at path: beside it, with ".key" appended.
func KeyFilePath(path string) string {
	return path + ".key"
}

// EnsureDir creates the directory that will hold the database file at path,
// with mode 0700, if it does not exist.
func EnsureDir(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create database directory: %w", err)
	}
	return nil
}

// Exists reports whether a database file exists at path.
func Exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	} else if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("check database file: %w", err)
}

func checkPath(path string) (string, error) {
	if path == "" {
		return "", tokenkeeper.Errorf(tokenkeeper.EINVALID, "database path is empty")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return "", tokenkeeper.Errorf(tokenkeeper.EINVALID, "database must be a file path, not %q", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve database path: %w", err)
	}
	return abs, nil
}

// dsn builds a "file:" URI, so that any character in the path is escaped,
// with the pragmas every connection runs on open.
func dsn(path string, cfg config, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.busyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	if !strings.HasPrefix(u.Path, "/") { // Windows drive letters
		u.Path = "/" + u.Path
	}
	return u.String()
}

func openWriter(path string, cfg config) (*sql.DB, error) {
	w, err := sql.Open("sqlite", dsn(path, cfg, false))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	return w, nil
}

// Open opens (creating if needed) the SQLite database at path, applies any
// pending migrations, creates the first data key if there is none, and loads
// the data keys with masterKey. A masterKey that cannot unwrap the stored
// data keys gives an error matching seal.ErrMasterKeyMismatch ("master key
// does not match this database"). The parent directory is created with mode
// 0700 if missing.
func Open(ctx context.Context, path string, masterKey []byte, opts ...Option) (*DB, error) {
	cfg := newConfig(opts)
	if len(masterKey) != seal.KeySize {
		return nil, fmt.Errorf("open database: master key must be %d bytes, got %d", seal.KeySize, len(masterKey))
	}
	path, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	if err := EnsureDir(path); err != nil {
		return nil, err
	}
	db := &DB{
		Now:            time.Now,
		path:           path,
		master:         append([]byte(nil), masterKey...),
		ring:           seal.NewRing(),
		log:            cfg.log,
		eventRetention: cfg.eventRetention,
	}
	if db.writer, err = openWriter(path, cfg); err != nil {
		return nil, err
	}
	if _, err := migrate(ctx, db.writer, cfg.log); err != nil {
		db.writer.Close()
		return nil, err
	}
	db.reader, err = sql.Open("sqlite", dsn(path, cfg, true))
	if err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.reader.SetMaxOpenConns(cfg.maxReaders)
	db.reader.SetMaxIdleConns(cfg.maxReaders)
	if err := db.initKeys(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Migrate applies the pending embedded migrations to the database at path,
// creating it if needed, and returns the names of those it applied.
func Migrate(ctx context.Context, path string, opts ...Option) ([]string, error) {
	cfg := newConfig(opts)
	path, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	if err := EnsureDir(path); err != nil {
		return nil, err
	}
	w, err := openWriter(path, cfg)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	return migrate(ctx, w, cfg.log)
}

// migrate applies each embedded migration not yet recorded in
// schema_migrations, one transaction per file. BEGIN IMMEDIATE serializes
// processes migrating the same file at once.
func migrate(ctx context.Context, w *sql.DB, log *slog.Logger) ([]string, error) {
	if _, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT`); err != nil {
		return nil, storeErr("create schema_migrations", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	known := make(map[string]bool, len(names))
	for i, n := range names {
		names[i] = strings.TrimPrefix(n, "migrations/")
		known[names[i]] = true
	}

	rows, err := w.QueryContext(ctx, `SELECT name FROM schema_migrations`)
	if err != nil {
		return nil, storeErr("read schema_migrations", err)
	}
	var unknown []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, storeErr("read schema_migrations", err)
		}
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	if err := rows.Close(); err != nil {
		return nil, storeErr("read schema_migrations", err)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("migrate: the database has migrations this tokenkeeper does not know (%s): it was created by a newer version", strings.Join(unknown, ", "))
	}

	var applied []string
	for _, name := range names {
		body, err := fs.ReadFile(migrationFS, "migrations/"+name)
		if err != nil {
			return applied, fmt.Errorf("read migration %s: %w", name, err)
		}
		did, err := applyMigration(ctx, w, name, string(body))
		if err != nil {
			return applied, err
		}
		if did {
			log.Info("applied database migration", "name", name)
			applied = append(applied, name)
		}
	}
	return applied, nil
}

func applyMigration(ctx context.Context, w *sql.DB, name, body string) (bool, error) {
	var did bool
	err := withRetry(ctx, func() error {
		did = false
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, body); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`, name, fmtTime(time.Now())); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		did = true
		return nil
	})
	if err != nil {
		return false, storeErr("apply migration "+name, err)
	}
	return did, nil
}

// Close closes the database.
func (db *DB) Close() error {
	var errs []error
	if db.reader != nil {
		errs = append(errs, db.reader.Close())
	}
	if db.writer != nil {
		errs = append(errs, db.writer.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// Ping checks that the database file can be read.
func (db *DB) Ping(ctx context.Context) error {
	var n int
	if err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&n); err != nil {
		return storeErr("ping database", err)
	}
	return nil
}

// now returns the store's clock, truncated to what the database keeps.
func (db *DB) now() time.Time {
	return db.Now().UTC().Truncate(time.Microsecond)
}

// write runs fn in a BEGIN IMMEDIATE transaction on the writer connection
// and commits it. If another process holds the write lock beyond the busy
// timeout, the whole transaction is retried with backoff; fn must therefore
// only touch the transaction and its own local results.
func (db *DB) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	err := withRetry(ctx, func() error {
		tx, err := db.writer.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit()
	})
	return storeErr(op, err)
}

// busyRetries bounds the retries of a write that finds the database locked
// by another process even after the busy timeout.
const busyRetries = 8

func withRetry(ctx context.Context, fn func() error) error {
	delay := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || !isBusy(err) || attempt == busyRetries {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

func sqliteCode(err error) (int, bool) {
	var se *msqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

func isBusy(err error) bool {
	code, ok := sqliteCode(err)
	return ok && (code&0xff == sqlite3.SQLITE_BUSY || code&0xff == sqlite3.SQLITE_LOCKED)
}

func isUniqueViolation(err error) bool {
	code, ok := sqliteCode(err)
	return ok && (code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// isUnavailable reports errors that mean the database file cannot be used
// right now, as opposed to a bad statement or bad data.
func isUnavailable(err error) bool {
	if errors.Is(err, sql.ErrConnDone) {
		return true
	}
	code, ok := sqliteCode(err)
	if !ok {
		return false
	}
	switch code & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_PERM:
		return true
	}
	return false
}

// unavailableError is an EUNAVAILABLE tokenkeeper error that keeps its cause.
type unavailableError struct {
	op  string
	err error
}

func (e *unavailableError) Error() string {
	return e.op + ": database unavailable: " + e.err.Error()
}

func (e *unavailableError) Unwrap() []error {
	return []error{
		tokenkeeper.Errorf(tokenkeeper.EUNAVAILABLE, "The database is unavailable."),
		e.err,
	}
}

// storeErr wraps err for the caller: domain errors pass through unchanged,
// unavailability becomes EUNAVAILABLE, anything else is wrapped with op.
func storeErr(op string, err error) error {
	var te *tokenkeeper.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", op, err)
	case isUnavailable(err):
		return &unavailableError{op: op, err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// newID returns a random 128-bit id in hex.
func newID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func fmtTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(timeFormat)
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return fmtTime(t)
}

func parseTime(s sql.NullString) (time.Time, error) {
	if !s.Valid || s.String == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(timeFormat, s.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time: %w", err)
	}
	return t.UTC(), nil
}
