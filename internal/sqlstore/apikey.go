package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

const apiKeyColumns = `id, name, prefix, hash, role, credentials, created_at, revoked_at`

// byNameUnrevokedFirst selects the key named $1: names are unique among
// unrevoked keys only (a revoked key's name may be reused), so the
// unrevoked one, else the newest revoked one.
const byNameUnrevokedFirst = `name = $1 ORDER BY CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, created_at DESC LIMIT 1`

func scanAPIKey(row Row) (*tokenkeeper.APIKey, error) {
	var k tokenkeeper.APIKey
	var role, creds string
	var revoked *time.Time
	if err := row.Scan(&k.ID, &k.Name, &k.Prefix, &k.Hash, &role, &creds, &k.CreatedAt, &revoked); err != nil {
		return nil, err
	}
	k.Role = tokenkeeper.Role(role)
	if err := json.Unmarshal([]byte(creds), &k.Credentials); err != nil {
		return nil, fmt.Errorf("decode credentials of API key %s: %w", k.ID, err)
	}
	if len(k.Credentials) == 0 {
		k.Credentials = nil
	}
	k.CreatedAt = k.CreatedAt.UTC()
	k.RevokedAt = fromNull(revoked)
	return &k, nil
}

func checkAPIKey(k *tokenkeeper.APIKey) error {
	if k == nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "API key is required")
	}
	if err := tokenkeeper.ValidateName(k.Name); err != nil {
		return err
	}
	if k.Role != tokenkeeper.RoleAdmin && k.Role != tokenkeeper.RoleConsumer {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "role must be admin or consumer")
	}
	if err := CheckSHA256("API key hash", k.Hash); err != nil {
		return err
	}
	if len(k.Prefix) > 16 {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "API key prefix is too long")
	}
	for _, n := range k.Credentials {
		if err := tokenkeeper.ValidateName(n); err != nil {
			return err
		}
	}
	return nil
}

// CreateAPIKey stores k, assigning ID and CreatedAt (RevokedAt is ignored).
// Hash must be the SHA-256 of the key. Returns EINVALID, or ECONFLICT when
// the name is taken by an unrevoked key or the hash by any key.
func (s *Store) CreateAPIKey(ctx context.Context, k *tokenkeeper.APIKey) error {
	if err := checkAPIKey(k); err != nil {
		return err
	}
	n := *k
	n.ID = newID()
	n.CreatedAt = s.now()
	n.RevokedAt = time.Time{}
	n.Credentials = cloneList(k.Credentials)
	creds := encodeList(n.Credentials)
	conflict := tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "API key %q already exists", n.Name)
	if err := s.exec(ctx, "create API key", conflict, nil, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)`,
		n.ID, n.Name, n.Prefix, n.Hash, string(n.Role), creds, n.CreatedAt); err != nil {
		return err
	}
	*k = n
	return nil
}

// APIKeyByHash returns the unrevoked key with the given hash. Returns
// ENOTFOUND.
func (s *Store) APIKeyByHash(ctx context.Context, hash []byte) (*tokenkeeper.APIKey, error) {
	k, err := scanAPIKey(s.conn.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
		WHERE hash = $1 AND revoked_at IS NULL`, hash))
	return k, s.err("get API key", orNotFound(err, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "API key not found")))
}

// APIKeys lists all keys, revoked ones included, oldest first.
func (s *Store) APIKeys(ctx context.Context) ([]*tokenkeeper.APIKey, error) {
	out, err := collect(ctx, s.conn, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_at, name COLLATE "C"`, nil,
		func(r Rows) (*tokenkeeper.APIKey, error) { return scanAPIKey(r) })
	return out, s.err("list API keys", err)
}

// RevokeAPIKey revokes a key by id or, if no id matches, by name (the
// unrevoked key of that name, else the newest). Revoking a revoked key
// keeps its first revocation time. Returns ENOTFOUND.
func (s *Store) RevokeAPIKey(ctx context.Context, idOrName string) error {
	now := s.now()
	return s.write(ctx, "revoke API key", func(tx Querier) error {
		for _, where := range []string{`id = $1`, byNameUnrevokedFirst} {
			var id string
			var revoked *time.Time
			err := tx.QueryRow(ctx, `SELECT id, revoked_at FROM api_keys WHERE `+where+s.d.ForUpdate, idOrName).Scan(&id, &revoked)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			if revoked != nil {
				return nil
			}
			_, err = tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE id = $2`, now, id)
			return err
		}
		return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "API key %q not found", idOrName)
	})
}
