package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/storecheck"
)

// Ensure DB implements the auth store interface.
var _ tokenkeeper.AuthStore = (*DB)(nil)

// pruneBatch bounds how many expired refresh tokens and revocations one
// CreateRefreshToken deletes, so that a login never waits for a big purge.
const pruneBatch = 500

func parseStored(s string) (time.Time, error) {
	return parseTime(sql.NullString{String: s, Valid: true})
}

// Users

const userColumns = `id, username, password_hash, role, created_at, updated_at`

func scanUser(s scanner) (*tokenkeeper.User, error) {
	var u tokenkeeper.User
	var role, created, updated string
	if err := s.Scan(&u.ID, &u.Username, &u.PasswordHash, &role, &created, &updated); err != nil {
		return nil, err
	}
	u.Role = tokenkeeper.Role(role)
	var err error
	if u.CreatedAt, err = parseStored(created); err != nil {
		return nil, err
	}
	if u.UpdatedAt, err = parseStored(updated); err != nil {
		return nil, err
	}
	return &u, nil
}

// errNoUser does not quote the name: a user who typed a password into the
// username field must not find it in an error message or a log.
var errNoUser = tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "user not found")

// CreateUser stores u, assigning ID, CreatedAt and UpdatedAt. Username must
// be a valid name, Role admin or viewer and PasswordHash a non-empty hash.
// Returns EINVALID or ECONFLICT (username taken).
func (db *DB) CreateUser(ctx context.Context, u *tokenkeeper.User) error {
	if err := storecheck.CheckUser(u); err != nil {
		return err
	}
	now := db.now()
	n := *u
	n.ID = newID()
	n.CreatedAt, n.UpdatedAt = now, now
	err := db.write(ctx, "create user", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			n.ID, n.Username, n.PasswordHash, string(n.Role), fmtTime(now), fmtTime(now))
		if isUniqueViolation(err) {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "user %q already exists", n.Username)
		}
		return err
	})
	if err != nil {
		return err
	}
	*u = n
	return nil
}

// User returns a user by name. Returns ENOTFOUND.
func (db *DB) User(ctx context.Context, username string) (*tokenkeeper.User, error) {
	if tokenkeeper.ValidateName(username) != nil {
		return nil, errNoUser
	}
	u, err := scanUser(db.reader.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoUser
	} else if err != nil {
		return nil, storeErr("get user", err)
	}
	return u, nil
}

// UserByID returns a user by id. Returns ENOTFOUND.
func (db *DB) UserByID(ctx context.Context, id string) (*tokenkeeper.User, error) {
	if !storecheck.ValidID(id) {
		return nil, errNoUser
	}
	u, err := scanUser(db.reader.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoUser
	} else if err != nil {
		return nil, storeErr("get user", err)
	}
	return u, nil
}

// Users lists the users ordered by username (byte order).
func (db *DB) Users(ctx context.Context) ([]*tokenkeeper.User, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, storeErr("list users", err)
	}
	defer rows.Close()
	var out []*tokenkeeper.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, storeErr("list users", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list users", err)
	}
	return out, nil
}

// SetUserPassword replaces a user's password hash and moves UpdatedAt. It
// does not end the user's sessions. Returns EINVALID or ENOTFOUND.
func (db *DB) SetUserPassword(ctx context.Context, username, hash string) error {
	if err := storecheck.CheckPasswordHash(hash); err != nil {
		return err
	}
	if tokenkeeper.ValidateName(username) != nil {
		return errNoUser
	}
	now := fmtTime(db.now())
	return db.write(ctx, "set user password", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?`, hash, now, username)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errNoUser
		}
		return nil
	})
}

// DeleteUser removes a user and, in the same transaction, revokes every
// refresh-token family of the user, recording revocations of their access
// tokens until accessExpiresAt. Returns EINVALID or ENOTFOUND.
func (db *DB) DeleteUser(ctx context.Context, username string, now, accessExpiresAt time.Time) error {
	if err := storecheck.CheckRevocationTimes(now, accessExpiresAt); err != nil {
		return err
	}
	if tokenkeeper.ValidateName(username) != nil {
		return errNoUser
	}
	return db.write(ctx, "delete user", func(tx *sql.Tx) error {
		var id string
		err := tx.QueryRowContext(ctx, `DELETE FROM users WHERE username = ? RETURNING id`, username).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoUser
		} else if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT family_id FROM refresh_tokens WHERE user_id = ?`, id)
		if err != nil {
			return err
		}
		var families []string
		for rows.Next() {
			var f string
			if err := rows.Scan(&f); err != nil {
				rows.Close()
				return err
			}
			families = append(families, f)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, f := range families {
			if err := revokeFamily(ctx, tx, f, now, accessExpiresAt); err != nil {
				return err
			}
		}
		return nil
	})
}

// Refresh tokens

const refreshTokenColumns = `id, family_id, user_id, hash, auth_time, created_at, expires_at,
	family_expires_at, rotated_at, revoked_at`

func scanRefreshToken(s scanner) (*tokenkeeper.RefreshToken, error) {
	var t tokenkeeper.RefreshToken
	var authTime, created, expires, familyExpires string
	var rotated, revoked sql.NullString
	if err := s.Scan(&t.ID, &t.FamilyID, &t.UserID, &t.Hash, &authTime, &created, &expires,
		&familyExpires, &rotated, &revoked); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		dst *time.Time
		src sql.NullString
	}{
		{&t.AuthTime, sql.NullString{String: authTime, Valid: true}},
		{&t.CreatedAt, sql.NullString{String: created, Valid: true}},
		{&t.ExpiresAt, sql.NullString{String: expires, Valid: true}},
		{&t.FamilyExpiresAt, sql.NullString{String: familyExpires, Valid: true}},
		{&t.RotatedAt, rotated},
		{&t.RevokedAt, revoked},
	} {
		var err error
		if *f.dst, err = parseTime(f.src); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

func insertRefreshToken(ctx context.Context, tx *sql.Tx, t *tokenkeeper.RefreshToken) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (`+refreshTokenColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
		t.ID, t.FamilyID, t.UserID, t.Hash, fmtTime(t.AuthTime), fmtTime(t.CreatedAt), fmtTime(t.ExpiresAt),
		fmtTime(t.FamilyExpiresAt))
	if isUniqueViolation(err) {
		return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "refresh token already exists")
	}
	return err
}

// normalizeTimes truncates t's times to what the database keeps.
func normalizeTimes(t *tokenkeeper.RefreshToken) {
	for _, p := range []*time.Time{&t.AuthTime, &t.CreatedAt, &t.ExpiresAt, &t.FamilyExpiresAt} {
		*p = p.UTC().Truncate(time.Microsecond)
	}
	t.RotatedAt, t.RevokedAt = time.Time{}, time.Time{}
}

// CreateRefreshToken stores the first token of a new family. ID and
// FamilyID are assigned when empty, CreatedAt defaults to the store's
// clock; RotatedAt and RevokedAt are ignored. UserID must name an existing
// user. In the same transaction, refresh tokens whose family expired before
// CreatedAt and revocations that ended before it are deleted, a bounded
// batch at a time. Returns EINVALID, ENOTFOUND (no such user) or ECONFLICT
// (the hash, id or family is taken).
func (db *DB) CreateRefreshToken(ctx context.Context, t *tokenkeeper.RefreshToken) error {
	if err := storecheck.CheckNewRefreshToken(t); err != nil {
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
		n.CreatedAt = db.now()
	}
	normalizeTimes(&n)
	n.Hash = append([]byte(nil), t.Hash...)
	err := db.write(ctx, "create refresh token", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, n.UserID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoUser
		} else if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM refresh_tokens WHERE family_id = ?1
			UNION ALL SELECT 1 FROM revocations WHERE family_id = ?1 LIMIT 1`, n.FamilyID).Scan(&one)
		if err == nil {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "refresh token family already exists")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		cut := fmtTime(n.CreatedAt)
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE id IN (
				SELECT id FROM refresh_tokens WHERE family_expires_at <= ? LIMIT ?)`, cut, pruneBatch); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM revocations WHERE family_id IN (
				SELECT family_id FROM revocations WHERE expires_at <= ? LIMIT ?)`, cut, pruneBatch); err != nil {
			return err
		}
		return insertRefreshToken(ctx, tx, &n)
	})
	if err != nil {
		return err
	}
	*t = n
	return nil
}

// RefreshTokenByHash returns a refresh token by hash, whatever its state.
// Returns ENOTFOUND.
func (db *DB) RefreshTokenByHash(ctx context.Context, hash []byte) (*tokenkeeper.RefreshToken, error) {
	if len(hash) == 0 {
		return nil, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "refresh token not found")
	}
	t, err := scanRefreshToken(db.reader.QueryRowContext(ctx, `SELECT `+refreshTokenColumns+` FROM refresh_tokens WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "refresh token not found")
	} else if err != nil {
		return nil, storeErr("get refresh token", err)
	}
	return t, nil
}

// RotateRefreshToken marks the token oldID rotated at now and stores next
// in its family, in one transaction, but only if oldID is still current:
// not rotated, not revoked, neither it nor its family expired at now, and
// no revocation recorded for the family. The check and the mark are one
// conditional UPDATE, so of any number of concurrent rotations of one
// token, in any number of processes, exactly one succeeds. next's ID is
// assigned when empty and its CreatedAt defaults to now; FamilyID, UserID,
// AuthTime and FamilyExpiresAt are copied from the rotated token (EINVALID
// if next sets them to other values). Returns EINVALID, or ECONFLICT when
// oldID is not current (nothing is written; the caller treats it as reuse).
func (db *DB) RotateRefreshToken(ctx context.Context, oldID string, now time.Time, next *tokenkeeper.RefreshToken) error {
	if err := storecheck.CheckRequiredTime("now", now); err != nil {
		return err
	}
	if err := storecheck.CheckNextRefreshToken(next); err != nil {
		return err
	}
	if !storecheck.ValidID(oldID) {
		return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "refresh token is not current")
	}
	now = now.UTC().Truncate(time.Microsecond)
	base := *next
	if base.ID == "" {
		base.ID = newID()
	}
	if base.CreatedAt.IsZero() {
		base.CreatedAt = now
	}
	base.Hash = append([]byte(nil), next.Hash...)
	var n tokenkeeper.RefreshToken
	err := db.write(ctx, "rotate refresh token", func(tx *sql.Tx) error {
		n = base
		var familyID, userID, authTime, familyExpires string
		err := tx.QueryRowContext(ctx, `UPDATE refresh_tokens SET rotated_at = ?1
			WHERE id = ?2 AND rotated_at IS NULL AND revoked_at IS NULL
				AND expires_at > ?1 AND family_expires_at > ?1
				AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.family_id = refresh_tokens.family_id)
			RETURNING family_id, user_id, auth_time, family_expires_at`,
			fmtTime(now), oldID).Scan(&familyID, &userID, &authTime, &familyExpires)
		if errors.Is(err, sql.ErrNoRows) {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "refresh token is not current")
		} else if err != nil {
			return err
		}
		at, err := parseStored(authTime)
		if err != nil {
			return err
		}
		fe, err := parseStored(familyExpires)
		if err != nil {
			return err
		}
		if !n.AuthTime.IsZero() {
			n.AuthTime = n.AuthTime.UTC().Truncate(time.Microsecond)
		}
		if !n.FamilyExpiresAt.IsZero() {
			n.FamilyExpiresAt = n.FamilyExpiresAt.UTC().Truncate(time.Microsecond)
		}
		if err := storecheck.InheritFamily(&n, familyID, userID, at, fe); err != nil {
			return err
		}
		normalizeTimes(&n)
		return insertRefreshToken(ctx, tx, &n)
	})
	if err != nil {
		return err
	}
	*next = n
	return nil
}

// revokeFamily marks every unrevoked token of the family revoked at now and
// records (or extends) the revocation of its access tokens.
func revokeFamily(ctx context.Context, tx *sql.Tx, familyID string, now, accessExpiresAt time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL`,
		fmtTime(now), familyID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO revocations (family_id, revoked_at, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (family_id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)`,
		familyID, fmtTime(now), fmtTime(accessExpiresAt))
	return err
}

// RevokeFamily revokes every refresh token of the family and records a
// revocation of its access tokens until accessExpiresAt. It is idempotent:
// a second call keeps the first revocation times and only ever extends the
// revocation's expiry. A family with no stored token is still recorded.
// Returns EINVALID.
func (db *DB) RevokeFamily(ctx context.Context, familyID string, now, accessExpiresAt time.Time) error {
	if err := storecheck.CheckID("family id", familyID); err != nil {
		return err
	}
	if err := storecheck.CheckRevocationTimes(now, accessExpiresAt); err != nil {
		return err
	}
	return db.write(ctx, "revoke refresh token family", func(tx *sql.Tx) error {
		return revokeFamily(ctx, tx, familyID, now, accessExpiresAt)
	})
}

// Revocations returns the revocations that have not expired at now,
// ordered by family id.
func (db *DB) Revocations(ctx context.Context, now time.Time) ([]*tokenkeeper.Revocation, error) {
	if err := storecheck.Time("now", now); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT family_id, revoked_at, expires_at FROM revocations
		WHERE expires_at > ? ORDER BY family_id`, fmtTime(now))
	if err != nil {
		return nil, storeErr("list revocations", err)
	}
	defer rows.Close()
	var out []*tokenkeeper.Revocation
	for rows.Next() {
		var r tokenkeeper.Revocation
		var revoked, expires string
		if err := rows.Scan(&r.FamilyID, &revoked, &expires); err != nil {
			return nil, storeErr("list revocations", err)
		}
		if r.RevokedAt, err = parseStored(revoked); err != nil {
			return nil, err
		}
		if r.ExpiresAt, err = parseStored(expires); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list revocations", err)
	}
	return out, nil
}

// Service clients

const serviceClientColumns = `id, client_id, secret_hash, credentials, created_at, updated_at`

func scanServiceClient(s scanner) (*tokenkeeper.ServiceClient, error) {
	var c tokenkeeper.ServiceClient
	var creds, created, updated string
	if err := s.Scan(&c.ID, &c.ClientID, &c.SecretHash, &creds, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(creds), &c.Credentials); err != nil {
		return nil, fmt.Errorf("decode credentials of service client %s: %w", c.ID, err)
	}
	if len(c.Credentials) == 0 {
		c.Credentials = nil
	}
	var err error
	if c.CreatedAt, err = parseStored(created); err != nil {
		return nil, err
	}
	if c.UpdatedAt, err = parseStored(updated); err != nil {
		return nil, err
	}
	return &c, nil
}

// errNoClient does not quote the client_id, which comes from an
// unauthenticated request.
var errNoClient = tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "service client not found")

// CreateServiceClient stores c, assigning ID, CreatedAt and UpdatedAt.
// ClientID must be a valid name, SecretHash a SHA-256 and every granted
// credential a valid name. Returns EINVALID or ECONFLICT (client_id taken).
func (db *DB) CreateServiceClient(ctx context.Context, c *tokenkeeper.ServiceClient) error {
	if err := storecheck.CheckServiceClient(c); err != nil {
		return err
	}
	now := db.now()
	n := *c
	n.ID = newID()
	n.CreatedAt, n.UpdatedAt = now, now
	n.SecretHash = append([]byte(nil), c.SecretHash...)
	n.Credentials = append([]string(nil), c.Credentials...)
	if len(n.Credentials) == 0 {
		n.Credentials = nil
	}
	creds := encodeScopes(n.Credentials) // a JSON array of strings, "[]" when empty
	err := db.write(ctx, "create service client", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO service_clients (`+serviceClientColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			n.ID, n.ClientID, n.SecretHash, creds, fmtTime(now), fmtTime(now))
		if isUniqueViolation(err) {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "service client %q already exists", n.ClientID)
		}
		return err
	})
	if err != nil {
		return err
	}
	*c = n
	return nil
}

// ServiceClient returns a client by client_id. Returns ENOTFOUND.
func (db *DB) ServiceClient(ctx context.Context, clientID string) (*tokenkeeper.ServiceClient, error) {
	if tokenkeeper.ValidateName(clientID) != nil {
		return nil, errNoClient
	}
	c, err := scanServiceClient(db.reader.QueryRowContext(ctx, `SELECT `+serviceClientColumns+` FROM service_clients WHERE client_id = ?`, clientID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoClient
	} else if err != nil {
		return nil, storeErr("get service client", err)
	}
	return c, nil
}

// ServiceClients lists the clients ordered by client_id (byte order).
func (db *DB) ServiceClients(ctx context.Context) ([]*tokenkeeper.ServiceClient, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+serviceClientColumns+` FROM service_clients ORDER BY client_id`)
	if err != nil {
		return nil, storeErr("list service clients", err)
	}
	defer rows.Close()
	var out []*tokenkeeper.ServiceClient
	for rows.Next() {
		c, err := scanServiceClient(rows)
		if err != nil {
			return nil, storeErr("list service clients", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list service clients", err)
	}
	return out, nil
}

// SetServiceClientSecret replaces a client's secret hash and moves
// UpdatedAt. Returns EINVALID or ENOTFOUND.
func (db *DB) SetServiceClientSecret(ctx context.Context, clientID string, hash []byte) error {
	if err := storecheck.CheckSHA256("client secret hash", hash); err != nil {
		return err
	}
	if tokenkeeper.ValidateName(clientID) != nil {
		return errNoClient
	}
	now := fmtTime(db.now())
	return db.write(ctx, "set service client secret", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE service_clients SET secret_hash = ?, updated_at = ? WHERE client_id = ?`, hash, now, clientID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errNoClient
		}
		return nil
	})
}

// DeleteServiceClient removes a client. Returns ENOTFOUND.
func (db *DB) DeleteServiceClient(ctx context.Context, clientID string) error {
	if tokenkeeper.ValidateName(clientID) != nil {
		return errNoClient
	}
	return db.write(ctx, "delete service client", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM service_clients WHERE client_id = ?`, clientID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errNoClient
		}
		return nil
	})
}

// Signing keys

// AddSigningKey stores k with its secret sealed (bound to the key's id and
// the column), assigning CreatedAt. ID must be a valid name, Algorithm 1 to
// 32 letters and digits, Secret 32 to 16384 bytes. Returns EINVALID or
// ECONFLICT (id taken).
func (db *DB) AddSigningKey(ctx context.Context, k *tokenkeeper.SigningKey) error {
	if err := storecheck.CheckSigningKey(k); err != nil {
		return err
	}
	n := *k
	n.CreatedAt = db.now()
	n.Secret = append([]byte(nil), k.Secret...)
	sealed, err := db.ring.Seal(n.Secret, seal.AD("signing_keys", n.ID, "secret"))
	if err != nil {
		return fmt.Errorf("add signing key: seal signing_keys.secret: %w", err)
	}
	err = db.write(ctx, "add signing key", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (id, algorithm, secret, created_at) VALUES (?, ?, ?, ?)`,
			n.ID, n.Algorithm, sealed, fmtTime(n.CreatedAt))
		if isUniqueViolation(err) {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "signing key %q already exists", n.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	*k = n
	return nil
}

// SigningKeys returns all signing keys, newest first (by CreatedAt, then by
// id descending, so that every replica picks the same newest key), with
// their secrets opened.
func (db *DB) SigningKeys(ctx context.Context) ([]*tokenkeeper.SigningKey, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT id, algorithm, secret, created_at FROM signing_keys
		ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, storeErr("list signing keys", err)
	}
	type raw struct {
		k       tokenkeeper.SigningKey
		sealed  []byte
		created string
	}
	var raws []raw
	for rows.Next() {
		var r raw
		if err := rows.Scan(&r.k.ID, &r.k.Algorithm, &r.sealed, &r.created); err != nil {
			rows.Close()
			return nil, storeErr("list signing keys", err)
		}
		raws = append(raws, r)
	}
	if err := rows.Close(); err != nil {
		return nil, storeErr("list signing keys", err)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list signing keys", err)
	}
	out := make([]*tokenkeeper.SigningKey, 0, len(raws))
	for _, r := range raws {
		k := r.k
		if r.sealed == nil {
			return nil, fmt.Errorf("list signing keys: signing key %s has no secret", k.ID)
		}
		secret, err := db.openSealed(ctx, r.sealed, "signing_keys", k.ID, "secret")
		if err != nil {
			return nil, err
		}
		k.Secret = []byte(secret)
		if k.CreatedAt, err = parseStored(r.created); err != nil {
			return nil, err
		}
		out = append(out, &k)
	}
	return out, nil
}

// resealSigningKeys re-seals every signing key secret inside RotateKey's
// transaction with ring, whose active key is the new data key (id, key).
// It returns how many secrets it re-sealed.
func (db *DB) resealSigningKeys(ctx context.Context, tx *sql.Tx, ring *seal.Ring, id uint32, key []byte) (int, error) {
	type row struct {
		id     string
		sealed []byte
	}
	var all []row
	rows, err := tx.QueryContext(ctx, `SELECT id, secret FROM signing_keys`)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.sealed); err != nil {
			rows.Close()
			return 0, err
		}
		all = append(all, r)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	count := 0
	for _, r := range all {
		ad := seal.AD("signing_keys", r.id, "secret")
		pt, err := ring.Open(r.sealed, ad)
		if errors.Is(err, seal.ErrUnknownKey) {
			// A key another process added after RotateKey loaded the keys.
			if rerr := db.reloadKeys(ctx); rerr != nil {
				return 0, rerr
			}
			ring = db.ring.Clone()
			if err := ring.Add(id, key); err != nil {
				return 0, err
			}
			pt, err = ring.Open(r.sealed, ad)
		}
		if err != nil {
			return 0, fmt.Errorf("open signing_keys.secret of %s: %w", r.id, err)
		}
		ct, err := ring.Seal(pt, ad)
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET secret = ? WHERE id = ?`, ct, r.id); err != nil {
			return 0, err
		}
		count++
	}
	return count, nil
}

// Audit log

// AddAudit appends r to the audit log, assigning ID and, if zero, Time.
// Text fields are made valid UTF-8 and cut to their caps (actor and target
// 200 bytes, action 100, outcome 32, remote address 100, detail 2000);
// r receives the stored values. The log is never pruned. Returns EINVALID
// (no action, time out of range).
func (db *DB) AddAudit(ctx context.Context, r *tokenkeeper.AuditRecord) error {
	n, err := storecheck.CleanAudit(r)
	if err != nil {
		return err
	}
	if n.Time.IsZero() {
		n.Time = db.now()
	}
	n.Time = n.Time.UTC().Truncate(time.Microsecond)
	var id int64
	err = db.write(ctx, "add audit record", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO audit (time, actor, action, target, outcome, remote_addr, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			fmtTime(n.Time), n.Actor, n.Action, n.Target, n.Outcome, n.RemoteAddr, n.Detail).Scan(&id)
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
func (db *DB) Audit(ctx context.Context, f tokenkeeper.AuditFilter) ([]*tokenkeeper.AuditRecord, error) {
	limit, err := storecheck.AuditLimit(f)
	if err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if f.BeforeID > 0 {
		where = append(where, "id < ?")
		args = append(args, f.BeforeID)
	}
	if f.Actor != "" {
		where = append(where, "actor = ?")
		args = append(args, f.Actor)
	}
	if f.Action != "" {
		where = append(where, "action = ?")
		args = append(args, f.Action)
	}
	q := `SELECT id, time, actor, action, target, outcome, remote_addr, detail FROM audit`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, storeErr("list audit records", err)
	}
	defer rows.Close()
	var out []*tokenkeeper.AuditRecord
	for rows.Next() {
		var r tokenkeeper.AuditRecord
		var t string
		if err := rows.Scan(&r.ID, &t, &r.Actor, &r.Action, &r.Target, &r.Outcome, &r.RemoteAddr, &r.Detail); err != nil {
			return nil, storeErr("list audit records", err)
		}
		if r.Time, err = parseStored(t); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list audit records", err)
	}
	return out, nil
}
