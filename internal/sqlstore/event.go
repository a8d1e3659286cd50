package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// insertEvent inserts e (its Time defaulting to now), assigns e.ID and
// prunes the credential's events of the same class (refresh or operator)
// beyond the retention limit.
func (s *Store) insertEvent(ctx context.Context, tx Querier, e *tokenkeeper.Event, now time.Time) error {
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = utc(e.Time)
	if e.CredentialID == "" && e.CredentialName != "" {
		err := tx.QueryRow(ctx, `SELECT id FROM credentials WHERE name = $1`, e.CredentialName).Scan(&e.CredentialID)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
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
		// Refresh events and operator events are trimmed apart: no volume
		// of refreshes pushes an operator event out.
		class := `kind = 'refresh'`
		if e.Kind != tokenkeeper.EventRefresh {
			class = `kind <> 'refresh'`
		}
		_, err = tx.Exec(ctx, `DELETE FROM events WHERE id IN (
				SELECT id FROM events WHERE credential_id = $1 AND `+class+`
				ORDER BY time DESC, id DESC LIMIT `+s.d.LimitAll+` OFFSET $2)`,
			e.CredentialID, s.eventRetention)
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
	return Time("event time", e.Time)
}

// AddEvent records an event, assigning its ID and, if zero, its Time. An
// event naming a credential by name only gets that credential's id. The
// newest events of each credential are kept (see WithEventRetention), as
// many refresh events and as many operator events.
func (s *Store) AddEvent(ctx context.Context, e *tokenkeeper.Event) error {
	if err := checkEvent(e); err != nil {
		return err
	}
	now := s.now()
	var n tokenkeeper.Event
	err := s.write(ctx, "add event", func(tx Querier) error {
		n = *e
		return s.insertEvent(ctx, tx, &n, now)
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
func (s *Store) Events(ctx context.Context, credentialName string, limit int) ([]*tokenkeeper.Event, error) {
	return s.EventsOfClass(ctx, credentialName, "", limit)
}

// EventsOfClass returns up to limit events of the named credential of one
// class, newest first: tokenkeeper.EventClassRefresh (kind refresh),
// tokenkeeper.EventClassOperator (every other kind) or "" (all). Returns
// ENOTFOUND if the credential does not exist, EINVALID for a bad class or a
// limit that is not positive.
func (s *Store) EventsOfClass(ctx context.Context, credentialName, class string, limit int) ([]*tokenkeeper.Event, error) {
	if limit <= 0 {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be positive")
	}
	var cond string
	switch class {
	case "":
	case tokenkeeper.EventClassRefresh:
		cond = ` AND kind = 'refresh'`
	case tokenkeeper.EventClassOperator:
		cond = ` AND kind <> 'refresh'`
	default:
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "event class must be %q or %q", tokenkeeper.EventClassRefresh, tokenkeeper.EventClassOperator)
	}
	var id string
	err := s.conn.QueryRow(ctx, `SELECT id FROM credentials WHERE name = $1`, credentialName).Scan(&id)
	if err != nil {
		return nil, s.err("list events", orNotFound(err, notFound(credentialName)))
	}
	out, err := collect(ctx, s.conn, `SELECT id, credential_id, credential_name, time, kind, outcome,
			error_code, message, latency, actor
		FROM events WHERE credential_id = $1`+cond+` ORDER BY time DESC, id DESC LIMIT $2`, []any{id, limit}, func(r Rows) (*tokenkeeper.Event, error) {
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
	return out, s.err("list events", err)
}
