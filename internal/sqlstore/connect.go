package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// ConnectColumns is the column list every connect session query selects,
// in the order scanConnectSession reads.
const ConnectColumns = `s.id, s.kind, s.provider_id, p.name, s.credential_name, s.reconnect, s.end_user_id, s.scopes,
	s.return_to, COALESCE(s.link_hash, ''), COALESCE(s.state_hash, ''), s.code_verifier, s.nonce, s.redirect_uri,
	s.device_code, s.user_code, s.verification_uri, s.verification_uri_complete, s.poll_interval, s.status,
	s.reason, s.message, s.credential_id, s.link_used_at, s.state_used_at, s.created_by, s.expires_at,
	s.created_at, s.updated_at`

const connectFrom = ` FROM connect_sessions s JOIN providers p ON p.id = s.provider_id`

type rawConnect struct {
	s                        tokenkeeper.ConnectSession
	reconnect                int
	scopes                   string
	verifier, deviceCode     []byte
	interval                 int64
	linkUsedAt, stateUsedAt  *time.Time
	expires, created, update time.Time
}

func scanConnectSession(row Row) (*rawConnect, error) {
	var r rawConnect
	c := &r.s
	err := row.Scan(&c.ID, &c.Kind, &c.ProviderID, &c.Provider, &c.CredentialName, &r.reconnect, &c.EndUserID, &r.scopes,
		&c.ReturnTo, &c.LinkHash, &c.StateHash, &r.verifier, &c.Nonce, &c.RedirectURI,
		&r.deviceCode, &c.UserCode, &c.VerificationURI, &c.VerificationURIComplete, &r.interval, &c.Status,
		&c.Reason, &c.Message, &c.CredentialID, &r.linkUsedAt, &r.stateUsedAt, &c.CreatedBy, &r.expires,
		&r.created, &r.update)
	return &r, err
}

// decodeConnect opens the sealed fields of a session row.
func (s *Store) decodeConnect(ctx context.Context, q Querier, r *rawConnect) (*tokenkeeper.ConnectSession, error) {
	c := r.s
	c.Reconnect = r.reconnect != 0
	c.Interval = time.Duration(r.interval)
	c.LinkUsedAt, c.StateUsedAt = fromNull(r.linkUsedAt), fromNull(r.stateUsedAt)
	c.ExpiresAt, c.CreatedAt, c.UpdatedAt = r.expires.UTC(), r.created.UTC(), r.update.UTC()
	if err := json.Unmarshal([]byte(r.scopes), &c.Scopes); err != nil {
		return nil, fmt.Errorf("decode scopes of connect session %s: %w", c.ID, errors.Join(errUndecodable, err))
	}
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	var err error
	if c.CodeVerifier, err = s.openSealed(ctx, q, r.verifier, "connect_sessions", c.ID, "code_verifier"); err != nil {
		return nil, err
	}
	if c.DeviceCode, err = s.openSealed(ctx, q, r.deviceCode, "connect_sessions", c.ID, "device_code"); err != nil {
		return nil, err
	}
	return &c, nil
}

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

func sessionNotFound() error {
	return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "connect session not found")
}

// CreateConnectSession implements tokenkeeper.ConnectStore.
func (s *Store) CreateConnectSession(ctx context.Context, cs *tokenkeeper.ConnectSession) error {
	if cs == nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "connect session is required")
	}
	now := s.now()
	n := *cs
	n.ID, n.Status, n.Reason, n.Message, n.CredentialID = newID(), tokenkeeper.ConnectPending, "", "", ""
	n.LinkUsedAt, n.StateUsedAt = time.Time{}, time.Time{}
	n.CreatedAt, n.UpdatedAt, n.ExpiresAt = now, now, utc(n.ExpiresAt)
	n.Scopes = cloneList(n.Scopes)
	switch n.Kind {
	case tokenkeeper.ConnectAuthorizationCode:
		if !hexDigest.MatchString(n.LinkHash) || !hexDigest.MatchString(n.StateHash) {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "a connect session needs the digests of its link and state")
		}
	case tokenkeeper.ConnectDevice:
		if n.DeviceCode == "" {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "a device session needs its device code")
		}
		n.LinkHash, n.StateHash = "", ""
	default:
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "kind must be authorization_code or device")
	}
	if err := tokenkeeper.ValidateName(n.CredentialName); err != nil {
		return err
	}
	if !n.ExpiresAt.After(now) {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "expires_at must be in the future")
	}
	if err := validateScopeList(n.Scopes); err != nil {
		return err
	}
	if len(n.EndUserID) > 256 || len(n.ReturnTo) > 2048 {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "end_user_id or return_to is too long")
	}
	verifier, err := sealValue(s.ring, n.CodeVerifier, "connect_sessions", n.ID, "code_verifier")
	if err != nil {
		return err
	}
	deviceCode, err := sealValue(s.ring, n.DeviceCode, "connect_sessions", n.ID, "device_code")
	if err != nil {
		return err
	}
	reconnect := 0
	if n.Reconnect {
		reconnect = 1
	}
	err = s.write(ctx, "create connect session", func(tx Querier) error {
		if err := tx.QueryRow(ctx, `SELECT id FROM providers WHERE name = $1`+s.d.ForShare, n.Provider).Scan(&n.ProviderID); err != nil {
			return orNotFound(err, providerNotFound(n.Provider))
		}
		var credProvider string
		err := tx.QueryRow(ctx, `SELECT provider_id FROM credentials WHERE name = $1`, n.CredentialName).Scan(&credProvider)
		switch {
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return err
		case n.Reconnect && err != nil:
			return notFound(n.CredentialName)
		case n.Reconnect && credProvider != n.ProviderID:
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "credential %q belongs to another provider than %q", n.CredentialName, n.Provider)
		case !n.Reconnect && err == nil:
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %q already exists; reconnect it instead", n.CredentialName)
		}
		_, err = tx.Exec(ctx, `INSERT INTO connect_sessions (id, kind, provider_id, credential_name, reconnect, end_user_id,
				scopes, return_to, link_hash, state_hash, code_verifier, nonce, redirect_uri, device_code, user_code,
				verification_uri, verification_uri_complete, poll_interval, status, created_by, expires_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULLIF($9, ''), NULLIF($10, ''), $11, $12, $13, $14, $15, $16, $17, $18,
				'pending', $19, $20, $21, $21)`,
			n.ID, n.Kind, n.ProviderID, n.CredentialName, reconnect, n.EndUserID, encodeList(n.Scopes), n.ReturnTo,
			n.LinkHash, n.StateHash, verifier, n.Nonce, n.RedirectURI, deviceCode, n.UserCode, n.VerificationURI,
			n.VerificationURIComplete, int64(n.Interval), n.CreatedBy, n.ExpiresAt, now)
		if s.d.IsUniqueViolation(err) {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "connect session digests collide")
		}
		if err != nil {
			return err
		}
		return s.insertConnectEvent(ctx, tx, n.ID, now, "created", tokenkeeper.ConnectPending, "", "session created by "+n.CreatedBy)
	})
	if err != nil {
		return err
	}
	*cs = n
	return nil
}

func validateScopeList(scopes []string) error {
	for _, sc := range scopes {
		if sc == "" || len(sc) > 256 || !validScope(sc) {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid scope %q", clip(sc, 80))
		}
	}
	return nil
}

// validScope reports whether sc is a scope token of RFC 6749 §3.3.
func validScope(sc string) bool {
	for i := 0; i < len(sc); i++ {
		b := sc[i]
		if b < 0x21 || b == 0x22 || b == 0x5c || b > 0x7e {
			return false
		}
	}
	return true
}

func (s *Store) insertConnectEvent(ctx context.Context, tx Querier, id string, now time.Time, kind, outcome, code, msg string) error {
	_, err := tx.Exec(ctx, `INSERT INTO connect_events (session_id, time, kind, outcome, error_code, message)
		VALUES ($1, $2, $3, $4, $5, $6)`, id, utc(now), kind, outcome, clip(code, 64), clip(msg, 512))
	return err
}

// ConnectSession implements tokenkeeper.ConnectStore.
func (s *Store) ConnectSession(ctx context.Context, id string) (*tokenkeeper.ConnectSession, error) {
	r, err := scanConnectSession(s.conn.QueryRow(ctx, `SELECT `+ConnectColumns+connectFrom+` WHERE s.id = $1`, id))
	if err != nil {
		return nil, s.err("get connect session", orNotFound(err, sessionNotFound()))
	}
	c, err := s.decodeConnect(ctx, s.conn, r)
	return c, s.err("get connect session", err)
}

// useOnce marks a session's link or state used, once, in a transaction
// that first reads the row it names by column = digest.
func (s *Store) useOnce(ctx context.Context, op, column, usedColumn, digest string, now time.Time) (*tokenkeeper.ConnectSession, error) {
	if !hexDigest.MatchString(digest) {
		return nil, s.err(op, sessionNotFound())
	}
	var out *tokenkeeper.ConnectSession
	expired := time.Time{}
	err := s.write(ctx, op, func(tx Querier) error {
		expired = time.Time{}
		r, err := scanConnectSession(tx.QueryRow(ctx, `SELECT `+ConnectColumns+connectFrom+` WHERE s.`+column+` = $1`+s.d.ForUpdate, digest))
		if err != nil {
			return orNotFound(err, sessionNotFound())
		}
		c, err := s.decodeConnect(ctx, tx, r)
		if err != nil {
			return err
		}
		used := c.LinkUsedAt
		what := "link"
		if usedColumn == "state_used_at" {
			used, what = c.StateUsedAt, "authorization response"
		}
		switch {
		case c.Status != tokenkeeper.ConnectPending:
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "this connect session has ended (%s)", c.Status)
		case !used.IsZero():
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "this %s was used already", what)
		case !now.Before(c.ExpiresAt):
			// Recorded as failed, then reported as expired.
			expired = c.ExpiresAt
			return s.failLocked(ctx, tx, c, now, "expired", "the connect session expired before it was used")
		}
		// The condition repeats the check, so that of two transactions
		// that read the row before either wrote, one changes it.
		n, err := tx.Exec(ctx, `UPDATE connect_sessions SET `+usedColumn+` = $1, updated_at = $1
			WHERE id = $2 AND `+usedColumn+` IS NULL AND status = 'pending'`, utc(now), c.ID)
		if err != nil {
			return err
		}
		if n != 1 {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "this %s was used already", what)
		}
		kind := "link_opened"
		if usedColumn == "state_used_at" {
			kind = "callback"
		}
		if err := s.insertConnectEvent(ctx, tx, c.ID, now, kind, tokenkeeper.ConnectPending, "", ""); err != nil {
			return err
		}
		if usedColumn == "link_used_at" {
			c.LinkUsedAt = utc(now)
		} else {
			c.StateUsedAt = utc(now)
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !expired.IsZero() {
		return nil, tokenkeeper.Errorf(tokenkeeper.EEXPIRED, "this connect session expired at %s", expired.Format(time.RFC3339))
	}
	return out, nil
}

// UseConnectLink implements tokenkeeper.ConnectStore.
func (s *Store) UseConnectLink(ctx context.Context, linkHash string, now time.Time) (*tokenkeeper.ConnectSession, error) {
	return s.useOnce(ctx, "use connect link", "link_hash", "link_used_at", linkHash, now)
}

// UseConnectState implements tokenkeeper.ConnectStore.
func (s *Store) UseConnectState(ctx context.Context, stateHash string, now time.Time) (*tokenkeeper.ConnectSession, error) {
	return s.useOnce(ctx, "use connect state", "state_hash", "state_used_at", stateHash, now)
}

// lockPendingSession reads session id for update in tx and checks that it
// is pending.
func (s *Store) lockPendingSession(ctx context.Context, tx Querier, id string) (*tokenkeeper.ConnectSession, error) {
	r, err := scanConnectSession(tx.QueryRow(ctx, `SELECT `+ConnectColumns+connectFrom+` WHERE s.id = $1`+s.d.ForUpdate, id))
	if err != nil {
		return nil, orNotFound(err, sessionNotFound())
	}
	c, err := s.decodeConnect(ctx, tx, r)
	if err != nil {
		return nil, err
	}
	if c.Status != tokenkeeper.ConnectPending {
		return nil, tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "this connect session has ended (%s)", c.Status)
	}
	return c, nil
}

// markConnected marks session id connected to credential credID in tx.
func (s *Store) markConnected(ctx context.Context, tx Querier, id, credID string, now time.Time) error {
	n, err := tx.Exec(ctx, `UPDATE connect_sessions SET status = 'connected', credential_id = $1, updated_at = $2,
			code_verifier = NULL, device_code = NULL
		WHERE id = $3 AND status = 'pending'`, credID, utc(now), id)
	if err != nil {
		return err
	}
	if n != 1 {
		return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "this connect session has ended")
	}
	if err := s.insertConnectEvent(ctx, tx, id, now, "connected", tokenkeeper.ConnectConnected, "", ""); err != nil {
		return err
	}
	// credential.connected webhooks, in the transaction that commits the grant.
	r, err := scanCredential(tx.QueryRow(ctx, `SELECT `+CredentialColumns+` FROM credentials WHERE id = $1`, credID))
	if err != nil {
		return err
	}
	return s.webhookConnected(ctx, tx, r)
}

// CompleteConnectSession implements tokenkeeper.ConnectStore.
func (s *Store) CompleteConnectSession(ctx context.Context, id string, g *tokenkeeper.Grant) (*tokenkeeper.Credential, error) {
	if g == nil || g.Token.AccessToken == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "a grant needs an access token")
	}
	cs, err := s.ConnectSession(ctx, id)
	if err != nil {
		return nil, err
	}
	if cs.Status != tokenkeeper.ConnectPending {
		return nil, tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "this connect session has ended (%s)", cs.Status)
	}
	now := s.now()
	tok := g.Token
	scopes := g.Scopes
	if len(scopes) == 0 {
		scopes = cs.Scopes
	}
	if g.RefreshToken == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "a grant needs a refresh token")
	}
	endUser := cs.EndUserID
	if endUser == "" {
		endUser = g.EndUserSubject
	}
	post := func(tx Querier) error {
		if _, err := s.lockPendingSession(ctx, tx, id); err != nil {
			return err
		}
		return nil
	}
	if cs.Reconnect {
		// The end user the caller named is kept unless the session names
		// one; name and email change only when the ID token gives them.
		upd := tokenkeeper.CredentialUpdate{Token: &tok, Scopes: &scopes, RefreshToken: &g.RefreshToken}
		if cs.EndUserID != "" {
			upd.EndUserID = &cs.EndUserID
		}
		if g.EndUserName != "" {
			upd.EndUserName = &g.EndUserName
		}
		if g.EndUserEmail != "" {
			upd.EndUserEmail = &g.EndUserEmail
		}
		if len(g.Extras) > 0 {
			upd.Extras = &g.Extras
		}
		active := tokenkeeper.StatusActive
		upd.Status = &active
		next := nextRefresh(now, tok.ExpiresAt)
		upd.NextRefreshAt = &next
		ev := &tokenkeeper.Event{Kind: "connected", Outcome: tokenkeeper.OutcomeOK, Message: "grant replaced by connect session " + id, Actor: "connect:" + id}
		var c *tokenkeeper.Credential
		c, err = s.updateCredential(ctx, cs.CredentialName, upd, ev, func(tx Querier, cur *tokenkeeper.Credential) error {
			if err := post(tx); err != nil {
				return err
			}
			if cur.ProviderID != cs.ProviderID {
				return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %q moved to another provider", cs.CredentialName)
			}
			return s.markConnected(ctx, tx, id, cur.ID, now)
		})
		return c, err
	}
	c := &tokenkeeper.Credential{
		Name: cs.CredentialName, Provider: cs.Provider, GrantType: tokenkeeper.GrantRefreshToken, RefreshToken: g.RefreshToken,
		Scopes: scopes, Token: &tok, EndUserID: endUser, EndUserName: g.EndUserName, EndUserEmail: g.EndUserEmail,
		NextRefreshAt: nextRefresh(now, tok.ExpiresAt), Extras: maps.Clone(g.Extras),
	}
	err = s.createCredential(ctx, c, func(tx Querier, credID string) error {
		if err := post(tx); err != nil {
			return err
		}
		ev := &tokenkeeper.Event{CredentialID: credID, CredentialName: c.Name, Kind: "connected", Outcome: tokenkeeper.OutcomeOK,
			Message: "grant obtained by connect session " + id, Actor: "connect:" + id}
		if err := s.insertEvent(ctx, tx, ev, now); err != nil {
			return err
		}
		return s.markConnected(ctx, tx, id, credID, now)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// nextRefresh schedules the first refresh of a grant whose access token
// expires at exp: three quarters of its lifetime on (the refresher then
// keeps its own schedule), or now without an expiry.
func nextRefresh(now, exp time.Time) time.Time {
	if exp.IsZero() || !exp.After(now) {
		return now
	}
	return now.Add(exp.Sub(now) * 3 / 4)
}

// FailConnectSession implements tokenkeeper.ConnectStore.
func (s *Store) FailConnectSession(ctx context.Context, id, reason, message string) error {
	now := s.now()
	return s.write(ctx, "fail connect session", func(tx Querier) error {
		c, err := s.lockPendingSession(ctx, tx, id)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.ECONFLICT {
			return nil // ended already
		}
		if err != nil {
			return err
		}
		return s.failLocked(ctx, tx, c, now, reason, message)
	})
}

// failLocked marks the pending session c, locked in tx, failed.
func (s *Store) failLocked(ctx context.Context, tx Querier, c *tokenkeeper.ConnectSession, now time.Time, reason, message string) error {
	if _, err := tx.Exec(ctx, `UPDATE connect_sessions SET status = 'failed', reason = $1, message = $2, updated_at = $3,
			code_verifier = NULL, device_code = NULL WHERE id = $4`, clip(reason, 64), clip(message, 512), utc(now), c.ID); err != nil {
		return err
	}
	if err := s.insertConnectEvent(ctx, tx, c.ID, now, "failed", tokenkeeper.ConnectFailed, reason, message); err != nil {
		return err
	}
	// connect_session.failed webhooks, in the transaction that ends it.
	if err := s.webhookConnectSessionFailed(ctx, tx, c.Provider, c.EndUserID, clip(reason, 64)); err != nil {
		return err
	}
	if c.Reconnect {
		ev := &tokenkeeper.Event{CredentialName: c.CredentialName, Kind: "connect_failed", Outcome: tokenkeeper.OutcomeError,
			ErrorCode: clip(reason, 64), Message: clip("connect session "+c.ID+" failed: "+message, 512), Actor: "connect:" + c.ID}
		return s.insertEvent(ctx, tx, ev, now)
	}
	return nil
}

// ConnectEvents implements tokenkeeper.ConnectStore.
func (s *Store) ConnectEvents(ctx context.Context, id string) ([]*tokenkeeper.ConnectEvent, error) {
	out, err := collect(ctx, s.conn, `SELECT session_id, time, kind, outcome, error_code, message FROM connect_events
		WHERE session_id = $1 ORDER BY id`, []any{id}, func(r Rows) (*tokenkeeper.ConnectEvent, error) {
		var e tokenkeeper.ConnectEvent
		err := r.Scan(&e.SessionID, &e.Time, &e.Kind, &e.Outcome, &e.ErrorCode, &e.Message)
		e.Time = e.Time.UTC()
		return &e, err
	})
	return out, s.err("list connect events", err)
}

// PendingDeviceSessions implements tokenkeeper.ConnectStore.
func (s *Store) PendingDeviceSessions(ctx context.Context, now time.Time) ([]*tokenkeeper.ConnectSession, error) {
	raws, err := collect(ctx, s.conn, `SELECT `+ConnectColumns+connectFrom+`
		WHERE s.kind = 'device' AND s.status = 'pending' AND s.expires_at > $1 ORDER BY s.created_at`, []any{utc(now)},
		func(r Rows) (*rawConnect, error) { return scanConnectSession(r) })
	if err != nil {
		return nil, s.err("list device sessions", err)
	}
	out := make([]*tokenkeeper.ConnectSession, 0, len(raws))
	for _, r := range raws {
		c, err := s.decodeConnect(ctx, s.conn, r)
		if err != nil {
			return nil, s.err("list device sessions", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// LeaseDevicePoll implements tokenkeeper.ConnectStore.
func (s *Store) LeaseDevicePoll(ctx context.Context, id, owner string, until, now time.Time) (bool, error) {
	if owner == "" {
		return false, tokenkeeper.Errorf(tokenkeeper.EINVALID, "a poll lease needs an owner")
	}
	var n int64
	err := s.write(ctx, "lease device poll", func(tx Querier) error {
		var err error
		n, err = tx.Exec(ctx, `UPDATE connect_sessions SET poll_owner = $1, poll_lease_until = $2
			WHERE id = $3 AND kind = 'device' AND status = 'pending'
				AND (poll_owner = '' OR poll_owner = $1 OR poll_lease_until IS NULL OR poll_lease_until < $4)`,
			owner, utc(until), id, utc(now))
		return err
	})
	return n == 1, err
}
