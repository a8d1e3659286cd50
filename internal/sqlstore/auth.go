package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// pruneBatch bounds how many expired refresh tokens and revocations one
// CreateRefreshToken deletes, so that a login never waits for a big purge.
const pruneBatch = 500

// lockFamily names the advisory lock of one refresh-token family. Every
// write to a family's tokens holds it: a revocation then sees the token a
// concurrent rotation inserts, which a row lock alone would not give under
// PostgreSQL's READ COMMITTED.
func lockFamily(familyID string) string { return ".family." + familyID }

// Users

const userColumns = `id, username, password_hash, role, created_at, updated_at`

func scanUser(row Row) (*tokenkeeper.User, error) {
	var u tokenkeeper.User
	var role string
	if err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, &role, &u.CreatedAt, &u.UpdatedAt); err != nil {
		return nil, err
	}
	u.Role = tokenkeeper.Role(role)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return &u, nil
}

// errNoUser does not quote the name: a user who typed a password into the
// username field must not find it in an error message or a log.
var errNoUser = tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "user not found")

// CreateUser stores u, assigning ID, CreatedAt and UpdatedAt. Username must
// be a valid name, Role admin or viewer and PasswordHash a non-empty hash.
// Returns EINVALID or ECONFLICT (username taken).
func (s *Store) CreateUser(ctx context.Context, u *tokenkeeper.User) error {
	if err := CheckUser(u); err != nil {
		return err
	}
	now := s.now()
	n := *u
	n.ID = newID()
	n.CreatedAt, n.UpdatedAt = now, now
	conflict := tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "user %q already exists", n.Username)
	if err := s.exec(ctx, "create user", conflict, nil, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $5)`,
		n.ID, n.Username, n.PasswordHash, string(n.Role), now); err != nil {
		return err
	}
	*u = n
	return nil
}

// User returns a user by name. Returns ENOTFOUND.
func (s *Store) User(ctx context.Context, username string) (*tokenkeeper.User, error) {
	if tokenkeeper.ValidateName(username) != nil {
		return nil, errNoUser
	}
	u, err := scanUser(s.conn.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1`, username))
	return u, s.err("get user", orNotFound(err, errNoUser))
}

// UserByID returns a user by id. Returns ENOTFOUND.
func (s *Store) UserByID(ctx context.Context, id string) (*tokenkeeper.User, error) {
	if !ValidID(id) {
		return nil, errNoUser
	}
	u, err := scanUser(s.conn.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	return u, s.err("get user", orNotFound(err, errNoUser))
}

// Users lists the users ordered by username (byte order).
func (s *Store) Users(ctx context.Context) ([]*tokenkeeper.User, error) {
	out, err := collect(ctx, s.conn, `SELECT `+userColumns+` FROM users ORDER BY username COLLATE "C"`, nil,
		func(r Rows) (*tokenkeeper.User, error) { return scanUser(r) })
	return out, s.err("list users", err)
}

// SetUserPassword replaces a user's password hash and moves UpdatedAt. It
// does not end the user's sessions: it is for re-hashing the same password
// with new parameters; ChangeUserPassword is for a new password. Returns
// EINVALID or ENOTFOUND.
func (s *Store) SetUserPassword(ctx context.Context, username, hash string) error {
	if err := CheckPasswordHash(hash); err != nil {
		return err
	}
	if tokenkeeper.ValidateName(username) != nil {
		return errNoUser
	}
	now := s.now()
	return s.exec(ctx, "set user password", nil, errNoUser, `UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3`, hash, now, username)
}

// DeleteUser removes a user and, in the same transaction, revokes every
// refresh-token family of the user, recording revocations of their access
// tokens until accessExpiresAt. A login of the user in flight either
// commits first, and its family is revoked too, or finds no user.
// Returns EINVALID or ENOTFOUND.
func (s *Store) DeleteUser(ctx context.Context, username string, now, accessExpiresAt time.Time) error {
	if err := CheckRevocationTimes(now, accessExpiresAt); err != nil {
		return err
	}
	if tokenkeeper.ValidateName(username) != nil {
		return errNoUser
	}
	now, accessExpiresAt = utc(now), utc(accessExpiresAt)
	return s.write(ctx, "delete user", func(tx Querier) error {
		return s.deleteUser(ctx, tx, username, now, accessExpiresAt)
	})
}

// deleteUser is DeleteUser's transaction.
func (s *Store) deleteUser(ctx context.Context, tx Querier, username string, now, accessExpiresAt time.Time) error {
	var id string
	err := tx.QueryRow(ctx, `DELETE FROM users WHERE username = $1 RETURNING id`, username).Scan(&id)
	if err != nil {
		return orNotFound(err, errNoUser)
	}
	_, err = s.revokeUserFamilies(ctx, tx, id, now, accessExpiresAt)
	return err
}

// revokeUserFamilies revokes, in tx, every refresh-token family of the
// user with id userID and records revocations of their access tokens until
// accessExpiresAt (never shortening an earlier one). It returns how many
// sessions it ended: the families that were live at now (a current token
// neither revoked nor expired), not those revoked or expired before.
func (s *Store) revokeUserFamilies(ctx context.Context, tx Querier, userID string, now, accessExpiresAt time.Time) (int, error) {
	families, err := collect(ctx, tx, `SELECT family_id FROM refresh_tokens WHERE user_id = $1 GROUP BY family_id ORDER BY family_id COLLATE "C"`,
		[]any{userID}, scanString)
	if err != nil {
		return 0, err
	}
	for _, f := range families { // in one order, against deadlocks
		if err := s.lock(ctx, tx, lockFamily(f)); err != nil {
			return 0, err
		}
	}
	var live int
	if err := tx.QueryRow(ctx, `SELECT COUNT(DISTINCT family_id) FROM refresh_tokens WHERE user_id = $1
		AND revoked_at IS NULL AND rotated_at IS NULL AND expires_at > $2 AND family_expires_at > $2`, userID, now).Scan(&live); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL`, userID, now); err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO revocations (family_id, revoked_at, expires_at)
		SELECT DISTINCT family_id, $2::timestamptz, $3::timestamptz FROM refresh_tokens WHERE user_id = $1
		ON CONFLICT (family_id) DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > revocations.expires_at
			THEN excluded.expires_at ELSE revocations.expires_at END`,
		userID, now, accessExpiresAt)
	return live, err
}

// Refresh tokens

const refreshTokenColumns = `id, family_id, user_id, hash, auth_time, created_at, expires_at,
	family_expires_at, rotated_at, revoked_at`

func scanRefreshToken(row Row) (*tokenkeeper.RefreshToken, error) {
	var t tokenkeeper.RefreshToken
	var rotated, revoked *time.Time
	if err := row.Scan(&t.ID, &t.FamilyID, &t.UserID, &t.Hash, &t.AuthTime, &t.CreatedAt, &t.ExpiresAt,
		&t.FamilyExpiresAt, &rotated, &revoked); err != nil {
		return nil, err
	}
	t.AuthTime, t.CreatedAt = t.AuthTime.UTC(), t.CreatedAt.UTC()
	t.ExpiresAt, t.FamilyExpiresAt = t.ExpiresAt.UTC(), t.FamilyExpiresAt.UTC()
	t.RotatedAt, t.RevokedAt = fromNull(rotated), fromNull(revoked)
	return &t, nil
}

func (s *Store) insertRefreshToken(ctx context.Context, tx Querier, t *tokenkeeper.RefreshToken) error {
	_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (`+refreshTokenColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)`,
		t.ID, t.FamilyID, t.UserID, t.Hash, t.AuthTime, t.CreatedAt, t.ExpiresAt, t.FamilyExpiresAt)
	if s.d.IsUniqueViolation(err) {
		return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "refresh token already exists")
	}
	return err
}

// normalizeTimes truncates t's times to what the database keeps.
func normalizeTimes(t *tokenkeeper.RefreshToken) {
	for _, p := range []*time.Time{&t.AuthTime, &t.CreatedAt, &t.ExpiresAt, &t.FamilyExpiresAt} {
		*p = utc(*p)
	}
	t.RotatedAt, t.RevokedAt = time.Time{}, time.Time{}
}

// CreateRefreshToken stores the first token of a new family. ID and
// FamilyID are assigned when empty, CreatedAt defaults to the store's
// clock; RotatedAt and RevokedAt are ignored. UserID must name an existing
// user, by id, so that a user deleted and created again under the same
// name is not found; its row is locked against a concurrent DeleteUser,
// which then sees the new family. The user's sessions must not have been
// revoked at or after AuthTime (ChangeUserPassword, RevokeUserSessions): a
// login that read the user before a password change does not start a
// family after it. In the same transaction, refresh tokens whose family
// expired before CreatedAt and revocations that ended before it are
// deleted, a bounded batch at a time. Returns EINVALID, ENOTFOUND (no such
// user) or ECONFLICT (the hash, id or family is taken, or the sessions
// were revoked).
func (s *Store) CreateRefreshToken(ctx context.Context, t *tokenkeeper.RefreshToken) error {
	if err := CheckNewRefreshToken(t); err != nil {
		return err
	}
	n := *t
	if n.ID == "" {
		n.ID = newID()
	}
	if n.FamilyID == "" {
		n.FamilyID = newID()
	}
	if n.CreatedAt.IsZero() {
		n.CreatedAt = s.now()
	}
	normalizeTimes(&n)
	n.Hash = append([]byte(nil), t.Hash...)
	err := s.write(ctx, "create refresh token", func(tx Querier) error {
		var revoked *time.Time
		err := tx.QueryRow(ctx, `SELECT sessions_revoked_at FROM users WHERE id = $1`+s.d.ForShare, n.UserID).Scan(&revoked)
		if err != nil {
			return orNotFound(err, errNoUser)
		}
		if revoked != nil && !revoked.Before(n.AuthTime) {
			// The password changed, or the sessions were revoked, after
			// this login read the user.
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "the user's sessions were revoked after this login began")
		}
		var one int
		if err := s.lock(ctx, tx, lockFamily(n.FamilyID)); err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT 1 FROM refresh_tokens WHERE family_id = $1
			UNION ALL SELECT 1 FROM revocations WHERE family_id = $1 LIMIT 1`, n.FamilyID).Scan(&one)
		if err == nil {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "refresh token family already exists")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Skipping locked rows, concurrent logins share the purge instead of
		// waiting for each other.
		if _, err := tx.Exec(ctx, `DELETE FROM refresh_tokens WHERE id IN (
				SELECT id FROM refresh_tokens WHERE family_expires_at <= $1 LIMIT $2`+s.d.SkipLocked+`)`,
			n.CreatedAt, pruneBatch); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM revocations WHERE family_id IN (
				SELECT family_id FROM revocations WHERE expires_at <= $1 LIMIT $2`+s.d.SkipLocked+`)`,
			n.CreatedAt, pruneBatch); err != nil {
			return err
		}
		return s.insertRefreshToken(ctx, tx, &n)
	})
	if err != nil {
		return err
	}
	*t = n
	return nil
}

// RefreshTokenByHash returns a refresh token by hash, whatever its state.
// Returns ENOTFOUND.
func (s *Store) RefreshTokenByHash(ctx context.Context, hash []byte) (*tokenkeeper.RefreshToken, error) {
	if len(hash) == 0 {
		return nil, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "refresh token not found")
	}
	t, err := scanRefreshToken(s.conn.QueryRow(ctx, `SELECT `+refreshTokenColumns+` FROM refresh_tokens WHERE hash = $1`, hash))
	return t, s.err("get refresh token", orNotFound(err, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "refresh token not found")))
}

// RotateRefreshToken marks the token oldID rotated at now and stores next
// in its family, in one transaction, but only if oldID is still current:
// not rotated, not revoked, neither it nor its family expired at now, and
// no revocation recorded for the family. The check and the mark are one
// conditional UPDATE under the family's lock, so of any number of
// concurrent rotations of one token, on any number of replicas, exactly
// one succeeds, and a concurrent RevokeFamily revokes the token it
// inserts. next's ID is assigned when empty and its CreatedAt defaults to
// now; FamilyID, UserID, AuthTime and FamilyExpiresAt are copied from the
// rotated token (EINVALID if next sets them to other values). Returns
// EINVALID, or ECONFLICT when oldID is not current (nothing is written;
// the caller treats it as reuse).
func (s *Store) RotateRefreshToken(ctx context.Context, oldID string, now time.Time, next *tokenkeeper.RefreshToken) error {
	if err := CheckRequiredTime("now", now); err != nil {
		return err
	}
	if err := CheckNextRefreshToken(next); err != nil {
		return err
	}
	notCurrent := tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "refresh token is not current")
	if !ValidID(oldID) {
		return notCurrent
	}
	now = utc(now)
	base := *next
	if base.ID == "" {
		base.ID = newID()
	}
	if base.CreatedAt.IsZero() {
		base.CreatedAt = now
	}
	base.AuthTime = utc(base.AuthTime)
	base.FamilyExpiresAt = utc(base.FamilyExpiresAt)
	base.Hash = append([]byte(nil), next.Hash...)
	var n tokenkeeper.RefreshToken
	err := s.write(ctx, "rotate refresh token", func(tx Querier) error {
		n = base
		var familyID string
		err := tx.QueryRow(ctx, `SELECT family_id FROM refresh_tokens WHERE id = $1`, oldID).Scan(&familyID)
		if err != nil {
			return orNotFound(err, notCurrent)
		}
		if err := s.lock(ctx, tx, lockFamily(familyID)); err != nil {
			return err
		}
		var userID string
		var authTime, familyExpires time.Time
		err = tx.QueryRow(ctx, `UPDATE refresh_tokens SET rotated_at = $1
			WHERE id = $2 AND rotated_at IS NULL AND revoked_at IS NULL
				AND expires_at > $1 AND family_expires_at > $1
				AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.family_id = refresh_tokens.family_id)
			RETURNING user_id, auth_time, family_expires_at`,
			now, oldID).Scan(&userID, &authTime, &familyExpires)
		if err != nil {
			return orNotFound(err, notCurrent)
		}
		if err := InheritFamily(&n, familyID, userID, authTime.UTC(), familyExpires.UTC()); err != nil {
			return err
		}
		normalizeTimes(&n)
		return s.insertRefreshToken(ctx, tx, &n)
	})
	if err != nil {
		return err
	}
	*next = n
	return nil
}

// RevokeFamily revokes every refresh token of the family and records a
// revocation of its access tokens until accessExpiresAt, under the
// family's lock. It is idempotent: a second call keeps the first revocation
// times and only ever extends the revocation's expiry. A family with no
// stored token is still recorded. Returns EINVALID.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, now, accessExpiresAt time.Time) error {
	if err := CheckID("family id", familyID); err != nil {
		return err
	}
	if err := CheckRevocationTimes(now, accessExpiresAt); err != nil {
		return err
	}
	now, accessExpiresAt = utc(now), utc(accessExpiresAt)
	return s.write(ctx, "revoke refresh token family", func(tx Querier) error {
		if err := s.lock(ctx, tx, lockFamily(familyID)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL`,
			now, familyID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO revocations (family_id, revoked_at, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (family_id) DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > revocations.expires_at
				THEN excluded.expires_at ELSE revocations.expires_at END`,
			familyID, now, accessExpiresAt)
		return err
	})
}

// Revocations returns the revocations that have not expired at now,
// ordered by family id.
func (s *Store) Revocations(ctx context.Context, now time.Time) ([]*tokenkeeper.Revocation, error) {
	if err := Time("now", now); err != nil {
		return nil, err
	}
	out, err := collect(ctx, s.conn, `SELECT family_id, revoked_at, expires_at FROM revocations
		WHERE expires_at > $1 ORDER BY family_id COLLATE "C"`, []any{utc(now)}, func(r Rows) (*tokenkeeper.Revocation, error) {
		var v tokenkeeper.Revocation
		if err := r.Scan(&v.FamilyID, &v.RevokedAt, &v.ExpiresAt); err != nil {
			return nil, err
		}
		v.RevokedAt, v.ExpiresAt = v.RevokedAt.UTC(), v.ExpiresAt.UTC()
		return &v, nil
	})
	return out, s.err("list revocations", err)
}

// Service clients

const serviceClientColumns = `id, client_id, secret_hash, credentials, created_at, updated_at`

func scanServiceClient(row Row) (*tokenkeeper.ServiceClient, error) {
	var c tokenkeeper.ServiceClient
	var creds string
	if err := row.Scan(&c.ID, &c.ClientID, &c.SecretHash, &creds, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(creds), &c.Credentials); err != nil {
		return nil, fmt.Errorf("decode credentials of service client %s: %w", c.ID, err)
	}
	if len(c.Credentials) == 0 {
		c.Credentials = nil
	}
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return &c, nil
}

// errNoClient does not quote the client_id, which comes from an
// unauthenticated request.
var errNoClient = tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "service client not found")

// CreateServiceClient stores c, assigning ID, CreatedAt and UpdatedAt.
// ClientID must be a valid name, SecretHash a SHA-256 and every granted
// credential a valid name. Returns EINVALID or ECONFLICT (client_id taken).
func (s *Store) CreateServiceClient(ctx context.Context, c *tokenkeeper.ServiceClient) error {
	if err := CheckServiceClient(c); err != nil {
		return err
	}
	now := s.now()
	n := *c
	n.ID = newID()
	n.CreatedAt, n.UpdatedAt = now, now
	n.SecretHash = append([]byte(nil), c.SecretHash...)
	n.Credentials = cloneList(c.Credentials)
	creds := encodeList(n.Credentials)
	conflict := tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "service client %q already exists", n.ClientID)
	if err := s.exec(ctx, "create service client", conflict, nil, `INSERT INTO service_clients (`+serviceClientColumns+`) VALUES ($1, $2, $3, $4, $5, $5)`,
		n.ID, n.ClientID, n.SecretHash, creds, now); err != nil {
		return err
	}
	*c = n
	return nil
}

// ServiceClient returns a client by client_id. Returns ENOTFOUND.
func (s *Store) ServiceClient(ctx context.Context, clientID string) (*tokenkeeper.ServiceClient, error) {
	if tokenkeeper.ValidateName(clientID) != nil {
		return nil, errNoClient
	}
	c, err := scanServiceClient(s.conn.QueryRow(ctx, `SELECT `+serviceClientColumns+` FROM service_clients WHERE client_id = $1`, clientID))
	return c, s.err("get service client", orNotFound(err, errNoClient))
}

// ServiceClients lists the clients ordered by client_id (byte order).
func (s *Store) ServiceClients(ctx context.Context) ([]*tokenkeeper.ServiceClient, error) {
	out, err := collect(ctx, s.conn, `SELECT `+serviceClientColumns+` FROM service_clients ORDER BY client_id COLLATE "C"`, nil,
		func(r Rows) (*tokenkeeper.ServiceClient, error) { return scanServiceClient(r) })
	return out, s.err("list service clients", err)
}

// SetServiceClientSecret replaces a client's secret hash and moves
// UpdatedAt. Returns EINVALID or ENOTFOUND.
func (s *Store) SetServiceClientSecret(ctx context.Context, clientID string, hash []byte) error {
	if err := CheckSHA256("client secret hash", hash); err != nil {
		return err
	}
	if tokenkeeper.ValidateName(clientID) != nil {
		return errNoClient
	}
	now := s.now()
	return s.exec(ctx, "set service client secret", nil, errNoClient, `UPDATE service_clients SET secret_hash = $1, updated_at = $2 WHERE client_id = $3`, hash, now, clientID)
}

// DeleteServiceClient removes a client. Returns ENOTFOUND.
func (s *Store) DeleteServiceClient(ctx context.Context, clientID string) error {
	if tokenkeeper.ValidateName(clientID) != nil {
		return errNoClient
	}
	return s.exec(ctx, "delete service client", nil, errNoClient, `DELETE FROM service_clients WHERE client_id = $1`, clientID)
}

// Signing keys

// AddSigningKey stores k with its secret sealed (bound to the key's id and
// the column), assigning CreatedAt. ID must be a valid name, Algorithm 1 to
// 32 letters and digits, Secret 32 to 16384 bytes. Returns EINVALID or
// ECONFLICT (id taken).
func (s *Store) AddSigningKey(ctx context.Context, k *tokenkeeper.SigningKey) error {
	if err := CheckSigningKey(k); err != nil {
		return err
	}
	n := *k
	n.CreatedAt = s.now()
	n.Secret = append([]byte(nil), k.Secret...)
	sealed, err := s.ring.Seal(n.Secret, seal.AD("signing_keys", n.ID, "secret"))
	if err != nil {
		return fmt.Errorf("add signing key: seal signing_keys.secret: %w", err)
	}
	conflict := tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "signing key %q already exists", n.ID)
	if err := s.exec(ctx, "add signing key", conflict, nil, `INSERT INTO signing_keys (id, algorithm, secret, created_at) VALUES ($1, $2, $3, $4)`,
		n.ID, n.Algorithm, sealed, n.CreatedAt); err != nil {
		return err
	}
	*k = n
	return nil
}

// SigningKeys returns all signing keys, newest first (by CreatedAt, then by
// id descending in byte order, so that every replica picks the same newest
// key), with their secrets opened.
func (s *Store) SigningKeys(ctx context.Context) ([]*tokenkeeper.SigningKey, error) {
	type raw struct {
		k      tokenkeeper.SigningKey
		sealed []byte
	}
	raws, err := collect(ctx, s.conn, `SELECT id, algorithm, secret, created_at FROM signing_keys
		ORDER BY created_at DESC, id COLLATE "C" DESC`, nil, func(r Rows) (raw, error) {
		var x raw
		err := r.Scan(&x.k.ID, &x.k.Algorithm, &x.sealed, &x.k.CreatedAt)
		return x, err
	})
	if err != nil {
		return nil, s.err("list signing keys", err)
	}
	out := make([]*tokenkeeper.SigningKey, 0, len(raws))
	for _, r := range raws {
		k := r.k
		if r.sealed == nil {
			return nil, fmt.Errorf("list signing keys: signing key %s has no secret", k.ID)
		}
		secret, err := s.openSealed(ctx, s.conn, r.sealed, "signing_keys", k.ID, "secret")
		if err != nil {
			return nil, err
		}
		k.Secret = []byte(secret)
		k.CreatedAt = k.CreatedAt.UTC()
		out = append(out, &k)
	}
	return out, nil
}

// Audit log

// AddAudit appends r to the audit log, assigning ID and, if zero, Time.
// Text fields are made valid UTF-8 without NUL bytes and cut to their caps
// (actor and target 200 bytes, action 100, outcome 32, remote address 100,
// detail 2000); r receives the stored values. PruneAudit deletes old records.
// Returns EINVALID (no action, time out of range).
func (s *Store) AddAudit(ctx context.Context, r *tokenkeeper.AuditRecord) error {
	n, err := CleanAudit(r)
	if err != nil {
		return err
	}
	if n.Time.IsZero() {
		n.Time = s.now()
	}
	n.Time = utc(n.Time)
	var id int64
	err = s.write(ctx, "add audit record", func(tx Querier) error {
		return tx.QueryRow(ctx, `INSERT INTO audit (time, actor, action, target, outcome, remote_addr, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			n.Time, n.Actor, n.Action, n.Target, n.Outcome, n.RemoteAddr, n.Detail).Scan(&id)
	})
	if err != nil {
		return err
	}
	n.ID = id
	*r = n
	return nil
}

// Audit returns the records matching f, newest (highest id) first: at most
// f.Limit (1 to 1000, 0 meaning 100), only ids below f.BeforeID when it is
// set, and only the exact Actor and Action when they are set. Returns
// EINVALID for a bad filter.
func (s *Store) Audit(ctx context.Context, f tokenkeeper.AuditFilter) ([]*tokenkeeper.AuditRecord, error) {
	limit, err := AuditLimit(f)
	if err != nil {
		return nil, err
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if f.BeforeID > 0 {
		add("id <", f.BeforeID)
	}
	if f.Actor != "" {
		add("actor =", f.Actor)
	}
	if f.Action != "" {
		add("action =", f.Action)
	}
	q := `SELECT id, time, actor, action, target, outcome, remote_addr, detail FROM audit`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += ` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args))
	out, err := collect(ctx, s.conn, q, args, func(r Rows) (*tokenkeeper.AuditRecord, error) {
		var a tokenkeeper.AuditRecord
		if err := r.Scan(&a.ID, &a.Time, &a.Actor, &a.Action, &a.Target, &a.Outcome, &a.RemoteAddr, &a.Detail); err != nil {
			return nil, err
		}
		a.Time = a.Time.UTC()
		return &a, nil
	})
	return out, s.err("list audit records", err)
}
