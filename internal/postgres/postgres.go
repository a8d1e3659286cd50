// Package postgres implements tokenkeeper.Store on PostgreSQL through a pgx
// connection pool, for several broker replicas sharing one database.
//
// Claims are atomic across replicas: ClaimDue locks due rows with
// FOR UPDATE SKIP LOCKED and leases them in the same statement, so two
// replicas never lease the same credential, and a commit is fenced by the
// version the claim returned. Schema migrations are embedded, applied one
// transaction per file under a transaction-scoped advisory lock (scoped to
// the current schema), so replicas starting together migrate safely.
//
// DB implements tokenkeeper.ChangeNotifier: every committed change to a
// credential is announced with NOTIFY, and Subscribe listens on a dedicated
// connection that reconnects by itself (notify.go).
//
// Secrets are sealed with internal/seal before they reach the database.
// Failures to reach the database are EUNAVAILABLE errors that keep their
// cause.
//
// A *DB is safe for concurrent use.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Ensure DB implements the store interface.
var _ tokenkeeper.Store = (*DB)(nil)

// Defaults for the options.
const (
	DefaultEventRetention = 1000
	DefaultConnectTimeout = 5 * time.Second
)

// DB is a tokenkeeper.Store on a PostgreSQL database.
type DB struct {
	// Now returns the current time. It defaults to time.Now; tests replace
	// it before using the DB. Stored times are UTC with microsecond precision.
	Now func() time.Time

	pool           *pgxpool.Pool
	master         []byte
	ring           *seal.Ring // safe for concurrent use
	log            *slog.Logger
	eventRetention int

	reloadMu sync.Mutex // serializes reloads of ring from data_keys

	closed    chan struct{} // closed by Close: ends subscriptions (notify.go)
	closeOnce sync.Once
	listen    listenConfig // change notification settings (notify.go)
}

type config struct {
	log            *slog.Logger
	eventRetention int
	pool           []func(*pgxpool.Config)
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

// WithEventRetention sets how many events are kept per credential; older
// ones are deleted as new ones arrive (default DefaultEventRetention).
func WithEventRetention(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.eventRetention = n
		}
	}
}

// WithPoolConfig lets the caller adjust the pool configuration parsed from
// the URL (pool size, timeouts, runtime parameters such as search_path)
// before the pool is created.
func WithPoolConfig(fn func(*pgxpool.Config)) Option {
	return func(c *config) {
		if fn != nil {
			c.pool = append(c.pool, fn)
		}
	}
}

func newConfig(opts []Option) config {
	c := config{log: slog.New(slog.DiscardHandler), eventRetention: DefaultEventRetention}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// IsURL reports whether s is a PostgreSQL connection URL
// (postgres:// or postgresql://) rather than a file path.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// newPool parses url and creates a pool. The pool connects lazily; the
// caller checks reachability. The URL, which may hold a password, never
// appears in errors (pgx redacts it).
func newPool(ctx context.Context, url string, cfg config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid PostgreSQL URL: %v", err)
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	for _, fn := range cfg.pool {
		fn(pc)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, storeErr("create connection pool", err)
	}
	return pool, nil
}

// Open connects to the PostgreSQL database at url, applies any pending
// migrations, creates the first data key if there is none, and loads the
// data keys with masterKey. A masterKey that cannot unwrap the stored data
// keys gives an error matching seal.ErrMasterKeyMismatch ("master key does
// not match this database"). An unreachable database gives EUNAVAILABLE.
func Open(ctx context.Context, url string, masterKey []byte, opts ...Option) (*DB, error) {
	cfg := newConfig(opts)
	if len(masterKey) != seal.KeySize {
		return nil, fmt.Errorf("open database: master key must be %d bytes, got %d", seal.KeySize, len(masterKey))
	}
	pool, err := newPool(ctx, url, cfg)
	if err != nil {
		return nil, err
	}
	db := &DB{
		Now:            time.Now,
		pool:           pool,
		master:         append([]byte(nil), masterKey...),
		ring:           seal.NewRing(),
		log:            cfg.log,
		eventRetention: cfg.eventRetention,
		closed:         make(chan struct{}),
		listen:         defaultListenConfig(),
	}
	if _, err := migrate(ctx, pool, cfg.log); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.initKeys(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Migrate applies the pending embedded migrations to the database at url
// and returns the names of those it applied.
func Migrate(ctx context.Context, url string, opts ...Option) ([]string, error) {
	cfg := newConfig(opts)
	pool, err := newPool(ctx, url, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	return migrate(ctx, pool, cfg.log)
}

// lockMigrate takes the transaction-scoped advisory lock that serializes
// migrations of the current schema across processes.
const lockMigrate = `SELECT pg_advisory_xact_lock(1953197413, hashtext(current_schema()))`

func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) ([]string, error) {
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

	var unknown []string
	err = inTx(ctx, pool, func(tx pgx.Tx) error {
		unknown = nil
		if _, err := tx.Exec(ctx, lockMigrate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL)`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name FROM schema_migrations`)
		if err != nil {
			return err
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, n := range done {
			if !known[n] {
				unknown = append(unknown, n)
			}
		}
		return nil
	})
	if err != nil {
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
		var did bool
		err = inTx(ctx, pool, func(tx pgx.Tx) error {
			did = false
			if _, err := tx.Exec(ctx, lockMigrate); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			// No arguments: the simple protocol runs every statement of the file.
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, now())`, name); err != nil {
				return err
			}
			did = true
			return nil
		})
		if err != nil {
			return applied, storeErr("apply migration "+name, err)
		}
		if did {
			log.Info("applied database migration", "name", name)
			applied = append(applied, name)
		}
	}
	return applied, nil
}

// Close ends the subscriptions to changes and closes the connection pool.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { close(db.closed) })
	db.pool.Close()
	return nil
}

// Ping checks that the database is reachable.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return storeErr("ping database", err)
	}
	return nil
}

// now returns the store's clock, truncated to what the database keeps.
func (db *DB) now() time.Time {
	return db.Now().UTC().Truncate(time.Microsecond)
}

// write runs fn in a transaction and commits it, retrying the whole
// transaction on a deadlock or serialization failure; fn must therefore only
// touch the transaction and its own local results.
func (db *DB) write(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		err = inTx(ctx, db.pool, fn)
		if !isRetryable(err) {
			break
		}
	}
	return storeErr(op, err)
}

func inTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func isRetryable(err error) bool {
	c := pgCode(err)
	return c == "40001" || c == "40P01" // serialization_failure, deadlock_detected
}

func isUniqueViolation(err error) bool { return pgCode(err) == "23505" }

// isUnavailable reports errors that mean the database cannot be reached or
// is not accepting work right now.
func isUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	switch c := pgCode(err); {
	case strings.HasPrefix(c, "08"): // connection exception
		return true
	case c == "57P01", c == "57P02", c == "57P03", c == "53300": // shutdown, crash, starting, too many connections
		return true
	case c != "":
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err)
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
	var ce *pgconn.ConnectError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return err
	case errors.As(err, &ce):
		return &unavailableError{op: op, err: err}
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

func utc(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return utc(t)
}

// fromNull reads a nullable timestamptz.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
