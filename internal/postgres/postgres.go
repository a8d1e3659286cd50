// Package postgres is the PostgreSQL dialect of the one SQL store
// (internal/sqlstore), through a pgx connection pool, for several broker
// replicas sharing one database. It holds only what PostgreSQL does its own
// way: the connection, claims, locks, change notification, error codes and
// the migrations (DDL, embedded).
//
// Claims are atomic across replicas: ClaimDue locks due rows with
// FOR UPDATE SKIP LOCKED and leases them in the same statement, so two
// replicas never lease the same credential, and a commit is fenced by the
// version the claim returned. Writes that must see each other (a family of
// refresh tokens, the data keys) hold transaction-scoped advisory locks
// scoped to the current schema. Schema migrations are applied one
// transaction per file under such a lock, so replicas starting together
// migrate safely.
//
// DB implements tokenkeeper.ChangeNotifier: every committed change to a
// credential is announced with NOTIFY, and Subscribe listens on a dedicated
// connection that reconnects by itself (notify.go).
//
// Failures to reach the database are EUNAVAILABLE errors that keep their
// cause.
//
// A *DB is safe for concurrent use.
package postgres

import (
	"context"
	"embed"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

// Ensure DB implements the store interfaces.
var _ interface {
	tokenkeeper.Store
	tokenkeeper.AuthStore
} = (*DB)(nil)

// Defaults for the options.
const (
	DefaultEventRetention = sqlstore.DefaultEventRetention
	DefaultConnectTimeout = 5 * time.Second
)

// DB is a tokenkeeper.Store on a PostgreSQL database: the one SQL store on
// a pgx pool.
type DB struct {
	*sqlstore.Store

	pool      *pgxpool.Pool
	log       *slog.Logger
	closed    chan struct{} // closed by Close: ends subscriptions (notify.go)
	closeOnce sync.Once
	listen    listenConfig // change notification settings (notify.go)
}

type config struct {
	log       *slog.Logger
	retention sqlstore.EventRetention
	pool      []func(*pgxpool.Config)
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
	c := config{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// IsURL reports whether s names a PostgreSQL database rather than a file
// path: a connection URL (postgres:// or postgresql://) or a libpq
// keyword/value connection string (host=... dbname=...), which pgx reads
// as well.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || IsKeywordValue(s)
}

// libpqKeywords are the connection parameters of libpq's keyword/value
// connection strings that pgx reads.
var libpqKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "sslmode": true, "sslcert": true, "sslkey": true, "sslrootcert": true,
	"sslpassword": true, "connect_timeout": true, "application_name": true, "target_session_attrs": true,
	"service": true, "servicefile": true, "options": true, "search_path": true, "sslnegotiation": true,
}

// IsKeywordValue reports whether s is a libpq keyword/value connection
// string ("host=db dbname=tokenkeeper"): every space-separated word that
// starts a parameter is keyword=..., and the first is a libpq keyword.
func IsKeywordValue(s string) bool {
	s = strings.TrimSpace(s)
	k, _, ok := strings.Cut(s, "=")
	return ok && libpqKeywords[strings.TrimSpace(k)]
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
		return nil, sqlstore.Err(dialect, "create connection pool", err)
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
	if err := sqlstore.CheckMasterKey(masterKey); err != nil {
		return nil, err
	}
	pool, err := newPool(ctx, url, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := migrate(ctx, pool, cfg.log); err != nil {
		pool.Close()
		return nil, err
	}
	st, err := sqlstore.New(ctx, conn{pool}, dialect, masterKey, cfg.log, cfg.retention)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{Store: st, pool: pool, log: cfg.log, closed: make(chan struct{}), listen: defaultListenConfig()}, nil
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

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migrations holds the embedded schema migrations, one SQL file each,
// applied in name order by Open and Migrate.
var Migrations, _ = fs.Sub(migrationFS, "migrations") // a constant, valid path

func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) ([]string, error) {
	return sqlstore.Migrate(ctx, conn{pool}, dialect, Migrations,
		`CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL)`, log)
}

// Close ends the subscriptions to changes and closes the connection pool.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { close(db.closed) })
	db.pool.Close()
	return nil
}

// Ping checks that the database is reachable.
func (db *DB) Ping(ctx context.Context) error {
	return sqlstore.Err(dialect, "ping database", db.pool.Ping(ctx))
}

// dialect is what PostgreSQL does its own way.
var dialect = &sqlstore.Dialect{
	// Lock the due rows, skipping those another replica is claiming, and
	// lease them in the same statement.
	ClaimDue: `WITH due AS (
			SELECT id FROM credentials
			WHERE status IN ('active', 'error') AND next_refresh_at <= $3
				AND (lease_owner = '' OR lease_expires_at <= $3)
			ORDER BY next_refresh_at, id
			LIMIT $4
			FOR UPDATE SKIP LOCKED)
		UPDATE credentials c
		SET lease_owner = $1, lease_expires_at = $2, version = c.version + 1
		FROM due WHERE c.id = due.id
		RETURNING ` + prefixed("c.", sqlstore.CredentialColumns),
	ForUpdate:  " FOR UPDATE",
	ForShare:   " FOR SHARE",
	SkipLocked: " FOR UPDATE SKIP LOCKED",
	LimitAll:   "ALL",
	// Advisory locks are transaction-scoped and scoped to the current
	// schema; the key "" is the migrations' lock.
	Lock: func(ctx context.Context, q sqlstore.Querier, key string) error {
		_, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock(1953197413, hashtext(current_schema() || $1::text))`, key)
		return err
	},
	Notify:            notifyChange,
	IsUniqueViolation: func(err error) bool { return pgCode(err) == "23505" },
	IsUnavailable:     isUnavailable,
}

// prefixed qualifies each column of a comma-separated list.
func prefixed(prefix, columns string) string {
	var out []byte
	start := true
	for i := 0; i < len(columns); i++ {
		ch := columns[i]
		if start && ch != ' ' && ch != '\t' && ch != '\n' {
			out = append(out, prefix...)
			start = false
		}
		out = append(out, ch)
		if ch == ',' {
			start = true
		}
	}
	return string(out)
}

// conn runs the store's statements on the pool or in a transaction; pgx
// serves both directly, with its own statement cache and binary encoding.
type conn struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
		SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	}
}

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := c.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (c conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	return c.q.Query(ctx, query, args...)
}

func (c conn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return c.q.QueryRow(ctx, query, args...)
}

// ExecBatch runs query once with each argument list, in one round trip.
func (c conn) ExecBatch(ctx context.Context, query string, args [][]any) error {
	b := &pgx.Batch{}
	for _, a := range args {
		b.Queue(query, a...)
	}
	return c.q.SendBatch(ctx, b).Close()
}

// Tx runs fn in a transaction and commits it, retrying the whole
// transaction on a deadlock or serialization failure.
func (c conn) Tx(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	pool := c.q.(*pgxpool.Pool) // a transaction's conn has no Tx caller
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		err = inTx(ctx, pool, fn)
		if c := pgCode(err); c != "40001" && c != "40P01" { // serialization_failure, deadlock_detected
			break
		}
	}
	return err
}

func inTx(ctx context.Context, pool *pgxpool.Pool, fn func(q sqlstore.Querier) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(conn{tx}); err != nil {
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

// isUnavailable reports errors that mean the database cannot be reached or
// is not accepting work right now.
func isUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
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
