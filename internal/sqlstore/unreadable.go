package sqlstore

import (
	"context"
	"errors"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// errUndecodable marks a stored column that does not decode (a JSON list
// or object damaged at rest).
var errUndecodable = errors.New("stored value does not decode")

// isUnreadable reports whether err, from decoding one row, means the row
// itself is damaged (a sealed field that does not open, a column that does
// not decode), as opposed to the database failing.
func isUnreadable(err error) bool {
	return errors.Is(err, seal.ErrOpen) || errors.Is(err, seal.ErrMalformed) ||
		errors.Is(err, seal.ErrUnknownKey) || errors.Is(err, errUndecodable)
}

// ReadableCredentials returns the credentials f selects, ordered by name
// with their secrets opened, skipping every row that is unreadable: a sealed field
// that does not open (tampered with, moved from another row, sealed with a
// data key the database does not hold; its own or its provider's) or a
// column that does not decode.
// The names of those rows are returned in unreadable, in the same order,
// and each is logged (its name and id and why; never a value). A failure
// of the database fails the whole call.
func (s *Store) ReadableCredentials(ctx context.Context, f tokenkeeper.CredentialFilter) ([]*tokenkeeper.Credential, []string, error) {
	q, args, err := filterQuery(f)
	if err != nil {
		return nil, nil, err
	}
	raws, err := scanCredentials(ctx, s.conn, q, args...)
	if err != nil {
		return nil, nil, s.err("list credentials", err)
	}
	out := make([]*tokenkeeper.Credential, 0, len(raws))
	var unreadable []string
	cache := providers{}
	for _, r := range raws {
		c, err := s.decodeWith(ctx, s.conn, r, cache)
		switch {
		case err != nil && isUnreadable(err):
			s.log.Error("skipping a credential whose stored row does not open or decode: restore it from a backup, or delete and re-create it",
				"credential", r.name, "id", r.id, "err", err)
			unreadable = append(unreadable, r.name)
		case err != nil:
			return nil, nil, s.err("list credentials", err)
		default:
			out = append(out, c)
		}
	}
	return out, unreadable, nil
}
