// Package sqlstore is tokenkeeper's one SQL store: it implements
// tokenkeeper.Store and tokenkeeper.AuthStore once, for every database.
// Every query, the sealing of every secret field (internal/seal), row
// decoding, input checks and error mapping live here.
//
// What differs between databases is small and named: a Dialect (claims,
// row and advisory locks, change notification, constraint and availability
// error codes) and a Conn (the connection: reads, and write transactions
// with the retries the database needs). The dialects are the packages
// internal/sqlite (modernc.org/sqlite through database/sql) and
// internal/postgres (pgx); each keeps its own embedded migrations, since
// DDL differs, and applies them with Migrate.
//
// Queries are written once, in PostgreSQL's syntax: $N placeholders,
// ::type casts and COLLATE "C" (byte order). A Conn that speaks another
// syntax translates them (internal/sqlite turns $N into ?N and drops the
// casts and the collation, byte order being SQLite's default).
//
// A *Store is safe for concurrent use.
package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// DefaultEventRetention is how many operator events are kept per
// credential unless the dialect's options say otherwise.
const DefaultEventRetention = 1000

// Defaults of EventRetention. At a million credentials with one-hour
// tokens (one refresh every ~55 minutes, about 26 a day each) the age
// limit binds: the events table holds at most 12 hours of refresh
// attempts, about 13 million rows (~3.4 GiB on SQLite), and stops growing
// after its first 12 hours (README, "Event history and database growth").
const (
	DefaultRefreshEventCount   = 100
	DefaultRefreshEventMaxAge  = 12 * time.Hour
	DefaultOperatorEventCount  = DefaultEventRetention
	DefaultOperatorEventMaxAge = 90 * 24 * time.Hour
)

// EventRetention says which events of a credential the store keeps. Events
// come in two classes (tokenkeeper.EventClassRefresh: refresh attempts;
// tokenkeeper.EventClassOperator: creation, connection, status changes and
// every other kind), trimmed apart so that no volume of refreshes pushes an
// operator event out. The count limits are kept as events arrive (the
// newest Count events of a credential's class survive an insert); the age
// limits are applied by PruneEvents, which a background loop calls in
// small batches. A zero field takes its default.
type EventRetention struct {
	RefreshCount   int           // newest refresh events kept per credential
	RefreshMaxAge  time.Duration // refresh events older than this are pruned
	OperatorCount  int           // newest operator events kept per credential
	OperatorMaxAge time.Duration // operator events older than this are pruned
}

// withDefaults returns r with every zero field set to its default.
func (r EventRetention) withDefaults() EventRetention {
	if r.RefreshCount <= 0 {
		r.RefreshCount = DefaultRefreshEventCount
	}
	if r.RefreshMaxAge <= 0 {
		r.RefreshMaxAge = DefaultRefreshEventMaxAge
	}
	if r.OperatorCount <= 0 {
		r.OperatorCount = DefaultOperatorEventCount
	}
	if r.OperatorMaxAge <= 0 {
		r.OperatorMaxAge = DefaultOperatorEventMaxAge
	}
	return r
}

// Row is one result row.
type Row interface {
	// Scan copies the columns into dest: pointers to string, []byte,
	// integers, time.Time, and *time.Time, which a NULL sets to nil. A
	// missing row is an error matching sql.ErrNoRows.
	Scan(dest ...any) error
}

// Rows is a result set; Close must be called.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Close()
	Err() error
}

// Querier runs statements, outside or inside a transaction. Arguments are
// strings, []byte, integers, bool, time.Time or nil.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// execEach runs query once with each argument list: in one round trip
// where q has an ExecBatch method (pgx).
func execEach(ctx context.Context, q Querier, query string, args [][]any) error {
	if b, ok := q.(interface {
		ExecBatch(ctx context.Context, query string, args [][]any) error
	}); ok {
		return b.ExecBatch(ctx, query, args)
	}
	for _, a := range args {
		if _, err := q.Exec(ctx, query, a...); err != nil {
			return err
		}
	}
	return nil
}

// Conn is a dialect's connection to its database.
type Conn interface {
	// Querier runs the reads that need no transaction.
	Querier
	// Tx runs fn in one transaction and commits it. It retries the whole
	// transaction when the database asks for that (busy, deadlock), so fn
	// must only touch q and its own local results.
	Tx(ctx context.Context, fn func(q Querier) error) error
}

// Dialect is what differs between databases, besides the connection.
type Dialect struct {
	// ClaimDue leases due credentials: $1 owner, $2 lease end, $3 now,
	// $4 limit; it returns the CredentialColumns of the claimed rows.
	ClaimDue string
	// ForUpdate and ForShare end a SELECT that locks its rows until the
	// transaction ends; SkipLocked one that locks them but skips the rows
	// other transactions hold. Empty where a write transaction already
	// excludes every other writer.
	ForUpdate, ForShare, SkipLocked string
	// LimitAll is the LIMIT that means no limit, for an OFFSET alone.
	LimitAll string
	// IndexedBy returns the clause that makes a query on credentials read
	// through the named index (" INDEXED BY name" on SQLite), or "" where
	// the planner's statistics choose well. The refresher's queries need it
	// on SQLite: without statistics its planner preferred the console's
	// (status, updated_at) index, which matches every active credential,
	// and sorted them all on every pass.
	IndexedBy func(index string) string
	// Lock takes the transaction-scoped advisory lock named key; nil where
	// a write transaction already excludes every other writer.
	Lock func(ctx context.Context, q Querier, key string) error
	// Notify announces a committed change to the other replicas when q
	// commits; nil where there is no one to tell.
	Notify func(ctx context.Context, q Querier, ch tokenkeeper.Change) error
	// IsUniqueViolation reports a unique or primary key violation.
	IsUniqueViolation func(err error) bool
	// IsUnavailable reports an error that means the database cannot be
	// used right now, as opposed to a bad statement or bad data.
	IsUnavailable func(err error) bool
}

// Store is a tokenkeeper.Store and tokenkeeper.AuthStore on a Conn.
type Store struct {
	// Now returns the current time. It defaults to time.Now; tests replace
	// it before using the store. Stored times are UTC with microsecond
	// precision.
	Now func() time.Time
	// WebhookErrorAfter is the number of consecutive temporary failures
	// that sends a credential.error webhook; zero means
	// DefaultWebhookErrorAfter. Set it before using the store.
	WebhookErrorAfter int
	// WebhookLogRetention is how many finished deliveries each webhook
	// endpoint's log keeps; zero means DefaultWebhookLogRetention.
	WebhookLogRetention int

	conn      Conn
	d         *Dialect
	master    []byte
	ring      *seal.Ring // safe for concurrent use
	log       *slog.Logger
	retention EventRetention

	reloadMu sync.Mutex // serializes reloads of ring from data_keys
}

// New returns a store on conn, whose database is migrated. It creates the
// first data key if there is none and loads the data keys with masterKey;
// a masterKey that cannot unwrap them gives an error matching
// seal.ErrMasterKeyMismatch.
func New(ctx context.Context, conn Conn, d *Dialect, masterKey []byte, log *slog.Logger, retention EventRetention) (*Store, error) {
	if err := CheckMasterKey(masterKey); err != nil {
		return nil, err
	}
	s := &Store{Now: time.Now, conn: conn, d: d, master: append([]byte(nil), masterKey...),
		ring: seal.NewRing(), log: log, retention: retention.withDefaults()}
	if err := s.initKeys(ctx); err != nil {
		return nil, err
	}
	s.upgradeProviders(ctx)
	if err := s.sealPlainParams(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckMasterKey rejects a master key of the wrong size, before anything
// is opened.
func CheckMasterKey(key []byte) error {
	if len(key) != seal.KeySize {
		return fmt.Errorf("open database: master key must be %d bytes, got %d", seal.KeySize, len(key))
	}
	return nil
}

// Migrate applies each migration of dir (files *.sql, in name order) not
// yet recorded in schema_migrations, one transaction per file under the
// advisory lock "" (dialects without one serialize write transactions).
// create is the dialect's DDL creating schema_migrations (name, applied_at).
// It refuses a database that recorded a migration dir does not hold: a
// newer tokenkeeper created it. It returns the names it applied.
func Migrate(ctx context.Context, conn Conn, d *Dialect, dir fs.FS, create string, log *slog.Logger) ([]string, error) {
	names, err := fs.Glob(dir, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	lock := func(q Querier) error {
		if d.Lock == nil {
			return nil
		}
		return d.Lock(ctx, q, "")
	}
	var unknown []string
	err = conn.Tx(ctx, func(q Querier) error {
		unknown = nil
		if err := lock(q); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, create); err != nil {
			return err
		}
		done, err := collect(ctx, q, `SELECT name FROM schema_migrations`, nil, scanString)
		for _, n := range done {
			if !known[n] {
				unknown = append(unknown, n)
			}
		}
		return err
	})
	if err != nil {
		return nil, Err(d, "read schema_migrations", err)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("migrate: the database has migrations this tokenkeeper does not know (%s): it was created by a newer version", strings.Join(unknown, ", "))
	}
	var applied []string
	for _, name := range names {
		body, err := fs.ReadFile(dir, name)
		if err != nil {
			return applied, fmt.Errorf("read migration %s: %w", name, err)
		}
		var did bool
		err = conn.Tx(ctx, func(q Querier) error {
			did = false
			if err := lock(q); err != nil {
				return err
			}
			var n int
			if err := q.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil || n > 0 {
				return err
			}
			// No arguments: every statement of the file runs.
			if _, err := q.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", name, err)
			}
			did = true
			_, err := q.Exec(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)`, name, utc(time.Now()))
			return err
		})
		if err != nil {
			return applied, Err(d, "apply migration "+name, err)
		}
		if did {
			log.Info("applied database migration", "name", name)
			applied = append(applied, name)
		}
	}
	return applied, nil
}

// now returns the store's clock, truncated to what the database keeps.
func (s *Store) now() time.Time { return utc(s.Now()) }

// write runs fn in a write transaction and maps its error for op.
func (s *Store) write(ctx context.Context, op string, fn func(q Querier) error) error {
	return s.err(op, s.conn.Tx(ctx, fn))
}

// exec runs one statement in a write transaction. If they are not nil, a
// unique violation is conflict and a statement that changes no row is
// notFound.
func (s *Store) exec(ctx context.Context, op string, conflict, notFound error, query string, args ...any) error {
	return s.write(ctx, op, func(tx Querier) error {
		n, err := tx.Exec(ctx, query, args...)
		switch {
		case err != nil && conflict != nil && s.d.IsUniqueViolation(err):
			return conflict
		case err == nil && n == 0 && notFound != nil:
			return notFound
		}
		return err
	})
}

// lock takes the advisory lock key in q where the dialect has one.
func (s *Store) lock(ctx context.Context, q Querier, key string) error {
	if s.d.Lock == nil {
		return nil
	}
	return s.d.Lock(ctx, q, key)
}

// notify announces ch where the dialect can.
func (s *Store) notify(ctx context.Context, q Querier, ch tokenkeeper.Change) error {
	if s.d.Notify == nil {
		return nil
	}
	return s.d.Notify(ctx, q, ch)
}

func (s *Store) err(op string, err error) error { return Err(s.d, op, err) }

// collect runs a query and reads every row with scan.
func collect[T any](ctx context.Context, q Querier, query string, args []any, scan func(Rows) (T, error)) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// scanString reads a row of one text column.
func scanString(r Rows) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}

// orNotFound returns notFound for a missing row, err otherwise.
func orNotFound(err, notFound error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	return err
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

// Err wraps err for the caller: domain errors pass through unchanged,
// unavailability (as d tells) becomes EUNAVAILABLE, anything else is
// wrapped with op. It returns nil for a nil err.
func Err(d *Dialect, op string, err error) error {
	var te *tokenkeeper.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return err
	case d.IsUnavailable(err):
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

// utc returns t as the database keeps it: UTC, microsecond precision.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return utc(t)
}

// fromNull reads a nullable time column.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
