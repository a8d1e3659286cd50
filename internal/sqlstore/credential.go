package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// CredentialColumns is the column list every credential query selects, in
// the order scanCredential reads.
const CredentialColumns = `id, name, provider_id, grant_type, refresh_token,
	scopes, params, refresh_lead, access_token, token_type, expires_at, status,
	failure_count, last_error, last_error_code, last_refresh_at, next_refresh_at, version,
	lease_owner, lease_expires_at, created_at, updated_at, end_user_id, end_user_name, end_user_email, extras`

// rawCredential is a credentials row as stored: secrets still sealed.
type rawCredential struct {
	id, name, providerID, grantType      string
	refreshToken, accessToken            []byte
	scopes, params                       string
	refreshLead                          int64
	tokenType                            string
	expiresAt                            *time.Time
	status                               string
	failureCount                         int
	lastError, lastErrorCode             string
	lastRefreshAt                        *time.Time
	nextRefreshAt                        time.Time
	version                              int64
	leaseOwner                           string
	leaseExpiresAt                       *time.Time
	createdAt, updatedAt                 time.Time
	endUserID, endUserName, endUserEmail string
	extras                               string // a JSON object of strings
}

func scanCredential(row Row) (*rawCredential, error) {
	var r rawCredential
	err := row.Scan(&r.id, &r.name, &r.providerID, &r.grantType, &r.refreshToken,
		&r.scopes, &r.params, &r.refreshLead, &r.accessToken, &r.tokenType, &r.expiresAt, &r.status,
		&r.failureCount, &r.lastError, &r.lastErrorCode, &r.lastRefreshAt, &r.nextRefreshAt, &r.version,
		&r.leaseOwner, &r.leaseExpiresAt, &r.createdAt, &r.updatedAt, &r.endUserID, &r.endUserName, &r.endUserEmail, &r.extras)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func scanCredentials(ctx context.Context, q Querier, query string, args ...any) ([]*rawCredential, error) {
	return collect(ctx, q, query, args, func(r Rows) (*rawCredential, error) { return scanCredential(r) })
}

// decode opens the secrets of a stored row and returns the credential,
// with its provider's current values. q reads the provider (and data keys
// if the row names one not loaded yet).
func (s *Store) decode(ctx context.Context, q Querier, r *rawCredential) (*tokenkeeper.Credential, error) {
	return s.decodeWith(ctx, q, r, nil)
}

// decodeWith is decode reading providers through cache (nil: no cache).
func (s *Store) decodeWith(ctx context.Context, q Querier, r *rawCredential, cache providers) (*tokenkeeper.Credential, error) {
	p, err := s.providerByID(ctx, q, cache, r.providerID)
	if err != nil {
		return nil, err
	}
	c := &tokenkeeper.Credential{
		ID:             r.id,
		Name:           r.name,
		Provider:       p.Name,
		ProviderID:     p.ID,
		TokenURL:       p.TokenURL,
		ClientID:       p.ClientID,
		ClientSecret:   p.ClientSecret,
		AuthStyle:      p.AuthStyle,
		TokenParams:    cloneParams(p.TokenParams),
		Preset:         p.Preset,
		TemplateVars:   cloneParams(p.TemplateVars),
		APIBaseURL:     p.APIBaseURL,
		APIToken:       p.APIToken,
		GrantType:      tokenkeeper.GrantType(r.grantType),
		EndUserID:      r.endUserID,
		EndUserName:    r.endUserName,
		EndUserEmail:   r.endUserEmail,
		RefreshLead:    time.Duration(r.refreshLead),
		Status:         tokenkeeper.Status(r.status),
		FailureCount:   r.failureCount,
		LastError:      r.lastError,
		LastErrorCode:  r.lastErrorCode,
		LastRefreshAt:  fromNull(r.lastRefreshAt),
		NextRefreshAt:  r.nextRefreshAt.UTC(),
		Version:        r.version,
		LeaseOwner:     r.leaseOwner,
		LeaseExpiresAt: fromNull(r.leaseExpiresAt),
		CreatedAt:      r.createdAt.UTC(),
		UpdatedAt:      r.updatedAt.UTC(),
	}
	if c.RefreshToken, err = s.openSealed(ctx, q, r.refreshToken, "credentials", r.id, "refresh_token"); err != nil {
		return nil, err
	}
	if r.accessToken != nil {
		at, err := s.openSealed(ctx, q, r.accessToken, "credentials", r.id, "access_token")
		if err != nil {
			return nil, err
		}
		c.Token = &tokenkeeper.Token{AccessToken: at, TokenType: r.tokenType, ExpiresAt: fromNull(r.expiresAt)}
	}
	if err := json.Unmarshal([]byte(r.scopes), &c.Scopes); err != nil {
		return nil, fmt.Errorf("decode scopes of credential %s: %w", r.id, errors.Join(errUndecodable, err))
	}
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	if err := json.Unmarshal([]byte(r.params), &c.Params); err != nil {
		return nil, fmt.Errorf("decode params of credential %s: %w", r.id, errors.Join(errUndecodable, err))
	}
	if len(c.Params) == 0 {
		c.Params = nil
	}
	if err := s.openParams(ctx, q, r.id, c.Params); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(r.extras), &c.Extras); err != nil {
		return nil, fmt.Errorf("decode extras of credential %s: %w", r.id, errors.Join(errUndecodable, err))
	}
	if len(c.Extras) == 0 {
		c.Extras = nil
	}
	return c, nil
}

func (s *Store) decodeAll(ctx context.Context, raws []*rawCredential) ([]*tokenkeeper.Credential, error) {
	out := make([]*tokenkeeper.Credential, 0, len(raws))
	cache := providers{}
	for _, r := range raws {
		c, err := s.decodeWith(ctx, s.conn, r, cache)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// encodeList stores a list of strings as a JSON array.
func encodeList(s []string) string {
	if len(s) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(s) // a []string always marshals
	return string(b)
}

// encodeParams stores parameters as a JSON object.
func encodeParams(p map[string]string) string {
	if len(p) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(p) // a map[string]string always marshals
	return string(b)
}

// cloneList copies l; empty is nil.
func cloneList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return slices.Clone(l)
}

// cloneParams copies p; empty is nil.
func cloneParams(p map[string]string) map[string]string {
	if len(p) == 0 {
		return nil
	}
	return maps.Clone(p)
}

func notFound(name string) error {
	return tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "credential %q not found", name)
}

// sealedCredential holds the sealed forms of a credential's secrets.
type sealedCredential struct {
	refreshToken, accessToken []byte
}

func (s *Store) sealCredential(c *tokenkeeper.Credential) (sc sealedCredential, err error) {
	var accessToken string
	if c.Token != nil {
		accessToken = c.Token.AccessToken
	}
	if sc.refreshToken, err = sealValue(s.ring, c.RefreshToken, "credentials", c.ID, "refresh_token"); err != nil {
		return sc, err
	}
	sc.accessToken, err = sealValue(s.ring, accessToken, "credentials", c.ID, "access_token")
	return sc, err
}

// checkState validates the token state fields Validate does not cover.
func checkState(c *tokenkeeper.Credential) error {
	var expiresAt time.Time
	if c.Token != nil {
		if c.Token.AccessToken == "" {
			return Invalid("token has no access token")
		}
		expiresAt = c.Token.ExpiresAt
	}
	if c.FailureCount < 0 {
		return Invalid("failure count must not be negative")
	}
	return firstErr(Time("next_refresh_at", c.NextRefreshAt), Time("last_refresh_at", c.LastRefreshAt), Time("expires_at", expiresAt))
}

// CreateCredential validates c and inserts it, assigning ID, Version,
// CreatedAt and UpdatedAt. An empty Status becomes active and a zero
// NextRefreshAt becomes now, so that a new credential is refreshed at once.
// Lease fields are ignored.
//
// The credential's provider is the one c.Provider names (c's TokenURL,
// ClientID, ClientSecret and AuthStyle must then be empty). Without
// c.Provider, they are given inline, and the credential uses the oldest
// provider whose token URL, client id, auth style and client secret all
// equal them, or else a new provider, created in the same transaction and
// named after the credential: its name, "<name>-provider" if a provider
// has that name, or "<name>-provider-<8 random hex digits>". A credential
// of a named provider without scopes gets the provider's default scopes.
// On return, c holds its provider's name, id and current values.
//
// Returns EINVALID, ENOTFOUND (no such provider) or ECONFLICT (name taken).
func (s *Store) CreateCredential(ctx context.Context, c *tokenkeeper.Credential) error {
	return s.createCredential(ctx, c, nil)
}

// createCredential is CreateCredential; post, if not nil, runs in the same
// transaction after the insert, given the new credential's id, and its
// error undoes the insert.
func (s *Store) createCredential(ctx context.Context, c *tokenkeeper.Credential, post func(tx Querier, id string) error) error {
	if c == nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "credential is required")
	}
	now := s.now()
	n := *c
	n.ID = newID()
	n.ProviderID = ""
	if n.Status == "" {
		n.Status = tokenkeeper.StatusActive
	}
	if n.NextRefreshAt.IsZero() {
		n.NextRefreshAt = now
	}
	if n.Provider != "" {
		if n.TokenURL != "" || n.ClientID != "" || n.ClientSecret != "" || n.AuthStyle != "" || len(n.TokenParams) > 0 {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "give either a provider or token_url, client_id, client_secret and auth_style, not both")
		}
		if err := ValidateProviderRef(n.Provider); err != nil {
			return err
		}
	} else {
		n.TokenParams = nil
		if err := n.Validate(); err != nil {
			return err
		}
	}
	if err := checkState(&n); err != nil {
		return err
	}
	n.NextRefreshAt = utc(n.NextRefreshAt)
	n.LastRefreshAt = utc(n.LastRefreshAt)
	if n.Token != nil {
		t := *n.Token
		t.ExpiresAt = utc(t.ExpiresAt)
		n.Token = &t
	}
	n.Version = 1
	n.LeaseOwner, n.LeaseExpiresAt = "", time.Time{}
	n.CreatedAt, n.UpdatedAt = now, now
	n.Scopes = cloneList(n.Scopes)
	sealed, err := s.sealCredential(&n)
	if err != nil {
		return err
	}
	params, err := s.sealParams(n.ID, n.Params)
	if err != nil {
		return err
	}
	var tokenType string
	var expiresAt any
	if n.Token != nil {
		tokenType, expiresAt = n.Token.TokenType, nullTime(n.Token.ExpiresAt)
	}
	var created tokenkeeper.Credential
	err = s.write(ctx, "create credential", func(tx Querier) error {
		var p *tokenkeeper.Provider
		if n.Provider != "" {
			r, err := scanProvider(tx.QueryRow(ctx, `SELECT `+ProviderColumns+` FROM providers WHERE name = $1`+s.d.ForShare, n.Provider))
			if err != nil {
				return orNotFound(err, providerNotFound(n.Provider))
			}
			if p, err = s.decodeProvider(ctx, tx, r); err != nil {
				return err
			}
			if len(n.Scopes) == 0 {
				n.Scopes = cloneList(p.Scopes)
			}
		} else {
			var err error
			if p, err = s.inlineProvider(ctx, tx, &n, now); err != nil {
				return err
			}
		}
		created = withProvider(&n, p)
		if err := created.Validate(); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO credentials (`+CredentialColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, '', NULL, $19, $19, $20, $21, $22, $23)`,
			n.ID, n.Name, p.ID, string(n.GrantType), sealed.refreshToken,
			encodeList(n.Scopes), params, int64(n.RefreshLead),
			sealed.accessToken, tokenType, expiresAt, string(n.Status),
			n.FailureCount, n.LastError, n.LastErrorCode, nullTime(n.LastRefreshAt), n.NextRefreshAt, n.Version,
			now, n.EndUserID, n.EndUserName, n.EndUserEmail, encodeVars(n.Extras))
		if s.d.IsUniqueViolation(err) {
			return tokenkeeper.Errorf(tokenkeeper.ECONFLICT, "credential %q already exists", n.Name)
		} else if err != nil {
			return err
		}
		if post != nil {
			if err := post(tx, n.ID); err != nil {
				return err
			}
		}
		return s.notify(ctx, tx, tokenkeeper.Change{Kind: tokenkeeper.ChangeCreated, CredentialID: n.ID, CredentialName: n.Name, Version: n.Version, NextRefreshAt: n.NextRefreshAt})
	})
	if err != nil {
		return err
	}
	created.Params = cloneParams(created.Params)
	*c = created
	return nil
}

// ValidateProviderRef checks the name of a provider a credential refers
// to. Returns EINVALID.
func ValidateProviderRef(name string) error {
	if err := tokenkeeper.ValidateName(name); err != nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid provider name %q", clip(name, 80))
	}
	return nil
}

// withProvider returns a copy of c with p's name, id and values.
func withProvider(c *tokenkeeper.Credential, p *tokenkeeper.Provider) tokenkeeper.Credential {
	n := *c
	n.Provider, n.ProviderID = p.Name, p.ID
	n.TokenURL, n.ClientID, n.ClientSecret, n.AuthStyle = p.TokenURL, p.ClientID, p.ClientSecret, p.AuthStyle
	n.TokenParams = cloneParams(p.TokenParams)
	n.Preset, n.TemplateVars = p.Preset, cloneParams(p.TemplateVars)
	n.APIBaseURL, n.APIToken = p.APIBaseURL, p.APIToken
	return n
}

func (s *Store) getCredential(ctx context.Context, where string, arg any) (*tokenkeeper.Credential, error) {
	r, err := scanCredential(s.conn.QueryRow(ctx, `SELECT `+CredentialColumns+` FROM credentials WHERE `+where, arg))
	if err != nil {
		return nil, err
	}
	return s.decode(ctx, s.conn, r)
}

// Credential returns the named credential with its secrets opened.
// Returns ENOTFOUND.
func (s *Store) Credential(ctx context.Context, name string) (*tokenkeeper.Credential, error) {
	c, err := s.getCredential(ctx, "name = $1", name)
	return c, s.err("get credential", orNotFound(err, notFound(name)))
}

// CredentialByID returns a credential by id. Returns ENOTFOUND.
func (s *Store) CredentialByID(ctx context.Context, id string) (*tokenkeeper.Credential, error) {
	c, err := s.getCredential(ctx, "id = $1", id)
	return c, s.err("get credential", orNotFound(err, tokenkeeper.Errorf(tokenkeeper.ENOTFOUND, "credential with id %q not found", id)))
}

// Credentials returns all credentials ordered by name, secrets opened.
func (s *Store) Credentials(ctx context.Context) ([]*tokenkeeper.Credential, error) {
	return s.FilterCredentials(ctx, tokenkeeper.CredentialFilter{})
}

// FilterCredentials returns the credentials f selects ordered by name,
// secrets opened. A provider that does not exist selects none. Returns
// EINVALID for an invalid status.
func (s *Store) FilterCredentials(ctx context.Context, f tokenkeeper.CredentialFilter) ([]*tokenkeeper.Credential, error) {
	q, args, err := filterQuery(f)
	if err != nil {
		return nil, err
	}
	raws, err := scanCredentials(ctx, s.conn, q, args...)
	if err != nil {
		return nil, s.err("list credentials", err)
	}
	out, err := s.decodeAll(ctx, raws)
	return out, s.err("list credentials", err)
}

// filterQuery returns the query of the credentials f selects, ordered by
// name. Returns EINVALID (a bad status).
func filterQuery(f tokenkeeper.CredentialFilter) (string, []any, error) {
	if f.Status != "" && !f.Status.Valid() {
		return "", nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid status %q", clip(string(f.Status), 40))
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Provider != "" {
		add("provider_id IN (SELECT id FROM providers WHERE name = $%d)", f.Provider)
	}
	if f.Status != "" {
		add("status = $%d", string(f.Status))
	}
	if f.EndUserID != "" {
		add("end_user_id = $%d", f.EndUserID)
	}
	q := `SELECT ` + CredentialColumns + ` FROM credentials`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return q + ` ORDER BY name COLLATE "C"`, args, nil
}

// applyUpdate returns cur with upd applied. The fencing version moves when
// anything a refresh depends on changes.
func applyUpdate(cur *tokenkeeper.Credential, upd tokenkeeper.CredentialUpdate, now time.Time) *tokenkeeper.Credential {
	n := *cur
	bump := false
	if upd.TokenURL != nil {
		bump = bump || *upd.TokenURL != cur.TokenURL
		n.TokenURL = *upd.TokenURL
	}
	if upd.ClientID != nil {
		bump = bump || *upd.ClientID != cur.ClientID
		n.ClientID = *upd.ClientID
	}
	reauthorized := false
	if upd.ClientSecret != nil {
		bump = bump || *upd.ClientSecret != cur.ClientSecret
		n.ClientSecret = *upd.ClientSecret
		reauthorized = true
	}
	if upd.RefreshToken != nil {
		bump = bump || *upd.RefreshToken != cur.RefreshToken
		n.RefreshToken = *upd.RefreshToken
		reauthorized = true
	}
	if upd.Scopes != nil {
		n.Scopes = cloneList(*upd.Scopes)
	}
	if upd.AuthStyle != nil {
		n.AuthStyle = *upd.AuthStyle
	}
	if upd.Params != nil {
		n.Params = keepSealedParams(cur.Params, *upd.Params)
	}
	if upd.RefreshLead != nil {
		n.RefreshLead = *upd.RefreshLead
	}
	if upd.Token != nil {
		t := *upd.Token
		t.ExpiresAt = utc(t.ExpiresAt)
		n.Token = &t
		bump = true
	}
	for _, f := range []struct{ dst, v *string }{{&n.EndUserID, upd.EndUserID}, {&n.EndUserName, upd.EndUserName}, {&n.EndUserEmail, upd.EndUserEmail}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if upd.Extras != nil {
		n.Extras = maps.Clone(*upd.Extras)
	}
	if reauthorized {
		if n.Status == tokenkeeper.StatusNeedsReauth || n.Status == tokenkeeper.StatusError {
			n.Status = tokenkeeper.StatusActive
			n.LastError, n.LastErrorCode = "", ""
		}
		n.FailureCount = 0
		n.NextRefreshAt = now
	}
	if upd.Status != nil {
		n.Status = *upd.Status
	}
	if upd.NextRefreshAt != nil {
		n.NextRefreshAt = utc(*upd.NextRefreshAt)
	}
	if bump {
		n.Version++
	}
	n.UpdatedAt = now
	return &n
}

// UpdateCredential applies upd and records ev (if not nil) in the same
// transaction. A new token URL, client id, client secret or auth style is
// the provider's: when this credential is the provider's only one, the
// provider is changed in place; otherwise the credential moves to a new
// provider with the new values, named after the credential as
// CreateCredential names one, and the other credentials stay as they are.
// The fencing version moves only when the token URL, client
// id, client secret or refresh token change, so that an in-flight refresh
// of a re-authorized credential cannot commit, while an edit of scopes or
// lead does not throw away a token rotated meanwhile. Setting ClientSecret
// or RefreshToken resets a needs_reauth or error status to active, zeroes
// the failure count and schedules a refresh now. Returns ENOTFOUND or
// EINVALID; nothing is written on error.
func (s *Store) UpdateCredential(ctx context.Context, name string, upd tokenkeeper.CredentialUpdate, ev *tokenkeeper.Event) (*tokenkeeper.Credential, error) {
	return s.updateCredential(ctx, name, upd, ev, nil)
}

// updateCredential is UpdateCredential; post, if not nil, runs in the same
// transaction after the update, given the credential as it was, and its
// error undoes the update.
func (s *Store) updateCredential(ctx context.Context, name string, upd tokenkeeper.CredentialUpdate, ev *tokenkeeper.Event, post func(tx Querier, cur *tokenkeeper.Credential) error) (*tokenkeeper.Credential, error) {
	now := s.now()
	if upd.Status != nil && !upd.Status.Valid() {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid status %q", string(*upd.Status))
	}
	if ev != nil {
		if err := checkEvent(ev); err != nil {
			return nil, err
		}
	}
	if upd.Token != nil {
		if err := checkState(&tokenkeeper.Credential{Token: upd.Token, NextRefreshAt: now}); err != nil {
			return nil, err
		}
	}
	if upd.NextRefreshAt != nil {
		if upd.NextRefreshAt.IsZero() {
			return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "next_refresh_at must not be zero")
		}
		if err := Time("next_refresh_at", *upd.NextRefreshAt); err != nil {
			return nil, err
		}
	}
	var out *rawCredential
	err := s.write(ctx, "update credential", func(tx Querier) error {
		r, err := scanCredential(tx.QueryRow(ctx, `SELECT `+CredentialColumns+` FROM credentials WHERE name = $1`+s.d.ForUpdate, name))
		if err != nil {
			return orNotFound(err, notFound(name))
		}
		cur, err := s.decode(ctx, tx, r)
		if err != nil {
			return err
		}
		n := applyUpdate(cur, upd, now)
		if err := n.Validate(); err != nil {
			return err
		}
		providerID := r.providerID
		if n.TokenURL != cur.TokenURL || n.ClientID != cur.ClientID || n.ClientSecret != cur.ClientSecret || n.AuthStyle != cur.AuthStyle {
			if providerID, err = s.moveProvider(ctx, tx, cur, n, now); err != nil {
				return err
			}
		}
		refreshToken := r.refreshToken
		if upd.RefreshToken != nil {
			if refreshToken, err = sealValue(s.ring, n.RefreshToken, "credentials", n.ID, "refresh_token"); err != nil {
				return err
			}
		}
		params, err := s.sealParams(n.ID, n.Params)
		if err != nil {
			return err
		}
		accessToken, tokenType, expiresAt := r.accessToken, r.tokenType, any(nil)
		if r.expiresAt != nil {
			expiresAt = *r.expiresAt
		}
		if upd.Token != nil {
			if accessToken, err = sealValue(s.ring, n.Token.AccessToken, "credentials", n.ID, "access_token"); err != nil {
				return err
			}
			tokenType, expiresAt = n.Token.TokenType, nullTime(n.Token.ExpiresAt)
		}
		out, err = scanCredential(tx.QueryRow(ctx, `UPDATE credentials SET
				provider_id = $1, refresh_token = $2, scopes = $3, end_user_id = $4, end_user_name = $5, end_user_email = $6,
				params = $7, refresh_lead = $8, status = $9, failure_count = $10,
				last_error = $11, last_error_code = $12, next_refresh_at = $13, version = $14, updated_at = $15,
				access_token = $17, token_type = $18, expires_at = $19, extras = $20
			WHERE id = $16 RETURNING `+CredentialColumns,
			providerID, refreshToken, encodeList(n.Scopes), n.EndUserID, n.EndUserName, n.EndUserEmail,
			params, int64(n.RefreshLead), string(n.Status), n.FailureCount,
			n.LastError, n.LastErrorCode, n.NextRefreshAt, n.Version, now,
			n.ID, accessToken, tokenType, expiresAt, encodeVars(n.Extras)))
		if err != nil {
			return err
		}
		if ev != nil {
			e := *ev
			e.CredentialID, e.CredentialName = n.ID, n.Name
			if err := s.insertEvent(ctx, tx, &e, now); err != nil {
				return err
			}
		}
		if err := s.webhookOnChange(ctx, tx, string(cur.Status), cur.FailureCount, out); err != nil {
			return err
		}
		if post != nil {
			if err := post(tx, cur); err != nil {
				return err
			}
		}
		return s.notify(ctx, tx, rawChange(tokenkeeper.ChangeUpdated, out))
	})
	if err != nil {
		return nil, err
	}
	return s.decode(ctx, s.conn, out)
}

// moveProvider gives the credential cur the provider values of n: it
// changes cur's provider in place when cur is its only credential, and
// otherwise inserts a copy of the provider with n's values, named after
// the credential. It returns the id of the credential's provider.
func (s *Store) moveProvider(ctx context.Context, tx Querier, cur, n *tokenkeeper.Credential, now time.Time) (string, error) {
	r, err := scanProvider(tx.QueryRow(ctx, `SELECT `+ProviderColumns+` FROM providers WHERE id = $1`+s.d.ForUpdate, cur.ProviderID))
	if err != nil {
		return "", fmt.Errorf("read provider %s: %w", cur.ProviderID, err)
	}
	p, err := s.decodeProvider(ctx, tx, r)
	if err != nil {
		return "", err
	}
	var count int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM credentials WHERE provider_id = $1`, p.ID).Scan(&count); err != nil {
		return "", err
	}
	np := *p
	np.TokenURL, np.ClientID, np.ClientSecret, np.AuthStyle = n.TokenURL, n.ClientID, n.ClientSecret, n.AuthStyle
	np.UpdatedAt = now
	if count <= 1 {
		np.Version++
		return np.ID, s.writeProvider(ctx, tx, r, &np, n.ClientSecret != cur.ClientSecret)
	}
	np.ID, np.Version, np.CreatedAt = newID(), 1, now
	if np.Name, err = s.freeProviderName(ctx, tx, cur.Name); err != nil {
		return "", err
	}
	return np.ID, s.insertProvider(ctx, tx, &np)
}

// DeleteCredential removes the credential and its events. Returns ENOTFOUND.
func (s *Store) DeleteCredential(ctx context.Context, name string) error {
	return s.write(ctx, "delete credential", func(tx Querier) error {
		var id string
		r, err := scanCredential(tx.QueryRow(ctx, `DELETE FROM credentials WHERE name = $1 RETURNING `+CredentialColumns, name))
		if err != nil {
			return orNotFound(err, notFound(name))
		}
		id = r.id
		if _, err = tx.Exec(ctx, `DELETE FROM events WHERE credential_id = $1`, id); err != nil {
			return err
		}
		if err := s.enqueueWebhooks(ctx, tx, tokenkeeper.WebhookCredentialDeleted, subjectOf(r)); err != nil {
			return err
		}
		return s.notify(ctx, tx, tokenkeeper.Change{Kind: tokenkeeper.ChangeDeleted, CredentialID: id, CredentialName: name})
	})
}
