package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// lockKeys names the advisory lock that serializes the creation of data
// keys across replicas.
const lockKeys = ".data_keys"

// initKeys creates the first data key if the database has none, then loads
// every data key into the ring.
func (s *Store) initKeys(ctx context.Context) error {
	err := s.write(ctx, "create data key", func(tx Querier) error {
		if err := s.lock(ctx, tx, lockKeys); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM data_keys`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		_, _, err := s.insertDataKey(ctx, tx)
		if err == nil {
			s.log.Info("created the first data key")
		}
		return err
	})
	if err != nil {
		return err
	}
	return s.reloadKeys(ctx, s.conn)
}

// insertDataKey generates the next data key, stores it wrapped by the master
// key and returns it; it does not touch the ring. The caller holds lockKeys.
func (s *Store) insertDataKey(ctx context.Context, tx Querier) (uint32, []byte, error) {
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
	wrapped, err := seal.WrapKey(s.master, id, key)
	if err != nil {
		return 0, nil, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO data_keys (id, wrapped, created_at) VALUES ($1, $2, $3)`,
		int64(id), wrapped, s.now()); err != nil {
		return 0, nil, err
	}
	return id, key, nil
}

// reloadKeys adds to the ring every stored data key it does not hold yet:
// keys another replica added by rotation. Code holding a transaction passes
// it as q, so that it never waits for a second connection.
func (s *Store) reloadKeys(ctx context.Context, q Querier) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	type stored struct {
		id      int64
		wrapped []byte
	}
	keys, err := collect(ctx, q, `SELECT id, wrapped FROM data_keys ORDER BY id`, nil, func(r Rows) (stored, error) {
		var k stored
		err := r.Scan(&k.id, &k.wrapped)
		return k, err
	})
	if err != nil {
		return s.err("load data keys", err)
	}
	for _, k := range keys {
		if k.id <= 0 || k.id > 1<<32-1 {
			return fmt.Errorf("load data keys: invalid data key id %d", k.id)
		}
		if s.ring.Has(uint32(k.id)) {
			continue
		}
		key, err := seal.UnwrapKey(s.master, uint32(k.id), k.wrapped)
		if err != nil {
			return fmt.Errorf("load data key %d: %w", k.id, err)
		}
		if err := s.ring.Add(uint32(k.id), key); err != nil {
			return fmt.Errorf("load data keys: %w", err)
		}
	}
	if s.ring.Len() == 0 {
		return errors.New("load data keys: the database has no data key")
	}
	return nil
}

// openSealed opens a sealed column value; nil means empty. A value sealed
// under a data key this replica has not loaded (another replica rotated)
// triggers one reload of the keys.
func (s *Store) openSealed(ctx context.Context, q Querier, ct []byte, table, id, field string) (string, error) {
	if ct == nil {
		return "", nil
	}
	ad := seal.AD(table, id, field)
	pt, err := s.ring.Open(ct, ad)
	if errors.Is(err, seal.ErrUnknownKey) {
		if rerr := s.reloadKeys(ctx, q); rerr != nil {
			return "", rerr
		}
		pt, err = s.ring.Open(ct, ad)
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
var sealedFields = []string{"refresh_token", "access_token"}

// RotateKey adds a new data key, makes it the active one and re-seals every
// secret with it (credentials' secrets and JWT signing keys), all in one
// transaction that locks every credential and signing key row.
// Other replicas learn the new key when they first meet a value sealed with
// it; until then they keep sealing with the previous key, whose values keep
// opening: old keys are never removed.
func (s *Store) RotateKey(ctx context.Context) (int, error) {
	// Pick up keys other replicas added, so every stored value opens.
	if err := s.reloadKeys(ctx, s.conn); err != nil {
		return 0, err
	}
	var (
		newID  uint32
		newKey []byte
		count  int
	)
	err := s.write(ctx, "rotate data key", func(tx Querier) error {
		count = 0
		if err := s.lock(ctx, tx, lockKeys); err != nil {
			return err
		}
		id, key, err := s.insertDataKey(ctx, tx)
		if err != nil {
			return err
		}
		rs := &resealer{s: s, ctx: ctx, tx: tx, ring: s.ring.Clone(), id: id, key: key}
		if err := rs.ring.Add(id, key); err != nil {
			return err
		}
		newID, newKey = id, key

		type row struct {
			id, ad string
			values [2][]byte
			params string
		}
		creds, err := collect(ctx, tx, `SELECT id, refresh_token, access_token, params FROM credentials ORDER BY id`+s.d.ForUpdate, nil, func(r Rows) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.values[0], &x.values[1], &x.params)
			return x, err
		})
		if err != nil {
			return err
		}
		var updates [][]any
		for _, r := range creds {
			for i, ct := range r.values {
				if r.values[i], err = rs.reseal(ct, "credentials", r.id, sealedFields[i]); err != nil {
					return err
				}
			}
			// Secret params too, sealing any stored before sealing existed.
			params, err := rs.resealParams(r.id, r.params)
			if err != nil {
				return err
			}
			updates = append(updates, []any{r.values[0], r.values[1], params, r.id})
		}
		err = execEach(ctx, tx, `UPDATE credentials SET refresh_token = $1, access_token = $2, params = $3 WHERE id = $4`, updates)
		if err != nil {
			return err
		}
		// A provider secret migration 0003 left sealed for its credential's
		// row is re-sealed for the provider's own row.
		// Secret authorize and token params are re-sealed too.
		type provRow struct {
			row
			authorizeParams, tokenParams string
		}
		provs, err := collect(ctx, tx, `SELECT id, client_secret_ad, client_secret, authorize_params, token_params FROM providers ORDER BY id`+s.d.ForUpdate, nil, func(r Rows) (provRow, error) {
			var x provRow
			err := r.Scan(&x.id, &x.ad, &x.values[0], &x.authorizeParams, &x.tokenParams)
			return x, err
		})
		if err != nil {
			return err
		}
		updates = nil
		for _, p := range provs {
			pt, err := rs.open(p.values[0], adTable(p.ad, "providers"), orID(p.ad, p.id), "client_secret")
			if err != nil {
				return err
			}
			ct, err := rs.seal(pt, "providers", p.id, "client_secret")
			if err != nil {
				return err
			}
			authorizeParams, err := rs.resealParamsIn(providerAuthorizeParams, p.id, p.authorizeParams)
			if err != nil {
				return err
			}
			tokenParams, err := rs.resealParamsIn(providerTokenParams, p.id, p.tokenParams)
			if err != nil {
				return err
			}
			updates = append(updates, []any{ct, authorizeParams, tokenParams, p.id})
		}
		if err := execEach(ctx, tx, `UPDATE providers SET client_secret = $1, client_secret_ad = '', authorize_params = $2, token_params = $3 WHERE id = $4`, updates); err != nil {
			return err
		}
		keys, err := collect(ctx, tx, `SELECT id, secret FROM signing_keys ORDER BY id`+s.d.ForUpdate, nil, func(r Rows) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.values[0])
			return x, err
		})
		if err != nil {
			return err
		}
		updates = nil
		for _, k := range keys {
			ct, err := rs.reseal(k.values[0], "signing_keys", k.id, "secret")
			if err != nil {
				return err
			}
			updates = append(updates, []any{ct, k.id})
		}
		if err := execEach(ctx, tx, `UPDATE signing_keys SET secret = $1 WHERE id = $2`, updates); err != nil {
			return err
		}
		if err := resealWebhookSecrets(rs); err != nil {
			return err
		}
		count = rs.count
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := s.ring.Add(newID, newKey); err != nil {
		return 0, fmt.Errorf("rotate data key: %w", err)
	}
	s.log.Info("rotated the data key", "key_id", newID, "resealed", count)
	return count, nil
}

// AddDataKey adds a new active data key without re-sealing anything. Tests
// use it to check that older keys keep opening their rows.
func (s *Store) AddDataKey(ctx context.Context) error {
	var id uint32
	var key []byte
	err := s.write(ctx, "add data key", func(tx Querier) (err error) {
		if err = s.lock(ctx, tx, lockKeys); err == nil {
			id, key, err = s.insertDataKey(ctx, tx)
		}
		return err
	})
	if err != nil {
		return err
	}
	return s.ring.Add(id, key)
}

// resealer re-seals values inside RotateKey's transaction, which holds
// lockKeys, with ring, whose active key is the new data key (id, key).
type resealer struct {
	s     *Store
	ctx   context.Context
	tx    Querier
	ring  *seal.Ring
	id    uint32
	key   []byte
	count int // values re-sealed
}

// reseal opens ct and seals it again with the new key; nil stays nil. A
// value sealed with a key added after RotateKey loaded the keys (another
// rotation committed meanwhile) makes it reload the keys first.
func (r *resealer) reseal(ct []byte, table, id, field string) ([]byte, error) {
	pt, err := r.open(ct, table, id, field)
	if err != nil {
		return nil, err
	}
	return r.seal(pt, table, id, field)
}

// seal seals pt for a column with the new key; nil stays nil.
func (r *resealer) seal(pt []byte, table, id, field string) ([]byte, error) {
	if pt == nil {
		return nil, nil
	}
	return r.ring.Seal(pt, seal.AD(table, id, field))
}

// adTable returns the table a sealed provider secret is bound to: the
// credentials row named by legacy, or table when legacy is "".
func adTable(legacy, table string) string {
	if legacy != "" {
		return "credentials"
	}
	return table
}

// orID returns legacy, or id when legacy is "".
func orID(legacy, id string) string {
	if legacy != "" {
		return legacy
	}
	return id
}

// open opens ct, sealed for the column named; nil stays nil and counts as
// nothing.
func (r *resealer) open(ct []byte, table, id, field string) ([]byte, error) {
	if ct == nil {
		return nil, nil
	}
	ad := seal.AD(table, id, field)
	pt, err := r.ring.Open(ct, ad)
	if errors.Is(err, seal.ErrUnknownKey) {
		if err := r.s.reloadKeys(r.ctx, r.tx); err != nil {
			return nil, err
		}
		r.ring = r.s.ring.Clone()
		if err := r.ring.Add(r.id, r.key); err != nil {
			return nil, err
		}
		pt, err = r.ring.Open(ct, ad)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s.%s of %s: %w", table, field, id, err)
	}
	r.count++
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}
