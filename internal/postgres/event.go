package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/storecheck"
)

// insertEvent inserts e (its Time defaulting to now), assigns e.ID and
// prunes the credential's events beyond the retention limit.
func (db *DB) insertEvent(ctx context.Context, tx pgx.Tx, e *tokenkeeper.Event, now time.Time) error {
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = utc(e.Time)
	if e.CredentialID == "" && e.CredentialName != "" {
		err := tx.QueryRow(ctx, `SELECT id FROM credentials WHERE name = $1`, e.CredentialName).Scan(&e.CredentialID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	err := tx.QueryRow(ctx, `INSERT INTO events
			(credential_id, credential_name, time, kind, outcome, error_code, message, latency, actor)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		e.CredentialID, e.CredentialName, e.Time, e.Kind, e.Outcome, e.ErrorCode, e.Message,
		int64(e.Latency), e.Actor).Scan(&e.ID)
	if err != nil {
		return err
	}
	if e.CredentialID != "" {
		_, err = tx.Exec(ctx, `DELETE FROM events WHERE id IN (
				SELECT id FROM events WHERE credential_id = $1
				ORDER BY time DESC, id DESC OFFSET $2)`,
			e.CredentialID, db.eventRetention)
	}
	return err
}

func checkEvent(e *tokenkeeper.Event) error {
	if e == nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "event is required")
	}
	if e.Kind == "" {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "event kind is required")
	}
	return storecheck.Time("event time", e.Time)
}

// AddEvent records an event, assigning its ID and, if zero, its Time. An
// event naming a credential by name only gets that credential's id. The
// newest events of each credential are kept (see WithEventRetention).
func (db *DB) AddEvent(ctx context.Context, e *tokenkeeper.Event) error {
	if err := checkEvent(e); err != nil {
		return err
	}
	now := db.now()
	var n tokenkeeper.Event
	err := db.write(ctx, "add event", func(tx pgx.Tx) error {
		n = *e
		return db.insertEvent(ctx, tx, &n, now)
	})
	if err != nil {
		return err
	}
	*e = n
	return nil
}

// Events returns up to limit events of the named credential, newest first.
// Returns ENOTFOUND if the credential does not exist, EINVALID if limit is
// not positive.
func (db *DB) Events(ctx context.Context, credentialName string, limit int) ([]*tokenkeeper.Event, error) {
	if limit <= 0 {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be positive")
	}
	var id string
	err := db.pool.QueryRow(ctx, `SELECT id FROM credentials WHERE name = $1`, credentialName).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(credentialName)
	} else if err != nil {
		return nil, storeErr("list events", err)
	}
	rows, err := db.pool.Query(ctx, `SELECT id, credential_id, credential_name, time, kind, outcome,
			error_code, message, latency, actor
		FROM events WHERE credential_id = $1 ORDER BY time DESC, id DESC LIMIT $2`, id, limit)
	if err != nil {
		return nil, storeErr("list events", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tokenkeeper.Event, error) {
		var e tokenkeeper.Event
		var latency int64
		if err := r.Scan(&e.ID, &e.CredentialID, &e.CredentialName, &e.Time, &e.Kind, &e.Outcome,
			&e.ErrorCode, &e.Message, &latency, &e.Actor); err != nil {
			return nil, err
		}
		e.Time = e.Time.UTC()
		e.Latency = time.Duration(latency)
		return &e, nil
	})
	if err != nil {
		return nil, storeErr("list events", err)
	}
	return out, nil
}
