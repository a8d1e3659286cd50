package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

const apiKeyColumns = `id, name, prefix, hash, role, credentials, created_at, revoked_at`

func scanAPIKey(s scanner) (*tokenkeeper.APIKey, error) {
	var k tokenkeeper.APIKey
	var role, creds, created string
	var revoked sql.NullString
	if err := s.Scan(&k.ID, &k.Name, &k.Prefix, &k.Hash, &role, &creds, &created, &revoked); err != nil {
		return nil, err
	}
	k.Role = tokenkeeper.Role(role)
	if err := json.Unmarshal([]byte(creds), &k.Credentials); err != nil {
		return nil, fmt.Errorf("decode credentials of API key %s: %w", k.ID, err)
	}
	if len(k.Credentials) == 0 {
		k.Credentials = nil
	}
	var err error
	if k.CreatedAt, err = parseTime(sql.NullString{String: created, Valid: true}); err != nil {
		return nil, err
	}
	if k.RevokedAt, err = parseTime(revoked); err != nil {
		return nil, err
	}
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
	if len(k.Hash) != sha256.Size {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "API key hash must be a SHA-256 (%d bytes)", sha256.Size)
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
// Hash must be the SHA-256 of the key. Returns EINVALID, or ECONFLICT when the name or the
// hash is taken.
func (db *DB) CreateAPIKey(ctx context.Context, k *tokenkeeper.APIKey) error {
	if err := checkAPIKey(k); err != nil {
		return err
	}
	n := *k
	n.ID = newID()
	n.CreatedAt = db.now()
	n.RevokedAt = time.Time{}
	n.Credentials = append([]string(nil), k.Credentials...)
	if len(n.Credentials) == 0 {
		n.Credentials = nil
	}
	creds, _ := json.Marshal(n.Credentials) // a []string always marshals
	if n.Credentials == nil {
		creds = []byte("[]")
	}
	err := db.write(ctx, "create API key", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, n.Name, n.Prefix, n.Hash, string(n.Role), string(creds), fmtTime(n.CreatedAt), nullTime(n.RevokedAt))
		if isUniqueViolation(err) {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "API key %q already exists", n.Name)
		}
		return err
	})
	if err != nil {
		return err
	}
	*k = n
	return nil
}

// APIKeyByHash returns the unrevoked key with the given hash. Returns
// ENOTFOUND.
func (db *DB) APIKeyByHash(ctx context.Context, hash []byte) (*tokenkeeper.APIKey, error) {
	k, err := scanAPIKey(db.reader.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys
		WHERE hash = ? AND revoked_at IS NULL`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "API key not found")
	} else if err != nil {
		return nil, storeErr("get API key", err)
	}
	return k, nil
}

// APIKeys lists all keys, revoked ones included, oldest first.
func (db *DB) APIKeys(ctx context.Context) ([]*tokenkeeper.APIKey, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_at, name`)
	if err != nil {
		return nil, storeErr("list API keys", err)
	}
	defer rows.Close()
	var out []*tokenkeeper.APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, storeErr("list API keys", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list API keys", err)
	}
	return out, nil
}

// RevokeAPIKey revokes a key by id or, if no id matches, by name. Revoking
// a revoked key keeps its first revocation time. Returns ENOTFOUND.
func (db *DB) RevokeAPIKey(ctx context.Context, idOrName string) error {
	now := fmtTime(db.now())
	return db.write(ctx, "revoke API key", func(tx *sql.Tx) error {
		for _, col := range []string{"id", "name"} {
			var id string
			var revoked sql.NullString
			err := tx.QueryRowContext(ctx, `SELECT id, revoked_at FROM api_keys WHERE `+col+` = ?`, idOrName).Scan(&id, &revoked)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			if revoked.Valid {
				return nil
			}
			_, err = tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ?`, now, id)
			return err
		}
		return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "API key %q not found", idOrName)
	})
}
