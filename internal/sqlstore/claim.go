package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Claims, commits and the schedule of refreshes: the part of the store the
// refresher drives.

func checkLease(owner string, lease time.Duration) error {
	if owner == "" {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "lease owner is required")
	}
	if lease <= 0 {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "lease must be positive")
	}
	return nil
}

// ClaimDue atomically leases up to limit credentials whose NextRefreshAt is
// at or before now, whose status is active or error and whose lease is free
// or expired, earliest first. Concurrent claimers, in any process or
// replica, claim disjoint sets (see Dialect.ClaimDue). Each claim
// increments the version; the returned credentials carry the version to
// commit with. A claimed row whose secrets cannot be opened is logged and
// left out (its lease expires).
func (s *Store) ClaimDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]*tokenkeeper.Credential, error) {
	if err := checkLease(owner, lease); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "limit must be positive")
	}
	now = utc(now)
	var raws []*rawCredential
	err := s.write(ctx, "claim due credentials", func(tx Querier) error {
		var err error
		raws, err = scanCredentials(ctx, tx, s.d.ClaimDue, owner, now.Add(lease), now, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*tokenkeeper.Credential, 0, len(raws))
	cache := providers{}
	for _, r := range raws {
		c, err := s.decodeWith(ctx, s.conn, r, cache)
		if err != nil {
			s.log.Error("claimed a credential whose secrets do not open; skipping it until its lease expires",
				"credential", r.name, "id", r.id, "err", err)
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NextRefreshAt.Equal(out[j].NextRefreshAt) {
			return out[i].NextRefreshAt.Before(out[j].NextRefreshAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// ClaimCredential leases one credential regardless of its schedule and
// status (a forced refresh). The owner that already holds the lease may
// claim again. Returns ENOTFOUND, or ECONFLICT when another owner holds an
// unexpired lease.
func (s *Store) ClaimCredential(ctx context.Context, id, owner string, now time.Time, lease time.Duration) (*tokenkeeper.Credential, error) {
	if err := checkLease(owner, lease); err != nil {
		return nil, err
	}
	now = utc(now)
	var raw *rawCredential
	err := s.write(ctx, "claim credential", func(tx Querier) error {
		var err error
		raw, err = scanCredential(tx.QueryRow(ctx, `UPDATE credentials
			SET lease_owner = $1, lease_expires_at = $2, version = version + 1
			WHERE id = $3 AND (lease_owner = '' OR lease_owner = $1 OR lease_expires_at <= $4)
			RETURNING `+CredentialColumns,
			owner, now.Add(lease), id, now))
		if errors.Is(err, sql.ErrNoRows) {
			return leaseConflict(ctx, tx, id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.decode(ctx, s.conn, raw)
}

// leaseConflict explains why a conditional update by id matched nothing.
func leaseConflict(ctx context.Context, tx Querier, id string) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM credentials WHERE id = $1`, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "credential with id %q not found", id)
	}
	return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %s is leased by another worker or has changed since it was claimed", id)
}

// CompleteRefresh commits r and releases the lease if the credential's
// version still equals version and owner still holds the lease; r.Event is
// recorded in the same transaction. A nil r.Token keeps the current access
// token; an empty r.RefreshToken keeps the current refresh token; zero
// LastRefreshAt or NextRefreshAt keep the stored values. A disabled
// credential stays disabled: an operator's switch-off is never undone by a
// refresh that was in flight (its token is still kept, since a rotated
// refresh token may be the only valid one). When the version moved but
// owner still holds the lease (an operator's edit), r is committed on top
// of the new version if r.Claimed's grant is unchanged, and otherwise the
// lease is released (see completeOne). Returns ECONFLICT when fenced out
// (nothing of r is written), ENOTFOUND or EINVALID.
func (s *Store) CompleteRefresh(ctx context.Context, id, owner string, version int64, r *tokenkeeper.RefreshResult) (*tokenkeeper.Credential, error) {
	creds, errs := s.CompleteRefreshes(ctx, []tokenkeeper.RefreshCommit{{ID: id, Owner: owner, Version: version, Result: r}})
	return creds[0], errs[0]
}

// sealedResult is a refresh result ready to write: checked and sealed.
type sealedResult struct {
	setToken                  bool
	accessToken, refreshToken []byte
	tokenType                 string
	expiresAt                 any
}

// prepareResult checks c's result and seals its secrets.
func (s *Store) prepareResult(c *tokenkeeper.RefreshCommit) (*sealedResult, error) {
	r := c.Result
	if r == nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "refresh result is required")
	}
	if c.Owner == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "lease owner is required")
	}
	if !r.Status.Valid() {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid status %q", string(r.Status))
	}
	if r.Event != nil {
		if err := checkEvent(r.Event); err != nil {
			return nil, err
		}
	}
	if err := checkState(&tokenkeeper.Credential{Token: r.Token, FailureCount: r.FailureCount,
		NextRefreshAt: r.NextRefreshAt, LastRefreshAt: r.LastRefreshAt}); err != nil {
		return nil, err
	}
	var sr sealedResult
	var err error
	if r.Token != nil {
		sr.setToken = true
		if sr.accessToken, err = sealValue(s.ring, r.Token.AccessToken, "credentials", c.ID, "access_token"); err != nil {
			return nil, err
		}
		sr.tokenType, sr.expiresAt = r.Token.TokenType, nullTime(r.Token.ExpiresAt)
	}
	if sr.refreshToken, err = sealValue(s.ring, r.RefreshToken, "credentials", c.ID, "refresh_token"); err != nil {
		return nil, err
	}
	return &sr, nil
}

// CompleteRefreshes commits a batch of refresh results in one transaction
// (tokenkeeper.RefreshBatchCommitter): each as CompleteRefresh commits one,
// fenced and checked on its own. An item that is invalid, fenced out
// (ECONFLICT) or gone (ENOTFOUND) gets its error and writes nothing; the
// others are committed. A failure of the transaction itself is every
// item's error.
func (s *Store) CompleteRefreshes(ctx context.Context, batch []tokenkeeper.RefreshCommit) ([]*tokenkeeper.Credential, []error) {
	creds := make([]*tokenkeeper.Credential, len(batch))
	errs := make([]error, len(batch))
	sealed := make([]*sealedResult, len(batch))
	pending := 0
	for i := range batch {
		if sealed[i], errs[i] = s.prepareResult(&batch[i]); errs[i] == nil {
			pending++
		}
	}
	if pending == 0 {
		return creds, errs
	}
	now := s.now()
	raws := make([]*rawCredential, len(batch))
	itemErrs := make([]error, len(batch))
	// Rows are locked in id order, so that two batches (replicas) never
	// wait for each other in a cycle.
	order := make([]int, len(batch))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return batch[order[a]].ID < batch[order[b]].ID })
	err := s.write(ctx, "complete refresh", func(tx Querier) error {
		// The transaction may be retried: start over each time.
		clear(raws)
		clear(itemErrs)
		for _, i := range order {
			if sealed[i] == nil {
				continue
			}
			raw, fenced, err := s.completeOne(ctx, tx, &batch[i], sealed[i], now)
			if err != nil {
				return err
			}
			raws[i], itemErrs[i] = raw, fenced
		}
		return nil
	})
	cache := providers{} // a batch's credentials mostly share their provider
	for i := range batch {
		switch {
		case sealed[i] == nil:
		case err != nil:
			errs[i] = err
		case itemErrs[i] != nil:
			errs[i] = s.err("complete refresh", itemErrs[i])
		default:
			creds[i], errs[i] = s.decodeWith(ctx, s.conn, raws[i], cache)
		}
	}
	return creds, errs
}

// completeOne writes one prepared result in tx. fenced is the item's own
// failure (ECONFLICT, ENOTFOUND), which leaves tx usable; err fails tx.
//
// A commit whose version is no longer current while c.Owner still holds
// the lease was overtaken by an operator's edit (UpdateCredential,
// UpdateProvider), not by another worker: a claim by another worker needs
// the lease first. Such an edit is resolved here, in the commit's
// transaction, so that the single and the batched commit paths and every
// dialect behave alike:
//   - the grant is still the claimed one (c.Result.Claimed, see
//     sameGrant): the result is committed on top of the new version, and a
//     rotated refresh token is kept;
//   - otherwise the result is discarded (ECONFLICT) and the lease released
//     at once, so that the next claim (forced or scheduled) starts from the
//     operator's state without waiting for the lease to expire.
//
// Both need c.Result.Claimed: without it the commit is refused as before
// and the lease left to expire. Lease owners must then be unique per
// claim (the refresher's are), since a holder that claimed again under
// the same owner also moves the version.
func (s *Store) completeOne(ctx context.Context, tx Querier, c *tokenkeeper.RefreshCommit, sr *sealedResult, now time.Time) (raw *rawCredential, fenced, err error) {
	r := c.Result
	// The status and failure count the commit replaces (for the status
	// assignment below and the webhooks): at the claimed version, those
	// the claim returned; the update below matches that version or
	// nothing, and then they are read again.
	var prevStatus string
	var prevFailures int
	fromClaim := r.Claimed != nil && r.Claimed.ID == c.ID && r.Claimed.Version == c.Version
	if fromClaim {
		prevStatus, prevFailures = string(r.Claimed.Status), r.Claimed.FailureCount
	} else if prevStatus, prevFailures, err = s.webhookPrev(ctx, tx, c.ID); err != nil {
		return nil, nil, err
	}
	update := func(version int64) (*rawCredential, error) {
		// A refresh that leaves the status as it was assigns neither
		// status nor updated_at (tokenkeeper.Credential.UpdatedAt is the
		// last change of settings or status; a refresh's time is
		// LastRefreshAt). SQLite rewrites every index on an assigned
		// column, even to the same value: the console's indexes on
		// (status, name), updated_at and (status, updated_at) took a third
		// of the bytes written per refresh (56 KB against 36 KB in bench
		// refresh with 30,000 credentials).
		statusSet := ""
		if prevStatus != string(tokenkeeper.StatusDisabled) && prevStatus != string(r.Status) {
			statusSet = "status = $14, updated_at = $15, "
		}
		args := []any{sr.setToken, sr.accessToken, sr.tokenType, sr.expiresAt,
			sr.refreshToken, r.FailureCount, r.LastError, r.LastErrorCode,
			nullTime(r.LastRefreshAt), nullTime(r.NextRefreshAt),
			c.ID, version, c.Owner}
		if statusSet != "" {
			args = append(args, string(r.Status), now)
		}
		return scanCredential(tx.QueryRow(ctx, `UPDATE credentials SET `+statusSet+`
			access_token = CASE WHEN $1::boolean THEN $2::bytea ELSE access_token END,
			token_type = CASE WHEN $1::boolean THEN $3::text ELSE token_type END,
			expires_at = CASE WHEN $1::boolean THEN $4::timestamptz ELSE expires_at END,
			refresh_token = COALESCE($5::bytea, refresh_token),
			failure_count = $6, last_error = $7, last_error_code = $8,
			last_refresh_at = COALESCE($9::timestamptz, last_refresh_at),
			next_refresh_at = COALESCE($10::timestamptz, next_refresh_at),
			version = version + 1, lease_owner = '', lease_expires_at = NULL
		WHERE id = $11 AND version = $12 AND lease_owner = $13
		RETURNING `+CredentialColumns, args...))
	}
	raw, err = update(c.Version)
	if errors.Is(err, sql.ErrNoRows) {
		if fromClaim { // the row moved on since the claim
			if prevStatus, prevFailures, err = s.webhookPrev(ctx, tx, c.ID); err != nil {
				return nil, nil, err
			}
		}
		raw, fenced, err = s.overtaken(ctx, tx, c, update)
		if raw == nil {
			return nil, fenced, err
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if r.Event != nil {
		e := *r.Event
		e.CredentialID, e.CredentialName = raw.id, raw.name
		if err := s.insertEvent(ctx, tx, &e, now); err != nil {
			return nil, nil, err
		}
	}
	if err := s.webhookOnChange(ctx, tx, prevStatus, prevFailures, raw); err != nil {
		return nil, nil, err
	}
	return raw, nil, s.notify(ctx, tx, rawChange(tokenkeeper.ChangeRefresh, raw))
}

// overtaken resolves a commit of c that matched no row (see completeOne):
// it returns the row committed by update at the current version, or the
// item's failure (ECONFLICT, ENOTFOUND), or an error that fails tx.
func (s *Store) overtaken(ctx context.Context, tx Querier, c *tokenkeeper.RefreshCommit, update func(version int64) (*rawCredential, error)) (raw *rawCredential, fenced, err error) {
	// Lock the row, so that the retry below commits on the version read.
	cur, err := scanCredential(tx.QueryRow(ctx, `SELECT `+CredentialColumns+` FROM credentials WHERE id = $1`+s.d.ForUpdate, c.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "credential with id %q not found", c.ID), nil
	}
	if err != nil {
		return nil, nil, err
	}
	conflict := tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %s is leased by another worker or has changed since it was claimed", c.ID)
	claimed := c.Result.Claimed
	if claimed == nil || cur.leaseOwner != c.Owner || cur.version == c.Version {
		// A caller that does not say what it claimed keeps the plain
		// fence. Another worker's lease (ours expired and it claimed
		// again), or none: their state wins and the lease is not ours to
		// release.
		return nil, conflict, nil
	}
	if s.sameGrant(ctx, tx, cur, claimed) {
		raw, err = update(cur.version)
		if errors.Is(err, sql.ErrNoRows) { // cannot happen under the row lock
			return nil, conflict, nil
		}
		return raw, nil, err
	}
	// Released without moving the version: the version fences commits of
	// a claim that still holds the lease, and this claim no longer does
	// (lease_owner = '' refuses its commit whatever the version); the next
	// claim moves the version itself. The notification wakes the loops
	// (this replica's and the others') planned for the lease's expiry.
	cur, err = scanCredential(tx.QueryRow(ctx, `UPDATE credentials SET lease_owner = '', lease_expires_at = NULL
		WHERE id = $1 AND lease_owner = $2 RETURNING `+CredentialColumns, c.ID, c.Owner))
	if err != nil {
		return nil, nil, err
	}
	s.log.Info("refresh result discarded: the credential's grant was changed while it was refreshed; lease released",
		"credential", cur.name, "id", cur.id)
	return nil, conflict, s.notify(ctx, tx, rawChange(tokenkeeper.ChangeUpdated, cur))
}

// sameGrant reports whether the credential row cur still has the grant
// and status of claimed: the same provider and provider settings, grant
// type, refresh token, scopes, params and status. Then an edit that moved
// the version in between (an access token set by hand, a provider edit
// that was undone) changed nothing the attempt used or that its result
// would overwrite against the operator's intent. A row whose secrets do
// not open is not the same.
func (s *Store) sameGrant(ctx context.Context, tx Querier, cur *rawCredential, claimed *tokenkeeper.Credential) bool {
	if claimed.ID != cur.id {
		return false
	}
	n, err := s.decode(ctx, tx, cur)
	if err != nil {
		return false
	}
	return n.ProviderID == claimed.ProviderID && n.TokenURL == claimed.TokenURL && n.ClientID == claimed.ClientID &&
		n.ClientSecret == claimed.ClientSecret && n.AuthStyle == claimed.AuthStyle && n.GrantType == claimed.GrantType &&
		n.RefreshToken == claimed.RefreshToken && slices.Equal(n.Scopes, claimed.Scopes) &&
		maps.Equal(n.Params, claimed.Params) && n.Status == claimed.Status
}

// NextRefreshAt returns the earliest time at which a refreshable credential
// becomes claimable: its NextRefreshAt, or the end of its lease if that is
// later. ok is false when no credential is refreshable.
func (s *Store) NextRefreshAt(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	// Both parts read an index, never the whole table: the soonest unleased
	// credential in next_refresh_at order, and the leased ones through the
	// partial index credentials_leased (WHERE lease_owner <> '').
	ix := func(string) string { return "" }
	if s.d.IndexedBy != nil {
		ix = s.d.IndexedBy
	}
	err := s.conn.QueryRow(ctx, `SELECT MIN(t) FROM (
			SELECT next_refresh_at AS t FROM (SELECT next_refresh_at FROM credentials`+ix("credentials_next_refresh_at")+`
				WHERE status IN ('active', 'error') AND lease_owner = ''
				ORDER BY next_refresh_at LIMIT 1) AS soonest
			UNION ALL
			SELECT CASE WHEN lease_expires_at > next_refresh_at THEN lease_expires_at ELSE next_refresh_at END FROM credentials`+ix("credentials_leased")+`
			WHERE lease_owner <> '' AND status IN ('active', 'error')
		) AS candidates`).Scan(&t)
	if err != nil {
		return time.Time{}, false, s.err("find next refresh", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return t.UTC(), true, nil
}

// rawChange returns the change notification of a credential row.
func rawChange(kind string, r *rawCredential) tokenkeeper.Change {
	return tokenkeeper.Change{Kind: kind, CredentialID: r.id, CredentialName: r.name, Version: r.version, NextRefreshAt: r.nextRefreshAt}
}
