package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is what SQLite does its own way. A write transaction (BEGIN
// IMMEDIATE) excludes every other writer, in this process or another, so
// there are no row or advisory locks, and a claim is one conditional UPDATE.
// Nothing is notified: one process serves a file (see Lock).
var dialect = &sqlstore.Dialect{
	ClaimDue: `UPDATE credentials
		SET lease_owner = $1, lease_expires_at = $2, version = version + 1
		WHERE id IN (
			SELECT id FROM credentials INDEXED BY credentials_next_refresh_at
			WHERE status IN ('active', 'error') AND next_refresh_at <= $3
				AND (lease_owner = '' OR lease_expires_at <= $3)
			ORDER BY next_refresh_at, id
			LIMIT $4)
		RETURNING ` + sqlstore.CredentialColumns,
	LimitAll:          "-1",
	IndexedBy:         func(index string) string { return " INDEXED BY " + index },
	IsUniqueViolation: isUniqueViolation,
	IsUnavailable:     isUnavailable,
}

// conn runs the store's statements: reads on the read-only pool (the
// querier), write transactions on the writer connection.
type conn struct {
	querier
	writer *sql.DB
	stmts  *stmtCache // the writer's prepared statements; nil: none
}

// Tx runs fn in a BEGIN IMMEDIATE transaction on the writer connection and
// commits it. If another process holds the write lock beyond the busy
// timeout, the whole transaction is retried with backoff.
func (c conn) Tx(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	// The statements first seen in the transaction are prepared once it
	// has released the writer's connection.
	defer c.stmts.prepareNoted(context.WithoutCancel(ctx))
	return withRetry(ctx, func() error {
		tx, err := c.writer.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(querier{q: tx, tx: tx, stmts: c.stmts}); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// querier adapts a *sql.DB or *sql.Tx to the store: it translates the
// query, stores time arguments as text and reads text columns into times.
type querier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
	tx    *sql.Tx    // q, when it is a transaction
	stmts *stmtCache // the prepared statements of q's database; nil: none
}

// runner returns what runs query: its prepared statement when there is
// one (bound to the transaction), else q itself.
func (q querier) runner(ctx context.Context, query string) interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, args ...any) *sql.Row
} {
	st := q.stmts.get(ctx, query, q.tx != nil)
	if st == nil {
		return nil
	}
	if q.tx != nil {
		return q.tx.StmtContext(ctx, st)
	}
	return st
}

func (q querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	query, args = translate(query), timeArgs(args)
	var res sql.Result
	var err error
	if st := q.runner(ctx, query); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = q.q.ExecContext(ctx, query, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q querier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	query, args = translate(query), timeArgs(args)
	var rs *sql.Rows
	var err error
	if st := q.runner(ctx, query); st != nil {
		rs, err = st.QueryContext(ctx, args...)
	} else {
		rs, err = q.q.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	return rows{rs}, nil
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	query, args = translate(query), timeArgs(args)
	if st := q.runner(ctx, query); st != nil {
		return row{st.QueryRowContext(ctx, args...)}
	}
	return row{q.q.QueryRowContext(ctx, query, args...)}
}

type row struct{ r *sql.Row }

func (r row) Scan(dest ...any) error { return scanTimes(r.r.Scan, dest) }

type rows struct{ *sql.Rows }

func (r rows) Scan(dest ...any) error { return scanTimes(r.Rows.Scan, dest) }
func (r rows) Close()                 { r.Rows.Close() }

// timeArgs returns args with every time.Time as stored text.
func timeArgs(args []any) []any {
	var out []any
	for i, a := range args {
		if t, ok := a.(time.Time); ok {
			if out == nil {
				out = append([]any(nil), args...)
			}
			out[i] = fmtTime(t)
		}
	}
	if out == nil {
		return args
	}
	return out
}

// scanTimes scans into dest, reading the stored text of *time.Time and
// **time.Time (NULL as nil) destinations.
func scanTimes(scan func(...any) error, dest []any) error {
	var fix []func() error
	for i, d := range dest {
		switch p := d.(type) {
		case *time.Time:
			var s sql.NullString
			dest[i] = &s
			fix = append(fix, func() (err error) { *p, err = parseTime(s); return err })
		case **time.Time:
			var s sql.NullString
			dest[i] = &s
			fix = append(fix, func() error {
				t, err := parseTime(s)
				if *p = &t; !s.Valid {
					*p = nil
				}
				return err
			})
		}
	}
	if err := scan(dest...); err != nil {
		return err
	}
	for _, f := range fix {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// translated caches translate's results: the store's queries are a
// bounded set of constants.
var translated sync.Map // string -> string

// translate turns a query in the store's PostgreSQL syntax into SQLite's:
// $N placeholders become ?N, ::type casts are dropped, and so is
// COLLATE "C" (SQLite's default BINARY collation is byte order already).
// The store's queries hold no string literal with these characters.
func translate(query string) string {
	if v, ok := translated.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	for i := 0; i < len(query); i++ {
		switch c := query[i]; {
		case c == '$':
			b.WriteByte('?')
		case c == ':' && i+1 < len(query) && query[i+1] == ':':
			i += 2
			for i < len(query) && (query[i] == '_' || 'a' <= query[i] && query[i] <= 'z' || 'A' <= query[i] && query[i] <= 'Z') {
				i++
			}
			i--
		case strings.HasPrefix(query[i:], ` COLLATE "C"`):
			i += len(` COLLATE "C"`) - 1
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	translated.Store(query, out)
	return out
}

// timeFormat stores times as fixed-width UTC text, so that text order is
// time order and SQL comparisons work on the column directly.
const timeFormat = "2006-01-02T15:04:05.000000Z"

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

func fmtTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(timeFormat)
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
