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
		class, keep := `kind = 'refresh'`, s.retention.RefreshCount
		if e.Kind != tokenkeeper.EventRefresh {
			class, keep = `kind <> 'refresh'`, s.retention.OperatorCount
		}
		_, err = tx.Exec(ctx, `DELETE FROM events WHERE id IN (
				SELECT id FROM events WHERE credential_id = $1 AND `+class+`
				ORDER BY time DESC, id DESC LIMIT `+s.d.LimitAll+` OFFSET $2)`,
			e.CredentialID, keep)
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
// newest events of each credential are kept, refresh events and operator
// events each to their own count (see EventRetention).
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

// EventRetention returns the retention limits the store applies.
func (s *Store) EventRetention() EventRetention { return s.retention }

// PruneEvents deletes at most limit events older than the retention's age
// limits at now, refresh attempts first (oldest first), then operator
// events, and returns how many it deleted. Each class is one short
// transaction; the events_kind_time index makes finding them cheap, so a
// caller that loops until fewer than limit come back holds up the
// refreshes' commits (SQLite has one writer) for milliseconds at a time.
// Returns EINVALID (limit not from 1 to MaxPruneBatch, now out of range).
func (s *Store) PruneEvents(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit < 1 || limit > MaxPruneBatch {
		return 0, tokenkeeper.Errorf(tokenkeeper.EINVALID, "prune limit must be from 1 to %d", MaxPruneBatch)
	}
	if err := CheckRequiredTime("now", now); err != nil {
		return 0, err
	}
	now = utc(now)
	total := 0
	for _, class := range []struct {
		cond   string
		before time.Time
	}{
		{`kind = 'refresh'`, now.Add(-s.retention.RefreshMaxAge)},
		{`kind <> 'refresh'`, now.Add(-s.retention.OperatorMaxAge)},
	} {
		if total >= limit {
			break
		}
		var n int64
		err := s.write(ctx, "prune events", func(tx Querier) error {
			var err error
			n, err = tx.Exec(ctx, `DELETE FROM events WHERE id IN (
					SELECT id FROM events WHERE `+class.cond+` AND time < $1 ORDER BY time, id LIMIT $2)`,
				class.before, limit-total)
			return err
		})
		total += int(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
