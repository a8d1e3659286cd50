package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.ConsoleStore = (*Store)(nil)

// summaryColumns is the column list of a CredentialSummary, in the order
// scanSummary reads: nothing sealed.
const summaryColumns = `c.name, p.name, c.end_user_id, c.end_user_name, c.end_user_email, c.status,
	c.failure_count, c.last_error_code, c.access_token IS NOT NULL, c.expires_at, c.last_refresh_at,
	c.next_refresh_at, c.updated_at`

const summaryFrom = ` FROM credentials c JOIN providers p ON p.id = c.provider_id`

func scanSummary(r Rows) (*tokenkeeper.CredentialSummary, error) {
	var c tokenkeeper.CredentialSummary
	var status string
	var expiresAt, lastRefreshAt *time.Time
	if err := r.Scan(&c.Name, &c.Provider, &c.EndUserID, &c.EndUserName, &c.EndUserEmail, &status,
		&c.FailureCount, &c.LastErrorCode, &c.HasToken, &expiresAt, &lastRefreshAt,
		&c.NextRefreshAt, &c.UpdatedAt); err != nil {
		return nil, err
	}
	c.Status = tokenkeeper.Status(status)
	c.ExpiresAt, c.LastRefreshAt = fromNull(expiresAt), fromNull(lastRefreshAt)
	c.NextRefreshAt, c.UpdatedAt = c.NextRefreshAt.UTC(), c.UpdatedAt.UTC()
	return &c, nil
}

// summaryWhere returns the conditions of f on the aliased tables, with
// their arguments numbered from $1.
func summaryWhere(f tokenkeeper.CredentialFilter) ([]string, []any, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid status %q", clip(string(f.Status), 40))
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Provider != "" {
		add("p.name = $%d", f.Provider)
	}
	if f.Status != "" {
		add("c.status = $%d", string(f.Status))
	}
	if f.EndUserID != "" {
		add("c.end_user_id = $%d", f.EndUserID)
	}
	return where, args, nil
}

// CredentialSummaries returns a page of the credentials f selects, ordered
// by name, after the name after. Returns EINVALID.
func (s *Store) CredentialSummaries(ctx context.Context, f tokenkeeper.CredentialFilter, after string, limit int) ([]*tokenkeeper.CredentialSummary, error) {
	if limit < 1 || limit > 1000 {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be from 1 to 1000")
	}
	where, args, err := summaryWhere(f)
	if err != nil {
		return nil, err
	}
	if after != "" {
		args = append(args, after)
		where = append(where, fmt.Sprintf(`c.name COLLATE "C" > $%d`, len(args)))
	}
	q := `SELECT ` + summaryColumns + summaryFrom
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY c.name COLLATE "C" LIMIT $%d`, len(args))
	out, err := collect(ctx, s.conn, q, args, scanSummary)
	return out, s.err("list credential summaries", err)
}

// CountCredentials counts the credentials f selects. Returns EINVALID.
func (s *Store) CountCredentials(ctx context.Context, f tokenkeeper.CredentialFilter) (int, error) {
	where, args, err := summaryWhere(f)
	if err != nil {
		return 0, err
	}
	q := `SELECT COUNT(*)` + summaryFrom
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	var n int
	err = s.conn.QueryRow(ctx, q, args...).Scan(&n)
	return n, s.err("count credentials", err)
}

// Overview counts credentials by status, lists the failing and the
// soonest-expiring ones (up to limit each) and counts the refresh attempts
// since since. Returns EINVALID.
func (s *Store) Overview(ctx context.Context, since time.Time, limit int) (*tokenkeeper.Overview, error) {
	if limit < 1 || limit > 100 {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be from 1 to 100")
	}
	if err := Time("since", since); err != nil {
		return nil, err
	}
	o := &tokenkeeper.Overview{ByStatus: map[tokenkeeper.Status]int{}}
	type count struct {
		status string
		n      int
	}
	counts, err := collect(ctx, s.conn, `SELECT status, COUNT(*) FROM credentials GROUP BY status`, nil, func(r Rows) (count, error) {
		var c count
		return c, r.Scan(&c.status, &c.n)
	})
	if err != nil {
		return nil, s.err("overview", err)
	}
	for _, c := range counts {
		o.ByStatus[tokenkeeper.Status(c.status)] = c.n
		o.Total += c.n
	}
	// Needs re-authorization first, then temporary errors; each the most
	// recently changed first, through the (status, updated_at) index.
	for _, st := range []string{"needs_reauth", "error"} {
		if len(o.Failing) >= limit {
			break
		}
		rows, err := collect(ctx, s.conn, `SELECT `+summaryColumns+summaryFrom+`
			WHERE c.status = $1 ORDER BY c.updated_at DESC LIMIT $2`, []any{st, limit - len(o.Failing)}, scanSummary)
		if err != nil {
			return nil, s.err("overview", err)
		}
		o.Failing = append(o.Failing, rows...)
	}
	o.Expiring, err = collect(ctx, s.conn, `SELECT `+summaryColumns+summaryFrom+`
		WHERE c.expires_at IS NOT NULL AND c.access_token IS NOT NULL AND c.status <> 'disabled'
		ORDER BY c.expires_at, c.name COLLATE "C" LIMIT $1`, []any{limit}, scanSummary)
	if err != nil {
		return nil, s.err("overview", err)
	}
	var failures *int64
	err = s.conn.QueryRow(ctx, `SELECT COUNT(*), SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END)
		FROM events WHERE kind = 'refresh' AND time >= $1`, utc(since)).Scan(&o.Refreshes, &failures)
	if err != nil {
		return nil, s.err("overview", err)
	}
	if failures != nil {
		o.RefreshFailures = int(*failures)
	}
	return o, nil
}

// ChangeCursor returns the newest event's id, the number of credentials
// and the latest change time of any credential, joined: every commit of a
// refresh records an event, every operator change moves updated_at, and a
// deletion changes the count.
func (s *Store) ChangeCursor(ctx context.Context) (string, error) {
	var maxEvent, n int64
	var updated *time.Time
	err := s.conn.QueryRow(ctx, `SELECT (SELECT COALESCE(MAX(id), 0) FROM events),
		(SELECT COUNT(*) FROM credentials), (SELECT MAX(updated_at) FROM credentials)`).Scan(&maxEvent, &n, &updated)
	if err != nil {
		return "", s.err("change cursor", err)
	}
	return fmt.Sprintf("%d.%d.%d", maxEvent, n, fromNull(updated).UnixMicro()), nil
}
