package sqlstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// Secret parameters (tokenkeeper.IsSecretParam) are kept in their params
// column, as every parameter is, but with their values sealed: the value is
// sealedParamPrefix and the base64 of the ciphertext, bound to the table,
// the row id and the field "<column>.<name>". Other parameters stay plain
// text. The columns: credentials.params, providers.token_params and
// providers.authorize_params.
const sealedParamPrefix = "sealed:v1:"

// paramColumn names a params column: its table and column.
type paramColumn struct{ table, column string }

var (
	credentialParams        = paramColumn{"credentials", "params"}
	providerTokenParams     = paramColumn{"providers", "token_params"}
	providerAuthorizeParams = paramColumn{"providers", "authorize_params"}
)

// field is the associated-data field of the parameter name.
func (c paramColumn) field(name string) string { return c.column + "." + name }

// paramField is the associated-data field of a credential's parameter.
func paramField(name string) string { return credentialParams.field(name) }

// sealParams returns the params column of credential id: p as a JSON
// object, the values of secret parameters sealed.
func (s *Store) sealParams(id string, p map[string]string) (string, error) {
	return s.sealParamsIn(credentialParams, id, p)
}

// sealParamsIn returns column col of row id: p as a JSON object, the
// values of secret parameters sealed.
func (s *Store) sealParamsIn(col paramColumn, id string, p map[string]string) (string, error) {
	if len(p) == 0 {
		return "{}", nil
	}
	out := make(map[string]string, len(p))
	for k, v := range p {
		if !tokenkeeper.IsSecretParam(k) {
			out[k] = v
			continue
		}
		ct, err := s.ring.Seal([]byte(v), seal.AD(col.table, id, col.field(k)))
		if err != nil {
			return "", fmt.Errorf("seal %s.%s: %w", col.table, col.field(k), err)
		}
		out[k] = sealedParamPrefix + base64.RawStdEncoding.EncodeToString(ct)
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// openParams opens, in p, the sealed values of credential id's secret
// parameters. A secret parameter stored before sealing existed (plain
// text) is returned as it is; RotateKey and the start of a store seal it.
func (s *Store) openParams(ctx context.Context, q Querier, id string, p map[string]string) error {
	return s.openParamsIn(ctx, q, credentialParams, id, p)
}

// openParamsIn is openParams for column col of row id.
func (s *Store) openParamsIn(ctx context.Context, q Querier, col paramColumn, id string, p map[string]string) error {
	for k, v := range p {
		ct, ok := sealedParam(k, v)
		if !ok {
			continue
		}
		if ct == nil {
			return fmt.Errorf("open %s.%s of %s: %w", col.table, col.field(k), id, seal.ErrMalformed)
		}
		pt, err := s.openSealed(ctx, q, ct, col.table, id, col.field(k))
		if err != nil {
			return err
		}
		p[k] = pt
	}
	return nil
}

// sealedParam reports whether v is the stored form of a sealed secret
// parameter k, and returns its ciphertext (nil when it does not decode).
func sealedParam(k, v string) ([]byte, bool) {
	if !tokenkeeper.IsSecretParam(k) || !strings.HasPrefix(v, sealedParamPrefix) {
		return nil, false
	}
	ct, err := base64.RawStdEncoding.DecodeString(v[len(sealedParamPrefix):])
	if err != nil || len(ct) == 0 {
		return nil, true
	}
	return ct, true
}

// keepSealedParams returns next, where a secret parameter given as
// tokenkeeper.SealedParamValue (as the API shows it) takes its value from
// cur: a credential read, edited and written back keeps its secrets.
func keepSealedParams(cur, next map[string]string) map[string]string {
	out := cloneParams(next)
	for k, v := range out {
		if v == tokenkeeper.SealedParamValue && tokenkeeper.IsSecretParam(k) {
			if old, ok := cur[k]; ok {
				out[k] = old
			}
		}
	}
	return out
}

// resealParams returns credential id's params column with every secret
// parameter sealed by rs: sealed ones re-sealed, plain-text ones (stored
// before sealing existed) sealed for the first time.
func (rs *resealer) resealParams(id, raw string) (string, error) {
	return rs.resealParamsIn(credentialParams, id, raw)
}

// resealParamsIn is resealParams for column col of row id.
func (rs *resealer) resealParamsIn(col paramColumn, id, raw string) (string, error) {
	var p map[string]string
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return "", fmt.Errorf("decode %s of %s %s: %w", col.column, col.table, id, errors.Join(errUndecodable, err))
	}
	changed := false
	for k, v := range p {
		if !tokenkeeper.IsSecretParam(k) {
			continue
		}
		ad := seal.AD(col.table, id, col.field(k))
		var ct []byte
		var err error
		if old, ok := sealedParam(k, v); ok {
			if old == nil {
				return "", fmt.Errorf("open %s.%s of %s: %w", col.table, col.field(k), id, seal.ErrMalformed)
			}
			ct, err = rs.reseal(old, col.table, id, col.field(k))
		} else {
			ct, err = rs.ring.Seal([]byte(v), ad)
			rs.count++
		}
		if err != nil {
			return "", err
		}
		p[k] = sealedParamPrefix + base64.RawStdEncoding.EncodeToString(ct)
		changed = true
	}
	if !changed {
		return raw, nil
	}
	b, err := json.Marshal(p)
	return string(b), err
}

// sealPlainParams seals the secret parameters that a store of an earlier
// version kept in plain text. A store runs it when it opens; a row changed
// meanwhile is left to RotateKey or to its next update.
func (s *Store) sealPlainParams(ctx context.Context) error {
	type row struct{ id, params string }
	rows, err := collect(ctx, s.conn, `SELECT id, params FROM credentials`, nil, func(r Rows) (row, error) {
		var x row
		err := r.Scan(&x.id, &x.params)
		return x, err
	})
	if err != nil {
		return s.err("seal secret params", err)
	}
	n := 0
	for _, r := range rows {
		var p map[string]string
		if json.Unmarshal([]byte(r.params), &p) != nil {
			continue // an unreadable row is reported where it is read
		}
		plain := false
		for k, v := range p {
			if _, sealed := sealedParam(k, v); tokenkeeper.IsSecretParam(k) && !sealed {
				plain = true
			}
		}
		if !plain {
			continue
		}
		for k, v := range p {
			if _, sealed := sealedParam(k, v); !sealed && tokenkeeper.IsSecretParam(k) {
				ct, err := s.ring.Seal([]byte(v), seal.AD("credentials", r.id, paramField(k)))
				if err != nil {
					return fmt.Errorf("seal credentials.%s: %w", paramField(k), err)
				}
				p[k] = sealedParamPrefix + base64.RawStdEncoding.EncodeToString(ct)
			}
		}
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		var changed int64
		err = s.write(ctx, "seal secret params", func(tx Querier) error {
			var cur string
			if err := tx.QueryRow(ctx, `SELECT params FROM credentials WHERE id = $1`+s.d.ForUpdate, r.id).Scan(&cur); err != nil {
				return orNotFound(err, nil)
			}
			if cur != r.params {
				return nil // changed meanwhile, so written by this version
			}
			changed, err = tx.Exec(ctx, `UPDATE credentials SET params = $1 WHERE id = $2`, string(b), r.id)
			return err
		})
		if err != nil {
			return err
		}
		n += int(changed)
	}
	if n > 0 {
		s.log.Info("sealed secret params stored in plain text by an earlier version", "credentials", n)
	}
	return nil
}
