package tokenkeeper

import (
	"context"
	"time"
)

// AdminGuard removes admin credentials without ever leaving the broker
// without one. The SQL stores implement it; the HTTP API and the CLI use it
// for every revocation of an API key and deletion of a user, so that nobody
// locks themselves out by accident. Each method checks and removes in one
// transaction, so two concurrent removals of the last two admins cannot
// both succeed. An admin credential is an unrevoked admin API key or an
// admin user. Safe for concurrent use.
type AdminGuard interface {
	// RevokeAPIKeyKeepingAdmin revokes a key by id or, if no id matches,
	// by name (the unrevoked key of that name first). It reports whether
	// the key was already revoked (then nothing changes). Returns
	// ENOTFOUND, or ECONFLICT when the key is the last admin credential.
	RevokeAPIKeyKeepingAdmin(ctx context.Context, idOrName string) (alreadyRevoked bool, err error)
	// DeleteUserKeepingAdmin is DeleteUser, refused with ECONFLICT when
	// the user is the last admin credential.
	DeleteUserKeepingAdmin(ctx context.Context, username string, now, accessExpiresAt time.Time) error
}

// LastAdminMessage is the message of the ECONFLICT an AdminGuard returns.
const LastAdminMessage = "it is the last admin credential (no other admin API key or admin user exists): create another admin API key or admin user first; 'tokenkeeper admin recover' restores access offline"
