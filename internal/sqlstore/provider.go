package sqlstore

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// ProviderColumns is the column list every provider query selects, in the
// order scanProvider reads.
const ProviderColumns = `id, name, authorization_url, token_url, device_authorization_url, revocation_url,
	client_id, client_secret, client_secret_ad, auth_style, scopes, authorize_params, token_params, pkce,
	version, created_at, updated_at, api_base_url, api_token_header, api_token_scheme, api_token_query, preset, template_vars, issuer`

// rawProvider is a providers row as stored: the secret still sealed.
type rawProvider struct {
	p            tokenkeeper.Provider // every field but ClientSecret
	clientSecret []byte
	// secretAD is the credentials row id the secret is still sealed for, as
	// migration 0003 copied it; "" when sealed for this providers row.
	secretAD                             string
	scopes, authorizeParams, tokenParams string
	authStyle                            string
	templateVars                         string
}

func scanProvider(row Row) (*rawProvider, error) {
	var r rawProvider
	p := &r.p
	err := row.Scan(&p.ID, &p.Name, &p.AuthorizationURL, &p.TokenURL, &p.DeviceAuthorizationURL, &p.RevocationURL,
		&p.ClientID, &r.clientSecret, &r.secretAD, &r.authStyle, &r.scopes, &r.authorizeParams, &r.tokenParams, &p.PKCE,
		&p.Version, &p.CreatedAt, &p.UpdatedAt, &p.APIBaseURL, &p.APIToken.Header, &p.APIToken.Scheme, &p.APIToken.Query, &p.Preset, &r.templateVars, &p.Issuer)
	if err != nil {
		return nil, err
	}
	p.AuthStyle = tokenkeeper.AuthStyle(r.authStyle)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return &r, nil
}

// secretSealAD returns the table and row id the provider's secret is
// sealed for.
func (r *rawProvider) secretSealAD() (table, id string) {
	if r.secretAD != "" {
		return "credentials", r.secretAD
	}
	return "providers", r.p.ID
}

// decodeProvider opens the secret of a stored row and returns the provider.
func (s *Store) decodeProvider(ctx context.Context, q Querier, r *rawProvider) (*tokenkeeper.Provider, error) {
	p := r.p
	table, id := r.secretSealAD()
	var err error
	if p.ClientSecret, err = s.openSealed(ctx, q, r.clientSecret, table, id, "client_secret"); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(r.scopes), &p.Scopes); err != nil {
		return nil, fmt.Errorf("decode scopes of provider %s: %w", p.ID, errors.Join(errUndecodable, err))
	}
	if err := json.Unmarshal([]byte(r.authorizeParams), &p.AuthorizeParams); err != nil {
		return nil, fmt.Errorf("decode authorize_params of provider %s: %w", p.ID, errors.Join(errUndecodable, err))
	}
	if err := json.Unmarshal([]byte(r.tokenParams), &p.TokenParams); err != nil {
		return nil, fmt.Errorf("decode token_params of provider %s: %w", p.ID, errors.Join(errUndecodable, err))
	}
	if err := json.Unmarshal([]byte(r.templateVars), &p.TemplateVars); err != nil {
		return nil, fmt.Errorf("decode template_vars of provider %s: %w", p.ID, errors.Join(errUndecodable, err))
	}
	p.Scopes, p.AuthorizeParams, p.TokenParams = cloneList(p.Scopes), cloneParams(p.AuthorizeParams), cloneParams(p.TokenParams)
	p.TemplateVars = cloneParams(p.TemplateVars)
	if err := s.openParamsIn(ctx, q, providerAuthorizeParams, p.ID, p.AuthorizeParams); err != nil {
		return nil, err
	}
	if err := s.openParamsIn(ctx, q, providerTokenParams, p.ID, p.TokenParams); err != nil {
		return nil, err
	}
	return &p, nil
}

func providerNotFound(name string) error {
	return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "provider %q not found", name)
}

// providers caches the providers a batch of credential rows refers to.
type providers map[string]*tokenkeeper.Provider

// get returns the provider with id, reading it through q at its first use.
func (s *Store) providerByID(ctx context.Context, q Querier, cache providers, id string) (*tokenkeeper.Provider, error) {
	if p, ok := cache[id]; ok {
		return p, nil
	}
	r, err := scanProvider(q.QueryRow(ctx, `SELECT `+ProviderColumns+` FROM providers WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("read provider %s: %w", id, err)
	}
	p, err := s.decodeProvider(ctx, q, r)
	if err != nil {
		return nil, err
	}
	if cache != nil {
		cache[id] = p
	}
	return p, nil
}

// normalizeProvider fills defaults and copies the slices and maps of p.
func normalizeProvider(p *tokenkeeper.Provider) {
	if p.PKCE == "" {
		p.PKCE = tokenkeeper.PKCES256
	}
	p.APIToken = p.APIToken.Normalized()
	p.Scopes, p.AuthorizeParams, p.TokenParams = cloneList(p.Scopes), cloneParams(p.AuthorizeParams), cloneParams(p.TokenParams)
	p.TemplateVars = cloneParams(p.TemplateVars)
}

// insertProvider inserts the provider n (ID, Version and times set) in tx.
func (s *Store) insertProvider(ctx context.Context, tx Querier, n *tokenkeeper.Provider) error {
	secret, err := sealValue(s.ring, n.ClientSecret, "providers", n.ID, "client_secret")
	if err != nil {
		return err
	}
	authorizeParams, tokenParams, err := s.sealProviderParams(n)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO providers (`+ProviderColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', $9, $10, $11, $12, $13, $14, $15, $15, $16, $17, $18, $19, $20, $21, $22)`,
		n.ID, n.Name, n.AuthorizationURL, n.TokenURL, n.DeviceAuthorizationURL, n.RevocationURL,
		n.ClientID, secret, string(n.AuthStyle), encodeList(n.Scopes), authorizeParams,
		tokenParams, n.PKCE, n.Version, n.CreatedAt, n.APIBaseURL, n.APIToken.Header, n.APIToken.Scheme, n.APIToken.Query, n.Preset, encodeVars(n.TemplateVars), n.Issuer)
	if s.d.IsUniqueViolation(err) {
		return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "provider %q already exists", n.Name)
	}
	return err
}

// sealProviderParams returns the authorize_params and token_params columns
// of n, secret parameters sealed.
func (s *Store) sealProviderParams(n *tokenkeeper.Provider) (authorize, token string, err error) {
	if authorize, err = s.sealParamsIn(providerAuthorizeParams, n.ID, n.AuthorizeParams); err != nil {
		return "", "", err
	}
	token, err = s.sealParamsIn(providerTokenParams, n.ID, n.TokenParams)
	return authorize, token, err
}

// CreateProvider validates p and inserts it, assigning ID, Version,
// CreatedAt and UpdatedAt; an empty PKCE becomes S256. Returns EINVALID or
// ECONFLICT (name taken).
func (s *Store) CreateProvider(ctx context.Context, p *tokenkeeper.Provider) error {
	if p == nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "provider is required")
	}
	now := s.now()
	n := *p
	normalizeProvider(&n)
	if err := n.Validate(); err != nil {
		return err
	}
	n.ID, n.Version, n.CreatedAt, n.UpdatedAt = newID(), 1, now, now
	if err := s.write(ctx, "create provider", func(tx Querier) error { return s.insertProvider(ctx, tx, &n) }); err != nil {
		return err
	}
	*p = n
	return nil
}

// Provider returns the named provider with its secret opened. Returns
// ENOTFOUND.
func (s *Store) Provider(ctx context.Context, name string) (*tokenkeeper.Provider, error) {
	r, err := scanProvider(s.conn.QueryRow(ctx, `SELECT `+ProviderColumns+` FROM providers WHERE name = $1`, name))
	if err != nil {
		return nil, s.err("get provider", orNotFound(err, providerNotFound(name)))
	}
	p, err := s.decodeProvider(ctx, s.conn, r)
	return p, s.err("get provider", err)
}

// Providers returns all providers ordered by name, secrets opened.
func (s *Store) Providers(ctx context.Context) ([]*tokenkeeper.Provider, error) {
	raws, err := collect(ctx, s.conn, `SELECT `+ProviderColumns+` FROM providers ORDER BY name COLLATE "C"`, nil,
		func(r Rows) (*rawProvider, error) { return scanProvider(r) })
	if err != nil {
		return nil, s.err("list providers", err)
	}
	out := make([]*tokenkeeper.Provider, 0, len(raws))
	for _, r := range raws {
		p, err := s.decodeProvider(ctx, s.conn, r)
		if err != nil {
			return nil, s.err("list providers", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// applyProviderUpdate returns cur with upd applied, and whether anything a
// refresh depends on changed.
func applyProviderUpdate(cur *tokenkeeper.Provider, upd tokenkeeper.ProviderUpdate) (*tokenkeeper.Provider, bool) {
	n := *cur
	fence := false
	set := func(dst *string, v *string) {
		if v != nil {
			fence = fence || *dst != *v
			*dst = *v
		}
	}
	set(&n.TokenURL, upd.TokenURL)
	set(&n.ClientID, upd.ClientID)
	set(&n.ClientSecret, upd.ClientSecret)
	if upd.AuthStyle != nil {
		fence = fence || n.AuthStyle != *upd.AuthStyle
		n.AuthStyle = *upd.AuthStyle
	}
	// A secret param given as "<sealed>" (as the API shows it) keeps its
	// stored value.
	if upd.TokenParams != nil {
		next := keepSealedParams(cur.TokenParams, *upd.TokenParams)
		fence = fence || encodeParams(n.TokenParams) != encodeParams(next)
		n.TokenParams = next
	}
	if upd.AuthorizationURL != nil {
		n.AuthorizationURL = *upd.AuthorizationURL
	}
	if upd.DeviceAuthorizationURL != nil {
		n.DeviceAuthorizationURL = *upd.DeviceAuthorizationURL
	}
	if upd.RevocationURL != nil {
		n.RevocationURL = *upd.RevocationURL
	}
	if upd.Scopes != nil {
		n.Scopes = cloneList(*upd.Scopes)
	}
	if upd.AuthorizeParams != nil {
		n.AuthorizeParams = keepSealedParams(cur.AuthorizeParams, *upd.AuthorizeParams)
	}
	if upd.PKCE != nil {
		n.PKCE = *upd.PKCE
	}
	if upd.APIBaseURL != nil {
		n.APIBaseURL = *upd.APIBaseURL
	}
	if upd.APIToken != nil {
		n.APIToken = upd.APIToken.Normalized()
	}
	return &n, fence
}

// UpdateProvider applies upd in one transaction. A change of the token
// URL, client id or secret, auth style or token parameters moves the
// fencing version of every credential of the provider, so that a refresh
// in flight with the old values cannot commit; each credential uses the
// new values from its next refresh, on its own schedule. A new client
// secret also gives another chance to the credentials the provider refused
// for a bad client (invalid_client, unauthorized_client): they become
// active and are refreshed at once. Returns ENOTFOUND or EINVALID; nothing
// is written on error.
func (s *Store) UpdateProvider(ctx context.Context, name string, upd tokenkeeper.ProviderUpdate) (*tokenkeeper.Provider, error) {
	now := s.now()
	var out *tokenkeeper.Provider
	err := s.write(ctx, "update provider", func(tx Querier) error {
		r, err := scanProvider(tx.QueryRow(ctx, `SELECT `+ProviderColumns+` FROM providers WHERE name = $1`+s.d.ForUpdate, name))
		if err != nil {
			return orNotFound(err, providerNotFound(name))
		}
		cur, err := s.decodeProvider(ctx, tx, r)
		if err != nil {
			return err
		}
		n, fence := applyProviderUpdate(cur, upd)
		if err := n.Validate(); err != nil {
			return err
		}
		n.Version++
		n.UpdatedAt = now
		if err := s.writeProvider(ctx, tx, r, n, upd.ClientSecret != nil); err != nil {
			return err
		}
		if fence {
			if _, err := tx.Exec(ctx, `UPDATE credentials SET version = version + 1 WHERE provider_id = $1`, n.ID); err != nil {
				return err
			}
		}
		if upd.ClientSecret != nil && *upd.ClientSecret != cur.ClientSecret {
			if _, err := tx.Exec(ctx, `UPDATE credentials SET status = 'active', failure_count = 0, last_error = '',
					last_error_code = '', next_refresh_at = $1, version = version + 1, updated_at = $1
				WHERE provider_id = $2 AND status IN ('needs_reauth', 'error')
					AND last_error_code IN ('invalid_client', 'unauthorized_client')`, now, n.ID); err != nil {
				return err
			}
		}
		out = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// writeProvider stores n over the row r in tx; the secret is re-sealed
// when newSecret is set, or when it is still sealed for a credentials row.
func (s *Store) writeProvider(ctx context.Context, tx Querier, r *rawProvider, n *tokenkeeper.Provider, newSecret bool) error {
	secret := r.clientSecret
	if newSecret || r.secretAD != "" {
		var err error
		if secret, err = sealValue(s.ring, n.ClientSecret, "providers", n.ID, "client_secret"); err != nil {
			return err
		}
	}
	authorizeParams, tokenParams, err := s.sealProviderParams(n)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE providers SET authorization_url = $1, token_url = $2, device_authorization_url = $3,
			revocation_url = $4, client_id = $5, client_secret = $6, client_secret_ad = '', auth_style = $7, scopes = $8,
			authorize_params = $9, token_params = $10, pkce = $11, version = $12, updated_at = $13,
			api_base_url = $15, api_token_header = $16, api_token_scheme = $17, api_token_query = $18
		WHERE id = $14`,
		n.AuthorizationURL, n.TokenURL, n.DeviceAuthorizationURL, n.RevocationURL, n.ClientID, secret,
		string(n.AuthStyle), encodeList(n.Scopes), authorizeParams, tokenParams,
		n.PKCE, n.Version, n.UpdatedAt, n.ID, n.APIBaseURL, n.APIToken.Header, n.APIToken.Scheme, n.APIToken.Query)
	return err
}

// DeleteProvider removes a provider no credential and no pending connect
// session uses, with its ended connect sessions. Returns ENOTFOUND, or
// ECONFLICT naming how many credentials (or pending sessions) still use it.
func (s *Store) DeleteProvider(ctx context.Context, name string) error {
	return s.write(ctx, "delete provider", func(tx Querier) error {
		var id string
		if err := tx.QueryRow(ctx, `SELECT id FROM providers WHERE name = $1`+s.d.ForUpdate, name).Scan(&id); err != nil {
			return orNotFound(err, providerNotFound(name))
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM credentials WHERE provider_id = $1`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "provider %q is used by %d credential(s); delete or move them first", name, n)
		}
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM connect_sessions WHERE provider_id = $1 AND status = 'pending' AND expires_at > $2`,
			id, s.now()).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "provider %q has %d pending connect session(s); wait for them to end", name, n)
		}
		// Ended connect sessions go with it (their events by cascade).
		if _, err := tx.Exec(ctx, `DELETE FROM connect_events WHERE session_id IN (SELECT id FROM connect_sessions WHERE provider_id = $1)`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM connect_sessions WHERE provider_id = $1`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM providers WHERE id = $1`, id)
		return err
	})
}

// ProviderCredentialCount returns how many credentials use the named
// provider. Returns ENOTFOUND.
func (s *Store) ProviderCredentialCount(ctx context.Context, name string) (int, error) {
	var id string
	if err := s.conn.QueryRow(ctx, `SELECT id FROM providers WHERE name = $1`, name).Scan(&id); err != nil {
		return 0, s.err("count credentials of provider", orNotFound(err, providerNotFound(name)))
	}
	var n int
	err := s.conn.QueryRow(ctx, `SELECT COUNT(*) FROM credentials WHERE provider_id = $1`, id).Scan(&n)
	return n, s.err("count credentials of provider", err)
}

// inlineProvider returns the provider a credential created or updated with
// inline fields uses: an existing one whose token URL, client id, auth
// style and client secret all equal c's, or else a new one, inserted in
// tx, that is named after the credential (its name, or "<name>-provider",
// or "<name>-provider-<random>" when those are taken).
func (s *Store) inlineProvider(ctx context.Context, tx Querier, c *tokenkeeper.Credential, now time.Time) (*tokenkeeper.Provider, error) {
	raws, err := collect(ctx, tx, `SELECT `+ProviderColumns+` FROM providers
		WHERE token_url = $1 AND client_id = $2 AND auth_style = $3 ORDER BY created_at, id`,
		[]any{c.TokenURL, c.ClientID, string(c.AuthStyle)}, func(r Rows) (*rawProvider, error) { return scanProvider(r) })
	if err != nil {
		return nil, err
	}
	for _, r := range raws {
		p, err := s.decodeProvider(ctx, tx, r)
		if err != nil {
			s.log.Warn("a provider's secret does not open; not reusing it", "provider", r.p.Name, "err", err)
			continue
		}
		if subtle.ConstantTimeCompare([]byte(p.ClientSecret), []byte(c.ClientSecret)) == 1 {
			return p, nil
		}
	}
	p := &tokenkeeper.Provider{ID: newID(), TokenURL: c.TokenURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		AuthStyle: c.AuthStyle, PKCE: tokenkeeper.PKCES256, APIToken: tokenkeeper.DefaultAPIToken, Version: 1, CreatedAt: now, UpdatedAt: now}
	name, err := s.freeProviderName(ctx, tx, c.Name)
	if err != nil {
		return nil, err
	}
	p.Name = name
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := s.insertProvider(ctx, tx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// freeProviderName returns a provider name derived from a credential name
// that no provider has yet.
func (s *Store) freeProviderName(ctx context.Context, tx Querier, base string) (string, error) {
	candidates := []string{base, clip(base, 64-len("-provider")) + "-provider",
		clip(base, 64-len("-provider-")-8) + "-provider-" + newID()[:8]}
	for _, name := range candidates {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM providers WHERE name = $1`, name).Scan(&n); err != nil {
			return "", err
		}
		if n == 0 {
			return name, nil
		}
	}
	return "", tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "no free provider name for credential %q", base)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimRight(s[:n], ".-_")
}

// upgradeProviders finishes migration 0003 where it left providers with a
// secret still sealed for a credential's row: it re-seals each for its
// provider's row, and merges the providers that are the same client (same
// token URL, client id, auth style and secret) into the one first by name,
// moving their credentials to it. Values do not change, so no refresh is
// fenced. A store that cannot write (a read-only file) keeps reading the
// secrets where they are.
func (s *Store) upgradeProviders(ctx context.Context) {
	var legacy int
	if err := s.conn.QueryRow(ctx, `SELECT COUNT(*) FROM providers WHERE client_secret_ad <> ''`).Scan(&legacy); err != nil || legacy == 0 {
		return
	}
	merged, resealed := 0, 0
	err := s.write(ctx, "upgrade providers", func(tx Querier) error {
		merged, resealed = 0, 0
		raws, err := collect(ctx, tx, `SELECT `+ProviderColumns+` FROM providers WHERE client_secret_ad <> '' ORDER BY name COLLATE "C"`+s.d.ForUpdate, nil,
			func(r Rows) (*rawProvider, error) { return scanProvider(r) })
		if err != nil {
			return err
		}
		keep := map[string]*tokenkeeper.Provider{}
		for _, r := range raws {
			p, err := s.decodeProvider(ctx, tx, r)
			if err != nil {
				return err
			}
			key := strings.Join([]string{p.TokenURL, p.ClientID, string(p.AuthStyle), encodeParams(p.TokenParams), p.ClientSecret}, "\x00")
			if k := keep[key]; k != nil {
				if _, err := tx.Exec(ctx, `UPDATE credentials SET provider_id = $1 WHERE provider_id = $2`, k.ID, p.ID); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM providers WHERE id = $1`, p.ID); err != nil {
					return err
				}
				merged++
				continue
			}
			keep[key] = p
			if err := s.writeProvider(ctx, tx, r, p, true); err != nil {
				return err
			}
			resealed++
		}
		return nil
	})
	if err != nil {
		s.log.Warn("could not re-seal the provider secrets migration 0003 moved; they stay readable where they are", "err", err)
		return
	}
	s.log.Info("re-sealed provider secrets moved from credentials", "providers", resealed, "merged", merged)
}

// encodeVars encodes template variables as a JSON object ("{}" for none).
func encodeVars(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map of strings always marshals
	return string(b)
}
