package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.AdminGuard = (*Store)(nil)

// lockAdmins serializes the removals of admin credentials on PostgreSQL
// (SQLite writes are serialized anyway).
const lockAdmins = ".admins"

// otherAdmins counts the admin credentials other than the API key exceptKey
// and the user exceptUser (either may be empty).
func (s *Store) otherAdmins(ctx context.Context, tx Querier, exceptKey, exceptUser string) (int, error) {
	var keys, users int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL AND id <> $1`, exceptKey).Scan(&keys); err != nil {
		return 0, err
	}
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE role = 'admin' AND username <> $1`, exceptUser).Scan(&users); err != nil {
		return 0, err
	}
	return keys + users, nil
}

func lastAdmin(what string) error {
	return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "cannot remove %s: %s", what, tokenkeeper.LastAdminMessage)
}

// RevokeAPIKeyKeepingAdmin implements tokenkeeper.AdminGuard.
func (s *Store) RevokeAPIKeyKeepingAdmin(ctx context.Context, idOrName string) (alreadyRevoked bool, err error) {
	now := s.now()
	err = s.write(ctx, "revoke API key", func(tx Querier) error {
		alreadyRevoked = false
		if err := s.lock(ctx, tx, lockAdmins); err != nil {
			return err
		}
		for _, where := range []string{`id = $1`, byNameUnrevokedFirst} {
			var id, name, role string
			var revoked *time.Time
			err := tx.QueryRow(ctx, `SELECT id, name, role, revoked_at FROM api_keys WHERE `+where+s.d.ForUpdate, idOrName).Scan(&id, &name, &role, &revoked)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			if revoked != nil {
				alreadyRevoked = true
				return nil
			}
			if role == string(tokenkeeper.RoleAdmin) {
				n, err := s.otherAdmins(ctx, tx, id, "")
				if err != nil {
					return err
				}
				if n == 0 {
					return lastAdmin("API key " + name)
				}
			}
			_, err = tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE id = $2`, now, id)
			return err
		}
		return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "API key %q not found", idOrName)
	})
	return alreadyRevoked, err
}

// DeleteUserKeepingAdmin implements tokenkeeper.AdminGuard.
func (s *Store) DeleteUserKeepingAdmin(ctx context.Context, username string, now, accessExpiresAt time.Time) error {
	if err := CheckRevocationTimes(now, accessExpiresAt); err != nil {
		return err
	}
	if tokenkeeper.ValidateName(username) != nil {
		return errNoUser
	}
	now, accessExpiresAt = utc(now), utc(accessExpiresAt)
	return s.write(ctx, "delete user", func(tx Querier) error {
		if err := s.lock(ctx, tx, lockAdmins); err != nil {
			return err
		}
		var role string
		err := tx.QueryRow(ctx, `SELECT role FROM users WHERE username = $1`+s.d.ForUpdate, username).Scan(&role)
		if err != nil {
			return orNotFound(err, errNoUser)
		}
		if role == string(tokenkeeper.RoleAdmin) {
			n, err := s.otherAdmins(ctx, tx, "", username)
			if err != nil {
				return err
			}
			if n == 0 {
				return lastAdmin("user " + username)
			}
		}
		return s.deleteUser(ctx, tx, username, now, accessExpiresAt)
	})
}
