package sqlstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// RotateMasterKey re-wraps every data key under newMaster, in one
// transaction under the data keys' lock, and returns how many it
// re-wrapped. The data keys themselves do not change, so no sealed value
// is touched. Every data key is first unwrapped with the store's master
// key: if one does not unwrap (the store was opened with a key that does
// not match every data key), nothing is written and the error matches
// seal.ErrMasterKeyMismatch.
//
// It is meant for an offline command: afterwards this store, and every
// other process using the database, still holds the old master key and
// must be closed and opened again with newMaster. Returns EINVALID for a
// new key of the wrong size or equal to the current one.
func (s *Store) RotateMasterKey(ctx context.Context, newMaster []byte) (int, error) {
	if len(newMaster) != seal.KeySize {
		return 0, tokenkeeper.Errorf(tokenkeeper.EINVALID, "the new master key must be %d bytes, got %d", seal.KeySize, len(newMaster))
	}
	if bytes.Equal(newMaster, s.master) {
		return 0, tokenkeeper.Errorf(tokenkeeper.EINVALID, "the new master key is the current one")
	}
	type stored struct {
		id      int64
		wrapped []byte
	}
	var n int
	err := s.write(ctx, "rotate master key", func(tx Querier) error {
		n = 0
		if err := s.lock(ctx, tx, lockKeys); err != nil {
			return err
		}
		keys, err := collect(ctx, tx, `SELECT id, wrapped FROM data_keys ORDER BY id`+s.d.ForUpdate, nil, func(r Rows) (stored, error) {
			var k stored
			err := r.Scan(&k.id, &k.wrapped)
			return k, err
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return fmt.Errorf("the database has no data key")
		}
		// Every key is checked before the first write.
		rewrapped := make([][]byte, len(keys))
		for i, k := range keys {
			if k.id <= 0 || k.id > 1<<32-1 {
				return fmt.Errorf("invalid data key id %d", k.id)
			}
			key, err := seal.UnwrapKey(s.master, uint32(k.id), k.wrapped)
			if err != nil {
				return fmt.Errorf("data key %d: %w", k.id, err)
			}
			if rewrapped[i], err = seal.WrapKey(newMaster, uint32(k.id), key); err != nil {
				return err
			}
		}
		for i, k := range keys {
			if _, err := tx.Exec(ctx, `UPDATE data_keys SET wrapped = $1 WHERE id = $2`, rewrapped[i], k.id); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.log.Info("re-wrapped the data keys under a new master key", "data_keys", n)
	return n, nil
}
