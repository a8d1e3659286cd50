package auth

import (
	"context"
	"fmt"

	"github.com/tokenkeeper/tokenkeeper"
)

// ValidateUsername reports whether name may be a username: the same rule as
// every other name in tokenkeeper (1 to 64 letters, digits, '.', '_' or
// '-', starting with a letter or digit). Returns EINVALID.
func ValidateUsername(name string) error {
	if tokenkeeper.ValidateName(name) != nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid username: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return nil
}

// ValidateUserRole reports whether r is a role a user may have: RoleAdmin
// or RoleViewer. Returns EINVALID.
func ValidateUserRole(r tokenkeeper.Role) error {
	if r != tokenkeeper.RoleAdmin && r != tokenkeeper.RoleViewer {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid role %q: use %q or %q", truncate(string(r), 40), tokenkeeper.RoleAdmin, tokenkeeper.RoleViewer)
	}
	return nil
}

// CreateUser adds a user with the given password and role (RoleAdmin or
// RoleViewer). Returns EINVALID (bad username, role or password) or
// ECONFLICT (username taken). The returned user carries no password hash.
func (s *Service) CreateUser(ctx context.Context, username, password string, role tokenkeeper.Role) (*tokenkeeper.User, error) {
	if err := ValidateUsername(username); err != nil {
		return nil, err
	}
	if err := ValidateUserRole(role); err != nil {
		return nil, err
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	u := &tokenkeeper.User{Username: username, PasswordHash: hash, Role: role}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	s.log.Info("created user", "user", username, "role", role)
	return withoutHash(u), nil
}

// SetPassword replaces a user's password and ends all the user's
// sessions: every refresh-token family is revoked, and its access tokens
// are refused here at once and on other replicas within ReloadInterval. A
// login in flight that read the old password stores no family. Returns
// EINVALID or ENOTFOUND.
func (s *Service) SetPassword(ctx context.Context, username, password string) error {
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	now := s.now()
	if err := s.store.ChangeUserPassword(ctx, username, hash, now, now.Add(s.revokeTo)); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	s.log.Info("changed password; sessions revoked", "user", username)
	s.reloadAfterRevocation(ctx)
	return nil
}

// RevokeSessions ends all of a user's sessions, as SetPassword does, and
// returns how many refresh-token families it revoked. Returns ENOTFOUND.
func (s *Service) RevokeSessions(ctx context.Context, username string) (int, error) {
	now := s.now()
	n, err := s.store.RevokeUserSessions(ctx, username, now, now.Add(s.revokeTo))
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	s.log.Info("revoked sessions", "user", username, "families", n)
	s.reloadAfterRevocation(ctx)
	return n, nil
}

// reloadAfterRevocation applies revocations just stored here at once.
func (s *Service) reloadAfterRevocation(ctx context.Context) {
	if err := s.reloadRevocations(ctx); err != nil {
		// The store holds them; Run will load them shortly.
		s.log.Warn("cannot reload revocations after revoking sessions", "err", err)
	}
}

// DeleteUser removes a user and revokes all its families; its access
// tokens are refused here at once and on other replicas within
// ReloadInterval. Returns ENOTFOUND, or ECONFLICT when the user is the
// last admin credential (with a store that is a tokenkeeper.AdminGuard).
func (s *Service) DeleteUser(ctx context.Context, username string) error {
	now := s.now()
	del := s.store.DeleteUser
	if g, ok := s.store.(tokenkeeper.AdminGuard); ok {
		del = g.DeleteUserKeepingAdmin // never the last admin
	}
	if err := del(ctx, username, now, now.Add(s.revokeTo)); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	s.log.Info("deleted user", "user", username)
	if err := s.reloadRevocations(ctx); err != nil {
		// The user is gone; Run will load the revocations shortly.
		s.log.Warn("cannot reload revocations after deleting a user", "err", err)
	}
	return nil
}

// User returns a user by name, without its password hash. Returns ENOTFOUND.
func (s *Service) User(ctx context.Context, username string) (*tokenkeeper.User, error) {
	u, err := s.store.User(ctx, username)
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return withoutHash(u), nil
}

// Users lists the users by name, without their password hashes.
func (s *Service) Users(ctx context.Context) ([]*tokenkeeper.User, error) {
	us, err := s.store.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	for i, u := range us {
		us[i] = withoutHash(u)
	}
	return us, nil
}

func withoutHash(u *tokenkeeper.User) *tokenkeeper.User {
	c := *u
	c.PasswordHash = ""
	return &c
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
