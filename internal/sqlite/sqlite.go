// Package sqlite is the SQLite dialect of the one SQL store
// (internal/sqlstore), on an embedded database file (modernc.org/sqlite,
// pure Go, through database/sql). It holds only what SQLite does its own
// way: the connection, claims, error codes, the one-process file lock
// (lock.go) and the migrations (DDL, embedded).
//
// The database runs in WAL mode with synchronous=FULL, so that a committed
// rotated refresh token survives a crash or a power loss. A DB keeps two
// connection pools on the file: a single writer connection, on which every
// write is a BEGIN IMMEDIATE transaction, and a pool of read-only connections
// that WAL lets run alongside the writer. Writers in one process therefore
// queue in Go instead of failing; writers in other processes on the same file
// wait through SQLite's busy timeout, and a write that still finds the
// database busy is retried with backoff. Since a write transaction excludes
// every other writer, SQLite needs no row or advisory locks, and claims are
// single conditional UPDATE statements, atomic across processes.
//
// Times are stored as fixed-width UTC text, so that text order is time
// order. The store's queries, written in PostgreSQL's syntax, are
// translated on their way in (see translate).
//
// A *DB is safe for concurrent use; several processes may open the same file.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrations holds the embedded schema migrations, one SQL file each,
// applied in name order by Open and Migrate.
var Migrations, _ = fs.Sub(migrationFS, "migrations") // a constant, valid path

// Ensure DB implements the store interfaces.
var _ interface {
	tokenkeeper.Store
	tokenkeeper.AuthStore
} = (*DB)(nil)

// Defaults for the options.
const (
	DefaultBusyTimeout    = 5 * time.Second
	DefaultEventRetention = sqlstore.DefaultEventRetention
)

// DB is a tokenkeeper.Store on one SQLite file: the one SQL store on a
// writer connection and a pool of readers.
type DB struct {
	*sqlstore.Store

	path   string
	writer *sql.DB // one connection; every write is a BEGIN IMMEDIATE transaction
	reader *sql.DB // read-only connections
	// The statements prepared on each.
	writeStmts, readStmts *stmtCache
}

type config struct {
	log         *slog.Logger
	busyTimeout time.Duration
	maxReaders  int
	retention   sqlstore.EventRetention
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

// WithEventRetention sets how many events of each class (refresh attempts,
// operator events) are kept per credential; older ones are deleted as new
// ones arrive (defaults sqlstore.DefaultRefreshEventCount and
// DefaultEventRetention).
func WithEventRetention(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.retention.RefreshCount, c.retention.OperatorCount = n, n
		}
	}
}

// WithEventPolicy sets which events are kept, by count and age (see
// sqlstore.EventRetention; zero fields keep their defaults).
func WithEventPolicy(r sqlstore.EventRetention) Option {
	return func(c *config) { c.retention = r }
}

func newConfig(opts []Option) config {
	c := config{
		log:         slog.New(slog.DiscardHandler),
		busyTimeout: DefaultBusyTimeout,
		maxReaders:  4,
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
// 0700 if missing (the CLI refuses a missing one first, with CheckFile); a
// file that is read-only or not a database, or is corrupt, is refused with
// an error that says so.
func Open(ctx context.Context, path string, masterKey []byte, opts ...Option) (*DB, error) {
	cfg := newConfig(opts)
	if err := sqlstore.CheckMasterKey(masterKey); err != nil {
		return nil, err
	}
	path, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	if err := EnsureDir(path); err != nil {
		return nil, err
	}
	if err := checkExisting(path); err != nil {
		return nil, err
	}
	db := &DB{path: path}
	if db.writer, err = openWriter(path, cfg); err != nil {
		return nil, err
	}
	if _, err := migrate(ctx, db.writer, cfg.log); err != nil {
		db.writer.Close()
		return nil, describeOpenError(path, err)
	}
	db.reader, err = sql.Open("sqlite", dsn(path, cfg, true))
	if err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.reader.SetMaxOpenConns(cfg.maxReaders)
	db.reader.SetMaxIdleConns(cfg.maxReaders)
	db.writeStmts, db.readStmts = newStmtCache(db.writer), newStmtCache(db.reader)
	if db.Store, err = sqlstore.New(ctx, db.conn(), dialect, masterKey, cfg.log, cfg.retention); err != nil {
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
	if err := checkExisting(path); err != nil {
		return nil, err
	}
	w, err := openWriter(path, cfg)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	applied, err := migrate(ctx, w, cfg.log)
	return applied, describeOpenError(path, err)
}

func migrate(ctx context.Context, w *sql.DB, log *slog.Logger) ([]string, error) {
	return sqlstore.Migrate(ctx, conn{querier: querier{q: w}, writer: w}, dialect, Migrations,
		`CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT`, log)
}

// Close closes the database.
func (db *DB) Close() error {
	var errs []error
	db.readStmts.close()
	db.writeStmts.close()
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
	err := db.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&n)
	return sqlstore.Err(dialect, "ping database", err)
}

func (db *DB) conn() conn {
	return conn{querier: querier{q: db.reader, stmts: db.readStmts}, writer: db.writer, stmts: db.writeStmts}
}
