package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// importChunk is how many rows one INSERT statement of ImportCredentials
// carries: 13 parameters each, well under SQLite's 32,766 and PostgreSQL's
// 65,535.
const importChunk = 500

// ImportCredentials inserts credentials of the named provider in bulk, with
// their state (token, refresh token, status, LastRefreshAt and
// NextRefreshAt) as given: one transaction, multi-row INSERTs, secrets
// sealed as CreateCredential seals them. It assigns Version, CreatedAt,
// UpdatedAt and, unless given (32 lowercase hex digits, as the store makes
// them), ID. It is meant for migrations from another system
// and for benchmarks (bench scale seeds a million credentials with it): it
// records no event, sends no webhook and no change notification, so other
// processes see the new credentials at their next poll (refresh
// PollInterval). Each credential is checked as CreateCredential checks one
// of a named provider; c.Provider, TokenURL, ClientID, ClientSecret,
// AuthStyle, Params, end-user fields and lease fields are ignored. Returns
// ENOTFOUND (no such provider), EINVALID (nothing is inserted) or
// ECONFLICT (a name is taken; nothing is inserted).
func (s *Store) ImportCredentials(ctx context.Context, provider string, cs []*tokenkeeper.Credential) error {
	if err := ValidateProviderRef(provider); err != nil {
		return err
	}
	if len(cs) == 0 {
		return nil
	}
	now := s.now()
	r, err := scanProvider(s.conn.QueryRow(ctx, `SELECT `+ProviderColumns+` FROM providers WHERE name = $1`, provider))
	if err != nil {
		return s.err("import credentials", orNotFound(err, providerNotFound(provider)))
	}
	p, err := s.decodeProvider(ctx, s.conn, r)
	if err != nil {
		return s.err("import credentials", err)
	}
	rows := make([][]any, 0, len(cs))
	ids := make([]string, len(cs))
	for i, c := range cs {
		if c == nil {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "credential %d is nil", i)
		}
		n := *c
		if n.ID == "" {
			n.ID = newID()
		} else if !validID(n.ID) {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "credential %d: an id is 32 lowercase hexadecimal digits", i)
		}
		n.Version, n.CreatedAt, n.UpdatedAt = 1, now, now
		ids[i] = n.ID
		n.Provider, n.TokenURL, n.ClientID, n.ClientSecret, n.AuthStyle, n.Params = "", "", "", "", "", nil
		if n.Status == "" {
			n.Status = tokenkeeper.StatusActive
		}
		if n.NextRefreshAt.IsZero() {
			n.NextRefreshAt = now
		}
		if len(n.Scopes) == 0 {
			n.Scopes = cloneList(p.Scopes)
		}
		if err := checkState(&n); err != nil {
			return err
		}
		full := withProvider(&n, p)
		if err := full.Validate(); err != nil {
			return err
		}
		sealed, err := s.sealCredential(&n)
		if err != nil {
			return err
		}
		var tokenType string
		var expiresAt any
		if n.Token != nil {
			tokenType, expiresAt = n.Token.TokenType, nullTime(utc(n.Token.ExpiresAt))
		}
		rows = append(rows, []any{n.ID, n.Name, p.ID, string(n.GrantType), sealed.refreshToken, encodeList(n.Scopes),
			sealed.accessToken, tokenType, expiresAt, string(n.Status), nullTime(utc(n.LastRefreshAt)), utc(n.NextRefreshAt), now})
	}
	err = s.write(ctx, "import credentials", func(tx Querier) error {
		// The provider read above may have been deleted since.
		var id string
		if err := tx.QueryRow(ctx, `SELECT id FROM providers WHERE id = $1`+s.d.ForShare, p.ID).Scan(&id); err != nil {
			return orNotFound(err, providerNotFound(provider))
		}
		for start := 0; start < len(rows); start += importChunk {
			chunk := rows[start:min(start+importChunk, len(rows))]
			var q strings.Builder
			q.WriteString(`INSERT INTO credentials (id, name, provider_id, grant_type, refresh_token, scopes,
				access_token, token_type, expires_at, status, last_refresh_at, next_refresh_at, created_at,
				params, refresh_lead, failure_count, last_error, last_error_code, version, lease_owner, lease_expires_at,
				updated_at, end_user_id, end_user_name, end_user_email) VALUES `)
			args := make([]any, 0, len(chunk)*13)
			for i, r := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				b := len(args)
				fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, '{}', 0, 0, '', '', 1, '', NULL, $%d, '', '', '')",
					b+1, b+2, b+3, b+4, b+5, b+6, b+7, b+8, b+9, b+10, b+11, b+12, b+13, b+13)
				args = append(args, r...)
			}
			if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
				if s.d.IsUniqueViolation(err) {
					return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "a credential of the import already exists")
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, c := range cs {
		c.ID = ids[i]
	}
	return nil
}

// ImportEvents inserts events in bulk, in one transaction, as they are:
// each must name its credential by id and name and have a time. Unlike
// AddEvent it trims nothing; PruneEvents and later inserts apply the
// retention. Like ImportCredentials it is meant for migrations and for
// benchmarks (bench scale seeds the history that ages out during its
// window, so that it measures the database in its steady state). Returns
// EINVALID (nothing is inserted).
func (s *Store) ImportEvents(ctx context.Context, events []*tokenkeeper.Event) error {
	rows := make([][]any, 0, len(events))
	for i, e := range events {
		if err := checkEvent(e); err != nil {
			return err
		}
		if e.CredentialID == "" || e.CredentialName == "" || e.Time.IsZero() {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "event %d: a credential id, a credential name and a time are required", i)
		}
		rows = append(rows, []any{e.CredentialID, e.CredentialName, utc(e.Time), e.Kind, e.Outcome, e.ErrorCode, e.Message, int64(e.Latency), e.Actor})
	}
	return s.write(ctx, "import events", func(tx Querier) error {
		for start := 0; start < len(rows); start += importChunk {
			chunk := rows[start:min(start+importChunk, len(rows))]
			var q strings.Builder
			q.WriteString(`INSERT INTO events (credential_id, credential_name, time, kind, outcome, error_code, message, latency, actor) VALUES `)
			args := make([]any, 0, len(chunk)*9)
			for i, r := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				b := len(args)
				fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)", b+1, b+2, b+3, b+4, b+5, b+6, b+7, b+8, b+9)
				args = append(args, r...)
			}
			if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// validID reports whether id has the form of the ids newID makes.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
