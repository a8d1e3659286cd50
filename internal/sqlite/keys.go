package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// initKeys creates the first data key if the database has none, then loads
// every data key into the ring.
func (db *DB) initKeys(ctx context.Context) error {
	err := db.write(ctx, "create data key", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		_, _, err := db.insertDataKey(ctx, tx)
		if err == nil {
			db.log.Info("created the first data key")
		}
		return err
	})
	if err != nil {
		return err
	}
	return db.reloadKeys(ctx)
}

// insertDataKey generates the next data key, stores it wrapped by the master
// key and returns it; it does not touch the ring.
func (db *DB) insertDataKey(ctx context.Context, tx *sql.Tx) (uint32, []byte, error) {
	var maxID int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM data_keys`).Scan(&maxID); err != nil {
		return 0, nil, err
	}
	if maxID >= 1<<32-1 {
		return 0, nil, errors.New("data key ids are exhausted")
	}
	id := uint32(maxID + 1)
	key, err := seal.NewDataKey()
	if err != nil {
		return 0, nil, err
	}
	wrapped, err := seal.WrapKey(db.master, id, key)
	if err != nil {
		return 0, nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO data_keys (id, wrapped, created_at) VALUES (?, ?, ?)`,
		int64(id), wrapped, fmtTime(db.now())); err != nil {
		return 0, nil, err
	}
	return id, key, nil
}

// reloadKeys adds to the ring every stored data key it does not hold yet:
// keys another process added by rotation.
func (db *DB) reloadKeys(ctx context.Context) error {
	db.reloadMu.Lock()
	defer db.reloadMu.Unlock()
	rows, err := db.reader.QueryContext(ctx, `SELECT id, wrapped FROM data_keys ORDER BY id`)
	if err != nil {
		return storeErr("load data keys", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var wrapped []byte
		if err := rows.Scan(&id, &wrapped); err != nil {
			return storeErr("load data keys", err)
		}
		if id <= 0 || id > 1<<32-1 {
			return fmt.Errorf("load data keys: invalid data key id %d", id)
		}
		if db.ring.Has(uint32(id)) {
			continue
		}
		key, err := seal.UnwrapKey(db.master, uint32(id), wrapped)
		if err != nil {
			return fmt.Errorf("load data key %d: %w", id, err)
		}
		if err := db.ring.Add(uint32(id), key); err != nil {
			return fmt.Errorf("load data keys: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return storeErr("load data keys", err)
	}
	if db.ring.Len() == 0 {
		return errors.New("load data keys: the database has no data key")
	}
	return nil
}

// openSealed opens a sealed column value; nil means empty. A value sealed
// under a data key this process has not loaded (another process rotated)
// triggers one reload of the keys.
func (db *DB) openSealed(ctx context.Context, ct []byte, table, id, field string) (string, error) {
	if ct == nil {
		return "", nil
	}
	ad := seal.AD(table, id, field)
	pt, err := db.ring.Open(ct, ad)
	if errors.Is(err, seal.ErrUnknownKey) {
		if rerr := db.reloadKeys(ctx); rerr != nil {
			return "", rerr
		}
		pt, err = db.ring.Open(ct, ad)
	}
	if err != nil {
		return "", fmt.Errorf("open %s.%s of %s: %w", table, field, id, err)
	}
	return string(pt), nil
}

// sealValue seals a secret for a column; the empty string is stored as NULL.
func sealValue(ring *seal.Ring, s, table, id, field string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	ct, err := ring.Seal([]byte(s), seal.AD(table, id, field))
	if err != nil {
		return nil, fmt.Errorf("seal %s.%s: %w", table, field, err)
	}
	return ct, nil
}

// sealedFields are the sealed columns of the credentials table.
var sealedFields = []string{"client_secret", "refresh_token", "access_token"}

// RotateKey adds a new data key, makes it the active one and re-seals every
// secret with it (credentials' secrets and JWT signing keys), all in one
// transaction. Rows that another process writes
// with an older key afterwards still open: old keys are never removed.
func (db *DB) RotateKey(ctx context.Context) (int, error) {
	// Pick up keys other processes added, so every stored value opens.
	if err := db.reloadKeys(ctx); err != nil {
		return 0, err
	}
	var (
		newID  uint32
		newKey []byte
		count  int
	)
	err := db.write(ctx, "rotate data key", func(tx *sql.Tx) error {
		count = 0
		id, key, err := db.insertDataKey(ctx, tx)
		if err != nil {
			return err
		}
		ring := db.ring.Clone()
		if err := ring.Add(id, key); err != nil {
			return err
		}
		newID, newKey = id, key

		type row struct {
			id     string
			values [3][]byte
		}
		var all []row
		rows, err := tx.QueryContext(ctx, `SELECT id, client_secret, refresh_token, access_token FROM credentials`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.values[0], &r.values[1], &r.values[2]); err != nil {
				rows.Close()
				return err
			}
			all = append(all, r)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `UPDATE credentials SET client_secret = ?, refresh_token = ?, access_token = ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range all {
			var out [3][]byte
			for i, ct := range r.values {
				if ct == nil {
					continue
				}
				ad := seal.AD("credentials", r.id, sealedFields[i])
				pt, err := ring.Open(ct, ad)
				if errors.Is(err, seal.ErrUnknownKey) {
					// A key another process added after the reload above.
					if rerr := db.reloadKeys(ctx); rerr != nil {
						return rerr
					}
					ring = db.ring.Clone()
					if err := ring.Add(id, key); err != nil {
						return err
					}
					pt, err = ring.Open(ct, ad)
				}
				if err != nil {
					return fmt.Errorf("open credentials.%s of %s: %w", sealedFields[i], r.id, err)
				}
				if out[i], err = ring.Seal(pt, ad); err != nil {
					return err
				}
				count++
			}
			if _, err := stmt.ExecContext(ctx, out[0], out[1], out[2], r.id); err != nil {
				return err
			}
		}
		n, err := db.resealSigningKeys(ctx, tx, ring, id, key)
		count += n
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := db.ring.Add(newID, newKey); err != nil {
		return 0, fmt.Errorf("rotate data key: %w", err)
	}
	db.log.Info("rotated the data key", "key_id", newID, "resealed", count)
	return count, nil
}

// addDataKey adds a new active data key without re-sealing anything. Tests
// use it to check that older keys keep opening their rows.
func (db *DB) addDataKey(ctx context.Context) (uint32, error) {
	var id uint32
	var key []byte
	err := db.write(ctx, "add data key", func(tx *sql.Tx) error {
		var err error
		id, key, err = db.insertDataKey(ctx, tx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return id, db.ring.Add(id, key)
}
