package sqlstore

import (
	"context"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// ChangeUserPassword replaces a user's password hash and, in the same
// transaction, ends every session of the user: as RevokeUserSessions.
// Returns EINVALID or ENOTFOUND.
func (s *Store) ChangeUserPassword(ctx context.Context, username, hash string, now, accessExpiresAt time.Time) error {
	if err := CheckPasswordHash(hash); err != nil {
		return err
	}
	_, err := s.revokeSessions(ctx, "change user password", username, hash, now, accessExpiresAt)
	return err
}

// RevokeUserSessions ends every session of a user: it revokes all the
// user's refresh-token families, records revocations of their access
// tokens until accessExpiresAt, and marks the user's sessions revoked at
// now, so that a login that read the user before now and has not yet
// stored its family fails (CreateRefreshToken compares the family's
// AuthTime). It returns how many sessions it ended: the families that
// were live (a current token neither revoked nor expired). Returns
// EINVALID or ENOTFOUND.
func (s *Store) RevokeUserSessions(ctx context.Context, username string, now, accessExpiresAt time.Time) (int, error) {
	return s.revokeSessions(ctx, "revoke user sessions", username, "", now, accessExpiresAt)
}

// revokeSessions is RevokeUserSessions, also setting the password hash
// when hash is not empty.
func (s *Store) revokeSessions(ctx context.Context, op, username, hash string, now, accessExpiresAt time.Time) (int, error) {
	if err := CheckRevocationTimes(now, accessExpiresAt); err != nil {
		return 0, err
	}
	if tokenkeeper.ValidateName(username) != nil {
		return 0, errNoUser
	}
	now, accessExpiresAt = utc(now), utc(accessExpiresAt)
	var n int
	err := s.write(ctx, op, func(tx Querier) error {
		var id string
		var err error
		if hash != "" {
			err = tx.QueryRow(ctx, `UPDATE users SET password_hash = $2, updated_at = $3, sessions_revoked_at = $3
				WHERE username = $1 RETURNING id`, username, hash, now).Scan(&id)
		} else {
			err = tx.QueryRow(ctx, `UPDATE users SET sessions_revoked_at = $2
				WHERE username = $1 RETURNING id`, username, now).Scan(&id)
		}
		if err != nil {
			return orNotFound(err, errNoUser)
		}
		n, err = s.revokeUserFamilies(ctx, tx, id, now, accessExpiresAt)
		return err
	})
	return n, err
}
