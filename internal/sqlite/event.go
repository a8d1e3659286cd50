package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/storecheck"
)

// insertEvent inserts e (its Time defaulting to now), assigns e.ID and
// prunes the credential's events beyond the retention limit.
func (db *DB) insertEvent(ctx context.Context, tx *sql.Tx, e *tokenkeeper.Event, now time.Time) (int64, error) {
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if e.CredentialID == "" && e.CredentialName != "" {
		err := tx.QueryRowContext(ctx, `SELECT id FROM credentials WHERE name = ?`, e.CredentialName).Scan(&e.CredentialID)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
	}
	err := tx.QueryRowContext(ctx, `INSERT INTO events
			(credential_id, credential_name, time, kind, outcome, error_code, message, latency, actor)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.CredentialID, e.CredentialName, fmtTime(e.Time), e.Kind, e.Outcome, e.ErrorCode, e.Message,
		int64(e.Latency), e.Actor).Scan(&e.ID)
	if err != nil {
		return 0, err
	}
	if e.CredentialID != "" {
		_, err = tx.ExecContext(ctx, `DELETE FROM events WHERE id IN (
				SELECT id FROM events WHERE credential_id = ?
				ORDER BY time DESC, id DESC LIMIT -1 OFFSET ?)`,
			e.CredentialID, db.eventRetention)
		if err != nil {
			return 0, err
		}
	}
	return e.ID, nil
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
	n := *e
	err := db.write(ctx, "add event", func(tx *sql.Tx) error {
		n = *e
		_, err := db.insertEvent(ctx, tx, &n, now)
		return err
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
	err := db.reader.QueryRowContext(ctx, `SELECT id FROM credentials WHERE name = ?`, credentialName).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(credentialName)
	} else if err != nil {
		return nil, storeErr("list events", err)
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT id, credential_id, credential_name, time, kind, outcome,
			error_code, message, latency, actor
		FROM events WHERE credential_id = ? ORDER BY time DESC, id DESC LIMIT ?`, id, limit)
	if err != nil {
		return nil, storeErr("list events", err)
	}
	defer rows.Close()
	var out []*tokenkeeper.Event
	for rows.Next() {
		var e tokenkeeper.Event
		var t string
		var latency int64
		if err := rows.Scan(&e.ID, &e.CredentialID, &e.CredentialName, &t, &e.Kind, &e.Outcome,
			&e.ErrorCode, &e.Message, &latency, &e.Actor); err != nil {
			return nil, storeErr("list events", err)
		}
		if e.Time, err = parseTime(sql.NullString{String: t, Valid: true}); err != nil {
			return nil, err
		}
		e.Latency = time.Duration(latency)
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list events", err)
	}
	return out, nil
}
