package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

// Change notification between replicas.
//
// Every write that changes what a replica caches or schedules (a credential
// created, updated or deleted, a refresh committed) sends pg_notify in its
// own transaction, so the notification leaves exactly when the change
// commits and never for a change rolled back. Claims send nothing: they
// change only the lease, which no replica caches.
//
// The channel is named after the current schema ("tokenkeeper." and the MD5
// of the schema name, well under PostgreSQL's 63-byte limit), so databases
// that host several tokenkeeper schemas keep their notifications apart.
//
// Subscribe listens on a dedicated connection, outside the pool, so that a
// busy pool never delays notifications and the listening session is never
// handed to a query. It checks an idle connection every few seconds, and
// reconnects with backoff whenever the connection breaks or stops answering.

// Ensure DB implements the optional change notification interface.
var _ tokenkeeper.ChangeNotifier = (*DB)(nil)

// channelExpr is the SQL expression naming the notification channel of the
// current schema.
const channelExpr = `'tokenkeeper.' || md5(coalesce(current_schema(), ''))`

// listenConfig holds the timing of the listening connection; tests shorten it.
type listenConfig struct {
	// check is how long the connection may stay silent before it is checked
	// with a round trip.
	check time.Duration
	// timeout bounds a connection attempt and a check.
	timeout time.Duration
	// backoffMin and backoffMax bound the wait between reconnection
	// attempts, which doubles after each failure.
	backoffMin, backoffMax time.Duration
	// listening, if set, is called with the backend process id each time a
	// connection starts listening (tests use it to terminate the backend).
	listening func(pid uint32)
}

func defaultListenConfig() listenConfig {
	return listenConfig{check: 10 * time.Second, timeout: 5 * time.Second, backoffMin: 100 * time.Millisecond, backoffMax: 5 * time.Second}
}

// changePayload is the JSON payload of a notification. It names the
// credential and never holds a secret.
type changePayload struct {
	Kind          string     `json:"kind"`
	ID            string     `json:"id"`
	Name          string     `json:"name"`
	Version       int64      `json:"version,omitempty"`
	NextRefreshAt *time.Time `json:"next_refresh_at,omitempty"`
}

// notifyChange queues a notification of ch in tx; PostgreSQL delivers it when
// tx commits. It is the dialect's Notify, which the store's write paths call.
func notifyChange(ctx context.Context, tx sqlstore.Querier, ch tokenkeeper.Change) error {
	p := changePayload{Kind: ch.Kind, ID: ch.CredentialID, Name: ch.CredentialName, Version: ch.Version}
	if !ch.NextRefreshAt.IsZero() {
		t := ch.NextRefreshAt.UTC()
		p.NextRefreshAt = &t
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode change notification: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify(`+channelExpr+`, $1)`, string(b)); err != nil {
		return fmt.Errorf("send change notification: %w", err)
	}
	return nil
}

// decodeChange parses a notification payload. A payload it cannot read
// becomes a resync: something it does not understand changed.
func decodeChange(payload string) (tokenkeeper.Change, error) {
	var p changePayload
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		return tokenkeeper.Change{Kind: tokenkeeper.ChangeResync}, fmt.Errorf("decode change notification: %w", err)
	}
	switch p.Kind {
	case tokenkeeper.ChangeCreated, tokenkeeper.ChangeUpdated, tokenkeeper.ChangeDeleted, tokenkeeper.ChangeRefresh:
	default:
		return tokenkeeper.Change{Kind: tokenkeeper.ChangeResync}, fmt.Errorf("decode change notification: unknown kind %.40q", p.Kind)
	}
	if p.ID == "" || p.Name == "" {
		return tokenkeeper.Change{Kind: tokenkeeper.ChangeResync}, errors.New("decode change notification: no credential named")
	}
	ch := tokenkeeper.Change{Kind: p.Kind, CredentialID: p.ID, CredentialName: p.Name, Version: p.Version}
	if p.NextRefreshAt != nil {
		ch.NextRefreshAt = p.NextRefreshAt.UTC()
	}
	return ch, nil
}

// Subscribe calls f for every change committed to the credentials of this
// schema, by this process or any other, until ctx ends or the DB is closed;
// it then returns nil. f is first called with a ChangeResync once the
// subscription listens, and again after each reconnection. See
// tokenkeeper.ChangeNotifier for the delivery semantics. Returns EINVALID for
// a nil f or a closed DB.
func (db *DB) Subscribe(ctx context.Context, f func(tokenkeeper.Change)) error {
	if f == nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "a change handler is required")
	}
	select {
	case <-db.closed:
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "the database is closed")
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-db.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	log := db.log.With("component", "change-notifications")
	cfg := db.pool.Config().ConnConfig // a copy: the listener's own connection settings
	failures := 0
	var downSince time.Time
	for {
		conn, err := db.listenOn(ctx, cfg)
		if err == nil {
			if failures > 0 {
				log.Info("listening for changes again", "down_for", time.Since(downSince).Round(time.Millisecond).String())
			} else {
				log.Debug("listening for changes")
			}
			failures = 0
			f(tokenkeeper.Change{Kind: tokenkeeper.ChangeResync})
			err = db.receive(ctx, conn, f, log)
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = conn.Close(cctx)
			ccancel()
		}
		if ctx.Err() != nil {
			return nil
		}
		failures++
		if failures == 1 {
			downSince = time.Now()
			log.Warn("change notifications interrupted; reconnecting (other replicas' changes are picked up by polling meanwhile)", "err", err)
		} else {
			log.Debug("reconnect for change notifications", "err", err, "attempt", failures)
		}
		wait := db.listen.backoffMin << min(failures-1, 20)
		wait = min(wait, db.listen.backoffMax)
		wait = wait/2 + time.Duration(mrand.Int64N(int64(wait/2)+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// listenOn opens a connection with cfg and starts listening on the schema's
// channel, within the listen timeout.
func (db *DB) listenOn(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, db.listen.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, sqlstore.Err(dialect, "connect for change notifications", err)
	}
	var channel string
	err = conn.QueryRow(ctx, `SELECT `+channelExpr).Scan(&channel)
	if err == nil {
		_, err = conn.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize())
	}
	if err != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = conn.Close(cctx)
		ccancel()
		return nil, sqlstore.Err(dialect, "listen for change notifications", err)
	}
	if db.listen.listening != nil {
		db.listen.listening(conn.PgConn().PID())
	}
	return conn, nil
}

// receive delivers the notifications of conn to f until ctx ends or the
// connection fails. A connection silent for listen.check is checked with a
// round trip, so that one that stopped answering is noticed and replaced.
func (db *DB) receive(ctx context.Context, conn *pgx.Conn, f func(tokenkeeper.Change), log *slog.Logger) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, db.listen.check)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			ch, derr := decodeChange(n.Payload)
			if derr != nil {
				log.Warn("unreadable change notification; reloading everything", "err", derr)
			}
			f(ch)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return sqlstore.Err(dialect, "wait for change notifications", err)
		}
		pctx, cancel := context.WithTimeout(ctx, db.listen.timeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return sqlstore.Err(dialect, "check the listening connection", err)
		}
	}
}
