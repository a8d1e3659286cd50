package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// lockKeys takes the transaction-scoped advisory lock that serializes the
// creation of data keys across replicas.
const lockKeys = `SELECT pg_advisory_xact_lock(1953197413, hashtext(current_schema() || '.data_keys'))`

// initKeys creates the first data key if the database has none, then loads
// every data key into the ring.
func (db *DB) initKeys(ctx context.Context) error {
	err := db.write(ctx, "create data key", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockKeys); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&n); err != nil {
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
	return db.reloadKeys(ctx, db.pool)
}

// insertDataKey generates the next data key, stores it wrapped by the master
// key and returns it; it does not touch the ring. The caller holds lockKeys.
func (db *DB) insertDataKey(ctx context.Context, tx pgx.Tx) (uint32, []byte, error) {
	var maxID int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM data_keys`).Scan(&maxID); err != nil {
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
	if _, err := tx.Exec(ctx, `INSERT INTO data_keys (id, wrapped, created_at) VALUES ($1, $2, $3)`,
		int64(id), wrapped, db.now()); err != nil {
		return 0, nil, err
	}
	return id, key, nil
}

// querier runs a query on the pool or inside a transaction. Code holding a
// transaction passes it, so that it never waits for a second connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// reloadKeys adds to the ring every stored data key it does not hold yet:
// keys another replica added by rotation.
func (db *DB) reloadKeys(ctx context.Context, q querier) error {
	db.reloadMu.Lock()
	defer db.reloadMu.Unlock()
	rows, err := q.Query(ctx, `SELECT id, wrapped FROM data_keys ORDER BY id`)
	if err != nil {
		return storeErr("load data keys", err)
	}
	type stored struct {
		id      int64
		wrapped []byte
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stored, error) {
		var s stored
		err := r.Scan(&s.id, &s.wrapped)
		return s, err
	})
	if err != nil {
		return storeErr("load data keys", err)
	}
	for _, k := range keys {
		if k.id <= 0 || k.id > 1<<32-1 {
			return fmt.Errorf("load data keys: invalid data key id %d", k.id)
		}
		if db.ring.Has(uint32(k.id)) {
			continue
		}
		key, err := seal.UnwrapKey(db.master, uint32(k.id), k.wrapped)
		if err != nil {
			return fmt.Errorf("load data key %d: %w", k.id, err)
		}
		if err := db.ring.Add(uint32(k.id), key); err != nil {
			return fmt.Errorf("load data keys: %w", err)
		}
	}
	if db.ring.Len() == 0 {
		return errors.New("load data keys: the database has no data key")
	}
	return nil
}

// openSealed opens a sealed column value; nil means empty. A value sealed
// under a data key this replica has not loaded (another replica rotated)
// triggers one reload of the keys.
func (db *DB) openSealed(ctx context.Context, q querier, ct []byte, table, id, field string) (string, error) {
	if ct == nil {
		return "", nil
	}
	ad := seal.AD(table, id, field)
	pt, err := db.ring.Open(ct, ad)
	if errors.Is(err, seal.ErrUnknownKey) {
		if rerr := db.reloadKeys(ctx, q); rerr != nil {
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
// transaction that locks every credential and signing key row.
// Other replicas learn the new key when they first meet a value sealed with
// it; until then they keep sealing with the previous key, whose values keep
// opening: old keys are never removed.
func (db *DB) RotateKey(ctx context.Context) (int, error) {
	// Pick up keys other replicas added, so every stored value opens.
	if err := db.reloadKeys(ctx, db.pool); err != nil {
		return 0, err
	}
	var (
		newID  uint32
		newKey []byte
		count  int
	)
	err := db.write(ctx, "rotate data key", func(tx pgx.Tx) error {
		count = 0
		if _, err := tx.Exec(ctx, lockKeys); err != nil {
			return err
		}
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
		rows, err := tx.Query(ctx, `SELECT id, client_secret, refresh_token, access_token FROM credentials ORDER BY id FOR UPDATE`)
		if err != nil {
			return err
		}
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.values[0], &x.values[1], &x.values[2])
			return x, err
		})
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for _, r := range all {
			var out [3][]byte
			for i, ct := range r.values {
				if ct == nil {
					continue
				}
				ad := seal.AD("credentials", r.id, sealedFields[i])
				pt, err := ring.Open(ct, ad)
				if errors.Is(err, seal.ErrUnknownKey) {
					// A key added after the reload above: another rotation
					// committed meanwhile.
					if rerr := db.reloadKeys(ctx, tx); rerr != nil {
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
			batch.Queue(`UPDATE credentials SET client_secret = $1, refresh_token = $2, access_token = $3 WHERE id = $4`,
				out[0], out[1], out[2], r.id)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
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
	err := db.write(ctx, "add data key", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockKeys); err != nil {
			return err
		}
		var err error
		id, key, err = db.insertDataKey(ctx, tx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return id, db.ring.Add(id, key)
}
